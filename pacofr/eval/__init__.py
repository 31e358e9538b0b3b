"""Evaluation: metrics with the exact protocols of docs EVAL.md, and report helpers.

``alignment`` (NME, CED, AUC@θ, FR@θ), ``parsing`` (data-set-level confusion matrix, F1),
``recognition`` (10-fold verification, TAR@FAR, kNN identification), ``quality`` (neighbour
consistency, effective rank, IQ) and ``report`` (figures, Markdown tables, JSON/Markdown
reports; matplotlib is imported only when a figure is drawn). scipy and scikit-learn are
imported when a metric needs them: ``pip install pacofr[eval]``.
"""
from . import alignment, parsing, quality, recognition, report

__all__ = ["alignment", "parsing", "quality", "recognition", "report"]
