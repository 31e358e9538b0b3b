"""The downstream heads' C ops (csrc/heads) against their NumPy twins (pacofr/ref/heads.py) and
PyTorch autograd: soft-argmax landmarks, L1 on coordinates, pixel cross-entropy and softmax, the
encoder's backward from a gradient on its output, and AdamW with per-tensor learning rates."""
import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr.ref import heads as ref
from conftest import assert_close


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_maps(torch, logits, p):
    """The torch twin of ref.unpatchify_maps (a separate derivation: fold)."""
    B, N, D = logits.shape
    G = int(round(N ** 0.5))
    X = D // (p * p)
    z = logits.reshape(B, N, p * p, X).permute(0, 3, 2, 1).reshape(B, X * p * p, N)
    return torch.nn.functional.fold(z, (G * p, G * p), p, stride=p)        # (B, X, S, S)


def test_unpatchify_maps_places_each_pixel():
    B, G, p, X = 2, 3, 2, 4
    logits = np.arange(B * G * G * p * p * X, dtype=np.float32).reshape(B, G * G, p * p * X)
    maps = ref.unpatchify_maps(logits, p)
    for b, i, py, px, x in [(0, 0, 0, 0, 0), (1, 4, 1, 0, 3), (0, 8, 1, 1, 2), (1, 5, 0, 1, 1)]:
        gy, gx = divmod(i, G)
        assert maps[b, x, gy * p + py, gx * p + px] == logits[b, i, (py * p + px) * X + x]


def test_softargmax_forward_matches_twin_and_finds_a_peak(rng):
    B, G, p, L = 3, 4, 4, 5
    z = rand(rng, B, G * G, p * p * L)
    xy, lse = _C.softargmax_forward(z, p)
    assert_close(xy, ref.softargmax(z, p), 1e-5, 1e-4, what="coords")
    maps = ref.unpatchify_maps(z.astype(np.float64), p).reshape(B, L, -1)
    assert_close(lse, np.log(np.exp(maps).sum(-1)), 1e-5, what="lse")
    # a sharp peak at (x=13, y=6) lands there
    z2 = np.full((1, G * G, p * p * 1), -30, np.float32)
    gy, gx, py, px = 6 // p, 13 // p, 6 % p, 13 % p
    z2[0, gy * G + gx, py * p + px] = 30
    got, _ = _C.softargmax_forward(z2, p)
    assert_close(got[0, 0], np.array([13, 6], np.float32), 1e-5, 1e-4)


def test_softargmax_backward_against_torch(rng, torch):
    B, G, p, L = 2, 3, 4, 3
    z = rand(rng, B, G * G, p * p * L) * 2
    dxy = rand(rng, B, L, 2)
    xy, lse = _C.softargmax_forward(z, p)
    dz = rand(rng, *z.shape)                      # pre-filled: the backward accumulates
    want = dz.copy()
    _C.softargmax_backward(dxy, z, lse, xy, p, dz)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    maps = torch_maps(torch, zt, p)
    S = G * p
    prob = torch.softmax(maps.reshape(B, L, S * S), -1)
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    coords = torch.stack([prob @ xs.reshape(-1), prob @ ys.reshape(-1)], -1)
    assert_close(xy, coords.detach().numpy(), 1e-5, 1e-4, what="coords vs torch")
    (coords * torch.tensor(dxy, dtype=torch.float64)).sum().backward()
    assert_close(dz - want, zt.grad.numpy(), 1e-4, 1e-6, what="dlogits")


def test_softargmax_on_peaked_heatmaps_against_torch(rng, torch):
    """A trained head's heatmaps span hundreds of logits: most pixels sit far below the peak.
    Coordinates and gradients still match autograd, and the gradient holds no denormal floats
    (pixels more than 60 below the peak get probability 0). L = 21: the vector loops and their
    remainder."""
    B, G, p, L = 2, 3, 4, 21
    z = rand(rng, B, G * G, p * p * L) * 40
    dxy = rand(rng, B, L, 2) * 1e-6
    xy, lse = _C.softargmax_forward(z, p)
    dz = np.zeros_like(z)
    _C.softargmax_backward(dxy, z, lse, xy, p, dz)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    S = G * p
    prob = torch.softmax(torch_maps(torch, zt, p).reshape(B, L, S * S), -1)
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    coords = torch.stack([prob @ xs.reshape(-1), prob @ ys.reshape(-1)], -1)
    assert_close(xy, coords.detach().numpy(), 1e-5, 1e-4, what="coords vs torch")
    (coords * torch.tensor(dxy, dtype=torch.float64)).sum().backward()
    assert_close(dz, zt.grad.numpy(), 1e-4, 1e-12, what="dlogits")
    tiny = (dz != 0) & (np.abs(dz) < np.finfo(np.float32).tiny)
    assert not tiny.any(), f"{tiny.sum()} denormal gradients"
    assert (dz == 0).mean() > 0.5                # the cut is in force: most pixels are far below the peak


def test_l1_points_forward_backward(rng, torch):
    B, L = 4, 7
    pred, tgt = rand(rng, B, L, 2) * 10, rand(rng, B, L, 2) * 10
    w = (rng.random((B, L)) > 0.3).astype(np.float32)
    for weight in (None, w):
        loss = _C.l1_points_forward(pred, tgt, weight, 8.0)
        assert loss == pytest.approx(ref.l1_points(pred, tgt, weight, 8.0), rel=1e-6)
        d = np.ones_like(pred)
        _C.l1_points_backward(pred, tgt, weight, 8.0, 2.0, d)
        pt = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
        wt = torch.ones(B, L, dtype=torch.float64) if weight is None else torch.tensor(weight, dtype=torch.float64)
        lt = ((pt - torch.tensor(tgt, dtype=torch.float64)).abs().mean(-1) * wt).sum() / wt.sum() / 8.0
        (2.0 * lt).backward()
        assert_close(d - 1, pt.grad.numpy(), 1e-5, 1e-7, what="dpred")
    assert _C.l1_points_forward(pred, tgt, np.zeros((B, L), np.float32), 1.0) == 0.0


@pytest.mark.parametrize("K, spread", [(5, 2.0), (19, 40.0)])   # 19: vector loops and remainder; 40: peaked
def test_pixel_cross_entropy_against_twin_and_torch(rng, torch, K, spread):
    B, G, p = 2, 3, 4
    S = G * p
    z = rand(rng, B, G * G, p * p * K) * spread
    y = rng.integers(0, K, (B, S, S))
    y[0, :3, :5] = -1                              # ignored pixels
    loss, count = _C.pixel_ce_forward(z, y, p, -1)
    want, wcount = ref.pixel_cross_entropy(z, y, p, -1)
    assert count == wcount == B * S * S - 15
    assert loss == pytest.approx(want, rel=1e-6)
    dz = rand(rng, *z.shape)
    before = dz.copy()
    _C.pixel_ce_backward(z, y, p, -1, 1.5, dz)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(torch_maps(torch, zt, p), torch.tensor(y), ignore_index=-1)
    assert lt.item() == pytest.approx(loss, rel=1e-6)
    (1.5 * lt).backward()
    assert_close(dz - before, zt.grad.numpy(), 1e-4, 1e-7, what="dlogits")
    probs = _C.pixel_softmax(z, p)
    assert_close(probs, ref.pixel_softmax(z, p), 1e-5, 1e-7, what="probs")
    assert_close(probs.sum(1), np.ones((B, S, S)), 1e-5)


def test_head_ops_reject_bad_input(rng):
    z = rand(rng, 2, 9, 4 * 4 * 3)
    with pytest.raises(ValueError, match="G\\*G"):
        _C.softargmax_forward(rand(rng, 2, 8, 48), 4)           # 8 is not a square
    with pytest.raises(ValueError, match="p\\*p"):
        _C.softargmax_forward(rand(rng, 2, 9, 50), 4)
    bad = z.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _C.softargmax_forward(bad, 4)
    y = np.zeros((2, 12, 12), np.int64)
    y[1, 2, 3] = 7
    with pytest.raises(ValueError, match="outside"):
        _C.pixel_ce_forward(z, y, 4, -1)
    with pytest.raises(ValueError, match="shape"):
        _C.pixel_ce_forward(z, np.zeros((2, 11, 12), np.int64), 4, -1)
    with pytest.raises(TypeError, match="int64"):
        _C.pixel_ce_forward(z, np.zeros((2, 12, 12), np.uint8), 4, -1)
    with pytest.raises(ValueError, match="positive"):
        _C.pixel_softmax(z, 0)


def test_encoder_backward_matches_torch(rng, torch):
    from pacofr.testing.torch_ref import MAE, from_numpy_state, grads_numpy
    m = pacofr.create_model("pacofr_test_tiny", seed=3, encoder_only=True)
    cfg = m.config
    B = 3
    x = rand(rng, B, 3, cfg.img_size, cfg.img_size)
    out = m.encode(x)
    dout = rand(rng, *out.shape)
    m.zero_grad()
    m.encoder_backward(dout)
    ref_model = MAE(pacofr.get_config("pacofr_test_tiny")).double()
    full = pacofr.create_model("pacofr_test_tiny", seed=4)
    full.load_state_dict(m.state_dict(), strict=False)
    from_numpy_state(ref_model, full.state_dict())
    xt = torch.tensor(x, dtype=torch.float64)
    lat = ref_model.forward_encoder(xt)
    assert_close(out, lat.detach().numpy(), 1e-4, 1e-5, what="encode")
    (lat * torch.tensor(dout, dtype=torch.float64)).sum().backward()
    want = grads_numpy(ref_model)
    got = m.grads()
    for name, g in got.items():
        assert_close(g, want[name], 2e-4, 1e-6, what=name)
        assert np.abs(g).sum() > 0, name


def test_encoder_backward_needs_an_encode(rng):
    m = pacofr.create_model("pacofr_test_tiny", encoder_only=True)
    with pytest.raises(ValueError, match="encode"):
        m.encoder_backward(np.zeros((1, 17, 64), np.float32))
    out = m.encode(rand(rng, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="2 of 17"):
        m.encoder_backward(np.zeros((3, 17, 64), np.float32))
    m.encoder_backward(np.zeros_like(out))          # the right shape is accepted


def test_adamw_lr_scale_per_tensor_and_flat_update(rng):
    m = pacofr.create_model("pacofr_test_tiny", encoder_only=True)
    for i, t in enumerate(m.tensors):
        m.flat_grads[t.offset:t.offset + t.numel] = 1.0
    before = m.flat_params.copy()
    opt = pacofr.AdamW(m, lr=1e-2, weight_decay=0.0)
    scales = np.array([0.0 if t.name.startswith("blocks.0.") else 0.5 for t in m.tensors], np.float32)
    opt.step(lr_scale=scales)
    for t, s in zip(m.tensors, scales):
        delta = m.flat_params[t.offset:t.offset + t.numel] - before[t.offset:t.offset + t.numel]
        if not t.trainable:
            assert np.all(delta == 0)
        else:   # Adam's first step moves every element by lr * scale
            assert_close(delta, np.full_like(delta, -1e-2 * s), 1e-3, 1e-7, what=t.name)
    p, g = rand(rng, 10), rand(rng, 10)
    mm, vv = np.zeros(10, np.float32), np.zeros(10, np.float32)
    want = p * (1 - 0.1 * 0.5) - 0.1 * np.sign(g)
    _C.adamw_update(p, g, mm, vv, 0.1, 0.9, 0.999, 1e-12, 0.5, 0.1, 0.001, 1.0, True)
    assert_close(p, want, 1e-4, 1e-6)


def test_upsample_patches_against_twin_and_torch(rng, torch):
    B, G, q, u, K = 2, 3, 2, 4, 5
    x = rand(rng, B, G * G, q * q * K)
    y = _C.upsample_patches(x, q, u)
    assert y.shape == (B, G * G, (q * u) ** 2 * K)
    assert_close(y, ref.upsample_patches(x, q, u), 1e-5, 1e-6, what="twin")
    np.testing.assert_array_equal(ref.patchify_maps(ref.unpatchify_maps(x, q), q), x)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    maps = torch_maps(torch, xt, q)
    up = torch.nn.functional.interpolate(maps, scale_factor=u, mode="bilinear", align_corners=False)
    assert_close(ref.unpatchify_maps(y, q * u), up.detach().numpy(), 1e-5, 1e-6, what="torch")
    g = rand(rng, *y.shape)
    (up * torch.tensor(ref.unpatchify_maps(g, q * u))).sum().backward()
    dx = rand(rng, *x.shape)
    before = dx.copy()
    _C.upsample_patches_backward(g, q, u, dx)
    assert_close(dx - before, xt.grad.numpy(), 1e-4, 1e-6, what="backward")
    np.testing.assert_array_equal(_C.upsample_patches(x, q, 1), x)
    with pytest.raises(ValueError, match="positive"):
        _C.upsample_patches(x, q, 0)


def test_head_op_backward_and_update_paths_reject_bad_input(rng):
    z = rand(rng, 2, 9, 4 * 4 * 3)
    xy, lse = _C.softargmax_forward(z, 4)
    with pytest.raises(ValueError, match="dcoords"):
        _C.softargmax_backward(rand(rng, 2, 4, 2), z, lse, xy, 4, np.zeros_like(z))
    with pytest.raises(ValueError, match="writeable"):
        ro = np.zeros_like(z)
        ro.flags.writeable = False
        _C.softargmax_backward(np.zeros_like(xy), z, lse, xy, 4, ro)
    with pytest.raises(ValueError, match="target"):
        _C.l1_points_forward(xy, xy[:, :2].copy(), None, 1.0)
    with pytest.raises(ValueError, match="weight"):
        _C.l1_points_forward(xy, xy, np.ones((2, 2), np.float32), 1.0)
    bad = xy.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="Inf"):
        _C.l1_points_backward(bad, xy, None, 1.0, 1.0, np.zeros_like(xy))
    with pytest.raises(ValueError, match="NaN"):
        nan = z.copy()
        nan[1, 2, 3] = np.nan
        _C.pixel_softmax(nan, 4)
    with pytest.raises(ValueError, match="dout"):
        _C.upsample_patches_backward(rand(rng, 2, 9, 10), 2, 2, np.zeros((2, 9, 12), np.float32))
    with pytest.raises(ValueError, match="writeable"):
        ro = np.zeros((2, 9, 12), np.float32)
        ro.flags.writeable = False
        _C.upsample_patches_backward(rand(rng, 2, 9, 48), 2, 2, ro)
    p = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="grads"):
        _C.adamw_update(p, np.zeros(4, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32),
                        0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001, 1.0, False)
    with pytest.raises(ValueError, match="NaN|Inf"):
        _C.adamw_update(p, np.full(5, np.nan, np.float32), np.zeros(5, np.float32), np.zeros(5, np.float32),
                        0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001, 1.0, False)
    m = pacofr.create_model("pacofr_test_tiny", encoder_only=True)
    with pytest.raises(ValueError, match="lr_scale"):
        pacofr.AdamW(m, lr=1e-3).step(lr_scale=np.ones(3, np.float32))
