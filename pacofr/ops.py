"""Array-in, array-out operations of the C core."""
from . import _C

__all__ = ["matmul", "patch_stats", "patchify", "unpatchify"]


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
