"""Every C layer, forward and backward, against its NumPy twin and against PyTorch autograd.

Gradient buffers are pre-filled with random values: backward must ADD its gradient, and with
overwrite=True it must write the input's gradient over a buffer of NaNs without reading it."""
import numpy as np
import pytest

from pacofr import _C
from pacofr.ref import layers as ref
from pacofr.ref.gemm import bf16_bits
from conftest import assert_close

f32 = np.float32
DTYPES = ["fp32", "bf16"]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(f32)


def tol(dtype):
    return 1e-5 if dtype == "fp32" else 2e-2


# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, dtype, bias):
    R, IC, OC = 37, 19, 23
    x, w, b, dout = rand(rng, R, IC), rand(rng, OC, IC), rand(rng, OC), rand(rng, R, OC)
    out = _C.linear_forward(x, w, b if bias else None, dtype)
    assert_close(out, ref.linear_forward(x.astype(float), w.astype(float), b if bias else None), tol(dtype))
    pre = [rand(rng, R, IC), rand(rng, OC, IC), rand(rng, OC)]
    dx, dw, db = (p.copy() for p in pre)
    _C.linear_backward(dout, x, w, dx, dw, db, dtype)
    wants = ref.linear_backward(dout.astype(float), x.astype(float), w.astype(float))
    for got, p, want, name in zip((dx, dw, db), pre, wants, "xwb"):
        assert_close(got - p, want, tol(dtype), 1e-5, f"d{name}")
    _C.linear_backward(dout, x, w, None, None, None, dtype)  # every gradient optional
    dx = np.full((R, IC), np.nan, f32)
    _C.linear_backward(dout, x, w, dx, None, None, dtype, True)
    assert_close(dx, ref.linear_backward(dout.astype(float), x.astype(float), w.astype(float))[0], tol(dtype), 1e-5)


def test_linear_against_torch(rng, torch):
    x, w, b, dout = rand(rng, 21, 13), rand(rng, 17, 13), rand(rng, 17), rand(rng, 21, 17)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.linear(tx, tw, tb)
    y.backward(torch.from_numpy(dout))
    assert_close(_C.linear_forward(x, w, b, "fp32"), y.detach().numpy())
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    _C.linear_backward(dout, x, w, dx, dw, db, "fp32")
    for got, t in zip((dx, dw, db), (tx, tw, tb)):
        assert_close(got, t.grad.numpy())


# ---------------------------------------------------------------- layernorm

def test_layernorm(rng):
    R, C = 29, 48
    x, w, b, dout = rand(rng, R, C, scale=3.0) + 2.0, rand(rng, C), rand(rng, C), rand(rng, R, C)
    out, mean, rstd = _C.layernorm_forward(x, w, b, 1e-6)
    want, wmean, wrstd = ref.layernorm_forward(x.astype(float), w, b)
    assert_close(out, want), assert_close(mean, wmean), assert_close(rstd, wrstd)
    pre = [rand(rng, R, C), rand(rng, C), rand(rng, C)]
    dx, dw, db = (p.copy() for p in pre)
    _C.layernorm_backward(dout, x, w, mean, rstd, dx, dw, db)
    wants = ref.layernorm_backward(dout.astype(float), x.astype(float), w, wmean, wrstd)
    for got, p, w_, name in zip((dx, dw, db), pre, wants, "xwb"):
        assert_close(got - p, w_, 1e-5, 1e-5, f"d{name}")


def test_layernorm_against_torch(rng, torch):
    x, w, b, dout = rand(rng, 33, 64), rand(rng, 64), rand(rng, 64), rand(rng, 33, 64)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.layer_norm(tx, (64,), tw, tb, eps=1e-6)
    y.backward(torch.from_numpy(dout))
    out, mean, rstd = _C.layernorm_forward(x, w, b, 1e-6)
    assert_close(out, y.detach().numpy())
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    _C.layernorm_backward(dout, x, w, mean, rstd, dx, dw, db)
    for got, t in zip((dx, dw, db), (tx, tw, tb)):
        assert_close(got, t.grad.numpy(), 1e-5, 1e-5)


# ---------------------------------------------------------------- gelu

def test_gelu(rng):
    x, dout = rand(rng, 1000, scale=3.0), rand(rng, 1000)
    assert_close(_C.gelu_forward(x), ref.gelu_forward(x.astype(float)))
    pre = rand(rng, 1000)
    dx = pre.copy()
    _C.gelu_backward(x, dout, dx)
    assert_close(dx - pre, ref.gelu_backward(x.astype(float), dout), 1e-5, 1e-6)
    dx = np.full_like(x, np.nan)
    _C.gelu_backward(x, dout, dx, True)
    assert_close(dx, ref.gelu_backward(x.astype(float), dout), 1e-5, 1e-6)
    inplace = dout.copy()  # overwrite may write the gradient over dout itself
    _C.gelu_backward(x, inplace, inplace, True)
    np.testing.assert_array_equal(inplace, dx)


def test_gelu_against_torch(rng, torch):
    x, dout = rand(rng, 4, 300, scale=3.0), rand(rng, 4, 300)
    tx = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.gelu(tx)  # exact erf form
    y.backward(torch.from_numpy(dout))
    assert_close(_C.gelu_forward(x), y.detach().numpy())
    dx = np.zeros_like(x)
    _C.gelu_backward(x, dout, dx)
    assert_close(dx, tx.grad.numpy(), 1e-5, 1e-6)


def test_gelu_backward16_is_the_fp32_gradient_rounded_with_its_column_sums(rng):
    x, dout, pre = rand(rng, 37, 130, scale=3.0), rand(rng, 37, 130), rand(rng, 130)
    db = pre.copy()
    dx16 = _C.gelu_backward16(x, dout, db)
    want = np.full_like(x, np.nan)
    _C.gelu_backward(x, dout, want, True)
    assert dx16.dtype == np.uint16
    np.testing.assert_array_equal(dx16, bf16_bits(want))
    assert_close(db - pre, want.astype(float).sum(0), 1e-5, 1e-5)


def test_linear_backward_takes_dout_as_bf16_bits(rng):
    x, w, dout = rand(rng, 29, 24), rand(rng, 40, 24), rand(rng, 29, 40)
    dx, dw, dx16, dw16 = (np.zeros(a.shape, f32) for a in (x, w, x, w))
    _C.linear_backward(dout, x, w, dx, dw, None, "bf16")  # rounds dout to bf16 for its products
    _C.linear_backward(bf16_bits(dout), x, w, dx16, dw16, None, "bf16")
    np.testing.assert_array_equal(dx16, dx), np.testing.assert_array_equal(dw16, dw)
    with pytest.raises(ValueError, match="bf16"):
        _C.linear_backward(bf16_bits(dout), x, w, dx16, dw16, None, "fp32")
    with pytest.raises(ValueError, match="dbias"):
        _C.linear_backward(bf16_bits(dout), x, w, dx16, dw16, np.zeros(40, f32), "bf16")


# ---------------------------------------------------------------- attention

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,C,NH", [(2, 5, 8, 2), (3, 17, 48, 3), (1, 50, 64, 1), (1, 1, 6, 2), (2, 33, 21, 3),
                                    (2, 50, 192, 3), (1, 197, 128, 4)])
def test_attention(rng, dtype, B, T, C, NH):
    qkv, dout = rand(rng, B, T, 3 * C), rand(rng, B, T, C)
    out, att = _C.attention_forward(qkv, NH, dtype)
    att16 = att.dtype == np.uint16  # bf16 probabilities where the products run in bf16
    assert att16 == (dtype == "bf16" and _C.attention_bf16_products())
    p = _as_f32(att) if att16 else att
    want, watt = ref.attention_forward(qkv.astype(float), NH)
    assert_close(out, want, tol(dtype)), assert_close(p, watt, tol(dtype))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=2.0 ** -8 if att16 else 1e-5)
    pre = rand(rng, B, T, 3 * C)
    dqkv = pre.copy()
    _C.attention_backward(dout, qkv, att, dqkv, dtype)
    want_d = ref.attention_backward(dout.astype(float), qkv.astype(float), watt, NH)
    assert_close(dqkv - pre, want_d, 5 * tol(dtype), 1e-5)
    dqkv = np.full_like(pre, np.nan)
    _C.attention_backward(dout, qkv, att, dqkv, dtype, True)
    assert_close(dqkv, want_d, 5 * tol(dtype), 1e-5)
    if att16:  # the bf16 twin, far tighter than bf16 against fp32
        w16, watt16 = ref.attention_forward(qkv.astype(float), NH, bf16_products=True)
        assert_close(out, w16, 1e-3, 1e-6), assert_close(p, watt16, 2.0 ** -8)
        want16 = ref.attention_backward(dout.astype(float), qkv.astype(float), p.astype(float), NH, True)
        assert_close(dqkv, want16, 1e-4, 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_backward_wants_att_as_forward_made_it(rng, dtype):
    qkv, dout = rand(rng, 1, 4, 18), rand(rng, 1, 4, 6)
    _, att = _C.attention_forward(qkv, 3, dtype)
    other = att.view(np.float32)[..., : att.shape[-1] // 2] if att.dtype == np.uint16 else bf16_bits(att)
    with pytest.raises((TypeError, ValueError), match="att"):
        _C.attention_backward(dout, qkv, other, np.zeros_like(qkv), dtype)


def test_attention_against_torch(rng, torch):
    from pacofr.testing.torch_ref import Attention
    B, T, C, NH = 2, 9, 24, 3
    x, dout = rand(rng, B, T, C), rand(rng, B, T, C)
    layer = Attention(C, NH)
    tx = torch.tensor(x, requires_grad=True)
    y = layer(tx)
    y.backward(torch.from_numpy(dout))
    qkv_w, qkv_b = layer.qkv.weight.detach().numpy(), layer.qkv.bias.detach().numpy()
    pw, pb = layer.proj.weight.detach().numpy(), layer.proj.bias.detach().numpy()
    qkv = _C.linear_forward(x.reshape(-1, C), qkv_w, qkv_b, "fp32").reshape(B, T, 3 * C)
    atty, att = _C.attention_forward(qkv, NH, "fp32")
    out = _C.linear_forward(atty.reshape(-1, C), pw, pb, "fp32").reshape(B, T, C)
    assert_close(out, y.detach().numpy())
    datty = np.zeros((B * T, C), f32)
    dpw, dpb = np.zeros_like(pw), np.zeros_like(pb)
    _C.linear_backward(dout.reshape(-1, C), atty.reshape(-1, C), pw, datty, dpw, dpb, "fp32")
    dqkv = np.zeros_like(qkv)
    _C.attention_backward(datty.reshape(B, T, C), qkv, att, dqkv, "fp32")
    dx, dqw, dqb = np.zeros((B * T, C), f32), np.zeros_like(qkv_w), np.zeros_like(qkv_b)
    _C.linear_backward(dqkv.reshape(-1, 3 * C), x.reshape(-1, C), qkv_w, dx, dqw, dqb, "fp32")
    assert_close(dx.reshape(B, T, C), tx.grad.numpy(), 1e-4, 1e-6)
    assert_close(dqw, layer.qkv.weight.grad.numpy(), 1e-4, 1e-6)
    assert_close(dpw, layer.proj.weight.grad.numpy(), 1e-4, 1e-6)


# ---------------------------------------------------------------- patches and tokens

def test_patches(rng):
    B, S, p = 2, 24, 8
    im = rand(rng, B, 3, S, S)
    ids = np.stack([rng.permutation(9)[:4] for _ in range(B)]).astype(np.int64)
    assert_close(_C.im2col(im, None, p), ref.im2col(im, p), 0, 0)
    assert_close(_C.im2col(im, ids, p), ref.im2col(im, p, ids), 0, 0)
    patches = _C.patchify(im, p)
    assert_close(patches, ref.patchify(im, p), 0, 0)
    np.testing.assert_array_equal(_C.unpatchify(patches, p), im)
    # the two orders really differ: (c, kh, kw) vs (kh, kw, c)
    assert not np.array_equal(_C.im2col(im, None, p), patches)


def test_patches_against_torch(rng, torch):
    from pacofr.testing.torch_ref import PatchEmbed, patchify
    im = rand(rng, 2, 3, 32, 32)
    pe = PatchEmbed(8, 16)
    want = pe(torch.from_numpy(im)).detach().numpy()
    w = pe.proj.weight.detach().numpy().reshape(16, -1)  # timm (C, 3, p, p) flattened (c, kh, kw)
    got = _C.linear_forward(_C.im2col(im, None, 8).reshape(-1, 192), w, pe.proj.bias.detach().numpy(), "fp32")
    assert_close(got.reshape(2, 16, 16), want)
    assert_close(_C.patchify(im, 8), patchify(torch.from_numpy(im), 8).numpy(), 0, 0)


def test_tokens(rng):
    B, n, N, C = 3, 4, 9, 8
    emb, cls, pos = rand(rng, B, n, C), rand(rng, C), rand(rng, N + 1, C)
    ids = np.stack([rng.permutation(N)[:n] for _ in range(B)]).astype(np.int64)
    x = _C.tokens_forward(emb, cls, pos, ids)
    assert_close(x, ref.tokens_forward(emb, cls, pos, ids), 0, 1e-7)
    dx = rand(rng, B, n + 1, C)
    pre = [rand(rng, B, n, C), rand(rng, C), rand(rng, N + 1, C)]
    demb, dcls, dpos = (q.copy() for q in pre)
    _C.tokens_backward(dx, ids, demb, dcls, dpos)
    for got, q, want in zip((demb, dcls, dpos), pre, ref.tokens_backward(dx.astype(float), ids, N + 1)):
        assert_close(got - q, want, 1e-6, 1e-6)
    # all patches, no ids: positions 1..N in order
    full = _C.tokens_forward(rand(rng, B, N, C), cls, pos, None)
    assert full.shape == (B, N + 1, C)


def test_unshuffle(rng):
    B, n, N, C = 3, 4, 9, 8
    x, tok, pos = rand(rng, B, n + 1, C), rand(rng, C), rand(rng, N + 1, C)
    ids = np.stack([rng.permutation(N)[:n] for _ in range(B)]).astype(np.int64)
    full = _C.unshuffle_forward(x, tok, pos, ids)
    assert_close(full, ref.unshuffle_forward(x, tok, pos, ids), 0, 1e-7)
    dfull = rand(rng, B, N + 1, C)
    pre = [rand(rng, B, n + 1, C), rand(rng, C), rand(rng, N + 1, C)]
    dx, dtok, dpos = (q.copy() for q in pre)
    _C.unshuffle_backward(dfull, ids, dx, dtok, dpos)
    for got, q, want in zip((dx, dtok, dpos), pre, ref.unshuffle_backward(dfull.astype(float), ids)):
        assert_close(got - q, want, 1e-6, 1e-6)
    with pytest.raises(ValueError, match="repeats patch"):
        _C.unshuffle_forward(x, tok, pos, np.zeros((B, n), np.int64))


def test_unshuffle_matches_mae_ids_restore(rng, torch):
    """MAE restores order with argsort of the shuffle; the direct scatter gives the same."""
    B, n, N, C = 2, 3, 16, 4
    x, tok, pos = rand(rng, B, n + 1, C), rand(rng, C), rand(rng, N + 1, C)
    noise = torch.rand(B, N)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n]
    tx = torch.from_numpy(x)
    x_ = torch.cat([tx[:, 1:], torch.from_numpy(tok).expand(B, N - n, C)], dim=1)
    x_ = torch.gather(x_, 1, ids_restore[..., None].expand(-1, -1, C))
    want = torch.cat([tx[:, :1], x_], dim=1) + torch.from_numpy(pos)
    assert_close(_C.unshuffle_forward(x, tok, pos, ids_keep.numpy().astype(np.int64)), want.numpy(), 0, 1e-7)


# ---------------------------------------------------------------- losses

def test_mae_loss(rng):
    B, N, d = 3, 16, 12
    target = _C.norm_pix_target(rand(rng, B * N, d, scale=2.0) + 1).reshape(B, N, d)
    assert_close(target, ref.norm_pix_target((target * 1.0)), 1e-5)  # idempotent up to eps
    raw = rand(rng, B * N, d, scale=2.0) + 1
    assert_close(_C.norm_pix_target(raw), ref.norm_pix_target(raw.astype(float)), 1e-5, 1e-6)
    pred = rand(rng, B, N + 1, d)  # one leading (cls) row per image, skipped
    mask = (rng.random((B, N)) < 0.75).astype(np.uint8)
    loss = _C.mae_loss_forward(pred, target, mask, 1)
    assert abs(loss - ref.mae_loss_forward(pred[:, 1:].astype(float), target, mask)) < 1e-6 * abs(loss)
    pre = rand(rng, B, N + 1, d)
    dpred = pre.copy()
    _C.mae_loss_backward(pred, target, mask, 1, 0.5, dpred)
    assert_close(dpred[:, 1:] - pre[:, 1:], ref.mae_loss_backward(pred[:, 1:].astype(float), target, mask, 0.5),
                 1e-5, 1e-6)
    np.testing.assert_array_equal(dpred[:, 0], pre[:, 0])


def test_cross_entropy_and_mse(rng):
    R, K = 31, 10
    logits, t = rand(rng, R, K, scale=3.0), rng.integers(0, K, R).astype(np.int64)
    loss, probs = _C.cross_entropy_forward(logits, t)
    wloss, wprobs = ref.cross_entropy_forward(logits.astype(float), t)
    assert abs(loss - wloss) < 1e-6 * abs(wloss)
    assert_close(probs, wprobs, 1e-6)
    pre = rand(rng, R, K)
    d = pre.copy()
    _C.cross_entropy_backward(probs, t, 2.0, d)
    assert_close(d - pre, ref.cross_entropy_backward(wprobs, t, 2.0), 1e-5, 1e-6)
    with pytest.raises(ValueError, match=r"targets\[0\] = 10 is outside \[0, 10\)"):
        _C.cross_entropy_forward(logits, np.full(R, 10, np.int64))
    x, y = rand(rng, 7, 5), rand(rng, 7, 5)
    assert abs(_C.mse_forward(x, y) - ref.mse_forward(x.astype(float), y)) < 1e-6
    pre = rand(rng, 7, 5)
    dx = pre.copy()
    _C.mse_backward(x, y, 3.0, dx)
    assert_close(dx - pre, ref.mse_backward(x.astype(float), y, 3.0), 1e-5, 1e-6)


def test_losses_against_torch(rng, torch):
    import torch.nn.functional as F
    logits, t = rand(rng, 13, 7), rng.integers(0, 7, 13).astype(np.int64)
    tl = torch.tensor(logits, requires_grad=True)
    F.cross_entropy(tl, torch.from_numpy(t)).backward()
    loss, probs = _C.cross_entropy_forward(logits, t)
    d = np.zeros_like(logits)
    _C.cross_entropy_backward(probs, t, 1.0, d)
    assert abs(loss - F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(t)).item()) < 1e-5
    assert_close(d, tl.grad.numpy(), 1e-5, 1e-7)
    x, y = rand(rng, 6, 4), rand(rng, 6, 4)
    tx = torch.tensor(x, requires_grad=True)
    F.mse_loss(tx, torch.from_numpy(y)).backward()
    dx = np.zeros_like(x)
    _C.mse_backward(x, y, 1.0, dx)
    assert_close(dx, tx.grad.numpy(), 1e-5, 1e-7)


# ---------------------------------------------------------------- bad arguments

def test_layer_bad_arguments(rng):
    x = rand(rng, 4, 6)
    with pytest.raises(ValueError, match=r"weight must have shape \(\?, 6\), got \(5, 7\)"):
        _C.linear_forward(x, rand(rng, 5, 7), None, "fp32")
    with pytest.raises(TypeError, match="bias must have dtype float32, got float64"):
        _C.linear_forward(x, rand(rng, 5, 6), np.zeros(5), "fp32")
    with pytest.raises(ValueError, match="num_heads must divide the width 8"):
        _C.attention_forward(rand(rng, 1, 3, 24), 3, "fp32")
    with pytest.raises(ValueError, match="patch size 5 must divide the image side 32"):
        _C.patchify(rand(rng, 1, 3, 32, 32), 5)
    with pytest.raises(ValueError, match=r"ids holds 16, outside \[0, 16\)"):
        _C.im2col(rand(rng, 1, 3, 32, 32), np.array([[16]], np.int64), 8)
    with pytest.raises(ValueError, match="dx must be writeable"):
        ro = np.zeros((4, 6), f32)
        ro.setflags(write=False)
        _C.gelu_backward(x, x, ro)


# ---------------------------------------------------------------- bf16 outputs (a bf16 model's GEMM inputs)

def _as_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_bf16_outputs_are_the_fp32_outputs_rounded(rng):
    """LayerNorm, GELU and attention writing bf16 bits: exactly the fp32 kernel's values
    rounded to nearest even, and within bf16's half-ulp of the float64 twin."""
    x, w, b = rand(rng, 37, 48), rand(rng, 48), rand(rng, 48)
    out16, mean16, rstd16 = _C.layernorm_forward(x, w, b, 1e-6, True)
    out, mean, rstd = _C.layernorm_forward(x, w, b, 1e-6)
    assert out16.dtype == np.uint16 and out16.shape == out.shape
    np.testing.assert_array_equal(out16, bf16_bits(out))
    np.testing.assert_array_equal(mean16, mean), np.testing.assert_array_equal(rstd16, rstd)
    want = ref.layernorm_forward(x.astype(float), w.astype(float), b.astype(float))[0]
    assert_close(_as_f32(out16), want, 2.0 ** -8)
    g = rand(rng, 5, 1031, scale=3.0)
    np.testing.assert_array_equal(_C.gelu_forward(g, True), bf16_bits(_C.gelu_forward(g)))
    assert_close(_as_f32(_C.gelu_forward(g, True)), ref.gelu_forward(g.astype(float)), 2.0 ** -8)
    qkv = rand(rng, 2, 33, 3 * 21)
    a16, att16 = _C.attention_forward(qkv, 3, "bf16", True)
    a32, att32 = _C.attention_forward(qkv, 3, "bf16")
    np.testing.assert_array_equal(a16, bf16_bits(a32)), np.testing.assert_array_equal(att16, att32)
