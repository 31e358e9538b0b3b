"""Face-alignment metrics (docs/evaluation.md "Face alignment"): per-image NME, the CED curve, AUC@θ and
FR@θ, and a per-subset summary.

All values here are FRACTIONS (0.05, not 5 %); papers print NME, AUC and FR in percent, so
multiply by 100 when reporting. NumPy only; ``scipy.integrate.simpson`` is imported when an
AUC is computed.

Normalisers (0-based indices, docs/evaluation.md's table; taken from ``pacofr.data.schemes.SCHEMES``):

| scheme | ``inter_ocular`` (outer eye corners) | ``inter_pupil`` |
|---|---|---|
| 68 (300W, iBUG) | 36 and 45 | mean(36..41) vs mean(42..47) |
| 98 (WFLW) | 60 and 72 | 96 and 97 |
| 19 (AFLW-19) | 6 and 11 | 7 and 10 |

``box`` = sqrt(w * h) and ``diag`` = sqrt(w² + h²) of the ground-truth box work for any scheme.
"""
from typing import NamedTuple

import numpy as np

from ..data.schemes import SCHEMES

NORMALIZERS = ("inter_ocular", "inter_pupil", "box", "diag")
NME_SCHEMES = ("68", "98", "19")   # the schemes docs/evaluation.md defines eye normalisers for


class Protocol(NamedTuple):
    normalizer: str
    threshold: float
    scheme: str


# Default (normaliser, threshold θ of AUC@θ / FR@θ, landmark scheme) of each benchmark.
PROTOCOLS = {
    "300w": Protocol("inter_ocular", 0.10, "68"),
    "wflw": Protocol("inter_ocular", 0.10, "98"),
    "aflw19": Protocol("box", 0.07, "19"),
    "synthface-v1": Protocol("inter_ocular", 0.10, "68"),
}


def _points(x, name):
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (B, L, 2), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _resolve_scheme(scheme, num_points):
    key = str(num_points) if scheme is None else str(scheme)
    if key not in NME_SCHEMES:
        what = f"{num_points} landmarks" if scheme is None else f"scheme {scheme!r}"
        raise ValueError(f"no inter-ocular/inter-pupil normaliser for {what}; known schemes: "
                         f"{', '.join(NME_SCHEMES)} (use normalizer='box' or 'diag' with boxes)")
    if SCHEMES[key].num_points != num_points:
        raise ValueError(f"scheme {key!r} has {SCHEMES[key].num_points} points, landmarks have {num_points}")
    return SCHEMES[key]


def _eye_distance(gt, scheme, normalizer):
    """gt: (B, L, 2) -> (B,) distance between the two eye points of ``normalizer``."""
    if normalizer == "inter_ocular":
        a, b = scheme.inter_ocular
        left, right = gt[:, a], gt[:, b]
    else:   # inter_pupil: each side is an index group whose mean is the pupil
        ga, gb = scheme.inter_pupil
        left, right = gt[:, list(ga)].mean(axis=1), gt[:, list(gb)].mean(axis=1)
    return np.linalg.norm(left - right, axis=-1)


def _box_size(boxes, batch, normalizer):
    """boxes: (B, 4) x0, y0, x1, y1 -> (B,) sqrt(w*h) or sqrt(w²+h²)."""
    if boxes is None:
        raise ValueError(f"normalizer={normalizer!r} needs the ground-truth boxes: pass boxes=(B, 4) x0, y0, x1, y1")
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape != (batch, 4):
        raise ValueError(f"boxes must have shape ({batch}, 4), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or Inf")
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    bad = np.flatnonzero((w <= 0) | (h <= 0))
    if bad.size:
        raise ValueError(f"boxes must have x1 > x0 and y1 > y0; box {bad[0]} is {b[bad[0]].tolist()}")
    return np.sqrt(w * h) if normalizer == "box" else np.sqrt(w * w + h * h)


def nme(pred, gt, normalizer="inter_ocular", *, boxes=None, scheme=None, visible=None):
    """Per-image normalised mean error, as a fraction.

    NME_i = (1/L) Σ_l ‖pred_il − gt_il‖₂ / d_i (docs/evaluation.md), d_i from ``normalizer``:
    "inter_ocular" | "inter_pupil" (computed on ``gt``; needs a 68/98/19 scheme) or
    "box" | "diag" (from ``boxes``, any number of points).

    pred, gt: (B, L, 2) x, y. scheme: "68" | "98" | "19", inferred from L when None.
    boxes: (B, 4) ground-truth boxes x0, y0, x1, y1, used only by "box" and "diag".
    visible: optional (B, L) bool; when given, the mean runs over each image's visible points
    only (occluded SynthFace points), while d_i still comes from the full ground truth; every
    image needs at least one visible point. Default: all points, as docs/evaluation.md defines NME.
    Returns (B,) float64.
    """
    p, g = _points(pred, "pred"), _points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; expected one of {', '.join(NORMALIZERS)}")
    batch, num_points = g.shape[:2]
    if normalizer in ("inter_ocular", "inter_pupil"):
        d = _eye_distance(g, _resolve_scheme(scheme, num_points), normalizer)
    else:
        if scheme is not None:
            _resolve_scheme(scheme, num_points)
        d = _box_size(boxes, batch, normalizer)
    zero = np.flatnonzero(d <= 0)
    if zero.size:
        raise ValueError(f"{normalizer} distance is zero for image {zero[0]} (coincident ground-truth points)")
    err = np.linalg.norm(p - g, axis=-1)                     # (B, L)
    if visible is None:
        return err.mean(axis=1) / d
    vis = np.asarray(visible)
    if vis.dtype != np.bool_:
        raise TypeError(f"visible must be a bool array, got dtype {vis.dtype}")
    if vis.shape != (batch, num_points):
        raise ValueError(f"visible must have shape ({batch}, {num_points}), got {vis.shape}")
    count = vis.sum(axis=1)
    none = np.flatnonzero(count == 0)
    if none.size:
        raise ValueError(f"image {none[0]} has no visible landmark")
    return (err * vis).sum(axis=1) / count / d


def _nmes(nmes):
    a = np.asarray(nmes, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"nmes must be a non-empty 1-D array of per-image NMEs, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("nmes must be finite and non-negative")
    return a


def _threshold(threshold):
    t = float(threshold)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return t


def ced(nmes, threshold, step=1e-4):
    """Cumulative error distribution. nmes: (B,) fractions.

    Returns x: (n + 1,) from 0 to ``threshold`` inclusive, n = round(threshold / step) (at least
    2), and y: (n + 1,) the fraction of NMEs <= x."""
    a, t = _nmes(nmes), _threshold(threshold)
    if not step > 0:
        raise ValueError(f"step must be positive, got {step!r}")
    x = np.linspace(0.0, t, max(2, int(round(t / step))) + 1)
    y = np.searchsorted(np.sort(a), x, side="right") / a.size
    return x, y


def auc_fr(nmes, threshold):
    """(AUC@θ, FR@θ) as Python floats in [0, 1]: AUC = Simpson integral of the CED over
    [0, θ] divided by θ (steps of 1e-4); FR = fraction of images with NME > θ = 1 − CED(θ)."""
    try:
        from scipy.integrate import simpson
    except ImportError:
        raise ImportError("auc_fr needs scipy: pip install pacofr[eval]") from None
    x, y = ced(nmes, threshold)
    a = np.asarray(nmes, dtype=np.float64)
    fr = np.count_nonzero(a > x[-1]) / a.size
    return float(simpson(y, x=x) / x[-1]), float(fr)


def summarize(nmes, threshold=0.1, subsets=None):
    """Per-subset metrics: {"all": {...}, name: {...}} with, for each, "nme" (mean, fraction),
    "auc" and "fr" at ``threshold``, "count" and "threshold".

    nmes: (B,). subsets: dict name -> (B,) bool mask. An empty subset gets count 0 and NaN."""
    a = _nmes(nmes)
    masks = {"all": np.ones(a.size, bool)}
    for name, mask in (subsets or {}).items():
        if name == "all":
            raise ValueError("subset name 'all' is reserved for the whole set")
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != a.shape:
            raise ValueError(f"subset {name!r} must be a bool mask of shape {a.shape}, got {m.dtype} {m.shape}")
        masks[name] = m
    out = {}
    for name, m in masks.items():
        if m.any():
            auc, fr = auc_fr(a[m], threshold)
            out[name] = {"nme": float(a[m].mean()), "auc": auc, "fr": fr, "count": int(m.sum())}
        else:
            out[name] = {"nme": float("nan"), "auc": float("nan"), "fr": float("nan"), "count": 0}
        out[name]["threshold"] = float(threshold)
    return out
