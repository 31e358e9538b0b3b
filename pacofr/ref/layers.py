"""NumPy twins of the C layers (float64): test oracles and a readable specification.
Backward twins return gradients (the C functions accumulate them into buffers)."""
import math

import numpy as np
from scipy.special import erf

from pacofr.ref.gemm import round_bf16

# ---- linear: y = x W^T + b


def linear_forward(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def linear_backward(dout, x, w):
    """-> (dx, dw, db)"""
    return dout @ w, dout.T @ x, dout.sum(axis=0)


# ---- layernorm (biased variance)


def layernorm_forward(x, w, b, eps=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    return (x - mean) * rstd * w + b, mean[..., 0], rstd[..., 0]


def layernorm_backward(dout, x, w, mean, rstd):
    """-> (dx, dw, db)"""
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dout * w
    dx = rstd[..., None] * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).reshape(-1, x.shape[-1]).sum(0), dout.reshape(-1, x.shape[-1]).sum(0)


# ---- exact GELU


def gelu_forward(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_backward(x, dout):
    cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dout * (cdf + x * pdf)


# ---- multi-head attention core: qkv (B, T, 3C) = [q | k | v], heads contiguous


def _split(qkv, nh):
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, nh, C // nh).transpose(0, 2, 1, 3) for i in range(3))
    return q, k, v


def _merge(x):
    B, nh, T, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)


def attention_forward(qkv, nh, bf16_products=False):
    """-> (out (B, T, C), att (B, NH, T, T)). bf16_products: the products' operands rounded to
    bf16 (scores scaled after the product, probabilities rounded for the value product), as a
    bf16 model's attention runs them where the CPU has AVX512-BF16."""
    r = round_bf16 if bf16_products else (lambda x: x)
    q, k, v = _split(qkv, nh)
    s = (r(q) @ r(k).transpose(0, 1, 3, 2)) / math.sqrt(q.shape[-1])
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    att = s / s.sum(axis=-1, keepdims=True)
    return _merge(r(att) @ r(v)), att


def attention_backward(dout, qkv, att, nh, bf16_products=False):
    """-> dqkv (B, T, 3C). bf16_products: every product's operands rounded to bf16 (dS before
    its scale), as attention_forward's."""
    r = round_bf16 if bf16_products else (lambda x: x)
    q, k, v = (r(x) for x in _split(qkv, nh))
    B, T, C = dout.shape
    scale = 1.0 / math.sqrt(C // nh)
    do = r(dout.reshape(B, T, nh, C // nh).transpose(0, 2, 1, 3))
    dv = r(att).transpose(0, 1, 3, 2) @ do
    datt = do @ v.transpose(0, 1, 3, 2)
    ds = r(att * (datt - (datt * att).sum(axis=-1, keepdims=True)))
    dq = scale * (ds @ k)
    dk = scale * (ds.transpose(0, 1, 3, 2) @ q)
    return np.concatenate([_merge(dq), _merge(dk), _merge(dv)], axis=-1)


# ---- patches: (c, kh, kw) for the patch-embedding conv, (p, q, c) for MAE targets


def im2col(images, p, ids=None):
    B, _, S, _ = images.shape
    G = S // p
    cols = images.reshape(B, 3, G, p, G, p).transpose(0, 2, 4, 1, 3, 5).reshape(B, G * G, 3 * p * p)
    return cols if ids is None else np.take_along_axis(cols, ids[..., None], axis=1)


def patchify(images, p):
    B, _, S, _ = images.shape
    G = S // p
    return images.reshape(B, 3, G, p, G, p).transpose(0, 2, 4, 3, 5, 1).reshape(B, G * G, p * p * 3)


def unpatchify(patches, p):
    B, N, _ = patches.shape
    G = int(round(math.sqrt(N)))
    return patches.reshape(B, G, G, p, p, 3).transpose(0, 5, 1, 3, 2, 4).reshape(B, 3, G * p, G * p)


# ---- token sequences


def tokens_forward(emb, cls, pos, ids=None):
    """x (B, 1+n, C) = [cls + pos[0], emb_j + pos[1 + ids_j]]"""
    B, n, C = emb.shape
    idx = np.arange(n)[None].repeat(B, 0) if ids is None else ids
    body = emb + pos[1 + idx]
    head = np.broadcast_to(cls + pos[0], (B, 1, C))
    return np.concatenate([head, body], axis=1)


def tokens_backward(dx, ids=None, num_pos=None):
    """-> (demb, dcls, dpos (1+N, C))"""
    B, T, C = dx.shape
    n = T - 1
    idx = np.arange(n)[None].repeat(B, 0) if ids is None else ids
    dpos = np.zeros((num_pos if num_pos is not None else n + 1, C))
    dpos[0] = dx[:, 0].sum(0)
    np.add.at(dpos, 1 + idx, dx[:, 1:])
    return dx[:, 1:].copy(), dx[:, 0].sum(0), dpos


def mask_from_ids(ids_keep, N):
    mask = np.ones((ids_keep.shape[0], N), np.uint8)
    np.put_along_axis(mask, ids_keep, 0, axis=1)
    return mask


def unshuffle_forward(x, mask_token, pos, ids_keep):
    """(B, 1+n, C) -> (B, 1+N, C): kept tokens at their grid positions, mask tokens elsewhere,
    plus pos."""
    B, T, C = x.shape
    N = pos.shape[0] - 1
    full = np.broadcast_to(mask_token, (B, N + 1, C)).copy()
    full[:, 0] = x[:, 0]
    np.put_along_axis(full[:, 1:], ids_keep[..., None], x[:, 1:], axis=1)
    return full + pos


def unshuffle_backward(dfull, ids_keep):
    """-> (dx (B, 1+n, C), dmask_token (C), dpos (1+N, C))"""
    B, N1, C = dfull.shape
    mask = mask_from_ids(ids_keep, N1 - 1)
    dx = np.concatenate([dfull[:, :1], np.take_along_axis(dfull[:, 1:], ids_keep[..., None], axis=1)], axis=1)
    dtok = (dfull[:, 1:] * mask[..., None]).sum(axis=(0, 1))
    return dx, dtok, dfull.sum(0)


# ---- losses


def norm_pix_target(target):
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, ddof=1, keepdims=True)
    return (target - mean) / np.sqrt(var + 1e-6)


def mae_loss_forward(pred, target, mask):
    """pred, target (B, N, d); mask (B, N) 1 = removed."""
    per_patch = ((pred - target) ** 2).mean(axis=-1)
    return (per_patch * mask).sum() / mask.sum()


def mae_loss_backward(pred, target, mask, dloss=1.0):
    return dloss * 2.0 * (pred - target) * mask[..., None] / (pred.shape[-1] * mask.sum())


def cross_entropy_forward(logits, targets):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(targets)), targets].mean(), np.exp(logp)


def cross_entropy_backward(probs, targets, dloss=1.0):
    d = probs.copy()
    d[np.arange(len(targets)), targets] -= 1.0
    return dloss * d / len(targets)


def mse_forward(x, target):
    return ((x - target) ** 2).mean()


def mse_backward(x, target, dloss=1.0):
    return dloss * 2.0 * (x - target) / x.size


# ---- optimizer


def adamw_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decay=True):
    """One AdamW step on float64 copies -> (p, m, v)."""
    p = p * (1.0 - lr * weight_decay) if decay else p.copy()
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    mhat = m / (1 - beta1 ** step)
    vhat = v / (1 - beta2 ** step)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v
