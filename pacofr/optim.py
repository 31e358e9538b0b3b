"""AdamW over the model's flat buffers (the update runs in C) and the learning-rate schedule."""
import math

import numpy as np


class AdamW:
    """Decoupled weight decay Adam, with torch.optim.AdamW's arithmetic.

    Decay applies to matrix weights only (none on biases, norms, tokens, position
    embeddings); fixed sin-cos embeddings are never updated. ``clip_grad_norm``: the global
    gradient norm is clipped to it first (as torch.nn.utils.clip_grad_norm_). ``lr`` may be
    set between steps. ``step()`` does not zero the gradients: call ``model.zero_grad()``.
    """

    def __init__(self, model, lr, weight_decay=0.05, betas=(0.9, 0.95), eps=1e-8, clip_grad_norm=None):
        _check_lr(lr)
        if not 0 <= _number(weight_decay, "weight_decay") < math.inf:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        if not 0 < _number(eps, "eps") < math.inf:
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(0 <= _number(b, "betas") < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if clip_grad_norm is not None and not 0 < _number(clip_grad_norm, "clip_grad_norm") < math.inf:
            raise ValueError(f"clip_grad_norm must be a finite positive number or None, got {clip_grad_norm!r}")
        self.model = model
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.clip_grad_norm = clip_grad_norm
        n = model.flat_params.size
        self.m = np.zeros(n, np.float32)
        self.v = np.zeros(n, np.float32)
        self.step_count = 0
        self.last_grad_norm = None

    def step(self, grad_scale=1.0, lr_scale=None):
        """One update from the model's current gradients times ``grad_scale`` (1 / the number
        of accumulated micro-batches); returns the gradient norm when clipping (else None).
        ``lr_scale``: float32 (num tensors,) learning-rate factors, one per entry of
        ``model.tensors`` (layer-wise decay, ``layer_decay_scales``); None: all 1."""
        _check_lr(self.lr)
        scale = _number(grad_scale, "grad_scale")
        if not 0 < scale < math.inf:
            raise ValueError(f"grad_scale must be a finite positive number, got {grad_scale!r}")
        norm = self.model.grad_norm() * scale   # checked before anything changes: a NaN never reaches the weights
        if not math.isfinite(norm):
            raise FloatingPointError(f"gradient norm is {norm} at optimizer step {self.step_count + 1}: "
                                     f"the gradients hold NaN or Inf; the parameters are left as they were")
        self.step_count += 1
        self.last_grad_norm = None
        if self.clip_grad_norm is not None:
            self.last_grad_norm = norm
            scale *= min(1.0, self.clip_grad_norm / (norm + 1e-6))
        b1, b2 = self.betas
        self.model.adamw_step(self.m, self.v, lr=self.lr, beta1=b1, beta2=b2, eps=self.eps,
                              weight_decay=self.weight_decay, bias_correction1=1.0 - b1 ** self.step_count,
                              bias_correction2=1.0 - b2 ** self.step_count, grad_scale=scale, lr_scale=lr_scale)
        return self.last_grad_norm

    def state_dict(self):
        return {"m": self.m.copy(), "v": self.v.copy(), "step": self.step_count, "lr": self.lr,
                "weight_decay": self.weight_decay, "betas": self.betas, "eps": self.eps}

    def load_state_dict(self, state):
        for key in ("m", "v"):
            arr = np.asarray(state[key], np.float32)
            if arr.shape != self.m.shape:
                raise ValueError(f"optimizer state {key!r}: expected shape {self.m.shape}, got {arr.shape}")
            getattr(self, key)[...] = arr
        self.step_count = int(state["step"])
        self.lr = float(state.get("lr", self.lr))


def _number(value, name):
    """value as a float: a real number (not a bool, a string or an array), else TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_lr(lr):
    if not 0 <= _number(lr, "lr") < math.inf:
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")


def layer_decay_scales(model, decay):
    """timm / BEiT layer-wise learning-rate decay: (num tensors,) float32 factors, one per entry
    of ``model.tensors``. Layer ids: 0 for the embeddings (patch_embed, cls_token, pos_embed),
    i + 1 for ``blocks.i``, depth + 1 for everything after (the final norm); a tensor of layer
    id l gets decay ** (depth + 1 - l)."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer decay must be in (0, 1], got {decay!r}")
    depth = model.config.depth
    scales = []
    for t in model.tensors:
        if t.name.startswith(("patch_embed.", "cls_token", "pos_embed")):
            layer = 0
        elif t.name.startswith("blocks."):
            layer = int(t.name.split(".")[1]) + 1
        else:
            layer = depth + 1
        scales.append(decay ** (depth + 1 - layer))
    return np.asarray(scales, np.float32)


def cosine_lr(step, base_lr, total_steps, warmup_steps=0, min_lr=0.0):
    """Linear warm-up to base_lr over warmup_steps, then a half-cycle cosine to min_lr at
    total_steps (MAE's schedule, per step rather than per epoch)."""
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if total_steps <= warmup_steps:
        return base_lr
    t = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
