"""The general GEMM (pf_gemm_ex through _C.gemm): a fused bias row, bf16 operands passed as
uint16 bit patterns, the bare oneDNN benchmark primitive, and choose_dtype."""
import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr.ref import gemm as ref
from pacofr.ref.gemm import bf16_bits
from pacofr.runtime import choose_dtype

from test_gemm import TRANS, check, operands


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_bias_is_added_to_every_row(backend, rng, ta, tb, beta, dtype):
    M, N, K = 97, 67, 131
    a, b, c = operands(rng, M, N, K, ta, tb)
    bias = rng.standard_normal(N).astype(np.float32)
    c0 = c.copy()
    out = _C.gemm(a, b, c, trans_a=ta, trans_b=tb, beta=beta, dtype=dtype, bias=bias)
    check(out - bias, a, b, ta, tb, 1.0, beta, c0, dtype)
    # the same without the bias differs by exactly the bias, up to one rounding of the sum
    plain = _C.gemm(a, b, c0.copy(), trans_a=ta, trans_b=tb, beta=beta, dtype=dtype)
    np.testing.assert_allclose(out, plain + bias, rtol=2e-6, atol=2e-6 * np.abs(bias).max())


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_bf16_operands_equal_rounded_fp32(backend, rng, ta, tb, which):
    M, N, K = 61, 83, 197
    a, b, _ = operands(rng, M, N, K, ta, tb)
    a_in = bf16_bits(a) if which in ("a", "both") else a
    b_in = bf16_bits(b) if which in ("b", "both") else b
    got = _C.gemm(a_in, b_in, trans_a=ta, trans_b=tb, dtype="bf16")
    want = _C.gemm(a, b, trans_a=ta, trans_b=tb, dtype="bf16")
    np.testing.assert_array_equal(got, want)  # the same bf16 values go into the same kernel
    check(got, a, b, ta, tb, 1.0, 0.0, np.zeros_like(got), "bf16")


def test_conversion_matches_twin_bit_for_bit(rng):
    # pf_to_bf16 (vectorised) against the twin: ties, overflow, infinities, signs. Subnormal
    # results are left out: oneDNN's kernels flush them to zero (denormals-are-zero).
    x = np.concatenate([rng.standard_normal(70001).astype(np.float32) * 10.0 ** rng.integers(-36, 38, 70001),
                        np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 3.4e38, -3.4e38, 0.0,
                                  np.inf, -np.inf], np.float32)]).astype(np.float32)
    x = x[~(np.abs(ref.round_bf16(x)) < 2.0 ** -126) | (x == 0)]
    eye = np.ones((1, 1), np.float32)
    got = _C.gemm(x[:, None].copy(), eye, dtype="bf16")[:, 0]  # x rounded to bf16, times 1
    np.testing.assert_array_equal(got.view(np.uint32), ref.round_bf16(x).view(np.uint32))
    nan = _C.gemm(np.full((3, 1), np.nan, np.float32), eye, dtype="bf16")
    assert np.isnan(nan).all()


def test_bad_requests_are_refused(rng):
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\(bf16\) operands need dtype=.bf16."):
        _C.gemm(bf16_bits(a), b)
    with pytest.raises(ValueError, match="a bias needs alpha == 1"):
        _C.gemm(a, b, alpha=2.0, bias=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="bias"):
        _C.gemm(a, b, bias=np.zeros(4, np.float32))
    with pytest.raises(TypeError):
        _C.gemm(a.astype(np.int16), b)


@pytest.mark.skipif(not pacofr.build_info()["onednn"], reason="pacofr was built without oneDNN")
def test_bare_primitive_benchmark_runs():
    seconds = _C.dnnl_bare_matmul(64, 48, 32, trans_b=True, dtype="fp32", reps=3)
    assert 0.0 < seconds < 1.0
    with pytest.raises(ValueError, match="reps"):
        _C.dnnl_bare_matmul(64, 48, 32, reps=0)


def test_choose_dtype():
    assert choose_dtype("fp32") == ("fp32", "fp32 as requested")
    assert choose_dtype("bf16")[0] == "bf16"
    with pytest.raises(ValueError, match="'auto', 'fp32' or 'bf16'"):
        choose_dtype("fp16")
    dtype, why = choose_dtype("auto", width=32, hidden=64, rows=256, reps=3)
    assert dtype in ("fp32", "bf16") and why.startswith(dtype)
    previous = pacofr.get_gemm_backend()
    pacofr.set_gemm_backend("portable")
    try:  # the portable back end only rounds to bf16: never worth it
        dtype, why = choose_dtype("auto", width=32, hidden=64, rows=256, reps=3)
        assert dtype == "fp32" and "no bf16 matrix kernel" in why
    finally:
        pacofr.set_gemm_backend(previous)


def test_public_matmul_takes_a_bias_and_bf16_weights(rng):
    x, w = rng.standard_normal((33, 20)).astype(np.float32), rng.standard_normal((7, 20)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    got = pacofr.ops.matmul(x, bf16_bits(w), trans_b=True, dtype="bf16", bias=bias)
    want = pacofr.ops.matmul(x, w, trans_b=True, dtype="bf16") + bias
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
