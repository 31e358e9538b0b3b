"""Trained heads on raw photos, with no annotation: each face is found and aligned by the
detector (``pacofr.data.detect``, the [detect] extra), the heads predict in the crop, and the
predictions go back to the photo's pixels. ``predict_folder`` writes, per photo, a JSON of its
faces (box, score, 5 points, landmarks), the label map at the photo's resolution (a palette
PNG of LaPa's 11 classes) and an overlay picture; unreadable or face-less photos are listed."""
import json
from pathlib import Path

import numpy as np

from ..data import formats
from ..data.detect import detect_faces, detected_matrix
from ..data.synth.preview import PALETTE
from .photos import landmarks_in_crop, parsing_in_crop


def predict_photo(image, fitted_landmarks=None, fitted_parsing=None, faces="all"):
    """One photo (H, W, 3) uint8 -> (list of per-face dicts with ``box``, ``score``,
    ``five_points`` and, with a landmark head, ``landmarks`` (L, 2) in the photo's pixels;
    label map (H, W) uint8 of every face's parsing, or None without a parsing head). ``faces``:
    "all" or "largest"."""
    found = detect_faces(image)
    if faces == "largest":
        found = sorted(found, key=lambda f: -f.size)[:1]
    size = (fitted_landmarks or fitted_parsing).encoder.config.img_size
    labels = np.zeros(image.shape[:2], np.uint8) if fitted_parsing is not None else None
    out = []
    for f in found:
        A = detected_matrix(f.five_points, size)
        face = f.to_dict()
        if fitted_landmarks is not None:
            face["landmarks"] = landmarks_in_crop(fitted_landmarks, image, A)
        if fitted_parsing is not None:
            parsed = parsing_in_crop(fitted_parsing, image, A)
            labels = np.where((labels == 0) & (parsed > 0), parsed, labels)   # a face paints background only
        out.append(face)
    return out, labels


def overlay(image, faces, labels=None, alpha=0.45):
    """A picture of the predictions: the label map blended over the photo, each box, and the
    landmarks as dots -> PIL image."""
    from PIL import Image, ImageDraw
    rgb = image.astype(np.float32)
    if labels is not None:
        colours = PALETTE[np.minimum(labels, len(PALETTE) - 1)].astype(np.float32)
        mask = (labels > 0)[..., None]
        rgb = np.where(mask, (1 - alpha) * rgb + alpha * colours, rgb)
    pic = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    for face in faces:
        r = max(1.0, 0.006 * max(image.shape[:2]))
        draw.rectangle(face["box"], outline=(255, 255, 0), width=max(1, int(r)))
        for x, y in face.get("landmarks", []):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0))
    return pic


def _save_labels(labels, path):
    from PIL import Image
    pic = Image.fromarray(np.ascontiguousarray(labels, np.uint8)).convert("P")
    pic.putpalette(PALETTE.astype(np.uint8).ravel().tolist())
    pic.save(path)


def predict_folder(folder, out, fitted_landmarks=None, fitted_parsing=None, faces="all", progress=False):
    """Every photo below ``folder`` -> ``out/<path>.json`` (faces with box, score, 5 points,
    landmarks in the photo's pixels), ``out/<path>_parsing.png`` (labels at the photo's
    resolution) and ``out/<path>_overlay.jpg``, where <path> is the photo's own path below
    ``folder`` (sub-folders mirrored, suffix kept: no two photos share outputs); returns a
    summary with the per-photo face counts and the photos skipped (unreadable, or no face
    found, or any other error in that photo) with the reason."""
    if fitted_landmarks is None and fitted_parsing is None:
        raise ValueError("predict_folder needs a landmark head, a parsing head or both")
    from tqdm import tqdm
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"photos": {}, "skipped": {}}
    for path in tqdm(formats.list_images(folder), disable=not progress, unit="photo", desc="photos"):
        rel = path.relative_to(folder)
        try:                            # one photo's trouble is its own: logged, the rest go on
            image = formats.read_photo(path)
            found, labels = predict_photo(image, fitted_landmarks, fitted_parsing, faces)
        except Exception as exc:        # noqa: BLE001 (a per-photo boundary)
            summary["skipped"][str(rel)] = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
            continue
        if not found:
            summary["skipped"][str(rel)] = "no face found"
            continue
        stem = str(rel)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        doc = {"source": str(rel), "photo_size": [int(image.shape[1]), int(image.shape[0])],
               "faces": [{**f, **({"landmarks": np.round(f["landmarks"], 2).tolist()} if "landmarks" in f else {})}
                         for f in found]}
        if labels is not None:
            _save_labels(labels, out / f"{stem}_parsing.png")
            doc["parsing"] = f"{stem}_parsing.png"
        overlay(image, doc["faces"], labels).save(out / f"{stem}_overlay.jpg", quality=90)
        (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
        summary["photos"][str(rel)] = len(found)
    (out / "photos.json").write_text(json.dumps(summary, indent=1))
    return summary
