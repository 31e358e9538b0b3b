"""Evaluation: training the downstream heads (``pacofr.heads``, models like ``pacofr.model``)
and metrics with the exact protocols of docs/evaluation.md.

Metrics: ``alignment`` (NME, CED, AUC@θ, FR@θ), ``parsing`` (data-set-level confusion matrix,
F1), ``recognition`` (10-fold verification, TAR@FAR, kNN identification), ``quality``
(neighbour consistency, effective rank, IQ). Training: ``finetune`` (linear probe or
fine-tuning with layer-wise lr decay) of a ``pacofr.heads`` head (heatmap and regression
landmark heads, parsing and identity heads, in the C core). Benchmarks: ``tasks`` (one call per benchmark
on SynthFace splits), ``photos`` (real photos: align, predict, inverse-warp, score),
``benchmark`` (``pacofr eval``) and ``report`` (figures, Markdown tables, JSON; matplotlib is
imported only when a figure is drawn). scipy and scikit-learn are imported when a metric
needs them: ``pip install pacofr[eval]``.
"""
from . import alignment, parsing, quality, recognition, report
from . import finetune, tasks, photos, benchmark
from .finetune import FitConfig, fit

__all__ = ["alignment", "parsing", "quality", "recognition", "report", "finetune", "tasks", "photos",
           "benchmark", "FitConfig", "fit"]
