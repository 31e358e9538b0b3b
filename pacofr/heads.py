"""Downstream heads (docs/evaluation.md) on the encoder's output tokens (B, 1 + N, C), computed by the C
core: every head has ``forward``, ``loss`` (value and gradient with respect to its own output),
``backward`` (-> the gradient on the tokens, for fine-tuning) and ``step`` (AdamW on its own
parameters). Token 0 is the cls token; tokens 1..N are the patches in grid order.

- ``HeatmapHead``: per-patch linear to p*p*L logits, read as L heatmaps over the S x S crop,
  soft-argmax -> landmarks (B, L, 2) in pixels; L1 on the coordinates (divided by S).
- ``RegressionHead``: the mean of the patch tokens -> linear -> 2L coordinates, L1.
- ``ParsingHead``: per-patch linear to p*p*K class logits, pixel cross-entropy.
- ``ClassifierHead``: an embedding (cls or pooled) -> linear -> identity logits, cross-entropy.
"""
import numpy as np

from . import _C


class Linear:
    """y = x W^T + b with its own parameters, gradients and AdamW moments (weight decay on W
    only). Xavier-uniform W, zero b (MAE's init); ``scale`` multiplies the initial W."""

    def __init__(self, in_dim, out_dim, seed=0, scale=1.0):
        rng = np.random.default_rng(seed)
        bound = scale * np.sqrt(6.0 / (in_dim + out_dim))
        self.weight = rng.uniform(-bound, bound, (out_dim, in_dim)).astype(np.float32)
        self.bias = np.zeros(out_dim, np.float32)
        self.grads = [np.zeros_like(self.weight), np.zeros_like(self.bias)]
        self._reset_moments()
        self._x = None

    def _reset_moments(self):
        self.moments = [(np.zeros(a.size, np.float32), np.zeros(a.size, np.float32)) for a in (self.weight, self.bias)]
        self.steps = 0

    def forward(self, x):
        """x (R, in) -> (R, out); x is kept for backward."""
        self._x = np.ascontiguousarray(x, np.float32)
        return _C.linear_forward(self._x, self.weight, self.bias, "fp32")

    def backward(self, dy, need_dx=True):
        """dy (R, out): gradients +=; returns dx (R, in) (or None)."""
        dx = np.zeros_like(self._x) if need_dx else None
        _C.linear_backward(np.ascontiguousarray(dy, np.float32), self._x, self.weight, dx, self.grads[0],
                           self.grads[1], "fp32")
        return dx

    def fold_standardization(self, mean, std):
        """Absorb x -> (x - mean) / std (per input channel) into W and b, so the layer takes raw
        x; the AdamW moments restart."""
        w = self.weight / std[None, :]
        self.bias[...] = self.bias - w @ mean
        self.weight[...] = w
        self._reset_moments()

    def zero_grad(self):
        for g in self.grads:
            g[...] = 0

    def step(self, lr, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8):
        self.steps += 1
        b1, b2 = betas
        for p, g, (m, v), decay in zip((self.weight, self.bias), self.grads, self.moments, (True, False)):
            _C.adamw_update(p.reshape(-1), g.reshape(-1), m, v, lr, b1, b2, eps, weight_decay,
                            1 - b1 ** self.steps, 1 - b2 ** self.steps, 1.0, decay)


class _Head:
    """Shared plumbing: one Linear layer ``self.fc``."""

    def zero_grad(self):
        self.fc.zero_grad()

    def step(self, lr, weight_decay=0.05):
        self.fc.step(lr, weight_decay)



def _patches(tokens):
    tokens = np.asarray(tokens, np.float32)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be (B, 1 + N, C), got shape {tokens.shape}")
    return tokens


def _patch_grads(dx, shape):
    """Per-patch-token gradients (B*N, C) (or None) -> the gradient on all tokens (B, 1+N, C),
    zero on the cls token."""
    if dx is None:
        return None
    dtokens = np.zeros(shape, np.float32)
    dtokens[:, 1:] = dx.reshape(shape[0], shape[1] - 1, shape[2])
    return dtokens


class HeatmapHead(_Head):
    """Landmarks from patch tokens through heatmaps: (B, 1+N, C) -> (B, L, 2) pixels."""

    def __init__(self, embed_dim, patch_size, num_points, img_size, seed=0):
        self.p, self.L, self.S = int(patch_size), int(num_points), int(img_size)
        self.fc = Linear(embed_dim, self.p * self.p * self.L, seed)

    def forward(self, tokens):
        tokens = _patches(tokens)
        B, T, C = tokens.shape
        self._shape = tokens.shape
        self._z = self.fc.forward(tokens[:, 1:].reshape(-1, C)).reshape(B, T - 1, -1)
        self._xy, self._lse = _C.softargmax_forward(self._z, self.p)
        return self._xy

    def loss(self, target, weight=None):
        """L1 on coordinates / S against target (B, L, 2); weight (B, L) e.g. visibility.
        Returns (loss, dcoords)."""
        target = np.ascontiguousarray(target, np.float32)
        w = None if weight is None else np.ascontiguousarray(weight, np.float32)
        value = _C.l1_points_forward(self._xy, target, w, float(self.S))
        d = np.zeros_like(self._xy)
        _C.l1_points_backward(self._xy, target, w, float(self.S), 1.0, d)
        return value, d

    def backward(self, dcoords, need_dtokens=True):
        dz = np.zeros_like(self._z)
        _C.softargmax_backward(np.ascontiguousarray(dcoords, np.float32), self._z, self._lse, self._xy, self.p, dz)
        B, T, _ = self._shape
        return _patch_grads(self.fc.backward(dz.reshape(B * (T - 1), -1), need_dtokens), self._shape)


class RegressionHead(_Head):
    """Landmarks regressed from the mean patch token: (B, 1+N, C) -> (B, L, 2) pixels, with
    coordinates = S * (0.5 + linear output) so that zero output is the crop centre."""

    def __init__(self, embed_dim, num_points, img_size, seed=0):
        self.L, self.S = int(num_points), int(img_size)
        self.fc = Linear(embed_dim, 2 * self.L, seed, scale=0.1)

    def forward(self, tokens):
        tokens = _patches(tokens)
        self._shape = tokens.shape
        out = self.fc.forward(tokens[:, 1:].mean(1))
        self._xy = np.ascontiguousarray(self.S * (0.5 + out.reshape(-1, self.L, 2)), np.float32)
        return self._xy

    loss = HeatmapHead.loss

    def backward(self, dcoords, need_dtokens=True):
        B, T, C = self._shape
        dpooled = self.fc.backward(self.S * np.asarray(dcoords, np.float32).reshape(B, -1), need_dtokens)
        if not need_dtokens:
            return None
        dtokens = np.zeros(self._shape, np.float32)
        dtokens[:, 1:] = dpooled[:, None, :] / (T - 1)
        return dtokens


class ParsingHead(_Head):
    """Parsing logits per pixel from patch tokens: (B, 1+N, C) -> logits (B, N, p*p*K).
    upsample u > 1: the light upsampling head: the linear gives (p/u)^2 * K logits per patch (a
    map u times coarser, u^2 fewer weights), bilinearly upsampled u times to full resolution."""

    def __init__(self, embed_dim, patch_size, num_classes, seed=0, upsample=1):
        self.p, self.K, self.u = int(patch_size), int(num_classes), int(upsample)
        if self.u < 1 or self.p % self.u:
            raise ValueError(f"upsample must divide the patch size {self.p}, got {upsample}")
        self.q = self.p // self.u
        self.fc = Linear(embed_dim, self.q * self.q * self.K, seed)

    def forward(self, tokens):
        tokens = _patches(tokens)
        B, T, C = tokens.shape
        self._shape = tokens.shape
        zc = self.fc.forward(tokens[:, 1:].reshape(-1, C)).reshape(B, T - 1, -1)
        self._z = _C.upsample_patches(zc, self.q, self.u) if self.u > 1 else zc
        return self._z

    def probabilities(self):
        """(B, K, S, S) per-pixel class probabilities of the last forward."""
        return _C.pixel_softmax(self._z, self.p)

    def loss(self, labels, ignore=-1):
        """Pixel cross-entropy against labels (B, S, S) (``ignore`` pixels skipped). Returns
        (loss, dlogits)."""
        labels = np.ascontiguousarray(labels, np.int64)
        value, _ = _C.pixel_ce_forward(self._z, labels, self.p, int(ignore))
        d = np.zeros_like(self._z)
        _C.pixel_ce_backward(self._z, labels, self.p, int(ignore), 1.0, d)
        return value, d

    def backward(self, dlogits, need_dtokens=True):
        B, T, _ = self._shape
        d = np.ascontiguousarray(dlogits, np.float32)
        if self.u > 1:
            dc = np.zeros((B, T - 1, self.q * self.q * self.K), np.float32)
            _C.upsample_patches_backward(d, self.q, self.u, dc)
            d = dc
        return _patch_grads(self.fc.backward(d.reshape(B * (T - 1), -1), need_dtokens), self._shape)


def embeddings(tokens, pool="cls"):
    """(B, 1+N, C) -> (B, C): the cls token (``"cls"``) or the mean of the patch tokens
    (``"mean"``)."""
    tokens = _patches(tokens)
    if pool == "cls":
        return np.ascontiguousarray(tokens[:, 0])
    if pool == "mean":
        return tokens[:, 1:].mean(1)
    raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")


class ClassifierHead(_Head):
    """Identity logits from an embedding (B, C) -> (B, num_classes); cross-entropy."""

    def __init__(self, embed_dim, num_classes, seed=0):
        self.fc = Linear(embed_dim, int(num_classes), seed)

    def forward(self, emb):
        self._z = self.fc.forward(emb)
        return self._z

    def loss(self, labels):
        labels = np.ascontiguousarray(labels, np.int64)
        value, probs = _C.cross_entropy_forward(self._z, labels)
        d = np.zeros_like(self._z)
        _C.cross_entropy_backward(probs, labels, 1.0, d)
        return value, d

    def backward(self, dlogits, need_dx=False):
        return self.fc.backward(dlogits, need_dx)
