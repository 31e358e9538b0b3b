"""Data sets as indexable collections of samples (dicts of NumPy arrays) that the Loader
batches: unlabeled image folders for pre-training, and faces with landmarks, aligned.

Bad input raises TypeError / ValueError naming the argument, the annotation file (and line) or
the image file: see ``formats`` for what the readers check (image paths that leave the data
root unless ``allow_outside_root=True``, non-finite or absurd coordinates, undecodable images
and decompression bombs)."""
from pathlib import Path

import numpy as np

from . import formats
from .align import align_face, warp


def center_square(image, size):
    """Resize the central square of an image to size x size (bilinear, C warp)."""
    h, w = image.shape[:2]
    side = min(h, w)
    s = size / side
    ox, oy = (w - side) / 2.0, (h - side) / 2.0
    # image pixel (x, y) -> crop ((x - ox + 0.5) s - 0.5, ...): pixel centres stay centres
    A = np.array([[s, 0.0, (0.5 - ox) * s - 0.5], [0.0, s, (0.5 - oy) * s - 0.5]])
    return warp(image, A, size)


class ImageFolder:
    """Every image below ``root`` (jpg, jpeg, png, bmp, ppm, pgm), as a size x size RGB crop of
    its central square: for folders of face crops that are already roughly aligned. ``size``
    must be a positive integer (TypeError / ValueError otherwise)."""

    def __init__(self, root, size=112):
        self.root = Path(root)
        self.size = formats.check_int(size, "size", 1)
        self.paths = formats.list_images(self.root)
        if not self.paths:
            raise ValueError(f"{self.root}: no images (jpg, jpeg, png, bmp, ppm, pgm) found")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return {"image": center_square(formats.read_image(self.paths[i]), self.size)}


class LandmarkFaces:
    """Faces with landmarks, each aligned to a size x size crop by its 5 points: records are
    dicts with ``image`` (a path, relative to ``image_root``) and ``landmarks`` (K, 2).
    ValueError naming ``records[i]`` when a record lacks them or its landmarks are not a
    finite (K, 2) array within ``formats.MAX_COORD``; TypeError / ValueError naming ``size``
    unless it is a positive integer."""

    def __init__(self, records, image_root=".", size=112):
        self.records = list(records)
        self.image_root = Path(image_root)
        self.size = formats.check_int(size, "size", 1)
        if not self.records:
            raise ValueError("no faces")
        for i, r in enumerate(self.records):
            _check_record(r, f"records[{i}]")

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        image = formats.read_image(self.image_root / r["image"])
        out = align_face(image, r["landmarks"], self.size)
        return {"image": out["image"], "landmarks": out["landmarks"], "matrix": out["matrix"]}

    @classmethod
    def from_hrnet_csv(cls, csv_path, image_root, size=112, allow_outside_root=False):
        """An HRNet CSV (``formats.read_hrnet_csv``), image paths relative to image_root."""
        return cls(formats.read_hrnet_csv(csv_path, allow_outside_root), image_root, size)

    @classmethod
    def from_coco(cls, json_path, image_root=None, size=112, allow_outside_root=False):
        """A COCO keypoint JSON (``formats.read_coco_keypoints``), file names relative to
        image_root (default: the JSON's folder)."""
        json_path = Path(json_path)
        return cls(formats.read_coco_keypoints(json_path, allow_outside_root), image_root or json_path.parent, size)

    @classmethod
    def from_pts_folder(cls, folder, size=112, one_based=True):
        """Images with same-named ``.pts`` files beside them (iBUG layout; PTS is 1-based)."""
        records = []
        for image in formats.list_images(folder):
            pts = image.with_suffix(".pts")
            if pts.exists():
                records.append({"image": image, "landmarks": formats.read_pts(pts) - (1.0 if one_based else 0.0)})
        return cls(records, ".", size)


def _check_record(r, where):
    """One LandmarkFaces record: a mapping with ``image`` and finite ``landmarks`` (K, 2)."""
    try:
        image, lm = r["image"], np.asarray(r["landmarks"], np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: expected a dict with 'image' and numeric 'landmarks' (K, 2) ({exc!r})") from None
    if not isinstance(image, (str, Path)):
        raise ValueError(f"{where}: 'image' must be a path, got {type(image).__name__}")
    if lm.ndim != 2 or lm.shape[1] != 2 or len(lm) < 2:
        raise ValueError(f"{where}: landmarks must be (K, 2) with K >= 2, got shape {lm.shape}")
    if not (np.isfinite(lm).all() and np.abs(lm).max() <= formats.MAX_COORD):
        raise ValueError(f"{where}: landmarks must be finite and within +-{formats.MAX_COORD:g}")


def open_landmark_faces(path, size=112, allow_outside_root=False):
    """The landmark data set at path: a COCO keypoint ``.json``, an HRNet ``.csv`` (images
    beside it) or a folder of images with iBUG ``.pts`` files beside them; None when path is
    none of these. Image paths in the annotation file must stay below its folder unless
    ``allow_outside_root``; ValueError naming the file (and line / image id) otherwise."""
    path = Path(path)
    if path.suffix == ".json" and path.is_file():      # COCO-style keypoints (mmpose layout)
        return LandmarkFaces.from_coco(path, size=size, allow_outside_root=allow_outside_root)
    if path.suffix == ".csv" and path.is_file():       # HRNet-style CSV, images beside it
        return LandmarkFaces.from_hrnet_csv(path, path.parent, size=size, allow_outside_root=allow_outside_root)
    if path.is_dir() and any(path.rglob("*.pts")):     # iBUG: images with .pts beside them
        return LandmarkFaces.from_pts_folder(path, size=size)
    return None
