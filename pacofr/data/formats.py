"""Readers for the raw formats of the public face data sets. Each returns NumPy arrays and
raises ValueError naming the file (and the line, for text formats) on malformed input: bytes
that are not UTF-8, JSON nested too deeply, non-finite coordinates or ones beyond
``MAX_COORD`` in magnitude, images that cannot be decoded or declare more pixels than
``PIL.Image.MAX_IMAGE_PIXELS``. A missing file or folder raises FileNotFoundError.

Image paths read from an annotation file (HRNet CSV, COCO JSON, WFLW list, AFLW names) must be
relative and stay below the folder they are read relative to (the data root): an absolute path
or one with a ``..`` component raises ValueError naming the annotation file, unless the reader
is called with ``allow_outside_root=True`` (for images kept elsewhere). The check is lexical:
symbolic links inside the data root are followed, as the root's owner set them up.

Landmarks are returned in the file's own coordinates, x then y, float32 (K, 2): no 0/1-base
shift is applied (iBUG ``.pts`` files are conventionally 1-based; HRNet CSVs and COCO JSON
are 0-based pixel coordinates)."""
import csv
import io
import json
import os
import re
from pathlib import Path, PurePosixPath

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")
MAX_COORD = 1e6  # |coordinate| above this in a landmark file is garbage, not a face


def _text(path):
    """The file's text, decoded as UTF-8; ValueError naming the file and line otherwise."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: expected UTF-8 text, got byte {data[exc.start]:#04x} "
                         f"at offset {exc.start}") from None


def _lines(path):
    """The file's lines as iterating an open text file gives them (universal newlines)."""
    return list(io.StringIO(_text(path), newline=None))


def _finite(values, where, what="values"):
    """values (float64) finite and within MAX_COORD in magnitude, else ValueError naming where."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: non-finite {what}")
    big = float(np.abs(values).max(initial=0.0))
    if big > MAX_COORD:
        raise ValueError(f"{where}: {what} must lie within +-{MAX_COORD:g}, got {big:g}")
    return values


def _image_path(name, where, allow_outside_root):
    """An image path read from an annotation file: a non-empty relative path with no '..'
    (it stays below the data root), else ValueError naming where it was read."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{where}: expected an image path, got {name!r}")
    if not allow_outside_root and (os.path.isabs(name) or ".." in PurePosixPath(name).parts):
        raise ValueError(f"{where}: image path {name!r} leads outside the data root (absolute or "
                         f"with '..'); pass allow_outside_root=True to read images elsewhere")
    return name


def _floats(tokens, path, lineno):
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected numbers, got {' '.join(tokens)!r}") from None


def read_pts(path):
    """An iBUG ``.pts`` file (``version: 1``, ``n_points: K``, ``{``, K lines ``x y``, ``}``)
    -> float32 (K, 2). ValueError (file:line) on a malformed, non-UTF-8 or non-finite file or
    a coordinate beyond MAX_COORD."""
    path = Path(path)
    lines = _text(path).splitlines()
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
    return _finite(np.array(pts).reshape(n, 2), path, "coordinates").astype(np.float32)


def read_hrnet_csv(path, allow_outside_root=False):
    """HRNet's landmark CSV (300-W / WFLW / AFLW / COFW): ``image_name, scale, center_w,
    center_h, x0, y0, x1, y1, ...`` -> list of dicts with ``image`` (str, relative to the data
    root), ``scale`` (box size / 200), ``center`` float32 (2,), ``landmarks`` float32 (K, 2).
    ValueError (file:line) on bad columns, non-UTF-8 bytes, non-finite values, values beyond
    MAX_COORD, a scale that is not positive, or an image path outside the data root (see the
    module docstring)."""
    path = Path(path)
    out = []
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    try:
        header = next(reader, None)
        if not header or len(header) < 6 or (len(header) - 4) % 2:
            raise ValueError(f"{path}:1: expected a header 'image_name,scale,center_w,center_h,x0,y0,...'")
        K = (len(header) - 4) // 2
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{lineno}: expected {len(header)} columns, got {len(row)}")
            values = _finite(_floats(row[1:], path, lineno), f"{path}:{lineno}").astype(np.float32)
            if not values[0] > 0:
                raise ValueError(f"{path}:{lineno}: scale must be positive, got {row[1]!r}")
            out.append({"image": _image_path(row[0], f"{path}:{lineno}", allow_outside_root),
                        "scale": float(values[0]), "center": values[1:3].copy(),
                        "landmarks": values[3:].reshape(K, 2).copy()})
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: not a CSV row: {exc}") from None
    return out


def _json(path):
    """The parsed JSON document; ValueError naming the file on bad text, bad JSON or nesting
    too deep for the parser."""
    text = _text(path)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to parse") from None
    except ValueError as exc:  # JSONDecodeError, or an integer over Python's digit limit
        raise ValueError(f"{path}: not valid JSON: {exc}") from None


def read_coco_keypoints(path, allow_outside_root=False):
    """COCO-style keypoint JSON (mmpose's face layout) -> list of dicts per face: ``image``
    (file name, relative to the data root), ``bbox`` float32 (4,) x, y, w, h, ``landmarks``
    float32 (K, 2), ``visible`` uint8 (K,) (the v of each [x, y, v], 0, 1 or 2). ValueError
    naming the file (and annotation index or image id) on invalid or too deeply nested JSON,
    missing or malformed fields, non-finite values or ones beyond MAX_COORD, or a
    ``file_name`` outside the data root (see the module docstring)."""
    path = Path(path)
    doc = _json(path)
    try:
        images = {im["id"]: _image_path(im["file_name"], f"{path}: image id {im['id']!r}", allow_outside_root)
                  for im in doc["images"]}
        anns = doc["annotations"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a COCO keypoint file (missing {exc})") from None
    out = []
    for i, a in enumerate(anns):
        try:
            kp = np.asarray(a["keypoints"], np.float64)
            bbox = np.asarray(a["bbox"], np.float64)
            image = images[a["image_id"]]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{path}: annotation {i}: malformed ({exc})") from None
        if kp.ndim != 1 or kp.size % 3 or bbox.shape != (4,):
            raise ValueError(f"{path}: annotation {i}: keypoints must be [x, y, v] * K and bbox [x, y, w, h]")
        kp = kp.reshape(-1, 3)
        _finite(kp, f"{path}: annotation {i}")
        _finite(bbox, f"{path}: annotation {i}")
        if not np.isin(kp[:, 2], (0, 1, 2)).all():
            raise ValueError(f"{path}: annotation {i}: visibility v must be 0, 1 or 2, "
                             f"got {kp[~np.isin(kp[:, 2], (0, 1, 2)), 2][0]:g}")
        kp = kp.astype(np.float32)
        out.append({"image": image, "bbox": bbox.astype(np.float32), "landmarks": kp[:, :2].copy(),
                    "visible": kp[:, 2].astype(np.uint8)})
    return out


WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")


def read_wflw_txt(path, allow_outside_root=False):
    """WFLW's annotation list: per line 196 coordinates (98 points x, y), the box (x_min,
    y_min, x_max, y_max), six 0/1 attribute flags (pose, expression, illumination, make-up,
    occlusion, blur) and the image path -> list of dicts ``landmarks`` (98, 2), ``box`` (4,),
    ``attributes`` uint8 (6,), ``image`` (relative to the data root). ValueError (file:line)
    on a wrong field count, non-UTF-8 bytes, flags other than 0/1, non-finite values or ones
    beyond MAX_COORD, or an image path outside the data root (see the module docstring)."""
    path = Path(path)
    out = []
    for lineno, line in enumerate(_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 196 + 4 + 6 + 1:
            raise ValueError(f"{path}:{lineno}: expected 207 fields (196 coordinates, box, 6 flags, "
                             f"image), got {len(tokens)}")
        values = _floats(tokens[:200], path, lineno)
        flags = _floats(tokens[200:206], path, lineno)
        if any(v not in (0.0, 1.0) for v in flags):
            raise ValueError(f"{path}:{lineno}: attribute flags must be 0 or 1, got {tokens[200:206]}")
        values = _finite(values, f"{path}:{lineno}").astype(np.float32)
        out.append({"landmarks": values[:196].reshape(98, 2).copy(), "box": values[196:200].copy(),
                    "attributes": np.array(flags, np.uint8),
                    "image": _image_path(tokens[206], f"{path}:{lineno}", allow_outside_root)})
    return out


_LFW_NAME = re.compile(r"[^/\\\x00]+")


def _lfw_pair(t, where):
    """One pairs.txt line's tokens -> (name1, index1, name2, index2, same)."""
    if len(t) == 3:
        pair = (t[0], t[1], t[0], t[2], True)
    elif len(t) == 4:
        pair = (t[0], t[1], t[2], t[3], False)
    else:
        raise ValueError(f"{where}: expected 'name i j' or 'name1 i name2 j', got {' '.join(t)!r}")
    for name in (pair[0], pair[2]):
        if name in (".", "..") or not _LFW_NAME.fullmatch(name):
            raise ValueError(f"{where}: expected a person's name (a folder name, no '/'), got {name!r}")
    for index in (pair[1], pair[3]):
        if not (index.isdecimal() and int(index) >= 1):
            raise ValueError(f"{where}: expected 'name i j' or 'name1 i name2 j' with image numbers >= 1, "
                             f"got {' '.join(t)!r}")
    return pair[0], int(pair[1]), pair[2], int(pair[3]), pair[4]


def read_lfw_pairs(path):
    """LFW's ``pairs.txt`` -> list of ``(name1, index1, name2, index2, same)``. Accepts the
    file with its ``folds pairs_per_fold`` header line (10 300) or without it. ValueError
    (file:line) on a malformed line, non-UTF-8 bytes, a name that is not a plain folder name
    (``/``, ``..``), an image number below 1, or a pair count that disagrees with the header."""
    path = Path(path)
    lines = [(i + 1, ln.split()) for i, ln in enumerate(_lines(path)) if ln.strip()]
    if lines and len(lines[0][1]) == 2 and all(t.isdecimal() for t in lines[0][1]):
        folds, per_fold = (int(t) for t in lines[0][1])
        lines = lines[1:]
        if len(lines) != 2 * folds * per_fold:
            raise ValueError(f"{path}: header says {folds} folds of {per_fold} + {per_fold} pairs, "
                             f"found {len(lines)} pairs")
    return [_lfw_pair(t, f"{path}:{lineno}") for lineno, t in lines]


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


def _declared_size(path):
    """(width, height) from an image file's header without PIL's pixel limit (its plugins'
    headers only, no pixel data), or None; for the message on a decompression bomb."""
    from PIL import Image
    try:
        Image.init()
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is not None and (not accept(prefix) or isinstance(accept(prefix), str)):
                    continue
                fp.seek(0)
                try:
                    return tuple(factory(fp, str(path)).size)
                except Exception:  # not this format; try the next plugin
                    fp.seek(0)
    except Exception:  # only a message depends on it
        return None
    return None


def _decode(path, mode, what="image", exif=False):
    """The pixels of an image file converted to PIL mode ``mode`` -> uint8 array. ValueError
    naming the file when it cannot be decoded (corrupt, truncated, not an image) or declares
    more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression bomb); FileNotFoundError
    when it is missing."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and im.size[0] * im.size[1] > limit:
                raise ValueError(f"{path}: {what} declares {im.size[0]}x{im.size[1]} pixels, more than "
                                 f"PIL.Image.MAX_IMAGE_PIXELS = {limit} (a decompression bomb?)")
            im.load()
            if exif:
                from PIL import ImageOps
                im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert(mode), np.uint8).copy()
    except FileNotFoundError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        size, pixels = _declared_size(path), re.search(r"\((\d+) pixels\)", str(exc))
        declared = (f"{size[0]}x{size[1]} pixels" if size else f"{pixels.group(1)} pixels" if pixels
                    else "too many pixels")
        raise ValueError(f"{path}: {what} declares {declared}, more than PIL.Image.MAX_IMAGE_PIXELS = "
                         f"{Image.MAX_IMAGE_PIXELS} (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{path}: cannot decode {what}: {exc}") from None


def read_image(path):
    """An image file -> uint8 (H, W, 3) RGB (grey images are replicated). ValueError naming
    the file when it is corrupt, truncated or not an image, or when it declares more pixels
    than ``PIL.Image.MAX_IMAGE_PIXELS`` (the declared size is in the message);
    FileNotFoundError when it is missing."""
    return _decode(path, "RGB")


def read_photo(path):
    """A photo as a camera wrote it -> uint8 (H, W, 3) RGB, turned upright by its EXIF
    orientation tag (phones store pictures sideways and say so there), with read_image's
    errors. For raw photos; annotated data sets keep read_image (their points are in the
    stored orientation)."""
    return _decode(path, "RGB", exif=True)


def read_aflw_mat(path, allow_outside_root=False):
    """AFLW-19's ``AFLWinfo_release.mat`` (scipy.io) -> dict with ``landmarks`` float32
    (N, 19, 2) (the file's ``data`` holds x1..x19 then y1..y19, 1-based MATLAB pixels),
    ``boxes`` float32 (N, 4) as x_min, y_min, x_max, y_max (the file stores x_min, x_max,
    y_min, y_max), ``visible`` uint8 (N, 19) (``mask_new``), ``names`` (N,) and ``split``:
    0-based ``train`` / ``test`` indices from the file's permutation ``ra`` (first 20000 train,
    the remaining 4386 test, as the AFLW-19 protocol uses). ValueError naming the file (and
    the face index) when it is not a readable AFLW-19 file, a face's landmarks or box are not
    finite or beyond MAX_COORD, a name is an image path outside the data root (unless
    ``allow_outside_root``) or ``ra`` is not a permutation."""
    from scipy.io import loadmat
    path = Path(path)
    try:
        m = loadmat(str(path))
    except Exception as exc:  # scipy raises several kinds on a bad file
        raise ValueError(f"{path}: cannot read MATLAB file: {exc}") from None
    missing = [k for k in ("data", "bbox") if k not in m]
    if missing:
        raise ValueError(f"{path}: not an AFLW-19 file (no {', '.join(missing)})")
    try:
        data, bbox = np.asarray(m["data"], np.float64), np.asarray(m["bbox"], np.float64)
        visible = (np.asarray(m["mask_new"]).reshape(len(data), 19) != 0).astype(np.uint8) if "mask_new" in m \
            else np.ones((len(data), 19), np.uint8)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: expected numeric data (N, 38), bbox (N, 4) and mask_new (N, 19): {exc}") from None
    if data.ndim != 2 or data.shape[1] != 38 or bbox.shape != (len(data), 4):
        raise ValueError(f"{path}: expected data (N, 38) and bbox (N, 4), got {data.shape} and {bbox.shape}")
    for what, values in (("landmarks", data), ("box", bbox)):
        bad = ~(np.isfinite(values) & (np.abs(values) <= MAX_COORD)).all(1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: face {i}: {what} must be finite and within +-{MAX_COORD:g}, "
                             f"got {values[i][~(np.isfinite(values[i]) & (np.abs(values[i]) <= MAX_COORD))][0]}")
    landmarks = np.stack([data[:, :19], data[:, 19:]], axis=-1).astype(np.float32)
    boxes = bbox[:, [0, 2, 1, 3]].astype(np.float32)
    names = [str(np.ravel(n)[0]) if np.size(n) else "" for n in np.ravel(m["nameList"])] if "nameList" in m else []
    for i, name in enumerate(names):
        if name:
            _image_path(name, f"{path}: face {i}", allow_outside_root)
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
    ``image`` and ``labels`` paths and ``landmarks`` float32 (106, 2). FileNotFoundError when
    ``<root>/<split>/images`` is missing; ValueError naming the file (and line) when an image
    has no landmark or label file, or a landmark file is malformed, not UTF-8, or holds a
    non-finite coordinate or one beyond MAX_COORD. Paths come from the folder listing, never
    from file contents."""
    base = Path(root) / split
    if not (base / "images").is_dir():
        raise FileNotFoundError(f"{base}/images: no such folder (is {root} a LaPa root?)")
    out = []
    for image in sorted((base / "images").glob("*.jpg")):
        lm_path = base / "landmarks" / f"{image.stem}.txt"
        label = base / "labels" / f"{image.stem}.png"
        if not lm_path.exists() or not label.exists():
            raise ValueError(f"{image}: no matching {lm_path.name} in landmarks/ or {label.name} in labels/")
        lines = [ln.split() for ln in _text(lm_path).splitlines() if ln.strip()]
        if not lines or lines[0] != ["106"] or len(lines) != 107:
            raise ValueError(f"{lm_path}: expected a '106' line then 106 'x y' lines, got {len(lines)} lines")
        pts = []
        for i, t in enumerate(lines[1:], start=2):
            if len(t) != 2:
                raise ValueError(f"{lm_path}:{i}: expected 'x y', got {' '.join(t)!r}")
            pts.append(_finite(_floats(t, lm_path, i), f"{lm_path}:{i}", "coordinates"))
        out.append({"image": image, "labels": label, "landmarks": np.array(pts, np.float32)})
    return out


# CelebAMask-HQ part files -> the 19-label map of docs/evaluation.md, painted in this order.
CELEBAMASK_PARTS = ("neck", "skin", "cloth", "r_ear", "l_ear", "r_brow", "l_brow", "r_eye", "l_eye", "nose",
                    "mouth", "l_lip", "u_lip", "hair", "eye_g", "hat", "ear_r", "neck_l")


def check_int(value, name, low=None, high=None):
    """value as a Python int in [low, high] (None: unbounded; numpy integers too; floats,
    strings and bools are refused), else TypeError / ValueError naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = value.__index__()
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{'-inf' if low is None else low}, {'inf' if high is None else high}], "
                         f"got {value}")
    return value


def read_celebamask(anno_root, index, size=512):
    """CelebAMask-HQ's per-part masks of image ``index`` (``<anno_root>/<index // 2000>/
    <index:05d>_<part>.png``, 0/255) merged into one uint8 (size, size) map of docs/evaluation.md's 19
    labels (0 background, 1 neck, 2 skin, ..., 18 necklace); a later part overwrites an
    earlier one where they overlap; absent parts are simply absent. TypeError / ValueError
    naming ``index`` or ``size`` unless they are integers (not bools), index >= 0 and size >= 1;
    FileNotFoundError when the folder is missing; ValueError naming the mask file when it
    cannot be decoded, is a decompression bomb or has the wrong size."""
    index, size = check_int(index, "index", 0), check_int(size, "size", 1)
    folder = Path(anno_root) / str(index // 2000)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (is {anno_root} CelebAMask-HQ-mask-anno?)")
    out = np.zeros((size, size), np.uint8)
    for label, part in enumerate(CELEBAMASK_PARTS, start=1):
        p = folder / f"{index:05d}_{part}.png"
        if not p.exists():
            continue
        m = _decode(p, "L", "mask")
        if m.shape != (size, size):
            raise ValueError(f"{p}: expected a {size}x{size} mask, got {m.shape[1]}x{m.shape[0]}")
        out[m > 127] = label
    return out
