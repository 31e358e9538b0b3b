"""The metrics the evaluation reports, written once: ``METRICS`` maps each metric's name to its
``Metric`` (the function that computes it, whether lower or higher is better, its unit, its
column label and a line saying what it measures). The protocol (``protocol.evaluate``) emits one
flat key per entry, sweeps and comparisons (``pacofr.sweep``) take each key's direction and
label from here, and the reports (``eval.md``, a sweep's ``table.md``) show the entries' labels.
Adding a metric is one entry below and its function.

Flat keys name the metric last but for a subset::

    alignment/<mode>/<labels>/<metric>[/<subset>]   e.g. alignment/linear/1%/nme/occlusion
    parsing/<mode>/<labels>/<metric>                 e.g. parsing/finetune/10%/f1
    identity/<metric>                                e.g. identity/verification

What a metric's function receives depends on its task:

    alignment    (n,) per-image NMEs (fractions) of the faces scored: the whole split or one subset
    parsing      ``tasks.evaluate_parsing``'s result (``mean_f1``, ``per_class``, ``confusion``)
    recognition  ``tasks.run_recognition``'s result for one pooling (``verification``, ``knn_top1``)
    quality      ``tasks.run_quality``'s result for one pooling (``iq``, ``consistency``, ...)

Values are fractions; reports multiply them by ``scale`` (100: percent)."""
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .alignment import auc_fr

__all__ = ["Metric", "METRICS", "TASKS", "THRESHOLD", "Key", "register", "of_task", "split_key", "metric_of",
           "lower_is_better", "label"]

TASKS = ("alignment", "parsing", "recognition", "quality")
HEAD_TASKS = ("alignment", "parsing")     # keys <task>/<mode>/<labels>/<metric>[/<subset>]
IDENTITY_TASKS = ("recognition", "quality")  # keys identity/<metric>
MODES = {"linear": "LP", "finetune": "FT"}
THRESHOLD = 0.1                           # θ of AUC@θ and FR@θ (docs/evaluation.md, synthface protocols)


@dataclass(frozen=True)
class Metric:
    """One reported number. name: the key's metric part; task: one of ``TASKS``; compute: the
    task's input (module docstring) -> float; better: "lower" or "higher"; unit: what the shown
    value is in; label: the column heading; by_subset: also reported per SynthFace subset
    (alignment only); headline: in the run's log line, the sweep table and the arm pairs (every
    identity metric is a sweep-table column)."""
    name: str
    task: str
    compute: Callable
    better: str
    unit: str
    label: str
    description: str
    by_subset: bool = False
    headline: bool = False
    scale: float = 100.0

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ValueError(f"a metric name is one key part without '/', got {self.name!r}")
        if self.task not in TASKS:
            raise ValueError(f"metric {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if self.better not in ("lower", "higher"):
            raise ValueError(f"metric {self.name!r}: better must be 'lower' or 'higher', got {self.better!r}")
        if self.by_subset and self.task != "alignment":
            raise ValueError(f"metric {self.name!r}: only alignment metrics are scored per subset")

    @property
    def lower_is_better(self):
        return self.better == "lower"


def nme(nmes):
    """Mean NME of the faces scored."""
    return float(np.asarray(nmes, np.float64).mean())


def auc(nmes):
    """Area under the CED curve up to θ, divided by θ."""
    return auc_fr(nmes, THRESHOLD)[0]


def failure_rate(nmes):
    """Fraction of faces whose NME is above θ."""
    return auc_fr(nmes, THRESHOLD)[1]


METRICS = {m.name: m for m in (
    Metric("nme", "alignment", nme, "lower", "% of the inter-ocular distance", "NME",
           "mean normalised landmark error (outer eye corners)", by_subset=True, headline=True),
    Metric("auc", "alignment", auc, "higher", "%", f"AUC@{THRESHOLD:g}",
           f"area under the cumulative error curve up to NME {THRESHOLD:g}, over {THRESHOLD:g}"),
    Metric("fr", "alignment", failure_rate, "lower", "% of faces", f"FR@{THRESHOLD:g}",
           f"failure rate: faces with NME above {THRESHOLD:g}"),
    Metric("f1", "parsing", lambda res: float(res["mean_f1"]), "higher", "F1 %", "F1",
           "mean F1 of LaPa's 10 face classes (background left out), one confusion matrix", headline=True),
    Metric("verification", "recognition", lambda res: float(res["verification"]["mean"]), "higher",
           "accuracy %", "verification", "10-fold pair verification accuracy (cosine, frozen, mean-pooled)",
           headline=True),
    Metric("tar@1e-2", "recognition", lambda res: float(res["verification"]["tar_at_far"][0.01]), "higher",
           "% of genuine pairs", "tar@1e-2", "true accept rate at a false accept rate of 1e-2"),
    Metric("knn_top1", "recognition", lambda res: float(res["knn_top1"]), "higher", "accuracy %", "knn_top1",
           "1-nearest-neighbour identification (gallery: each identity's first image)"),
    Metric("iq", "quality", lambda res: float(res["iq"]), "higher", "%", "iq",
           "representation quality: neighbour consistency and normalised effective rank combined"),
)}


def register(metric):
    """Add a metric to ``METRICS`` (a name is registered once) -> the metric."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def of_task(task, headline=None):
    """The registered metrics of a task, in registry order (only the headline ones, or the
    others, when ``headline`` is given)."""
    return [m for m in METRICS.values() if m.task == task and (headline is None or m.headline == headline)]


class Key(NamedTuple):
    """The parts of a flat key; those a key has not are None (identity keys: group "identity")."""
    group: str
    mode: str
    labels: str
    name: str
    subset: str


def split_key(key):
    """A flat key's ``Key``; a clear error for a string that is not laid out as one."""
    parts = key.split("/")
    if parts[0] in HEAD_TASKS and len(parts) in (4, 5):
        return Key(*parts[:4], parts[4] if len(parts) == 5 else None)
    if parts[0] == "identity" and len(parts) == 2:
        return Key("identity", None, None, parts[1], None)
    raise ValueError(f"{key!r} is not a metric key: expected alignment|parsing/<mode>/<labels>/<metric>"
                     "[/<subset>] or identity/<metric>")


def metric_of(key):
    """The registered ``Metric`` a flat key reports; a clear error for a key of no registered metric."""
    group, _, _, name, subset = split_key(key)
    m = METRICS.get(name)
    if m is None:
        raise ValueError(f"{key!r}: unknown metric {name!r}; registered: {sorted(METRICS)} (pacofr/eval/metrics.py)")
    home = "identity" if m.task in IDENTITY_TASKS else m.task
    if home != group:
        raise ValueError(f"{key!r}: metric {name!r} belongs to task {m.task!r}, not {group!r}")
    if subset is not None and not m.by_subset:
        raise ValueError(f"{key!r}: metric {name!r} is not scored per subset")
    return m


def lower_is_better(key):
    """Whether a flat key's metric is an error (lower is better) or a score: the registry's word."""
    return metric_of(key).lower_is_better


def label(key):
    """A flat key's column heading: ``NME LP 1%``, ``NME LP 1% occlusion``, ``F1 FT 10%``, ``iq``."""
    group, mode, labels, _, subset = split_key(key)
    m = metric_of(key)
    if group == "identity":
        return m.label
    return " ".join([m.label, MODES.get(mode, mode), labels] + ([subset] if subset else []))
