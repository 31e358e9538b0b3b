"""Model.forward's optional arguments (ids_restore, target, weights), through _C.vit_forward, and
Model.backward's (dlatent, dcols): each option gives the arithmetic of the plain call where it should, bit for
bit, and every bad argument raises a clear error."""
import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr import masking as M


@pytest.fixture(scope="module")
def setup():
    m = pacofr.create_model("pacofr_test_tiny", seed=1)
    S, p = m.config.img_size, m.config.patch_size
    G = S // p
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, S, S)).astype(np.float32)
    mask, ids_keep, ids_restore = M.make_masks("random", 3, G, 0.75, seed=2, step=5)
    return m, x, p, G, mask, ids_keep, ids_restore


def loss_and_grads(m, *args, **kwargs):
    m.zero_grad()
    loss = m.forward(*args, **kwargs)
    m.backward()
    return loss, m.flat_grads.copy()


def test_options_give_the_plain_arithmetic_bit_for_bit(setup):
    m, x, p, G, mask, ids_keep, ids_restore = setup
    loss, grads = loss_and_grads(m, x, ids_keep)
    P = _C.patchify(x, p)
    w = mask.astype(np.float32)
    for kwargs in ({"ids_restore": ids_restore}, {"target": P}, {"weights": w},
                   {"ids_restore": ids_restore, "target": P, "weights": w}):
        loss2, grads2 = loss_and_grads(m, x, ids_keep, **kwargs)
        assert loss2 == loss, kwargs
        np.testing.assert_array_equal(grads2, grads)
    loss3, grads3 = loss_and_grads(m, x, ids_keep, ids_restore, P, w)   # positional
    assert loss3 == loss
    np.testing.assert_array_equal(grads3, grads)
    np.testing.assert_array_equal(P, _C.patchify(x, p))                  # target left as it was


def test_target_is_what_the_decoder_reconstructs(setup):
    m, x, p, G, mask, ids_keep, ids_restore = setup
    clean = np.roll(x, 3, axis=-1)                 # the encoder sees x, the loss targets clean
    P = _C.patchify(clean, p)
    w = mask.astype(np.float32)
    w[:, 0] = 0.5                                  # a weight on a kept patch too
    loss = m.forward(x, ids_keep, target=P, weights=w)
    pred = m.prediction().astype(np.float64)
    t = P.astype(np.float64)
    t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)   # norm_pix
    want = (w * ((pred - t) ** 2).mean(-1)).sum() / w.sum()
    assert abs(loss - want) < 1e-5 * max(1.0, abs(want))


def test_backward_options_by_keyword(setup):
    m, x, p, G, mask, ids_keep, ids_restore = setup
    n = ids_keep.shape[1]
    m.forward(x, ids_keep)
    latent = m.latent()
    m.zero_grad()
    dcols = np.zeros((3, n, 3 * p * p), np.float32)
    m.backward(dcols=dcols)
    g1 = m.flat_grads.copy()
    assert np.abs(dcols).sum() > 0
    m.zero_grad()
    m.backward(dlatent=np.zeros_like(latent), dcols=None)
    np.testing.assert_array_equal(m.flat_grads, g1)


def test_bad_options_raise(setup):
    m, x, p, G, mask, ids_keep, ids_restore = setup
    N, d = G * G, 3 * p * p
    bad = ids_restore.copy()
    bad[1, [ids_keep[1, 0], ids_keep[1, 1]]] = bad[1, [ids_keep[1, 1], ids_keep[1, 0]]]
    with pytest.raises(ValueError, match=r"ids_restore does not match ids_keep: ids_restore\[1, "):
        m.forward(x, ids_keep, bad)
    removed = np.flatnonzero(mask[0])[0]
    bad = ids_restore.copy()
    bad[0, [ids_keep[0, 0], removed]] = bad[0, [removed, ids_keep[0, 0]]]   # swaps a kept and a removed patch
    with pytest.raises(ValueError, match="ids_restore does not match ids_keep"):
        m.forward(x, ids_keep, bad)
    bad = ids_restore.copy()
    bad[2, 5] = N
    with pytest.raises(ValueError, match=rf"ids_restore\[2, 5\] = {N} is outside \[0, {N}\)"):
        m.forward(x, ids_keep, bad)
    bad = ids_restore.copy()
    bad[0, np.flatnonzero(mask[0])[:2]] = N - 1
    with pytest.raises(ValueError, match="not a permutation"):
        m.forward(x, ids_keep, bad)
    with pytest.raises(TypeError, match="ids_restore must have dtype int64, got int32"):
        m.forward(x, ids_keep, ids_restore.astype(np.int32))
    with pytest.raises(ValueError, match=rf"ids_restore must have shape \(3, {N}\), got \(3, {N - 1}\)"):
        m.forward(x, ids_keep, np.ascontiguousarray(ids_restore[:, 1:]))
    P = _C.patchify(x, p)
    with pytest.raises(ValueError, match="target must be 3-D, got 4-D"):
        m.forward(x, ids_keep, target=x)          # images, not patches
    with pytest.raises(ValueError, match=rf"target must have shape \(3, {N}, {d}\), got \(3, {N}, {d - 1}\)"):
        m.forward(x, ids_keep, target=np.ascontiguousarray(P[:, :, 1:]))
    with pytest.raises(TypeError, match="target must have dtype float32, got float64"):
        m.forward(x, ids_keep, target=P.astype(np.float64))
    with pytest.raises(ValueError, match="target must be C-contiguous"):
        m.forward(x, ids_keep, target=np.concatenate([P, P], 2)[:, :, ::2])
    nan = P.copy()
    nan[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="target contains NaN or Inf"):
        m.forward(x, ids_keep, target=nan)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        m.forward(x, ids_keep, weights=-np.ones((3, N), np.float32))
    with pytest.raises(TypeError):
        m.forward(x, ids_keep, targets=P)   # no such keyword
    with pytest.raises(TypeError):
        m.backward(None, None, None)
    with pytest.raises(ValueError, match="needs a forward"):  # the failed forwards left nothing
        m.backward()
    assert not hasattr(_C, "vit_forward_ex") and not hasattr(_C, "vit_backward_ex")
