"""NumPy twins of the downstream head ops (csrc/heads/heads.c): the test oracles.

Per-patch logits are (B, G*G, p*p*X): each patch's p*p pixels in row-major order, X values per
pixel. ``unpatchify_maps`` turns them into (B, X, S, S) maps; coordinates are pixels with
pixel centres at 0..S-1."""
import numpy as np


def unpatchify_maps(logits, p):
    """(B, G*G, p*p*X) -> (B, X, S, S)."""
    B, N, D = logits.shape
    G = int(round(N ** 0.5))
    X = D // (p * p)
    z = logits.reshape(B, G, G, p, p, X)            # b, gy, gx, py, px, x
    return z.transpose(0, 5, 1, 3, 2, 4).reshape(B, X, G * p, G * p)


def softargmax(logits, p):
    """(B, N, p*p*L) -> coords (B, L, 2): the softmax-weighted mean (x, y) of each heatmap."""
    maps = unpatchify_maps(np.asarray(logits, np.float64), p)
    B, L, S, _ = maps.shape
    flat = maps.reshape(B, L, S * S)
    prob = np.exp(flat - flat.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    ys, xs = np.divmod(np.arange(S * S), S)
    return np.stack([prob @ xs, prob @ ys], -1)


def l1_points(pred, target, weight=None, scale=1.0):
    """Mean over weighted points of (|dx| + |dy|) / 2, divided by scale."""
    err = np.abs(np.asarray(pred, np.float64) - target).mean(-1)
    w = np.ones(err.shape) if weight is None else np.maximum(np.asarray(weight, np.float64), 0)
    return float((w * err).sum() / w.sum() / scale) if w.sum() > 0 else 0.0


def pixel_cross_entropy(logits, labels, p, ignore=-1):
    """Mean over labelled pixels of -log softmax(logits)[label]; (loss, count)."""
    maps = unpatchify_maps(np.asarray(logits, np.float64), p)       # B, K, S, S
    z = maps.transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])
    y = np.asarray(labels).reshape(-1)
    keep = y != ignore
    z, y = z[keep], y[keep]
    if not len(y):
        return 0.0, 0
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    return float((lse - z[np.arange(len(y)), y]).mean()), int(len(y))


def pixel_softmax(logits, p):
    """(B, N, p*p*K) -> (B, K, S, S) per-pixel class probabilities."""
    maps = unpatchify_maps(np.asarray(logits, np.float64), p)
    e = np.exp(maps - maps.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def patchify_maps(maps, p):
    """(B, X, S, S) -> (B, G*G, p*p*X): the inverse of unpatchify_maps."""
    B, X, S, _ = maps.shape
    G = S // p
    z = maps.reshape(B, X, G, p, G, p).transpose(0, 2, 4, 3, 5, 1)      # b, gy, gx, py, px, x
    return z.reshape(B, G * G, p * p * X)


def upsample_patches(x, q, u):
    """Bilinear u-times upsampling (half-pixel centres, clamped edges) in the per-patch layout."""
    maps = unpatchify_maps(np.asarray(x, np.float64), q)                 # B, K, Sc, Sc
    Sc = maps.shape[-1]
    src = np.maximum((np.arange(Sc * u) + 0.5) / u - 0.5, 0.0)
    i0 = np.minimum(src.astype(int), Sc - 1)
    i1 = np.minimum(i0 + 1, Sc - 1)
    w = src - i0
    rows = maps[:, :, i0] * (1 - w)[:, None] + maps[:, :, i1] * w[:, None]
    full = rows[..., i0] * (1 - w) + rows[..., i1] * w
    return patchify_maps(full, q * u)
