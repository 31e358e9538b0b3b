"""NumPy twin of pf_gemm and the bf16 rounding it uses."""
import numpy as np


def round_bf16(x):
    """float32 array -> nearest bfloat16 values (ties to even), as float32; NaN stays NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    nan = np.isnan(x)
    rounded = np.where(nan, ((u >> 16) | 0x40) << 16, rounded)
    return rounded.astype(np.uint32).view(np.float32).reshape(x.shape)


def bf16_bits(x):
    """float32 array -> its nearest bfloat16 values' bit patterns (uint16), as round_bf16 rounds."""
    return (round_bf16(x).view(np.uint32) >> 16).astype(np.uint16)


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, dtype="fp32"):
    """alpha * op(a) @ op(b) + beta * c in float64 (c ignored when beta == 0)."""
    if dtype == "bf16":
        a, b = round_bf16(a), round_bf16(b)
    a64 = np.asarray(a, np.float64)
    b64 = np.asarray(b, np.float64)
    a64 = a64.T if trans_a else a64
    b64 = b64.T if trans_b else b64
    out = alpha * (a64 @ b64)
    if beta != 0.0:
        out = out + beta * np.asarray(c, np.float64)
    return out


def error_bound(a, b, trans_a=False, trans_b=False, alpha=1.0, dtype="fp32"):
    """Element-wise bound on |gemm - exact| for fp32 accumulation over K terms (and, for
    bf16, inputs rounded to 8 significant bits): |alpha| * (|op(a)| @ |op(b)|) * eps."""
    a64 = np.abs(np.asarray(a, np.float64))
    b64 = np.abs(np.asarray(b, np.float64))
    a64 = a64.T if trans_a else a64
    b64 = b64.T if trans_b else b64
    k = a64.shape[1]
    u32 = 2.0 ** -24
    eps = (k + 2) * u32 * 1.01
    if dtype == "bf16":
        u16 = 2.0 ** -8  # unit roundoff of an 8-bit significand
        eps += 2 * u16 + u16 * u16
    return abs(alpha) * (a64 @ b64) * eps + 1e-30
