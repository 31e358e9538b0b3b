"""Readers for the raw formats of the public face data sets. Each returns NumPy arrays and
raises ValueError naming the file (and the line, for text formats) on malformed input.

Landmarks are returned in the file's own coordinates, x then y, float32 (K, 2): no 0/1-base
shift is applied (iBUG ``.pts`` files are conventionally 1-based; HRNet CSVs and COCO JSON
are 0-based pixel coordinates)."""
import csv
import json
import os
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")


def _floats(tokens, path, lineno):
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected numbers, got {' '.join(tokens)!r}") from None


def read_pts(path):
    """An iBUG ``.pts`` file (``version: 1``, ``n_points: K``, ``{``, K lines ``x y``, ``}``)
    -> float32 (K, 2)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text .pts file") from None
    rows = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
    header = {}
    k = 0
    while k < len(rows) and rows[k][1] != "{":
        lineno, text = rows[k]
        key, sep, value = text.partition(":")
        if not sep:
            raise ValueError(f"{path}:{lineno}: expected 'key: value' or '{{', got {text!r}")
        header[key.strip()] = value.strip()
        k += 1
    if k == len(rows):
        raise ValueError(f"{path}: no '{{' opening the point list")
    if "n_points" not in header:
        raise ValueError(f"{path}: header has no n_points")
    try:
        n = int(header["n_points"])
    except ValueError:
        raise ValueError(f"{path}: n_points is {header['n_points']!r}, not an integer") from None
    if header.get("version", "1") not in ("1", "1.0"):
        raise ValueError(f"{path}: unsupported PTS version {header['version']!r}")
    body = rows[k + 1:]
    if not body or body[-1][1] != "}":
        raise ValueError(f"{path}: no '}}' closing the point list (truncated file?)")
    body = body[:-1]
    if len(body) != n:
        raise ValueError(f"{path}: n_points is {n} but {len(body)} points follow")
    pts = []
    for lineno, text in body:
        tokens = text.split()
        if len(tokens) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'x y', got {text!r}")
        pts.append(_floats(tokens, path, lineno))
    out = np.array(pts, np.float32).reshape(n, 2)
    if not np.isfinite(out).all():
        raise ValueError(f"{path}: non-finite coordinates")
    return out


def read_hrnet_csv(path):
    """HRNet's landmark CSV (300-W / WFLW / AFLW / COFW): ``image_name, scale, center_w,
    center_h, x0, y0, x1, y1, ...`` -> list of dicts with ``image`` (str), ``scale`` (box
    size / 200), ``center`` float32 (2,), ``landmarks`` float32 (K, 2)."""
    path = Path(path)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or len(header) < 6 or (len(header) - 4) % 2:
            raise ValueError(f"{path}:1: expected a header 'image_name,scale,center_w,center_h,x0,y0,...'")
        K = (len(header) - 4) // 2
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
            values = np.array(_floats(row[1:], path, lineno), np.float32)
            if not np.isfinite(values).all():
                raise ValueError(f"{path}:{lineno}: non-finite values")
            out.append({"image": row[0], "scale": float(values[0]), "center": values[1:3].copy(),
                        "landmarks": values[3:].reshape(K, 2).copy()})
    return out


def read_coco_keypoints(path):
    """COCO-style keypoint JSON (mmpose's face layout) -> list of dicts per face: ``image``
    (file name), ``bbox`` float32 (4,) x, y, w, h, ``landmarks`` float32 (K, 2), ``visible``
    uint8 (K,) (the v of each [x, y, v])."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    try:
        images = {im["id"]: im["file_name"] for im in doc["images"]}
        anns = doc["annotations"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a COCO keypoint file (missing {exc})") from None
    out = []
    for i, a in enumerate(anns):
        try:
            kp = np.asarray(a["keypoints"], np.float32)
            bbox = np.asarray(a["bbox"], np.float32)
            image = images[a["image_id"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: annotation {i}: malformed ({exc})") from None
        if kp.ndim != 1 or kp.size % 3 or bbox.shape != (4,):
            raise ValueError(f"{path}: annotation {i}: keypoints must be [x, y, v] * K and bbox [x, y, w, h]")
        kp = kp.reshape(-1, 3)
        if not (np.isfinite(kp).all() and np.isfinite(bbox).all()):
            raise ValueError(f"{path}: annotation {i}: non-finite values")
        out.append({"image": image, "bbox": bbox, "landmarks": kp[:, :2].copy(),
                    "visible": kp[:, 2].astype(np.uint8)})
    return out


WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")


def read_wflw_txt(path):
    """WFLW's annotation list: per line 196 coordinates (98 points x, y), the box (x_min,
    y_min, x_max, y_max), six 0/1 attribute flags (pose, expression, illumination, make-up,
    occlusion, blur) and the image path -> list of dicts ``landmarks`` (98, 2), ``box`` (4,),
    ``attributes`` uint8 (6,), ``image``."""
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 196 + 4 + 6 + 1:
                raise ValueError(f"{path}:{lineno}: expected 207 fields (196 coordinates, box, 6 flags, "
                                 f"image), got {len(tokens)}")
            values = np.array(_floats(tokens[:200], path, lineno), np.float32)
            flags = _floats(tokens[200:206], path, lineno)
            if any(v not in (0.0, 1.0) for v in flags):
                raise ValueError(f"{path}:{lineno}: attribute flags must be 0 or 1, got {tokens[200:206]}")
            if not np.isfinite(values).all():
                raise ValueError(f"{path}:{lineno}: non-finite values")
            out.append({"landmarks": values[:196].reshape(98, 2).copy(), "box": values[196:200].copy(),
                        "attributes": np.array(flags, np.uint8), "image": tokens[206]})
    return out


def read_lfw_pairs(path):
    """LFW's ``pairs.txt`` -> list of ``(name1, index1, name2, index2, same)``. Accepts the
    file with its ``folds pairs_per_fold`` header line (10 300) or without it."""
    path = Path(path)
    out = []
    with open(path, encoding="utf-8") as f:
        lines = [(i + 1, ln.split()) for i, ln in enumerate(f) if ln.strip()]
    if lines and len(lines[0][1]) == 2 and all(t.isdigit() for t in lines[0][1]):
        folds, per_fold = (int(t) for t in lines[0][1])
        lines = lines[1:]
        if len(lines) != 2 * folds * per_fold:
            raise ValueError(f"{path}: header says {folds} folds of {per_fold} + {per_fold} pairs, "
                             f"found {len(lines)} pairs")
    for lineno, t in lines:
        try:
            if len(t) == 3:
                out.append((t[0], int(t[1]), t[0], int(t[2]), True))
            elif len(t) == 4:
                out.append((t[0], int(t[1]), t[2], int(t[3]), False))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'name i j' or 'name1 i name2 j', got {' '.join(t)!r}") from None
    return out


def list_images(folder):
    """Every image file below folder (recursively), sorted: jpg, jpeg, png, bmp, ppm, pgm."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [Path(root) / f for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    return found


def read_image(path):
    """An image file -> uint8 (H, W, 3) RGB (grey images are replicated). A corrupt or
    truncated file raises ValueError naming it."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), np.uint8).copy()
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot decode image: {exc}") from None
