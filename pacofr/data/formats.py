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


def read_aflw_mat(path):
    """AFLW-19's ``AFLWinfo_release.mat`` (scipy.io) -> dict with ``landmarks`` float32
    (N, 19, 2) (the file's ``data`` holds x1..x19 then y1..y19, 1-based MATLAB pixels),
    ``boxes`` float32 (N, 4) as x_min, y_min, x_max, y_max (the file stores x_min, x_max,
    y_min, y_max), ``visible`` uint8 (N, 19) (``mask_new``), ``names`` (N,) and ``split``:
    0-based ``train`` / ``test`` indices from the file's permutation ``ra`` (first 20000 train,
    the remaining 4386 test, as the AFLW-19 protocol uses)."""
    from scipy.io import loadmat
    path = Path(path)
    try:
        m = loadmat(str(path))
    except Exception as exc:  # scipy raises several kinds on a bad file
        raise ValueError(f"{path}: cannot read MATLAB file: {exc}") from None
    missing = [k for k in ("data", "bbox") if k not in m]
    if missing:
        raise ValueError(f"{path}: not an AFLW-19 file (no {', '.join(missing)})")
    data, bbox = np.asarray(m["data"], np.float64), np.asarray(m["bbox"], np.float64)
    if data.ndim != 2 or data.shape[1] != 38 or bbox.shape != (len(data), 4):
        raise ValueError(f"{path}: expected data (N, 38) and bbox (N, 4), got {data.shape} and {bbox.shape}")
    landmarks = np.stack([data[:, :19], data[:, 19:]], axis=-1).astype(np.float32)
    boxes = bbox[:, [0, 2, 1, 3]].astype(np.float32)
    visible = (np.asarray(m["mask_new"]).reshape(len(data), 19) != 0).astype(np.uint8) if "mask_new" in m \
        else np.ones((len(data), 19), np.uint8)
    names = [str(np.ravel(n)[0]) if np.size(n) else "" for n in np.ravel(m["nameList"])] if "nameList" in m else []
    split = {}
    if "ra" in m:
        ra = np.ravel(m["ra"]).astype(np.int64) - 1
        if sorted(ra.tolist()) != list(range(len(data))):
            raise ValueError(f"{path}: 'ra' is not a permutation of the {len(data)} faces")
        split = {"train": ra[:20000], "test": ra[20000:]}
    return {"landmarks": landmarks, "boxes": boxes, "visible": visible, "names": names, "split": split}


def read_lapa(root, split="test"):
    """A LaPa folder (``<root>/<split>/images/*.jpg``, ``labels/*.png`` with the 11 labels,
    ``landmarks/*.txt``: a count line ``106`` then 106 ``x y`` lines) -> list of dicts with
    ``image`` and ``labels`` paths and ``landmarks`` float32 (106, 2)."""
    base = Path(root) / split
    if not (base / "images").is_dir():
        raise FileNotFoundError(f"{base}/images: no such folder (is {root} a LaPa root?)")
    out = []
    for image in sorted((base / "images").glob("*.jpg")):
        lm_path = base / "landmarks" / f"{image.stem}.txt"
        label = base / "labels" / f"{image.stem}.png"
        if not lm_path.exists() or not label.exists():
            raise ValueError(f"{image}: no matching {lm_path.name} in landmarks/ or {label.name} in labels/")
        lines = [ln.split() for ln in lm_path.read_text().splitlines() if ln.strip()]
        if not lines or lines[0] != ["106"] or len(lines) != 107:
            raise ValueError(f"{lm_path}: expected a '106' line then 106 'x y' lines, got {len(lines)} lines")
        pts = []
        for i, t in enumerate(lines[1:], start=2):
            if len(t) != 2:
                raise ValueError(f"{lm_path}:{i}: expected 'x y', got {' '.join(t)!r}")
            pts.append(_floats(t, lm_path, i))
        out.append({"image": image, "labels": label, "landmarks": np.array(pts, np.float32)})
    return out


# CelebAMask-HQ part files -> the 19-label map of EVAL.md, painted in this order.
CELEBAMASK_PARTS = ("neck", "skin", "cloth", "r_ear", "l_ear", "r_brow", "l_brow", "r_eye", "l_eye", "nose",
                    "mouth", "l_lip", "u_lip", "hair", "eye_g", "hat", "ear_r", "neck_l")


def read_celebamask(anno_root, index, size=512):
    """CelebAMask-HQ's per-part masks of image ``index`` (``<anno_root>/<index // 2000>/
    <index:05d>_<part>.png``, 0/255) merged into one uint8 (size, size) map of EVAL.md's 19
    labels (0 background, 1 neck, 2 skin, ..., 18 necklace); a later part overwrites an
    earlier one where they overlap; absent parts are simply absent."""
    from PIL import Image
    folder = Path(anno_root) / str(index // 2000)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (is {anno_root} CelebAMask-HQ-mask-anno?)")
    out = np.zeros((size, size), np.uint8)
    for label, part in enumerate(CELEBAMASK_PARTS, start=1):
        p = folder / f"{index:05d}_{part}.png"
        if not p.exists():
            continue
        try:
            with Image.open(p) as im:
                m = np.asarray(im.convert("L"))
        except OSError as exc:
            raise ValueError(f"{p}: cannot decode mask: {exc}") from None
        if m.shape != (size, size):
            raise ValueError(f"{p}: expected a {size}x{size} mask, got {m.shape[1]}x{m.shape[0]}")
        out[m > 127] = label
    return out
