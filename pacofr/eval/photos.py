"""Real photos end to end: load, align (5 points), predict in the aligned crop, warp the
prediction back to the original image, score there (docs/evaluation.md: LaPa is scored at the original
resolution after the inverse warp; landmarks in original pixel coordinates)."""
import numpy as np

from ..data import formats
from ..data.align import align_face, align_matrix, invert, unwarp_points, warp
from . import alignment, parsing
from .tasks import normalize


def crop(image, landmarks, size):
    """Align one photo by its landmarks' 5 points -> (normalised crop (1, 3, S, S), matrix
    image -> crop)."""
    out = align_face(image, landmarks, size)
    return normalize(out["image"][None]), out["matrix"]


def landmarks_in_crop(fitted, image, A):
    """Predict landmarks for one photo (H, W, 3) uint8 in the crop that the (2, 3) map A
    (photo -> crop) cuts out -> (L, 2) in the photo's pixel coordinates."""
    x = normalize(warp(image, A, fitted.encoder.config.img_size)[None])
    return unwarp_points(fitted.predict(x)[0], A)


def parsing_in_crop(fitted, image, A):
    """Predict a LaPa-style label map for one photo at its own resolution, in the crop that A
    cuts out: the crop's class probabilities are warped back bilinearly (8-bit) and the
    arg-max taken per pixel; pixels outside the crop are background (0)."""
    x = normalize(warp(image, A, fitted.encoder.config.img_size)[None])
    probs = fitted.predict(x)[0]                                   # (K, S, S)
    q = np.ascontiguousarray(np.clip(np.rint(probs * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    back = warp(q, invert(A), image.shape[:2]).reshape(image.shape[0], image.shape[1], -1)
    return back.argmax(2).astype(np.uint8)   # outside the crop every class is 0: arg-max 0


def landmarks_in_photo(fitted, image, crop_landmarks):
    """landmarks_in_crop, cropped by a face's known points (any scheme, or its 5 points)."""
    return landmarks_in_crop(fitted, image, align_matrix(crop_landmarks, fitted.encoder.config.img_size))


def parsing_in_photo(fitted, image, crop_landmarks):
    """parsing_in_crop, cropped by a face's known points (any scheme, or its 5 points)."""
    return parsing_in_crop(fitted, image, align_matrix(crop_landmarks, fitted.encoder.config.img_size))


def lapa_data(root, split="train", size=112, limit=None):
    """LaPa (``formats.read_lapa``) aligned for training a parsing head: dict like
    ``tasks.synthface_split`` with ``images``, ``images_u8``, ``parsing`` (the label maps
    warped nearest-neighbour into the crops) and ``records``."""
    recs = formats.read_lapa(root, split)[:limit]
    crops, maps = [], []
    for r in recs:
        image, labels = formats.read_image(r["image"]), _read_labels(r["labels"])
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{r['labels']}: label map {labels.shape} does not match its image {image.shape[:2]}")
        out = align_face(image, r["landmarks"], size, parsing=labels)
        crops.append(out["image"]), maps.append(out["parsing"])
    u8 = np.stack(crops)
    return {"images_u8": u8, "images": normalize(u8), "parsing": np.stack(maps), "records": recs, "split": split}


def _read_labels(path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            labels = np.asarray(im)
    except OSError as exc:
        raise ValueError(f"{path}: cannot decode label map: {exc}") from None
    if labels.ndim != 2 or labels.max(initial=0) > 10:
        raise ValueError(f"{path}: expected a single-channel map of LaPa's 11 labels, got shape {labels.shape} "
                         f"and labels up to {labels.max(initial=0)}")
    return labels.astype(np.uint8)


def score_lapa(fitted, records, num_classes=11):
    """docs/evaluation.md's LaPa protocol: each test photo aligned by its 106 points, parsed in the crop,
    the probabilities warped back to the photo's full resolution and scored there against its
    label map, in one confusion matrix over every pixel of the set."""
    cm = parsing.ConfusionMatrix(num_classes)
    for r in records:
        image = formats.read_image(r["image"])
        cm.update(parsing_in_photo(fitted, image, r["landmarks"]), _read_labels(r["labels"]))
    return {**cm.f1(), "images": len(records), "resolution": "original (inverse warp)"}


def parsing_from_landmarks(landmarks, shape):
    """A LaPa-11 label map (H, W) drawn from 68 iBUG landmarks: skin inside the jaw line
    closed over the brows, brows as bands, eyes, nose (bridge and base), upper lip, inner
    mouth and lower lip as polygons; no hair. Image-left brow / eye take LaPa's "left" labels
    (2 and 4), as SynthFace does. For scoring a parsing pipeline on photos that have landmark
    annotations only: a landmark-derived reference, not a hand-drawn mask."""
    from PIL import Image, ImageDraw
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be finite (68, 2), got {lm.shape}")
    img = Image.new("L", (int(shape[1]), int(shape[0])), 0)
    d = ImageDraw.Draw(img)
    poly = lambda idx: [tuple(p) for p in lm[list(idx)]]
    iod = np.linalg.norm(lm[45] - lm[36])
    up = np.array([0.0, -0.35 * iod])                               # the forehead above the brows
    d.polygon(poly(range(17)) + [tuple(p) for p in lm[26:16:-1] + up], fill=1)        # skin
    for idx, label in ((range(17, 22), 2), (range(22, 27), 3)):                        # brows
        top = lm[list(idx)] - [0, 0.04 * iod]
        bot = lm[list(idx)][::-1] + [0, 0.04 * iod]
        d.polygon([tuple(p) for p in np.concatenate([top, bot])], fill=label)
    d.polygon(poly(range(36, 42)), fill=4)                                             # eyes
    d.polygon(poly(range(42, 48)), fill=5)
    d.polygon(poly([27, 31, 32, 33, 34, 35]), fill=6)                                 # nose
    d.polygon(poly(list(range(48, 55)) + [64, 63, 62, 61, 60]), fill=7)                # upper lip
    d.polygon(poly(list(range(54, 60)) + [48, 60, 67, 66, 65, 64]), fill=9)            # lower lip
    d.polygon(poly(range(60, 68)), fill=8)                                             # inner mouth
    return np.asarray(img, np.uint8)


def score_photos(fitted_landmarks, fitted_parsing, records, image_root=".", normalizer="inter_ocular"):
    """Run both pipelines over photos with 68-point annotations (records: dicts with ``image``
    and ``landmarks`` (68, 2), 0-based) -> dict with per-image NME (fraction, in the photo's
    coordinates, cropped by the annotated points) and parsing F1 at the original resolution
    against ``parsing_from_landmarks``."""
    from pathlib import Path
    nmes, cm = [], parsing.ConfusionMatrix(11)
    preds = []
    for r in records:
        image = formats.read_image(Path(image_root) / r["image"])
        lm = np.asarray(r["landmarks"], np.float32)
        if fitted_landmarks is not None:
            pred = landmarks_in_photo(fitted_landmarks, image, lm)
            nmes.append(alignment.nme(pred[None], lm[None], normalizer)[0])
            preds.append(pred)
        if fitted_parsing is not None:
            cm.update(parsing_in_photo(fitted_parsing, image, lm), parsing_from_landmarks(lm, image.shape))
    out = {"images": len(records)}
    if fitted_landmarks is not None:
        out.update(per_image_nme=np.array(nmes), nme=float(np.mean(nmes)), normalizer=normalizer, pred=preds)
    if fitted_parsing is not None:
        out["parsing"] = {**cm.f1(), "resolution": "original (inverse warp)",
                          "reference": "landmark polygons (parsing_from_landmarks)"}
    return out
