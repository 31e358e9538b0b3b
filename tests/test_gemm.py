"""pacofr.ops.matmul against the float64 NumPy twin, on both back ends and both dtypes."""
import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr.ref import gemm as ref

# Odd sizes around every blocking edge (MR, NR, MC = 96, KC = 256), and past 1000.
SHAPES = [(1, 1, 1), (1, 7, 33), (7, 1, 197), (33, 197, 7), (197, 33, 1), (7, 197, 1031),
          (1031, 33, 197), (197, 1031, 33), (1031, 1031, 7), (97, 257, 513)]
TRANS = [(False, False), (True, False), (False, True), (True, True)]


def operands(rng, M, N, K, ta, tb):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    return a, b, c


def check(out, a, b, ta, tb, alpha, beta, c0, dtype):
    exact = ref.gemm(a, b, ta, tb, alpha, beta, c0, dtype="fp32")
    bound = ref.error_bound(a, b, ta, tb, alpha, dtype) + np.abs(beta * np.float64(c0)) * 2.0 ** -23
    err = np.abs(out - exact)
    assert np.all(err <= bound), f"max err/bound = {np.max(err / bound):.3g}"
    if dtype == "bf16":
        # Tighter: exactly the product of the bf16-rounded inputs, up to fp32 accumulation.
        twin = ref.gemm(a, b, ta, tb, alpha, beta, c0, dtype="bf16")
        tight = ref.error_bound(ref.round_bf16(a), ref.round_bf16(b), ta, tb, alpha, "fp32")
        tight += np.abs(beta * np.float64(c0)) * 2.0 ** -23
        assert np.all(np.abs(out - twin) <= tight)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_matches_float64(backend, rng, M, N, K, ta, tb, dtype):
    a, b, c = operands(rng, M, N, K, ta, tb)
    a0, b0 = a.copy(), b.copy()
    out = pacofr.ops.matmul(a, b, trans_a=ta, trans_b=tb, dtype=dtype)
    assert out.shape == (M, N) and out.dtype == np.float32 and out.flags.c_contiguous
    check(out, a, b, ta, tb, 1.0, 0.0, c, dtype)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("alpha,beta", [(-0.7, 1.3), (2.0, -1.0), (0.5, 0.0)])
def test_alpha_beta(backend, rng, ta, tb, alpha, beta, dtype):
    M, N, K = 131, 67, 301
    a, b, c = operands(rng, M, N, K, ta, tb)
    c0 = c.copy()
    out = pacofr.ops.matmul(a, b, ta, tb, out=c, dtype=dtype, alpha=alpha, beta=beta)
    assert out is c
    check(out, a, b, ta, tb, alpha, beta, c0, dtype)


def test_beta_zero_ignores_nan_in_out(backend, rng):
    a, b, _ = operands(rng, 40, 30, 20, False, False)
    out = np.full((40, 30), np.nan, np.float32)
    pacofr.ops.matmul(a, b, out=out, beta=0.0)
    assert np.isfinite(out).all()


def test_nan_and_inf_in_inputs_propagate(backend, rng):
    a, b, _ = operands(rng, 20, 20, 20, False, False)
    a[3, 5] = np.nan
    b[7, 2] = np.inf
    out = pacofr.ops.matmul(a, b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


@pytest.mark.parametrize("M,N,K", [(0, 5, 3), (5, 0, 3), (5, 4, 0)])
def test_empty_dimensions(backend, M, N, K):
    a = np.ones((M, K), np.float32)
    b = np.ones((K, N), np.float32)
    np.testing.assert_array_equal(pacofr.ops.matmul(a, b), np.zeros((M, N), np.float32))
    c = np.full((M, N), 2.0, np.float32)
    pacofr.ops.matmul(a, b, out=c, beta=0.5)
    np.testing.assert_array_equal(c, np.ones((M, N), np.float32))


def test_bf16_rounds_its_inputs(backend):
    # 1 + 2**-10 is not a bf16 value: it rounds to 1, so the bf16 product is exactly 1.
    a = np.array([[1 + 2.0 ** -10]], np.float32)
    b = np.ones((1, 1), np.float32)
    assert pacofr.ops.matmul(a, b, dtype="fp32")[0, 0] == np.float32(1 + 2.0 ** -10)
    assert pacofr.ops.matmul(a, b, dtype="bf16")[0, 0] == 1.0
    # Ties go to even: 1 + 3 * 2**-8 lies halfway between 1 + 2**-7 and 1 + 2**-6.
    a[0, 0] = 1 + 3 * 2.0 ** -8
    assert pacofr.ops.matmul(a, b, dtype="bf16")[0, 0] == np.float32(1 + 2.0 ** -6)


@pytest.mark.parametrize("kernel", _C.portable_kernels())
def test_every_portable_kernel(rng, kernel):
    """Each micro-kernel this CPU can run (avx512 / avx2 / generic), on edge-heavy shapes."""
    pacofr.set_gemm_backend("portable")
    try:
        _C.set_portable_kernel(kernel)
        assert _C.get_portable_kernel() == kernel
        for M, N, K in [(13, 33, 5), (25, 65, 300), (200, 100, 600)]:
            for ta, tb in TRANS:
                for dtype in ("fp32", "bf16"):
                    a, b, c = operands(rng, M, N, K, ta, tb)
                    c0 = c.copy()
                    out = pacofr.ops.matmul(a, b, ta, tb, out=c, dtype=dtype, alpha=1.5, beta=0.25)
                    check(out, a, b, ta, tb, 1.5, 0.25, c0, dtype)
    finally:
        _C.set_portable_kernel("auto")
        pacofr.set_gemm_backend("dnnl" if pacofr.build_info()["onednn"] else "portable")


def test_portable_kernel_names():
    kernels = _C.portable_kernels()
    assert kernels[-1] == "generic"
    assert _C.get_portable_kernel() == kernels[0]
    with pytest.raises(ValueError, match="unknown portable kernel 'sse9'"):
        _C.set_portable_kernel("sse9")


def test_round_bf16_matches_numpy_twin(rng):
    bits = rng.integers(0, 2 ** 32, size=200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                        0x7F7FFFFF, 0x7F7F8000, 0x00000001, 0x00008000, 0x00018000, 0x3F808000,
                        0x3F818000, 0xFFFFFFFF], np.uint32)
    x = np.concatenate([bits, special]).view(np.float32)
    got, want = _C.round_bf16(x), ref.round_bf16(x)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got.view(np.uint32)[~nan], want.view(np.uint32)[~nan])
    assert np.all(got.view(np.uint32) & 0xFFFF == 0)
    # Overflow past the largest bf16 rounds to infinity; ties round to even.
    assert np.isinf(_C.round_bf16(np.array([3.4e38], np.float32)))[0]
    tie = np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8], np.float32)
    np.testing.assert_array_equal(_C.round_bf16(tie), np.array([1, 1 + 2.0 ** -6], np.float32))
