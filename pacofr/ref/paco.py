"""NumPy twins of csrc/paco (float64 inside): the references the C ops are tested against.

Patch vectors are in (p, q, c) order, d = p*p*3; im2col columns in (c, kh, kw) order."""
import numpy as np


def patch_stats(x):
    """x (R, d) -> (normalised, mu, sigma) with the unbiased variance + 1e-6 (MAE)."""
    x = np.asarray(x, np.float64)
    mu = x.mean(1)
    sigma = np.sqrt(x.var(1, ddof=1) + 1e-6)
    return (x - mu[:, None]) / sigma[:, None], mu, sigma


def substitute(images, t, mu, sigma, subst, p):
    """A copy of images (B, 3, S, S) with patch subst[b, j] = mu + sigma * t (p, q, c order)."""
    out = np.array(images, np.float64)
    B, s, _ = t.shape
    G = out.shape[-1] // p
    for b in range(B):
        for j in range(s):
            gy, gx = divmod(int(subst[b, j]), G)
            patch = (mu[b, j] + sigma[b, j] * np.asarray(t[b, j], np.float64)).reshape(p, p, 3)
            out[b, :, gy * p:(gy + 1) * p, gx * p:(gx + 1) * p] = patch.transpose(2, 0, 1)
    return out


def substitute_backward(dcols, sigma, pos, p):
    """dt (B, s, d) = sigma * dcols[b, pos] reordered from (c, kh, kw) to (p, q, c)."""
    B, s = pos.shape
    g = np.take_along_axis(np.asarray(dcols, np.float64), pos[..., None], 1)      # (B, s, d) c,kh,kw
    g = g.reshape(B, s, 3, p, p).transpose(0, 1, 3, 4, 2).reshape(B, s, -1)
    return g * np.asarray(sigma, np.float64)[..., None]


def nearest(x, C):
    """(idx, squared distance) of the nearest code of each row; ties to the lower index."""
    d = ((np.asarray(x, np.float64)[:, None, :] - np.asarray(C, np.float64)[None]) ** 2).sum(-1)
    idx = d.argmin(1)
    return idx, d[np.arange(len(d)), idx]


def topk_mixture(logits, C, k, tau, hard=False):
    """-> t (R, d), idx (R, k) (descending, ties to the lower index), w (R, k)."""
    L = np.asarray(logits, np.float64)
    idx = np.argsort(-L, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(L, idx, 1)
    e = np.exp((top - top[:, :1]) / tau)
    w = e / e.sum(1, keepdims=True)
    Cd = np.asarray(C, np.float64)
    t = Cd[idx[:, 0]] if hard else (w[..., None] * Cd[idx]).sum(1)
    return t, idx, w


def topk_mixture_backward(dt, idx, w, C, tau, K):
    """(dlogits (R, K), dC (K, d)) through the soft mixture t = sum_j w_j C[idx_j]."""
    dt = np.asarray(dt, np.float64)
    Cd = np.asarray(C, np.float64)
    dw = np.einsum("rd,rkd->rk", dt, Cd[idx])
    g = w * (dw - (w * dw).sum(1, keepdims=True)) / tau
    dlogits = np.zeros((len(dt), K))
    np.put_along_axis(dlogits, idx, g, 1)
    dC = np.zeros_like(Cd)
    np.add.at(dC, idx.ravel(), (w[..., None] * dt[:, None, :]).reshape(-1, dt.shape[1]))
    return dlogits, dC


def codebook_ema(C, ema_count, ema_sum, x, assign, decay, eps):
    """-> (C, ema_count, ema_sum) after one EMA k-means update (VQ-VAE, Laplace smoothing)."""
    K = len(ema_count)
    x = np.asarray(x, np.float64)
    counts = np.bincount(assign, minlength=K)
    sums = np.zeros((K, x.shape[1]))
    np.add.at(sums, assign, x)
    cnt = decay * np.asarray(ema_count, np.float64) + (1 - decay) * counts
    sm = decay * np.asarray(ema_sum, np.float64) + (1 - decay) * sums
    n = cnt.sum()
    smoothed = (cnt + eps) / (n + K * eps) * n
    return sm / smoothed[:, None], cnt, sm


def affinity_loss(ys, yt, valid=None):
    """Mean over images (with a valid row) of mean over valid (i, j) of (A - At)^2, with
    A = z z^T, z = y / max(|y|, 1e-12)."""
    def unit(y):
        y = np.asarray(y, np.float64)
        return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    zs, zt = unit(ys), unit(yt)
    B, T, _ = zs.shape
    v = np.ones((B, T), bool) if valid is None else np.asarray(valid, bool)
    losses = []
    for b in range(B):
        m = v[b]
        if not m.any():
            continue
        A = zs[b][m] @ zs[b][m].T - zt[b][m] @ zt[b][m].T
        losses.append((A ** 2).mean())
    return float(np.mean(losses)) if losses else 0.0


def region_pool(y, region, G):
    """(B, G, C) per-region means of y (B, T, C) and counts (B, G)."""
    y = np.asarray(y, np.float64)
    B, T, C = y.shape
    out = np.zeros((B, G, C))
    count = np.zeros((B, G), np.int64)
    for b in range(B):
        np.add.at(out[b], region[b], y[b])
        count[b] = np.bincount(region[b], minlength=G)
    return out / np.maximum(count, 1)[..., None], count
