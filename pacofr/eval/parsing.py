"""Face-parsing metrics (docs/evaluation.md "Face parsing"): one confusion matrix over every pixel of the
whole test set, per-class F1_c = 2·TP_c / (pred_c + gt_c), and mean F1 = the unweighted mean over
the non-background classes. NumPy only.

A class absent from both prediction and ground truth over the whole set has F1 NaN (0/0) and is
left out of the mean (the mean is over the classes that occur).
"""
import numpy as np

from .report import markdown_table

LAPA_CLASSES = ("background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "nose",
                "upper_lip", "inner_mouth", "lower_lip", "hair")
CELEBAMASK_CLASSES = ("background", "neck", "skin", "cloth", "r_ear", "l_ear", "r_brow", "l_brow", "r_eye",
                      "l_eye", "nose", "inner_mouth", "lower_lip", "upper_lip", "hair", "eyeglasses", "hat",
                      "earring", "necklace")


def _labels(x, name):
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise TypeError(f"{name} must be an integer label map, got dtype {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must be a label map (H, W) or a batch (B, H, W), got shape {a.shape}")
    return a


def _check_range(values, name, num_classes):
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        shown = np.unique(values[bad])[:5].tolist()
        raise ValueError(f"{name} has labels {shown} outside [0, {num_classes}) (num_classes={num_classes})")


def confusion_matrix(pred, gt, num_classes, ignore_index=None):
    """(K, K) int64 pixel counts, rows ground truth, columns prediction.

    pred, gt: integer label maps of the same shape (H, W), (B, H, W), ... ; every pixel counts.
    Ground-truth pixels equal to ``ignore_index`` are skipped (with their predictions)."""
    p, g = _labels(pred, "pred"), _labels(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    k = int(num_classes)
    if k < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p, g = p.astype(np.int64, copy=False).ravel(), g.astype(np.int64, copy=False).ravel()
    if ignore_index is not None:
        keep = g != ignore_index
        p, g = p[keep], g[keep]
    _check_range(g, "gt", k)
    _check_range(p, "pred", k)
    return np.bincount(g * k + p, minlength=k * k).reshape(k, k).astype(np.int64, copy=False)


def f1_from_confusion(cm, background=0):
    """cm: (K, K) rows gt, columns pred -> dict with "per_class" (K,) F1 (NaN for a class absent
    from both), "mean_f1" (NaN-skipping mean over classes other than ``background``; None: all
    classes), "confusion" and "background"."""
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.integer) or (m < 0).any():
        raise ValueError("cm must hold non-negative integer counts")
    k = m.shape[0]
    if background is not None and not 0 <= background < k:
        raise ValueError(f"background must be a class in [0, {k}) or None, got {background}")
    tp = np.diag(m).astype(np.float64)
    denom = (m.sum(axis=0) + m.sum(axis=1)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denom > 0, 2 * tp / denom, np.nan)
    fg = np.array([c != background for c in range(k)])
    scored = per_class[fg & ~np.isnan(per_class)]
    mean = float(scored.mean()) if scored.size else float("nan")
    return {"per_class": per_class, "mean_f1": mean, "confusion": m, "background": background}


def f1(pred, gt, num_classes, ignore_index=None, background=0):
    """F1 of one label map or a batch (B, H, W): the confusion matrix is over all pixels."""
    return f1_from_confusion(confusion_matrix(pred, gt, num_classes, ignore_index), background)


class ConfusionMatrix:
    """Accumulates one (K, K) confusion matrix over a data set, batch by batch."""

    def __init__(self, num_classes, ignore_index=None, background=0):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.background = background
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, gt):
        """Add the pixels of ``pred``, ``gt`` (same shapes as ``confusion_matrix``); returns self."""
        self.matrix += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        return self

    def reset(self):
        self.matrix[:] = 0

    def f1(self):
        return f1_from_confusion(self.matrix, self.background)


def per_class_table(result, class_names):
    """A Markdown table of an ``f1`` result: one row per class (F1 in percent, ground-truth and
    predicted pixel counts), the background marked, then the mean F1 row."""
    per_class, cm = result["per_class"], result["confusion"]
    if len(class_names) != len(per_class):
        raise ValueError(f"class_names has {len(class_names)} names for {len(per_class)} classes")
    rows = [{"id": c, "class": name + (" (background, not in mean)" if c == result["background"] else ""),
             "F1 (%)": 100 * per_class[c], "GT pixels": int(cm[c].sum()), "pred pixels": int(cm[:, c].sum())}
            for c, name in enumerate(class_names)]
    rows.append({"class": "mean F1 (non-background)", "F1 (%)": 100 * result["mean_f1"]})
    return markdown_table(rows, ["id", "class", "F1 (%)", "GT pixels", "pred pixels"])
