"""The ViT model object: a thin handle on the C engine's flat buffers."""
from dataclasses import dataclass

import numpy as np

from . import _C
from .config import ViTConfig, get_config
from .posembed import sincos_2d


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple
    offset: int
    numel: int
    decay: bool
    trainable: bool


class Model:
    """A MAE-style ViT encoder-decoder (or an encoder alone) whose forward and backward run
    in C. Parameters and gradients live in two flat float32 buffers; ``state_dict()`` and
    ``grads()`` return copies keyed by timm / MAE names.

    Not thread-safe: one call at a time per model (a second thread gets a RuntimeError).
    """

    def __init__(self, config, dtype="fp32"):
        if not isinstance(config, ViTConfig):
            raise TypeError(f"config must be a ViTConfig, got {type(config).__name__}")
        self.config = config
        self._h = _C.vit_create(config.c_kwargs())
        self._tensors = [TensorInfo(n, tuple(s), o, k, bool(d), bool(t))
                         for n, s, o, k, d, t in _C.vit_tensors(self._h)]
        self._by_name = {t.name: t for t in self._tensors}
        self._params = _C.vit_params(self._h)
        self._grads = _C.vit_grads(self._h)
        self.dtype = dtype

    # ---- description
    @property
    def dtype(self):
        return self._dtype

    @dtype.setter
    def dtype(self, value):
        _C.vit_set_dtype(self._h, value)
        self._dtype = value

    @property
    def tensors(self):
        """Every parameter tensor: name, shape, offset in the flat buffer, decay, trainable."""
        return list(self._tensors)

    @property
    def num_params(self):
        return sum(t.numel for t in self._tensors if t.trainable)

    def param(self, name):
        """A writeable view of one parameter (no copy)."""
        t = self._info(name)
        return self._params[t.offset:t.offset + t.numel].reshape(t.shape)

    def grad(self, name):
        """A writeable view of one parameter's gradient (no copy)."""
        t = self._info(name)
        return self._grads[t.offset:t.offset + t.numel].reshape(t.shape)

    def _info(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no parameter named {name!r}") from None

    @property
    def flat_params(self):
        """The flat parameter buffer (a view)."""
        return self._params

    @property
    def flat_grads(self):
        """The flat gradient buffer (a view)."""
        return self._grads

    # ---- initialisation
    def init_weights(self, seed=0):
        """MAE's initialisation: fixed sin-cos position embeddings, xavier-uniform Linear and
        patch-embedding weights, normal(0.02) tokens, zero biases, unit LayerNorm scales."""
        rng = np.random.default_rng(seed)
        c = self.config
        for t in self._tensors:
            p = self.param(t.name)
            if t.name in ("pos_embed", "decoder_pos_embed"):
                p[...] = sincos_2d(t.shape[-1], c.grid_size)[None]
            elif t.name in ("cls_token", "mask_token"):
                p[...] = rng.normal(0.0, 0.02, t.shape)
            elif t.name == "patch_embed.proj.bias":
                bound = 1.0 / np.sqrt(c.patch_dim)
                p[...] = rng.uniform(-bound, bound, t.shape)
            elif t.name.endswith(".weight") and len(t.shape) >= 2:
                fan_out, fan_in = t.shape[0], int(np.prod(t.shape[1:]))
                bound = np.sqrt(6.0 / (fan_in + fan_out))
                p[...] = rng.uniform(-bound, bound, t.shape)
            elif t.name.endswith(".weight"):
                p[...] = 1.0
            else:
                p[...] = 0.0
        return self

    # ---- compute
    def forward(self, images, ids_keep, ids_restore=None, target=None, weights=None):
        """Masked-reconstruction loss on a batch; the activations stay cached for ``backward()``.

        images: float32 (B, 3, S, S), what the encoder sees; ids_keep: int64 (B, n), the kept
        patch indices in row-major grid order; ids_restore: int64 (B, N), MAE's inverse
        permutation from masking (None: derived from ids_keep); target: float32 (B, N, d), the
        clean images' patches in (p, q, c) order (``ops.patchify``; None: those of ``images``);
        weights: float32 (B, N) per-patch loss weights (None: 1 on removed patches, MAE).
        Returns sum_i w_i mse_i / sum_i w_i, mse on norm-pix targets when configured."""
        return _C.vit_forward(self._h, images, ids_keep, ids_restore, target, weights)

    def backward(self, dlatent=None, dcols=None):
        """Accumulate (+=) the gradients of the last ``forward()``'s loss. dlatent: float32
        (B, 1 + n, C) or None, the gradient of another loss on ``latent()``, added in; dcols:
        float32 (B, n, 3 * p * p) or None, += the gradient on the kept patches' input pixels
        in (c, kh, kw) order."""
        _C.vit_backward(self._h, dlatent, dcols)

    def latent(self):
        """The encoder's output of the last ``forward()``: (B, 1 + n, C) after its final norm."""
        return _C.vit_latent(self._h)

    def prediction(self):
        """The decoder's output of the last ``forward()``: (B, N, d) per-patch pixels (normalised
        per patch when the config uses norm-pix targets), in grid order."""
        return _C.vit_pred(self._h)

    def zero_grad(self):
        _C.vit_zero_grad(self._h)

    def encode(self, images, ids_keep=None):
        """The encoder alone: (B, 1 + N, C) tokens after the final norm, on all patches, or
        (B, 1 + n, C) on the patches ids_keep (B, n) only. The activations stay cached for
        ``encoder_backward()``."""
        return _C.vit_encode(self._h, images, ids_keep)

    def encoder_backward(self, dout):
        """Accumulate (+=) the gradients of the last ``encode()`` given dout (B, 1 + N, C),
        the gradient of a downstream loss with respect to its output (fine-tuning)."""
        _C.vit_encoder_backward(self._h, dout, None)

    def grad_norm(self):
        """The global L2 norm of the gradient buffer (trainable tensors)."""
        return _C.grad_norm(self._h)

    def adamw_step(self, m, v, lr_scale=None, **hyper):
        """One AdamW update of the parameters in C from the gradients and the moments m, v
        (flat float32, updated in place); ``hyper``: lr, beta1, beta2, eps, weight_decay,
        bias_correction1, bias_correction2, grad_scale (``pacofr.optim.AdamW`` drives this)."""
        _C.adamw_step(self._h, m, v, lr_scale=lr_scale, **hyper)

    @property
    def activation_bytes(self):
        return _C.vit_acts_bytes(self._h)

    # ---- state
    def state_dict(self):
        """name -> float32 copy (position embeddings included)."""
        return {t.name: self.param(t.name).copy() for t in self._tensors}

    def grads(self):
        """name -> float32 copy of the gradient of every trainable tensor."""
        return {t.name: self._grads[t.offset:t.offset + t.numel].reshape(t.shape).copy()
                for t in self._tensors if t.trainable}

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters. strict: the names must match exactly. Shapes must
        always match; a mismatch raises ValueError naming the tensor."""
        missing = [t.name for t in self._tensors if t.name not in state]
        unexpected = sorted(set(state) - set(self._by_name))
        if strict and (missing or unexpected):
            raise ValueError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}")
        for name, value in state.items():
            if name not in self._by_name:
                continue
            t = self._by_name[name]
            arr = np.asarray(value)
            if arr.shape != t.shape:
                raise ValueError(f"{name}: expected shape {t.shape}, got {arr.shape}")
            if not np.issubdtype(arr.dtype, np.floating):
                raise TypeError(f"{name}: expected floating-point values, got {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name}: contains NaN or Inf")
            self.param(name)[...] = arr
        return {"missing": missing, "unexpected": unexpected}

    def __repr__(self):
        return (f"Model({self.config.name}, {self.num_params / 1e6:.2f}M params, dtype={self.dtype}"
                f"{', encoder only' if self.config.encoder_only else ''})")


def create_model(name, seed=0, dtype="fp32", **overrides):
    """A preset (``pacofr_vit_tiny_p8_112``, ``pacofr_vit_small_p16_224``,
    ``pacofr_vit_base_p16_224``, ``pacofr_test_tiny``) or a ViTConfig, initialised as MAE
    does from ``seed``. Overrides change config fields, e.g. ``encoder_only=True``."""
    config = name.replace(**overrides) if isinstance(name, ViTConfig) else get_config(name, **overrides)
    return Model(config, dtype=dtype).init_weights(seed)
