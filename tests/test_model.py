"""The whole model against PyTorch: golden files (always) and a live comparison (with torch)."""
from pathlib import Path

import numpy as np
import pytest

from pacofr.config import get_config
from pacofr.model import Model, create_model
from pacofr.optim import AdamW, cosine_lr
from pacofr.ref import layers as ref
from conftest import assert_close

GOLDEN = Path(__file__).resolve().parent / "golden" / "mae_test_tiny.npz"


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def golden_model(golden, dtype="fp32"):
    m = Model(get_config("pacofr_test_tiny"), dtype=dtype)
    m.load_state_dict({k[6:]: v for k, v in golden.items() if k.startswith("param/")})
    return m


def rel(a, b):
    return abs(a - b) / abs(b)


def test_golden_loss_and_every_gradient(backend, golden):
    m = golden_model(golden)
    loss = m.forward(golden["images"], golden["ids_keep"])
    assert rel(loss, float(golden["loss"])) < 1e-4
    m.backward()
    grads = m.grads()
    want = {k[5:]: v for k, v in golden.items() if k.startswith("grad/")}
    assert set(grads) == set(want)  # fixed sin-cos embeddings get no gradient
    for name, g in grads.items():
        scale = np.abs(want[name]).max()
        assert np.abs(g - want[name]).max() <= 1e-3 * scale + 1e-7, name


def test_golden_adamw_trajectory(backend, golden):
    m = golden_model(golden)
    opt = AdamW(m, lr=float(golden["lr"]), weight_decay=float(golden["weight_decay"]),
                betas=tuple(golden["betas"]))
    losses = []
    for _ in range(len(golden["trajectory"])):
        m.zero_grad()
        losses.append(m.forward(golden["images"], golden["ids_keep"]))
        m.backward()
        opt.step()
    np.testing.assert_allclose(losses, golden["trajectory"], rtol=1e-4)


def test_gradient_accumulation_rule(golden):
    """backward() adds: two backward passes of one forward give twice the gradient."""
    m = golden_model(golden)
    m.forward(golden["images"], golden["ids_keep"])
    m.backward()
    once = m.grads()
    m.backward()
    for name, g in m.grads().items():  # equal up to fp32 rounding of the running sums
        assert_close(g, 2 * once[name], 1e-5, 0, name)
    m.zero_grad()
    assert not m.flat_grads.any()


def test_every_parameter_gets_a_finite_nonzero_gradient(golden):
    m = golden_model(golden)
    m.forward(golden["images"], golden["ids_keep"])
    m.backward()
    for name, g in m.grads().items():
        assert np.isfinite(g).all() and np.abs(g).max() > 0, name


@pytest.mark.parametrize("overrides", [{}, {"learned_pos": True}, {"norm_pix_loss": False},
                                       {"img_size": 48, "patch_size": 16, "depth": 3, "decoder_depth": 2}])
def test_live_against_pytorch(torch, backend, overrides):
    from pacofr.testing.torch_ref import MAE, grads_numpy
    cfg = get_config("pacofr_test_tiny", **overrides)
    m = create_model(cfg, seed=3)
    tm = MAE(cfg)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(5)
    images = rng.standard_normal((3, 3, cfg.img_size, cfg.img_size)).astype(np.float32)
    n = max(1, cfg.num_patches // 4)
    ids = np.stack([rng.permutation(cfg.num_patches)[:n] for _ in range(3)]).astype(np.int64)
    tloss = tm(torch.from_numpy(images), torch.from_numpy(ids))
    tloss.backward()
    loss = m.forward(images, ids)
    m.backward()
    assert rel(loss, tloss.item()) < 1e-4
    want = grads_numpy(tm)
    grads = m.grads()
    assert set(grads) == set(want)
    for name in grads:
        assert_close(grads[name], want[name], 1e-3, 1e-7, name)
    tm.eval()
    with torch.no_grad():
        assert_close(m.encode(images), tm.forward_encoder(torch.from_numpy(images)).numpy(), 1e-4)


def test_encode_matches_forward_tokens(golden):
    """encode() is the encoder on every patch: keeping all patches in forward() gives the
    same encoder output (checked through the decoder-free path on an encoder-only copy)."""
    m = golden_model(golden)
    enc = create_model("pacofr_test_tiny", encoder_only=True)
    enc.load_state_dict(m.state_dict(), strict=False)
    images = golden["images"]
    np.testing.assert_allclose(enc.encode(images), m.encode(images), rtol=1e-6, atol=1e-6)
    assert enc.encode(images).shape == (4, 17, 64)
    with pytest.raises(RuntimeError, match="encoder only"):
        enc.forward(images, golden["ids_keep"])


def test_bf16_loss_close_to_fp32(golden):
    m32, m16 = golden_model(golden), golden_model(golden, dtype="bf16")
    l32 = m32.forward(golden["images"], golden["ids_keep"])
    l16 = m16.forward(golden["images"], golden["ids_keep"])
    assert rel(l16, l32) < 1e-2
    assert l16 != l32  # bf16 really ran


def test_bf16_gradients_close_to_fp32(golden):
    """bf16 matrix products (weights once per forward, LayerNorm / GELU / attention outputs
    handed on as bf16) give every gradient within bf16's precision of fp32's."""
    grads = {}
    for dtype in ("fp32", "bf16"):
        m = golden_model(golden, dtype=dtype)
        m.zero_grad()
        m.forward(golden["images"], golden["ids_keep"])
        m.backward()
        grads[dtype] = {t.name: m.grad(t.name).copy() for t in m.tensors}
    for name, g32 in grads["fp32"].items():
        g16 = grads["bf16"][name]
        err = np.linalg.norm(g16 - g32) / max(np.linalg.norm(g32), 1e-12)
        assert err < 3e-2, f"{name}: relative error {err:.3g}"
    assert any(not np.array_equal(grads["bf16"][n], g) for n, g in grads["fp32"].items())  # bf16 really ran


def test_changing_dtype_drops_the_forward(golden):
    m = golden_model(golden)
    m.forward(golden["images"], golden["ids_keep"])
    m.dtype = "bf16"  # the cached activations are fp32: backward must not read them as bf16
    with pytest.raises(ValueError, match="needs a forward"):
        m.backward()


def test_bf16_training_lowers_loss_like_fp32():
    """200 steps on one fixed batch (memorisation): bf16 follows the fp32 curve."""
    rng = np.random.default_rng(0)
    images = rng.random((8, 3, 32, 32)).astype(np.float32)
    ids = np.stack([rng.permutation(16)[:4] for _ in range(8)]).astype(np.int64)
    curves = {}
    for dtype in ("fp32", "bf16"):
        m = create_model("pacofr_test_tiny", seed=0, dtype=dtype)
        opt = AdamW(m, lr=2e-3, weight_decay=0.05)
        losses = []
        for step in range(200):
            m.zero_grad()
            losses.append(m.forward(images, ids))
            m.backward()
            opt.lr = cosine_lr(step, 2e-3, 200, warmup_steps=10)
            opt.step()
        curves[dtype] = np.array(losses)
    for dtype, c in curves.items():
        assert c[-20:].mean() < 0.85 * c[:20].mean(), dtype
    assert rel(curves["bf16"][-20:].mean(), curves["fp32"][-20:].mean()) < 0.05


def test_adamw_matches_numpy_twin(golden):
    m = golden_model(golden)
    m.forward(golden["images"], golden["ids_keep"])
    m.backward()
    p0, g = m.flat_params.astype(np.float64), m.flat_grads.astype(np.float64)
    opt = AdamW(m, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
    opt.step()
    for t in m.tensors:
        sl = slice(t.offset, t.offset + t.numel)
        if not t.trainable:
            np.testing.assert_array_equal(m.flat_params[sl], p0[sl].astype(np.float32))
            continue
        want, _, _ = ref.adamw_step(p0[sl], g[sl], 0.0, 0.0, 1, 1e-2, 0.9, 0.95, 1e-8, 0.1, t.decay)
        assert_close(m.flat_params[sl], want, 1e-5, 1e-7, t.name)


def test_clip_grad_norm(golden):
    m = golden_model(golden)
    m.forward(golden["images"], golden["ids_keep"])
    m.backward()
    norm = m.grad_norm()
    want = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in m.grads().values()))
    assert rel(norm, want) < 1e-6
    a, b = golden_model(golden), golden_model(golden)
    for model in (a, b):
        model.forward(golden["images"], golden["ids_keep"])
        model.backward()
    b.flat_grads[...] *= 0.01 / norm  # what clipping to 0.01 does
    AdamW(a, lr=0.1, weight_decay=0.0, betas=(0.0, 0.0), clip_grad_norm=0.01).step()
    AdamW(b, lr=0.1, weight_decay=0.0, betas=(0.0, 0.0)).step()
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-5, atol=1e-6)


def test_cosine_lr():
    assert cosine_lr(0, 1.0, 100, 10) == 0.0
    assert cosine_lr(5, 1.0, 100, 10) == 0.5
    assert cosine_lr(10, 1.0, 100, 10) == 1.0
    assert abs(cosine_lr(55, 1.0, 100, 10) - 0.5) < 1e-12
    assert cosine_lr(100, 1.0, 100, 10, min_lr=0.1) == pytest.approx(0.1)


def test_bad_inputs(golden):
    m = golden_model(golden)
    im, ids = golden["images"], golden["ids_keep"]
    with pytest.raises(ValueError, match=r"images must have shape \(\?, 3, 32, 32\), got \(4, 3, 32, 31\)"):
        m.forward(im[..., :31].copy(), ids)
    with pytest.raises(TypeError, match="images must have dtype float32, got float64"):
        m.forward(im.astype(np.float64), ids)
    with pytest.raises(TypeError, match="ids_keep must have dtype int64, got int32"):
        m.forward(im, ids.astype(np.int32))
    with pytest.raises(ValueError, match=r"ids_keep must have shape \(4, \?\)"):
        m.forward(im, ids[:2].copy())
    bad = ids.copy()
    bad[1, 2] = 16
    with pytest.raises(ValueError, match=r"ids_keep\[1, 2\] = 16 is outside \[0, 16\)"):
        m.forward(im, bad)
    bad = ids.copy()
    bad[0, 1] = bad[0, 0]
    with pytest.raises(ValueError, match=r"ids_keep\[0\] keeps patch .* twice"):
        m.forward(im, bad)
    nan = im.copy()
    nan[2, 1, 3, 4] = np.nan
    with pytest.raises(ValueError, match="images contains NaN or Inf"):
        m.forward(nan, ids)
    with pytest.raises(ValueError, match="backward\\(\\) needs a forward\\(\\) first"):
        golden_model(golden).backward()
    with pytest.raises(ValueError, match="must be a multiple of patch_size"):
        create_model("pacofr_test_tiny", img_size=30)
    with pytest.raises(ValueError, match="unknown model 'vit_huge'"):
        create_model("vit_huge")
    with pytest.raises(ValueError, match=r"pos_embed: expected shape \(1, 17, 64\)"):
        m.load_state_dict({**m.state_dict(), "pos_embed": np.zeros((1, 16, 64), np.float32)})
    with pytest.raises(ValueError, match="missing \\['norm.bias'\\]"):
        sd = m.state_dict()
        del sd["norm.bias"]
        m.load_state_dict(sd)


def test_model_refuses_concurrent_use(golden):
    import threading
    m = golden_model(golden)
    big = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    ids = np.tile(np.arange(8, dtype=np.int64), (64, 1))
    errors = []

    def run():
        try:
            for _ in range(20):
                m.forward(big, ids)
        except RuntimeError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and all("in use by another thread" in e for e in errors)


def test_vit_create_reads_the_config_by_field_name():
    """The binding fills the C config from the dict's named fields: a missing, unknown or wrongly
    typed field is a TypeError naming it, and the fields' order in the dict does not matter."""
    from pacofr import _C
    cfg = get_config("pacofr_test_tiny")
    good = cfg.c_kwargs()
    reordered = dict(reversed(list(good.items())))
    assert [t[0] for t in _C.vit_tensors(_C.vit_create(reordered))] == [t.name for t in Model(cfg).tensors]
    cases = [({k: v for k, v in good.items() if k != "embed_dim"}, "missing the field 'embed_dim'"),
             ({**good, "depth": 2.0}, r"config\['depth'\] must be an int, got float"),
             ({**good, "num_heads": True}, r"config\['num_heads'\] must be an int, got bool"),
             ({**good, "learned_pos": 1}, r"config\['learned_pos'\] must be a bool, got int"),
             ({**good, "mlp_ratio": 4.0}, "unknown field 'mlp_ratio'")]
    for bad, message in cases:
        with pytest.raises(TypeError, match=message):
            _C.vit_create(bad)
    with pytest.raises(OverflowError, match="codebook_size"):
        _C.vit_create({**good, "codebook_size": 1 << 70})
    with pytest.raises(TypeError, match="config must be a dict"):
        _C.vit_create(list(good.values()))
    with pytest.raises(ValueError, match="embed_dim"):  # right types, sizes the C core refuses
        _C.vit_create({**good, "embed_dim": 63})
