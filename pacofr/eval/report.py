"""Figures and tables of evaluation results. Each plot helper returns the path it wrote.

matplotlib is imported inside the plot helpers (``pip install pacofr[viz]``); figures are drawn
on ``matplotlib.figure.Figure`` with the Agg canvas, so pyplot's global state and the caller's
backend are never touched. Files are written atomically (a temporary file, then ``os.replace``).
"""
import json
import math
import os

import numpy as np

from .._io import atomic_write_bytes
from ..data.synth.preview import PALETTE
from .alignment import auc_fr, ced


# ---------------------------------------------------------------- files

def _atomic_write(path, write, mode="w"):
    """Call ``write(file)`` on an in-memory file, then write it to ``path`` atomically (the
    package's one atomic writer: a temporary file beside it, fsync, rename; mode follows the
    umask)."""
    import io
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO() if "b" in mode else io.StringIO()
    write(buf)
    data = buf.getvalue()
    atomic_write_bytes(path, data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _figure(width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install pacofr[viz]") from None
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi=110):
    return _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi), mode="wb")


def jsonable(value, where="results"):
    """``value`` with NumPy arrays and scalars turned into lists and Python numbers, tuples into
    lists, paths into strings, dict keys into strings, and NaN/Inf into None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return jsonable(value.item(), where)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{where}: cannot write a {type(value).__name__} to JSON")


def markdown_table(rows, columns, floatfmt=".2f"):
    """rows: list of dicts; columns: the keys to show, in order. Floats use ``floatfmt``, NaN
    shows as "n/a", a missing key as an empty cell. Returns the table as a string."""
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (float, np.floating)):
            return "n/a" if math.isnan(v) else format(float(v), floatfmt)
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(out_dir, name, results, tables=None):
    """Write ``{out_dir}/{name}.json`` (``results`` through ``jsonable``) and ``{name}.md`` (a
    heading, then each Markdown table of ``tables`` under its name). Returns {"json": path,
    "md": path}."""
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    data = jsonable(results)
    text = f"# {name}\n"
    for title, table in (tables or {}).items():
        text += f"\n## {title}\n\n{table.rstrip()}\n"
    base = os.path.join(os.fspath(out_dir), name)
    return {"json": _atomic_write(base + ".json", lambda f: json.dump(data, f, indent=2, allow_nan=False)),
            "md": _atomic_write(base + ".md", lambda f: f.write(text))}


# ---------------------------------------------------------------- curves and bars

def plot_ced(curves, threshold, path, title=None):
    """CED curves: curves = {name: (B,) NMEs as fractions}; x in percent NME up to ``threshold``,
    y the fraction of images; the legend gives AUC@θ and FR@θ in percent."""
    fig = _figure(5, 4)
    ax = fig.add_subplot()
    for name, nmes in curves.items():
        x, y = ced(nmes, threshold)
        auc, fr = auc_fr(nmes, threshold)
        ax.plot(100 * x, y, label=f"{name}: AUC {100 * auc:.2f}, FR {100 * fr:.2f}%")
    ax.set(xlim=(0, 100 * threshold), ylim=(0, 1), xlabel="NME (%)", ylabel="fraction of images",
           title=title or f"CED (θ = {threshold:g})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_f1_bars(results, class_names, path, background=0):
    """Grouped bars of per-class F1: results = {name: (K,) per-class F1}; the background class is
    left out; the legend gives each mean F1 over the plotted classes."""
    classes = [c for c in range(len(class_names)) if c != background]
    fig = _figure(max(5, 0.6 * len(classes) * max(1, len(results)) ** 0.5), 3.5)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(results))
    for j, (name, per_class) in enumerate(results.items()):
        f1 = np.asarray(per_class, np.float64)
        if f1.shape != (len(class_names),):
            raise ValueError(f"results[{name!r}] must have shape ({len(class_names)},), got {f1.shape}")
        ax.bar(np.arange(len(classes)) + (j - (len(results) - 1) / 2) * width, f1[classes], width,
               label=f"{name}: mean F1 {100 * np.nanmean(f1[classes]):.2f}")
    ax.set_xticks(np.arange(len(classes)), [class_names[c] for c in classes], rotation=45, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="F1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(curves, path):
    """ROC curves, FPR on a log axis: curves = {name: (fpr, tpr)}."""
    fig = _figure(5, 4)
    ax = fig.add_subplot()
    smallest = 1.0
    for name, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
        keep = fpr > 0
        if keep.any():
            smallest = min(smallest, fpr[keep].min())
        ax.plot(fpr[keep], tpr[keep], label=name)
    ax.set_xscale("log")
    ax.set(xlim=(min(smallest, 1e-3), 1), ylim=(0, 1), xlabel="false accept rate", ylabel="true accept rate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


# ---------------------------------------------------------------- images

def _images_hwc(images):
    """(B, 3, H, W) or (B, H, W, 3), uint8 or float -> (B, H, W, 3) float in [0, 1]. Floats in
    [0, 1] are kept; other floats (e.g. normalised inputs) are min-max scaled per image."""
    a = np.asarray(images)
    if a.ndim != 4 or 3 not in (a.shape[1], a.shape[3]):
        raise ValueError(f"images must have shape (B, 3, H, W) or (B, H, W, 3), got {a.shape}")
    if a.shape[3] != 3:
        a = a.transpose(0, 2, 3, 1)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255
    a = a.astype(np.float64)
    if a.min() >= 0 and a.max() <= 1:
        return a
    lo, hi = a.min(axis=(1, 2, 3), keepdims=True), a.max(axis=(1, 2, 3), keepdims=True)
    return (a - lo) / np.maximum(hi - lo, 1e-12)


def plot_landmarks(images, pred, gt, path, columns=8):
    """Images with landmarks overlaid, ground truth green and prediction red.
    images: (B, 3, H, W) or (B, H, W, 3); pred, gt: (B, L, 2) x, y in pixels (gt may be None)."""
    imgs = _images_hwc(images)
    b = len(imgs)
    pred = np.asarray(pred, np.float64)
    if pred.shape[:1] != (b,) or pred.ndim != 3:
        raise ValueError(f"pred must have shape ({b}, L, 2), got {pred.shape}")
    gt = None if gt is None else np.asarray(gt, np.float64)
    if gt is not None and gt.shape != pred.shape:
        raise ValueError(f"gt must have the shape of pred {pred.shape}, got {gt.shape}")
    columns = max(1, min(columns, b))
    rows = -(-b // columns)
    fig = _figure(1.6 * columns, 1.6 * rows)
    axes = fig.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= b:
            continue
        ax.imshow(imgs[k])
        if gt is not None:
            ax.scatter(gt[k, :, 0], gt[k, :, 1], s=2, c="lime", linewidths=0)
        ax.scatter(pred[k, :, 0], pred[k, :, 1], s=2, c="red", linewidths=0)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01, wspace=0.03, hspace=0.03)
    return _save(fig, path)


def _palette(num_classes):
    """(num_classes, 3) colours in [0, 1], background black: SynthFace's LaPa-11 palette, else
    matplotlib's tab20 (hsv beyond 21 classes)."""
    if num_classes <= 11:
        return PALETTE[:num_classes] / 255.0
    from matplotlib import colormaps
    if num_classes <= 21:
        colours = colormaps["tab20"](np.arange(num_classes - 1))[:, :3]
    else:
        colours = colormaps["hsv"](np.linspace(0, 1, num_classes - 1, endpoint=False))[:, :3]
    return np.vstack([[0.0, 0.0, 0.0], colours])


def plot_parsing(images, pred_maps, gt_maps, path, num_classes=11, alpha=0.6):
    """One row per image: the image, the prediction over it, and the ground truth over it (if
    given). images: (B, 3, H, W) or (B, H, W, 3); pred_maps, gt_maps: (B, H, W) labels."""
    imgs = _images_hwc(images)
    pred = np.asarray(pred_maps)
    if pred.shape != imgs.shape[:3]:
        raise ValueError(f"pred_maps must have shape {imgs.shape[:3]}, got {pred.shape}")
    maps = [pred] if gt_maps is None else [pred, np.asarray(gt_maps)]
    if maps[-1].shape != pred.shape:
        raise ValueError(f"gt_maps must have shape {pred.shape}, got {maps[-1].shape}")
    for m, name in zip(maps, ("pred_maps", "gt_maps")):
        if m.min() < 0 or m.max() >= num_classes:
            raise ValueError(f"{name} has labels outside [0, {num_classes})")
    colours = _palette(num_classes)
    fig = _figure(1.8 * (1 + len(maps)), 1.8 * len(imgs))
    axes = fig.subplots(len(imgs), 1 + len(maps), squeeze=False)
    for k in range(len(imgs)):
        axes[k, 0].imshow(imgs[k])
        for j, m in enumerate(maps, start=1):
            axes[k, j].imshow(alpha * colours[m[k]] + (1 - alpha) * imgs[k])
        for ax in axes[k]:
            ax.axis("off")
    for j, title in enumerate(("image", "prediction", "ground truth")[:1 + len(maps)]):
        axes[0, j].set_title(title, fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.03, hspace=0.03)
    return _save(fig, path)
