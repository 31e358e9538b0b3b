"""PaCo-FR's C ops (csrc/paco) against their NumPy twins (pacofr/ref/paco.py) and PyTorch
autograd: patch statistics and substitution, nearest codes, the top-k mixture forward and
backward, EMA k-means, initialisation, re-seeding, the affinity loss, region pooling, EMA."""
import numpy as np
import pytest

from pacofr import _C
from pacofr.ref import paco as ref
from conftest import assert_close


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_patch_stats_match_mae_norm_pix(rng):
    x = rand(rng, 50, 48) * 3 + 1
    xn, mu, sd = _C.patch_stats(x)
    rn, rmu, rsd = ref.patch_stats(x)
    assert_close(xn, rn, 1e-5, what="normalised")
    assert_close(mu, rmu, 1e-6, what="mu")
    assert_close(sd, rsd, 1e-6, what="sigma")
    np.testing.assert_allclose(xn, _C.norm_pix_target(x), rtol=0, atol=0)


def test_substitute_and_its_backward(rng):
    B, S, p = 3, 24, 4
    N, d = (S // p) ** 2, 3 * p * p
    im = rand(rng, B, 3, S, S)
    subst = np.stack([np.sort(rng.choice(N, 5, replace=False)) for _ in range(B)])
    t, mu, sd = rand(rng, B, 5, d), rand(rng, B, 5), np.abs(rand(rng, B, 5)) + 0.1
    out = im.copy()
    _C.substitute(out, t, mu, sd, subst, p)
    assert_close(out, ref.substitute(im, t, mu, sd, subst, p), 1e-6, what="substituted")
    # the patches come back out of patchify as mu + sigma * t, the rest unchanged
    P = _C.patchify(out, p)
    got = np.take_along_axis(P, subst[..., None], 1)
    assert_close(got, mu[..., None] + sd[..., None] * t, 1e-6)
    untouched = np.ones((B, N), bool)
    np.put_along_axis(untouched, subst, False, 1)
    np.testing.assert_array_equal(P[untouched], _C.patchify(im, p)[untouched])
    # backward: the gradient of sum(g * im2col(images)) w.r.t. t
    n = 9
    dcols = rand(rng, B, n, d)
    pos = np.stack([np.sort(rng.choice(n, 5, replace=False)) for _ in range(B)])
    dt = np.ones((B, 5, d), np.float32)  # accumulates
    _C.substitute_backward(dt, dcols, sd, pos, p)
    assert_close(dt - 1, ref.substitute_backward(dcols, sd, pos, p), 1e-6, what="dt")


def test_substitute_backward_against_torch(rng, torch):
    """d/dt of sum(g * cols) where cols = im2col(substituted images) at the kept positions."""
    B, S, p = 2, 16, 4
    N, d = (S // p) ** 2, 3 * p * p
    im = rand(rng, B, 3, S, S)
    ids_keep = np.stack([np.sort(rng.choice(N, 6, replace=False)) for _ in range(B)])
    pos = np.array([[0, 3], [1, 5]])
    subst = np.take_along_axis(ids_keep, pos, 1)
    t, mu, sd = rand(rng, B, 2, d), rand(rng, B, 2), np.abs(rand(rng, B, 2)) + 0.5
    g = rand(rng, B, 6, d)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(im, dtype=torch.float64).clone()
    G = S // p
    for b in range(B):
        for j in range(2):
            gy, gx = divmod(int(subst[b, j]), G)
            patch = (mu[b, j] + sd[b, j] * tt[b, j]).reshape(p, p, 3).permute(2, 0, 1)
            x[b, :, gy * p:(gy + 1) * p, gx * p:(gx + 1) * p] = patch
    cols = torch.nn.functional.unfold(x, p, stride=p).transpose(1, 2)      # (B, N, 3*p*p) in (c, kh, kw)
    kept = torch.stack([cols[b, torch.tensor(ids_keep[b])] for b in range(B)])
    (kept * torch.tensor(g, dtype=torch.float64)).sum().backward()
    dt = np.zeros((B, 2, d), np.float32)
    _C.substitute_backward(dt, g, sd, pos, p)
    assert_close(dt, tt.grad.numpy(), 1e-5)
    # and the engine's im2col agrees with unfold on the kept positions (the layout dcols uses)
    ref_cols = torch.nn.functional.unfold(torch.tensor(im, dtype=torch.float64), p, stride=p).transpose(1, 2)
    assert_close(_C.im2col(im, ids_keep, p), ref_cols.numpy()[np.arange(B)[:, None], ids_keep], 1e-6)


def test_nearest_codes(rng):
    x, C = rand(rng, 700, 48), rand(rng, 100, 48)
    idx, dist = _C.codebook_nearest(x, C)
    ridx, rdist = ref.nearest(x, C)
    np.testing.assert_array_equal(idx, ridx)
    assert_close(dist, rdist, 1e-5)
    # exact ties go to the lower index
    C2 = np.concatenate([C[:1], C[:1], C[1:]])
    idx2, _ = _C.codebook_nearest(C[:1].copy(), C2)
    assert idx2[0] == 0


@pytest.mark.parametrize("k,tau,hard", [(1, 1.0, False), (4, 1.0, False), (4, 0.5, True), (8, 2.0, False)])
def test_topk_mixture(rng, k, tau, hard):
    R, K, d = 40, 32, 12
    L, C = rand(rng, R, K), rand(rng, K, d)
    L[0, 5] = L[0, 9] = 10.0  # a tie at the top: the lower index first
    t, idx, w = _C.topk_mixture_forward(L, C, k, tau, hard)
    rt, ridx, rw = ref.topk_mixture(L, C, k, tau, hard)
    np.testing.assert_array_equal(idx, ridx)
    assert idx[0, 0] == 5 and (k == 1 or idx[0, 1] == 9)
    assert_close(w, rw, 1e-6)
    assert_close(t, rt, 1e-5)
    dt = rand(rng, R, d)
    dL, dC = np.ones((R, K), np.float32), np.ones((K, d), np.float32)
    _C.topk_mixture_backward(dL, dC, dt, idx, w, C, tau)
    rdL, rdC = ref.topk_mixture_backward(dt, ridx, rw, C, tau, K)
    assert_close(dL - 1, rdL, 1e-5, what="dlogits")
    assert_close(dC - 1, rdC, 1e-5, what="dcodebook")


def test_topk_mixture_against_torch(rng, torch):
    R, K, d, k, tau = 30, 20, 10, 4, 0.7
    L, C, g = rand(rng, R, K), rand(rng, K, d), rand(rng, R, d)
    Lt = torch.tensor(L, dtype=torch.float64, requires_grad=True)
    Ct = torch.tensor(C, dtype=torch.float64, requires_grad=True)
    top, ti = Lt.topk(k, dim=1)
    w = torch.softmax(top / tau, dim=1)
    t = (w[..., None] * Ct[ti]).sum(1)
    (t * torch.tensor(g, dtype=torch.float64)).sum().backward()
    tc, idx, wc = _C.topk_mixture_forward(L, C, k, tau, False)
    assert_close(tc, t.detach().numpy(), 1e-5)
    dL, dC = np.zeros_like(L), np.zeros_like(C)
    _C.topk_mixture_backward(dL, dC, g, idx, wc, C, tau)
    assert_close(dL, Lt.grad.numpy(), 1e-5, what="dlogits")
    assert_close(dC, Ct.grad.numpy(), 1e-5, what="dcodebook")


def test_codebook_ema_and_reseed(rng):
    K, d = 16, 8
    C, x = rand(rng, K, d), rand(rng, 200, d)
    cnt, sm = np.abs(rand(rng, K)), rand(rng, K, d)
    assign, _ = _C.codebook_nearest(x, C)
    rC, rcnt, rsm = ref.codebook_ema(C, cnt, sm, x, assign, 0.9, 1e-5)
    _C.codebook_ema(C, cnt, sm, x, assign, 0.9, 1e-5)
    assert_close(cnt, rcnt, 1e-6, what="ema_count")
    assert_close(sm, rsm, 1e-5, what="ema_sum")
    assert_close(C, rC, 1e-5, what="codebook")
    # repeated updates on a fixed assignment converge to the assigned means (k-means step)
    C2, cnt2, sm2 = C.copy(), np.zeros(K, np.float32), np.zeros((K, d), np.float32)
    for _ in range(300):
        _C.codebook_ema(C2, cnt2, sm2, x, assign, 0.9, 1e-5)
    for k in np.unique(assign):
        assert_close(C2[k], x[assign == k].mean(0), 2e-3)
    # dead codes (no assignments) are re-seeded from rows of x, and only they
    dead = np.setdiff1d(np.arange(K), np.unique(assign))
    cnt3 = np.bincount(assign, minlength=K).astype(np.float32)
    C3, sm3 = C.copy(), cnt3[:, None] * C
    n = _C.codebook_reseed(C3, cnt3, sm3.astype(np.float32), x, 1.0 / (16 * K), 7)
    assert n == len(dead)
    for k in dead:
        assert (np.abs(x - C3[k]).max(1) == 0).any()
    live = np.unique(assign)
    np.testing.assert_array_equal(C3[live], C[live])


def test_codebook_init(rng):
    K, d = 32, 6
    x = rand(rng, 100, d)
    C = np.zeros((K, d), np.float32)
    _C.codebook_init(C, x, False, 3)
    rows = [np.flatnonzero((x == c).all(1)) for c in C]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == K  # distinct rows
    C2 = np.zeros((K, d), np.float32)
    _C.codebook_init(C2, x, False, 3)
    np.testing.assert_array_equal(C, C2)
    # k-means++ on 4 far clusters picks one code from each cluster first
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], np.float32)
    pts = (centres[rng.integers(4, size=400)] + rng.standard_normal((400, 2))).astype(np.float32)
    C4 = np.zeros((4, 2), np.float32)
    _C.codebook_init(C4, pts, True, 11)
    assert len({tuple(np.round(c / 100).astype(int)) for c in C4}) == 4
    # fewer rows than codes: repeats, no crash
    C5 = np.zeros((10, d), np.float32)
    _C.codebook_init(C5, x[:3], False, 1)
    assert all(((x[:3] == c).all(1)).any() for c in C5)


@pytest.mark.parametrize("with_valid", [False, True])
def test_affinity_loss(rng, with_valid):
    B, T, Cc = 4, 7, 10
    ys, yt = rand(rng, B, T, Cc), rand(rng, B, T, Cc)
    valid = (rng.random((B, T)) < 0.7).astype(np.uint8) if with_valid else None
    if with_valid:
        valid[1] = 0  # an image with nothing valid is left out of the mean
    loss, diff, zs, norms = _C.affinity_loss_forward(ys, yt, valid)
    assert abs(loss - ref.affinity_loss(ys, yt, valid)) < 1e-6
    loss0, *_ = _C.affinity_loss_forward(ys, ys.copy(), valid)
    assert loss0 < 1e-12
    dys = np.zeros_like(ys)
    _C.affinity_loss_backward(dys, diff, zs, norms, valid, 2.0)
    eps = 1e-3
    for b, i, c in [(0, 0, 0), (2, 3, 5), (3, 6, 9), (0, 4, 2)]:
        p, m = ys.astype(np.float64), ys.astype(np.float64)
        p, m = p.copy(), m.copy()
        p[b, i, c] += eps
        m[b, i, c] -= eps
        num = 2.0 * (ref.affinity_loss(p, yt, valid) - ref.affinity_loss(m, yt, valid)) / (2 * eps)
        assert abs(num - dys[b, i, c]) < 1e-4 + 1e-3 * abs(num), (b, i, c, num, dys[b, i, c])
    if with_valid:
        assert not dys[valid == 0].any()


def test_affinity_loss_against_torch(rng, torch):
    B, T, Cc = 3, 6, 8
    ys, yt = rand(rng, B, T, Cc), rand(rng, B, T, Cc)
    y = torch.tensor(ys, dtype=torch.float64, requires_grad=True)
    z = torch.nn.functional.normalize(y, dim=-1)
    zt = torch.nn.functional.normalize(torch.tensor(yt, dtype=torch.float64), dim=-1)
    L = ((z @ z.transpose(1, 2) - zt @ zt.transpose(1, 2)) ** 2).mean()
    L.backward()
    loss, diff, zs, norms = _C.affinity_loss_forward(ys, yt, None)
    assert abs(loss - L.item()) < 1e-6
    dys = np.zeros_like(ys)
    _C.affinity_loss_backward(dys, diff, zs, norms, None, 1.0)
    assert_close(dys, y.grad.numpy(), 1e-4)


def test_region_pool(rng):
    B, T, Cc, G = 3, 9, 5, 4
    y = rand(rng, B, T, Cc)
    region = rng.integers(0, G - 1, (B, T))  # region G-1 stays empty
    out, count = _C.region_pool_forward(y, region, G)
    rout, rcount = ref.region_pool(y, region, G)
    np.testing.assert_array_equal(count, rcount)
    assert_close(out, rout, 1e-6)
    assert not out[:, G - 1].any()
    dout = rand(rng, B, G, Cc)
    dy = np.zeros_like(y)
    _C.region_pool_backward(dy, dout, count, region)
    want = np.take_along_axis(dout, region[..., None], 1) / np.take_along_axis(count, region, 1)[..., None]
    assert_close(dy, want, 1e-6)


def test_ema_update(rng):
    a, b = rand(rng, 1000), rand(rng, 1000)
    want = 0.9 * a.astype(np.float64) + 0.1 * b
    _C.ema_update(a, b, 0.9)
    assert_close(a, want, 1e-6)


def test_paco_bad_arguments(rng):
    C = rand(rng, 8, 4)
    with pytest.raises(ValueError, match="k must be in"):
        _C.topk_mixture_forward(rand(rng, 3, 8), C, 9, 1.0, False)
    with pytest.raises(ValueError, match="tau must be positive"):
        _C.topk_mixture_forward(rand(rng, 3, 8), C, 2, 0.0, False)
    with pytest.raises(ValueError, match="logits contains NaN"):
        _C.topk_mixture_forward(np.full((3, 8), np.nan, np.float32), C, 2, 1.0, False)
    with pytest.raises(ValueError, match=r"codebook must have shape \(8, \?\)"):
        _C.topk_mixture_forward(rand(rng, 3, 8), rand(rng, 7, 4), 2, 1.0, False)
    with pytest.raises(ValueError, match=r"idx\[1\] = 9 is outside \[0, 8\)"):
        _C.topk_mixture_backward(None, None, rand(rng, 3, 4), np.array([[0], [9], [1]]), rand(rng, 3, 1), C, 1.0)
    with pytest.raises(TypeError, match="x must have dtype float32"):
        _C.codebook_nearest(np.zeros((3, 4)), C)
    with pytest.raises(ValueError, match=r"codebook must have shape \(\?, 5\)"):
        _C.codebook_nearest(rand(rng, 3, 5), C)
    with pytest.raises(ValueError, match=r"assign\[0\] = -1"):
        _C.codebook_ema(C, np.zeros(8, np.float32), np.zeros((8, 4), np.float32), rand(rng, 2, 4),
                        np.array([-1, 0]), 0.9, 1e-5)
    with pytest.raises(ValueError, match="decay must be in"):
        _C.codebook_ema(C, np.zeros(8, np.float32), np.zeros((8, 4), np.float32), rand(rng, 2, 4),
                        np.array([1, 0]), 1.0, 1e-5)
    with pytest.raises(ValueError, match="ema_sum must be writeable"):
        ro = np.zeros((8, 4), np.float32)
        ro.setflags(write=False)
        _C.codebook_reseed(C, np.zeros(8, np.float32), ro, rand(rng, 2, 4), 0.1, 1)
    with pytest.raises(ValueError, match=r"subst\[1\] = 16 is outside"):
        _C.substitute(rand(rng, 1, 3, 16, 16), rand(rng, 1, 2, 48), rand(rng, 1, 2), rand(rng, 1, 2),
                      np.array([[0, 16]]), 4)
    with pytest.raises(ValueError, match=r"pos\[0\] = 5 is outside \[0, 5\)"):
        _C.substitute_backward(np.zeros((1, 1, 48), np.float32), rand(rng, 1, 5, 48), rand(rng, 1, 1),
                               np.array([[5]]), 4)
    with pytest.raises(ValueError, match="ys contains NaN"):
        _C.affinity_loss_forward(np.full((1, 2, 3), np.nan, np.float32), rand(rng, 1, 2, 3), None)
    with pytest.raises(ValueError, match=r"valid must have shape \(1, 2\)"):
        _C.affinity_loss_forward(rand(rng, 1, 2, 3), rand(rng, 1, 2, 3), np.ones((1, 3), np.uint8))
    with pytest.raises(ValueError, match=r"region\[2\] = 4 is outside \[0, 4\)"):
        _C.region_pool_forward(rand(rng, 1, 3, 2), np.array([[0, 1, 4]]), 4)
    with pytest.raises(ValueError, match="count is 0 for region 1"):
        _C.region_pool_backward(np.zeros((1, 2, 2), np.float32), rand(rng, 1, 3, 2), np.array([[2, 0, 0]]),
                                np.array([[0, 1]]))
    with pytest.raises(ValueError, match="dst and src must not overlap"):
        a = rand(rng, 10)
        _C.ema_update(a, a, 0.5)
    with pytest.raises(ValueError, match="momentum must be in"):
        _C.ema_update(rand(rng, 3), rand(rng, 3), 1.5)
    with pytest.raises(ValueError, match="x rows need at least 2 values"):
        _C.patch_stats(rand(rng, 3, 1))


def test_failed_forward_leaves_nothing_to_backward(rng):
    import pacofr
    m = pacofr.create_model("pacofr_test_tiny")
    x = rand(rng, 2, 3, 32, 32)
    m.forward(x, np.array([[0, 1], [2, 3]]))
    with pytest.raises(ValueError, match="keeps patch 1 twice"):
        m.forward(x, np.array([[1, 1], [2, 3]]))
    with pytest.raises(ValueError, match="needs a forward"):
        m.backward()
    with pytest.raises(ValueError, match="no forward"):
        m.latent()
