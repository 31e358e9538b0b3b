"""Array-in, array-out operations of the C core, and the one NumPy measure that pre-training
diagnostics and evaluation share (``effective_rank``)."""
import numpy as np

from . import _C

__all__ = ["effective_rank", "matmul", "patch_stats", "patchify", "unpatchify"]


def matmul(a, b, trans_a=False, trans_b=False, out=None, dtype="fp32", alpha=1.0, beta=0.0, bias=None):
    """``out = alpha * op(a) @ op(b) + bias + beta * out`` on 2-D float32 arrays.

    a: (M, K), or (K, M) with ``trans_a``; b: (K, N), or (N, K) with ``trans_b``;
    out: (M, N) float32, allocated when None (then ``beta`` must be 0). Inputs must be
    C-contiguous: pass ``trans_a=True`` rather than ``a.T``. ``dtype="bf16"`` rounds a and b
    to bfloat16 (nearest, ties to even) and accumulates in fp32 (AMX through oneDNN where the
    CPU has it); the result is float32 either way; with ``dtype="bf16"`` a or b may also be a
    uint16 array of bf16 bit patterns, used as it is (convert a weight once, reuse it).
    ``bias``: float32 (N,) added to every row inside the product (``alpha`` must be 1).
    ``beta == 0`` never reads ``out``.

    Raises TypeError for a non-array or non-float32 argument, ValueError for a wrong ndim,
    mismatched inner dimensions, a non-contiguous, unaligned or read-only array, or an
    ``out`` that overlaps an input.
    """
    return _C.gemm(a, b, out, trans_a, trans_b, alpha, beta, dtype, bias)


def patchify(images, p):
    """images (B, 3, S, S) float32 -> (B, N, p * p * 3) patches in row-major grid order, each in
    MAE's (p, q, c) pixel order (the reconstruction targets' layout)."""
    return _C.patchify(images, p)


def unpatchify(patches, p):
    """The inverse of ``patchify``: (B, N, p * p * 3) float32 -> (B, 3, S, S)."""
    return _C.unpatchify(patches, p)


def patch_stats(patches):
    """patches (R, d) float32 -> (normalised (R, d), mean (R,), std (R,)), the std from the
    unbiased variance + 1e-6 (MAE's norm-pix targets)."""
    return _C.patch_stats(patches)


def effective_rank(x, center=True):
    """exp(H(p)), p_i = σ_i / Σσ over the singular values of the (centred, if ``center``) R×D
    matrix of the l2-normalised rows of x (docs/evaluation.md). Singular values below σ_max·max(R, D)·eps
    count as zero; a matrix with none left (identical rows, centred) has effective rank 1.
    Returns a float in [1, min(R, D)]."""
    x = np.asarray(x, np.float64)
    z = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    if center:
        z = z - z.mean(axis=0)
    s = np.linalg.svd(z, compute_uv=False)
    s = s[s > s.max(initial=0.0) * max(z.shape) * np.finfo(np.float64).eps]
    if s.size == 0:
        return 1.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))
