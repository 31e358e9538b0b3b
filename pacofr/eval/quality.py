"""Representation quality without downstream labels (docs/evaluation.md "Representation quality"), on
l2-normalised embeddings: neighbour consistency, effective rank, and their blend IQ. NumPy only.
"""
import numpy as np

from .. import ops
from .recognition import l2_normalize, top_k_cosine


def _labels(labels, n):
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one per embedding), got {lab.shape}")
    return lab


def effective_rank(emb, center=True):
    """exp(H(p)), p_i = σ_i / Σσ over the singular values of the (centred, if ``center``) N×D
    matrix of l2-normalised rows. emb: (N, D). Singular values below σ_max·max(N, D)·eps count as
    zero; a matrix with none left (identical rows, centred) has effective rank 1.
    Returns a float in [1, min(N, D)]."""
    return ops.effective_rank(l2_normalize(emb, "emb"), center)


def neighbour_consistency(emb, labels, k=10):
    """Mean over samples of the fraction of their k nearest neighbours (cosine, self excluded)
    that share their label. emb: (N, D); labels: (N,) any comparable values; 1 <= k < N.
    Ties in similarity at the k-th neighbour are broken arbitrarily."""
    x = l2_normalize(emb, "emb")
    lab = _labels(labels, x.shape[0])
    k = int(k)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must satisfy 1 <= k < N = {x.shape[0]}, got {k}")
    nearest = top_k_cosine(x, x, k, exclude_self=True)        # (N, k)
    return float(np.mean(lab[nearest] == lab[:, None]))


def iq(emb, labels, k=10, alpha=0.5, center=True):
    """IQ = alpha·consistency + (1 − alpha)·normalised effective rank (effective rank / D).
    Returns a dict: "iq", "consistency", "effective_rank", "normalized_effective_rank", and the
    settings "k", "alpha", "centred"."""
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    consistency = neighbour_consistency(emb, labels, k)
    erank = effective_rank(emb, center)
    normalized = erank / np.shape(emb)[1]
    return {"iq": a * consistency + (1 - a) * normalized, "consistency": consistency, "effective_rank": erank,
            "normalized_effective_rank": normalized, "k": int(k), "alpha": a, "centred": bool(center)}
