"""Face detection in raw photos and alignment from the detector's 5 points.

The back end is dlib (``pip install 'pacofr[detect]'``: ``dlib-bin`` and
``face-recognition-models``, whose wheels carry dlib's public-domain HOG detector and 5-point
shape model; nothing downloads at run time). dlib's 68-point model is non-commercial and is
never used.

Policy of ``detect_faces``: the photo is downscaled to at most ``max_side`` pixels on its long
side for the detector (HOG misses faces in large photos and is slow on them); when nothing is
found the detector runs again on an upsampled pyramid (small faces), up to ``max_upsample``
times. The 5 points are fitted on the full-resolution photo inside the box scaled back.

dlib's 5 points are the outer and inner corners of each eye and the base of the nose (the
68-point scheme's points 45, 42, 36, 39 and 33), not the eye centres, nose tip and mouth
corners that pacofr aligns 68-point faces by. ``DLIB5_TEMPLATE`` places them where the
canonical mean face has them. Mapped into that template's frame, the 5 points then predict
the 5 alignment points (``five_from_dlib``: a linear shape model, ``fit_dlib5_model``, fitted
on the 689 faces of 300-W's common and challenge sets), so that ``align_detected`` gives the
crop that ``align_face`` gives from the face's true 68 points (the mouth is not among dlib's
points: the model infers it from the eyes and nose). tests/test_detect.py measures the gap on
the real photos of ../shared/data and refits the model from the annotations."""
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .align import invert, similarity_transform, transform_points, warp
from .schemes import CANONICAL_68, SCHEMES, canonical_five

DLIB5_IN_68 = (45, 42, 36, 39, 33)   # dlib's point i is the 68-point scheme's point DLIB5_IN_68[i]
DLIB5_TEMPLATE = CANONICAL_68[list(DLIB5_IN_68)]   # unit crop coordinates, as CANONICAL_68
# five_from_dlib's shape model: fit_dlib5_model on the 689 faces of ../shared/data/300w-annotations/
# face_landmarks_300w_valid.csv (300-W common + challenge; tests/test_detect.py refits it)
DLIB5_MODEL_MEAN = np.array([
    [0.350107, 0.333250],
    [0.651272, 0.333068],
    [0.499805, 0.510424],
    [0.364635, 0.645959],
    [0.638661, 0.645195]])
DLIB5_MODEL_W = np.array([
    [-0.243851, 0.102787, 0.236402, -0.018411, -0.589494, 0.379445, 0.381029, -0.670787, 0.836949, -0.813056],
    [-0.043258, -0.025740, -0.058928, 0.128400, 0.413069, -0.652025, -0.055869, 0.461350, 0.041738, 0.597615],
    [-0.190327, 0.057857, 0.275370, -0.022605, 0.172301, 0.313664, -0.689396, -0.303761, -0.320045, -0.310319],
    [-0.022525, -0.068853, 0.008555, 0.084692, 0.250175, 0.006202, -0.112912, -0.325398, -0.377771, -0.266898],
    [0.240545, 0.022260, -0.243104, -0.092885, -0.605359, -0.243164, 0.936827, 0.659426, 0.249019, 0.552506],
    [0.058539, 0.099762, 0.054104, -0.013151, -0.355841, -0.672459, 0.079226, 0.792599, 0.055066, 0.692232],
    [0.293611, -0.002139, -0.161736, -0.053463, 0.152901, -0.452486, -0.468618, 0.492771, -0.614137, 0.499086],
    [-0.007059, 0.110116, 0.014959, -0.071924, -0.275281, 0.060864, 0.101452, -0.654658, 0.082603, -0.699967],
    [-0.099978, -0.180766, -0.106932, 0.187365, 0.869651, 0.002542, -0.159842, -0.177649, -0.151785, 0.071783],
    [0.014303, -0.115284, -0.018689, -0.128017, -0.032123, 1.257419, -0.011897, -0.273894, 0.198365, -0.322982]])
MISSING = "face detection needs dlib and its models: pip install 'pacofr[detect]' (dlib-bin, face-recognition-models)"


@dataclass(frozen=True)
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1) and ``five_points`` (5, 2) in the photo's
    pixels (x then y, pixel centres at integers); ``score`` the detector's margin (higher is
    surer; 0 is dlib's default threshold)."""
    box: tuple
    score: float
    five_points: np.ndarray

    @property
    def size(self):
        """The box's side (the mean of its width and height), in photo pixels."""
        return 0.5 * ((self.box[2] - self.box[0]) + (self.box[3] - self.box[1]))

    def to_dict(self):
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 4),
                "five_points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.five_points]}


_BACKEND = {}


def _models_folder():
    spec = importlib.util.find_spec("face_recognition_models")  # not imported: it needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(MISSING)
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not (folder / "shape_predictor_5_face_landmarks.dat").is_file():
        raise ImportError(f"{folder}: no shape_predictor_5_face_landmarks.dat; reinstall: {MISSING}")
    return folder


def backend():
    """(detector, shape predictor), loaded once per process; ImportError naming the extra
    when dlib or its models are missing."""
    if not _BACKEND:
        try:
            import dlib
        except ImportError:
            raise ImportError(MISSING) from None
        predictor = dlib.shape_predictor(str(_models_folder() / "shape_predictor_5_face_landmarks.dat"))
        _BACKEND.update(dlib=dlib, detector=dlib.get_frontal_face_detector(), predictor=predictor)
    return _BACKEND["detector"], _BACKEND["predictor"]


def _check_photo(image):
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {arr.shape}")
    if min(arr.shape[:2]) < 8:
        raise ValueError(f"image too small for face detection: {arr.shape[:2]}")
    return np.ascontiguousarray(arr)


def _downscale(image, max_side):
    """image scaled so its long side is at most max_side (area-averaged by PIL), and the scale."""
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return image, 1.0
    from PIL import Image
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=2.0))
    return small, size[0] / w


def detect_faces(image, max_side=800, max_upsample=2, threshold=0.0, fallback=-0.5):
    """uint8 photo (H, W, 3) or (H, W) -> list of ``Face``, best score first.

    The detector sees the photo downscaled to ``max_side`` on its long side and keeps boxes
    scoring at least ``threshold``; with none found it is retried with 1..``max_upsample``
    pyramid upsamplings (small faces), then once more at each with the lower ``fallback``
    threshold (faces turned or tilted away score below 0; None: no such retry)."""
    photo = _check_photo(image)
    detector, predictor = backend()
    small, s = _downscale(photo, max_side)
    rects, scores = [], []
    passes = [threshold] + ([fallback] if fallback is not None and fallback < threshold else [])
    for level in passes:
        for up in range(int(max_upsample) + 1):
            rects, scores, _ = detector.run(small, up, float(level))
            if len(rects):
                break
        if len(rects):
            break
    dlib = _BACKEND["dlib"]
    faces = []
    for r, score in zip(rects, scores):
        box = (r.left() / s, r.top() / s, (r.right() + 1) / s, (r.bottom() + 1) / s)
        full = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1, int(round(box[3])) - 1)
        shape = predictor(photo, full)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float32)
        faces.append(Face(tuple(float(v) for v in box), float(score), pts))
    return sorted(faces, key=lambda f: -f.score)


def fit_dlib5_model(landmarks, ridge=1e-5):
    """The linear shape model of ``five_from_dlib`` from 68-point faces (an iterable of
    (68, 2)) -> (mean (5, 2), W (10, 10)): in the frame that maps a face's dlib points onto
    ``DLIB5_TEMPLATE``, its 5 alignment points are mean + (dlib points - template) @ W
    (ridge least squares)."""
    X, Y = [], []
    for lm in landmarks:
        lm = np.asarray(lm, np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"landmarks must be (68, 2) each, got shape {lm.shape}")
        A = similarity_transform(lm[list(DLIB5_IN_68)], DLIB5_TEMPLATE)
        X.append(((lm[list(DLIB5_IN_68)] @ A[:, :2].T + A[:, 2]) - DLIB5_TEMPLATE).ravel())
        Y.append((SCHEMES["68"].five_points(lm) @ A[:, :2].T + A[:, 2]).ravel())
    X, Y = np.array(X), np.array(Y)
    if len(X) < 10:
        raise ValueError(f"need at least 10 faces to fit the model, got {len(X)}")
    Xc = X - X.mean(0)
    W = np.linalg.solve(Xc.T @ Xc + ridge * len(X) * np.eye(10), Xc.T @ (Y - Y.mean(0)))
    mean = Y.mean(0) - X.mean(0) @ W
    return mean.reshape(5, 2), W


def five_from_dlib(five_points):
    """dlib's 5 points (5, 2) -> the 5 alignment points of the 68-point scheme (eye centres,
    nose tip, mouth corners) that the shape model predicts, in the same pixels."""
    pts = np.asarray(five_points, np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"five_points must be (5, 2) (dlib's order), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("five_points contain NaN or Inf")
    A = similarity_transform(pts, DLIB5_TEMPLATE)
    x = (pts @ A[:, :2].T + A[:, 2]) - DLIB5_TEMPLATE
    pred = DLIB5_MODEL_MEAN + (x.ravel() @ DLIB5_MODEL_W).reshape(5, 2)
    return transform_points(invert(A), pred).astype(np.float64)


def detected_matrix(five_points, size, margin=0.0):
    """The (2, 3) map from the photo to the size x size crop, from dlib's 5 points. ``margin``
    > 0 zooms out about the crop's centre: the face fills 1 / (1 + margin) of what it would."""
    template = (canonical_five(size) + 0.5 - size / 2) / (1.0 + float(margin)) + size / 2 - 0.5
    return similarity_transform(five_from_dlib(five_points), template)


def align_detected(image, face, size=112, margin=0.0):
    """Crop one detected face (a ``Face`` or its (5, 2) points): dict with ``image`` uint8
    (S, S, 3), ``five_points`` in crop coordinates and ``matrix`` (2, 3) photo -> crop."""
    pts = face.five_points if isinstance(face, Face) else np.asarray(face, np.float64)
    A = detected_matrix(pts, size, margin)
    return {"image": warp(np.asarray(image), A, size), "five_points": transform_points(A, pts), "matrix": A}


def alignment_gap(five_points, landmarks, size=112):
    """How far the crop aligned from dlib's 5 points is from the crop ``align_face`` makes
    from the face's true 68 points: the mean distance between where the 68 points land in
    the two crops, over the inter-ocular distance (outer eye corners) in the reference crop."""
    from .align import align_matrix
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be the 68-point scheme's (68, 2), got shape {lm.shape}")
    ref = transform_points(align_matrix(lm, size), lm)
    det = transform_points(detected_matrix(five_points, size), lm)
    return float(np.linalg.norm(det - ref, axis=1).mean() / np.linalg.norm(ref[45] - ref[36]))
