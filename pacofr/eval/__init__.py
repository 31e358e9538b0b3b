"""Evaluation: training the downstream heads (``pacofr.heads``, models like ``pacofr.model``)
and metrics with the exact protocols of docs/evaluation.md.

Metrics: ``alignment`` (NME, CED, AUC@θ, FR@θ), ``parsing`` (data-set-level confusion matrix,
F1), ``recognition`` (10-fold verification, TAR@FAR, kNN identification), ``quality``
(neighbour consistency, effective rank, IQ). Training: ``finetune`` (linear probe or
fine-tuning with layer-wise lr decay) of a ``pacofr.heads`` head (heatmap and regression
landmark heads, parsing and identity heads, in the C core). Benchmarks: ``tasks`` (one call per benchmark
on SynthFace splits), ``photos`` (real photos: align, predict, inverse-warp, score),
``protocol`` (the one driver: ``evaluate(model, Protocol)``, flat metric keys; presets
``synthface-v2`` for sweeps and ``synthface-v1``, which ``benchmark`` (``pacofr eval``) runs),
``metrics`` (the ``METRICS`` registry: each reported metric's function, direction, unit and
label) and ``report`` (figures, Markdown tables, JSON; matplotlib is
imported only when a figure is drawn). scipy and scikit-learn are imported when a metric
needs them: ``pip install pacofr[eval]``.
"""
from . import alignment, parsing, quality, recognition, report
from . import finetune, tasks, photos, metrics, protocol, benchmark
from .finetune import FitConfig, fit
from .metrics import METRICS, Metric
from .protocol import Protocol, evaluate

__all__ = ["alignment", "parsing", "quality", "recognition", "report", "finetune", "tasks", "photos", "metrics",
           "protocol", "benchmark", "FitConfig", "fit", "METRICS", "Metric", "Protocol", "evaluate"]
