"""Array-in, array-out operations of the C core."""
from . import _C

__all__ = ["matmul"]


def matmul(a, b, trans_a=False, trans_b=False, out=None, dtype="fp32", alpha=1.0, beta=0.0):
    """``out = alpha * op(a) @ op(b) + beta * out`` on 2-D float32 arrays.

    a: (M, K), or (K, M) with ``trans_a``; b: (K, N), or (N, K) with ``trans_b``;
    out: (M, N) float32, allocated when None (then ``beta`` must be 0). Inputs must be
    C-contiguous: pass ``trans_a=True`` rather than ``a.T``. ``dtype="bf16"`` rounds a and b
    to bfloat16 (nearest, ties to even) and accumulates in fp32 (AMX through oneDNN where the
    CPU has it); the result is float32 either way. ``beta == 0`` never reads ``out``.

    Raises TypeError for a non-array or non-float32 argument, ValueError for a wrong ndim,
    mismatched inner dimensions, a non-contiguous, unaligned or read-only array, or an
    ``out`` that overlaps an input.
    """
    return _C.gemm(a, b, out, trans_a, trans_b, alpha, beta, dtype)
