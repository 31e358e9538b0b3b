"""Every bad argument raises TypeError or ValueError naming the argument, expected vs actual."""
import numpy as np
import pytest

import pacofr
from pacofr import _C

f32 = np.float32


def A(*shape):
    return np.ones(shape, f32)


@pytest.mark.parametrize("bad,exc,msg", [
    ([[1.0, 2.0]], TypeError, "a must be a numpy.ndarray of float32, got list"),
    (np.ones((3, 4), np.float64), TypeError, "a must have dtype float32, got float64"),
    (np.ones((3, 4), np.int32), TypeError, "a must have dtype float32, got int32"),
    (np.ones((3, 4), ">f4"), TypeError, "a must be native-endian float32"),
    (np.ones(4, f32), ValueError, r"a must be 2-D, got 1-D array of shape \(4,\)"),
    (np.ones((2, 3, 4), f32), ValueError, r"a must be 2-D, got 3-D array of shape \(2, 3, 4\)"),
    (np.ones((4, 3), f32).T, ValueError, "a must be C-contiguous.*trans_a=True"),
    (np.ones((3, 8), f32)[:, ::2], ValueError, "a must be C-contiguous"),
])
def test_bad_a(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        pacofr.ops.matmul(bad, A(4, 5))


def test_bad_b_is_named():
    with pytest.raises(TypeError, match="b must have dtype float32, got float16"):
        pacofr.ops.matmul(A(3, 4), np.ones((4, 5), np.float16))
    with pytest.raises(ValueError, match="b must be C-contiguous.*trans_b=True"):
        pacofr.ops.matmul(A(3, 4), A(5, 4).T)
    with pytest.raises(TypeError, match="b must be a numpy.ndarray of float32, got NoneType"):
        pacofr.ops.matmul(A(3, 4), None)


def test_unaligned():
    raw = np.zeros(4 * 12 + 1, np.uint8)[1:].view(f32).reshape(3, 4)
    assert not raw.flags.aligned
    with pytest.raises(ValueError, match="a must be aligned to 4 bytes"):
        pacofr.ops.matmul(raw, A(4, 5))


def test_inner_dimension_mismatch():
    with pytest.raises(ValueError, match=r"inner dimensions differ: op\(a\) is 3 x 4 .* op\(b\) is 5 x 6"):
        pacofr.ops.matmul(A(3, 4), A(5, 6))
    with pytest.raises(ValueError, match=r"op\(a\) is 4 x 3 \(trans_a=True\)"):
        pacofr.ops.matmul(A(3, 4), A(4, 6), trans_a=True)


def test_bad_out():
    a, b = A(3, 4), A(4, 5)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 5\), got \(5, 3\)"):
        pacofr.ops.matmul(a, b, out=A(5, 3))
    with pytest.raises(TypeError, match="out must have dtype float32, got float64"):
        pacofr.ops.matmul(a, b, out=np.zeros((3, 5)))
    ro = A(3, 5)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable, got a read-only array"):
        pacofr.ops.matmul(a, b, out=ro)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        pacofr.ops.matmul(a, b, out=A(5, 3).T)
    with pytest.raises(ValueError, match="out must be 2-D"):
        pacofr.ops.matmul(a, b, out=A(15))


def test_out_overlapping_an_input():
    buf = A(4, 4)
    with pytest.raises(ValueError, match="out must not share memory with a"):
        pacofr.ops.matmul(buf, A(4, 4), out=buf)
    big = A(8, 4)
    with pytest.raises(ValueError, match="out must not share memory with b"):
        pacofr.ops.matmul(A(4, 4), big[:4], out=big[2:6])
    pacofr.ops.matmul(A(4, 4), big[:4], out=big[4:])  # adjacent, not overlapping: fine


def test_bad_scalars_and_dtype():
    a, b = A(3, 4), A(4, 5)
    with pytest.raises(ValueError, match="beta != 0 needs an out array"):
        pacofr.ops.matmul(a, b, beta=1.0)
    with pytest.raises(ValueError, match="alpha and beta must be finite, got alpha=nan"):
        pacofr.ops.matmul(a, b, alpha=float("nan"))
    with pytest.raises(ValueError, match="alpha and beta must be finite.*beta=inf"):
        pacofr.ops.matmul(a, b, out=A(3, 5), beta=float("inf"))
    with pytest.raises(ValueError, match="dtype must be 'fp32' or 'bf16', got 'fp16'"):
        pacofr.ops.matmul(a, b, dtype="fp16")
    with pytest.raises(TypeError, match="dtype must be 'fp32' or 'bf16', got type"):
        pacofr.ops.matmul(a, b, dtype=np.float32)
    with pytest.raises(TypeError):
        pacofr.ops.matmul(a, b, alpha="2")


def test_bad_settings():
    with pytest.raises(ValueError, match="n must be between 1 and 4096, got 0"):
        pacofr.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an int, got str"):
        pacofr.set_num_threads("2")
    with pytest.raises(TypeError, match="n must be an int, got bool"):
        pacofr.set_num_threads(True)
    with pytest.raises(ValueError, match="backend must be 'dnnl' or 'portable', got 'mkl'"):
        pacofr.set_gemm_backend("mkl")
    with pytest.raises(TypeError, match="backend must be 'dnnl' or 'portable', got int"):
        pacofr.set_gemm_backend(1)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _C.round_bf16(np.ones(3))


def test_failed_calls_leave_out_untouched():
    out = np.full((3, 5), 7.0, f32)
    with pytest.raises(ValueError):
        pacofr.ops.matmul(A(3, 4), A(5, 6), out=out)
    np.testing.assert_array_equal(out, np.full((3, 5), 7.0, f32))
