"""5-point similarity alignment: one crop function for training, evaluation and inference.

``align_face`` fits the similarity (rotation, uniform scale, translation; no reflection) that
maps a face's 5 points (eyes, nose tip, mouth corners) onto the canonical template of an
S x S crop by closed-form least squares (Umeyama), then warps the image (bilinear), the
landmarks and the parsing map (nearest) with it. ``unwarp_*`` map crop-space predictions back
to the original image. Coordinates: x then y, pixel centres at integers."""
import numpy as np

from .. import _C
from .schemes import canonical_five, scheme_for


def similarity_transform(src, dst):
    """(N, 2) src, dst -> (2, 3) A with dst ~ A @ [x, y, 1], least squares over similarities."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points contain NaN or Inf")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum() / len(src)
    if var <= 1e-12:
        raise ValueError("source points coincide: no similarity is defined")
    U, S, Vt = np.linalg.svd(d.T @ s / len(src))
    D = np.diag([1.0, np.sign(np.linalg.det(U) * np.linalg.det(Vt)) or 1.0])
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / var
    A = np.empty((2, 3))
    A[:, :2] = scale * R
    A[:, 2] = mu_d - scale * R @ mu_s
    return A


def invert(A):
    """The inverse of a (2, 3) affine map."""
    L = np.linalg.inv(np.asarray(A, np.float64)[:, :2])
    return np.concatenate([L, -L @ A[:, 2:]], axis=1)


def transform_points(A, pts):
    pts = np.asarray(pts, np.float64)
    return (pts @ A[:, :2].T + A[:, 2]).astype(np.float32)


def warp(images, A, out_size, nearest=False, fill=0):
    """uint8 images (H, W[, C]) or (B, H, W[, C]) warped by the image->output maps A ((2, 3)
    or (B, 2, 3)) into out_size = (h, w) (or an int for square); C core, GIL released."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {arr.dtype}")
    A = np.asarray(A, np.float64)
    single = A.ndim == 2
    h, w = (out_size, out_size) if np.isscalar(out_size) else out_size
    batched = arr if not single else arr[None]
    labels = batched.ndim == 3
    if labels:
        batched = batched[..., None]
    if batched.ndim != 4:
        raise ValueError(f"images must be (H, W), (H, W, C) or batches of them, got shape {arr.shape}")
    inv = np.stack([invert(a) for a in (A[None] if single else A)])  # output pixel -> source
    out = _C.warp(np.ascontiguousarray(batched), np.ascontiguousarray(inv), int(h), int(w), bool(nearest), int(fill))
    if labels:
        out = out[..., 0]
    return out[0] if single else out


def align_matrix(landmarks, size, scheme=None):
    """The (2, 3) map from image to the size x size aligned crop, from a face's landmarks of
    any known scheme (68, 98, 19, 29, 106 points) or its 5 points."""
    lm = np.asarray(landmarks, np.float64)
    five = lm if lm.shape == (5, 2) else (scheme or scheme_for(len(lm))).five_points(lm)
    return similarity_transform(five, canonical_five(size))


def align_face(image, landmarks, size=112, parsing=None, scheme=None):
    """Crop one face: dict with ``image`` uint8 (S, S, 3), ``landmarks`` (K, 2) in crop
    coordinates, ``parsing`` (S, S) uint8 (when given, nearest-neighbour) and ``matrix``
    (2, 3) image -> crop (for unwarp_*)."""
    A = align_matrix(landmarks, size, scheme)
    out = {"image": warp(image, A, size), "landmarks": transform_points(A, landmarks), "matrix": A}
    if parsing is not None:
        out["parsing"] = warp(np.asarray(parsing, np.uint8), A, size, nearest=True)
    return out


def unwarp_points(points, A):
    """Crop-space points back to the original image."""
    return transform_points(invert(A), points)


def unwarp_labels(labels, A, image_shape, fill=0):
    """A crop-space label map (S, S) back onto the original image (H, W), nearest-neighbour;
    pixels outside the crop get ``fill``."""
    return warp(np.asarray(labels, np.uint8), invert(A), image_shape[:2], nearest=True, fill=fill)
