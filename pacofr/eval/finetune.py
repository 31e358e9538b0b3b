"""Training a downstream head on an encoder: a linear probe (frozen encoder, features computed
once) or full fine-tuning with layer-wise learning-rate decay (timm / BEiT). The loop knows
nothing of data sets or metrics: arrays in, a ``Fitted`` encoder + head out."""
import copy
import math
from dataclasses import dataclass, replace

import numpy as np
from tqdm.auto import tqdm

from .. import distributed
from ..model import Model, create_model
from ..optim import AdamW, cosine_lr, layer_decay_scales
from .. import heads as H

TASKS = ("alignment", "parsing", "identity")
MODES = ("linear", "finetune")


@dataclass(frozen=True)
class FitConfig:
    """One head-training run. ``lr`` 0 picks the mode's default (linear probe 2e-2,
    fine-tuning 5e-4); the head and the top encoder layer share it, lower layers get
    ``layer_decay`` ** depth-distance of it."""
    task: str = "alignment"
    head: str = "heatmap"        # alignment: "heatmap" | "regression"; parsing: "linear" | "upsample"
                                 # (the light upsampling head, 2x); identity: "cls" | "mean"
    mode: str = "linear"
    steps: int = 300
    batch_size: int = 32
    lr: float = 0.0
    warmup_steps: int = -1       # -1: 5% of steps
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    clip_grad: float = 3.0       # encoder gradient clipping when fine-tuning; 0: none
    probe_steps: int = 0         # fine-tuning: first train the head as a linear probe for this many
                                 # steps (LP-FT, Kumar et al. 2022); 0: a fresh head
    probe_lr: float = 0.0        # its learning rate (0: the linear-probe default)
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        heads = {"alignment": ("heatmap", "regression"), "parsing": ("linear", "upsample"),
                 "identity": ("cls", "mean")}[self.task]
        if self.head not in heads:
            raise ValueError(f"head for {self.task} must be one of {heads}, got {self.head!r}")
        if self.steps < 1 or self.batch_size < 1 or self.probe_steps < 0 or self.probe_lr < 0:
            raise ValueError("steps and batch_size must be >= 1, probe_steps and probe_lr >= 0")
        if not (self.lr >= 0 and self.weight_decay >= 0 and 0 < self.layer_decay <= 1 and self.clip_grad >= 0):
            raise ValueError("lr, weight_decay and clip_grad must be >= 0 and layer_decay in (0, 1]")

    @property
    def base_lr(self):
        return self.lr or (2e-2 if self.mode == "linear" else 5e-4)

    @property
    def warmup(self):
        return self.warmup_steps if self.warmup_steps >= 0 else max(1, self.steps // 20)


def encoder_of(model):
    """An encoder-only copy of a Model (pre-trained encoder-decoder, or already an encoder)."""
    if not isinstance(model, Model):
        raise TypeError(f"expected a pacofr Model, got {type(model).__name__}")
    enc = create_model(model.config, encoder_only=True, codebook_size=0)
    enc.load_state_dict(model.state_dict(), strict=False)
    enc.dtype = model.dtype
    return enc


def make_head(cfg, encoder, num_outputs):
    """The head cfg names, sized for encoder and the task's outputs (points or classes)."""
    c = encoder.config
    if cfg.task == "alignment":
        if cfg.head == "heatmap":
            return H.HeatmapHead(c.embed_dim, c.patch_size, num_outputs, c.img_size, cfg.seed)
        return H.RegressionHead(c.embed_dim, num_outputs, c.img_size, cfg.seed)
    if cfg.task == "parsing":
        return H.ParsingHead(c.embed_dim, c.patch_size, num_outputs, cfg.seed,
                             upsample=2 if cfg.head == "upsample" else 1)
    return H.ClassifierHead(c.embed_dim, num_outputs, cfg.seed)


def encode(encoder, images, batch_size=64, pool=None):
    """Frozen features: images (n, 3, S, S) float32 -> tokens (n, 1+N, C), or (n, C)
    embeddings when pool is "cls" / "mean". Under MPI the batches are shared out among the
    ranks in contiguous runs and the features gathered back in order on every rank: the
    same batches, so the same numbers, as one process."""
    world = distributed.world()
    starts = list(range(0, len(images), batch_size))
    mine = starts[world.rank * len(starts) // world.size:(world.rank + 1) * len(starts) // world.size]
    out = []
    for k in mine:
        tok = encoder.encode(np.ascontiguousarray(images[k:k + batch_size], np.float32))
        out.append(tok if pool is None else H.embeddings(tok, pool))
    if world.size == 1:
        return np.concatenate(out)
    shape = (0,) + ((1 + encoder.config.num_patches, encoder.config.embed_dim) if pool is None
                    else (encoder.config.embed_dim,))
    return world.allgather(np.concatenate(out) if out else np.zeros(shape, np.float32))


@dataclass
class Fitted:
    """An encoder and its trained head; ``history``: one dict per logged step;
    ``feature_norm``: the linear probe's per-channel (mean, std) of the frozen features."""
    encoder: Model
    head: object
    config: FitConfig
    history: list
    feature_norm: tuple = None

    def predict(self, images=None, batch_size=64, tokens=None):
        """images (n, 3, S, S) -> landmarks (n, L, 2) pixels | parsing probabilities
        (n, K, S, S) | identity logits (n, classes). tokens: the frozen encoder's output for
        the images (n, 1+N, C), computed once by ``encode`` (linear probes only)."""
        if tokens is not None and self.config.mode != "linear":
            raise ValueError("precomputed tokens only stand in for a frozen (linear-probe) encoder")
        n = len(tokens if tokens is not None else images)
        out = []
        for k in range(0, n, batch_size):
            tok = (tokens[k:k + batch_size] if tokens is not None else
                   self.encoder.encode(np.ascontiguousarray(images[k:k + batch_size], np.float32)))
            if self.config.task == "identity":
                feats = _standardize(H.embeddings(tok, self.config.head), self.feature_norm)
                out.append(self.head.forward(feats).copy())
            else:
                y = self.head.forward(_standardize(tok, self.feature_norm))
                out.append(self.head.probabilities() if self.config.task == "parsing" else y.copy())
        return np.concatenate(out)


def _standardize(x, norm):
    """x (..., C) -> (x - mean) / std per channel (MAE's linear probe: a BatchNorm without
    affine on the frozen features, with the training set's statistics); None: x."""
    if norm is None:
        return x
    return np.ascontiguousarray((x - norm[0]) / norm[1], np.float32)


def _feature_norm(feats):
    flat = feats.reshape(-1, feats.shape[-1])
    mean = flat.mean(0, dtype=np.float64)
    std = np.sqrt(flat.var(0, dtype=np.float64) + 1e-6)
    return mean.astype(np.float32), std.astype(np.float32)


def _batches(n, batch_size, seed):
    """Endless batches of indices: a fresh permutation per epoch, a pure function of seed."""
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        if n < batch_size:  # tiny label budgets: repeat the permutation to fill a batch
            order = np.resize(order, batch_size)
        for k in range(0, len(order) - batch_size + 1, batch_size):
            yield order[k:k + batch_size]
        epoch += 1


def fit(model, images, targets, cfg, weights=None, num_outputs=None, progress=False, log_every=10, tokens=None,
        probe=None, monitor=None):
    """Train cfg's head on (images, targets).

    images: float32 (n, 3, S, S), normalised as in pre-training. targets: landmarks (n, L, 2)
    in crop pixels (alignment), label maps (n, S, S) (parsing) or identity ids (n,) (identity).
    weights: (n, L) per-point loss weights (e.g. visibility) or None. The model is copied:
    fine-tuning never changes the caller's model. tokens: the frozen encoder's output for images
    (n, 1+N, C), to share one ``encode`` among several linear probes. probe: a linear-probe
    ``Fitted`` of the same task, model and images to start LP-FT fine-tuning from (instead of
    training one for ``cfg.probe_steps``). monitor: (every, fn): fn(Fitted) -> dict of numbers
    (e.g. a validation metric) is called every ``every`` steps and after the last, its
    values joining ``history`` (the validation curve); the probe stage of LP-FT is not
    monitored."""
    encoder, images = _check_fit_inputs(model, images, targets, cfg, tokens, probe)
    if num_outputs is None:  # landmarks per face, LaPa's classes, or identities
        num_outputs = _num_outputs(cfg, targets)
    finetune = cfg.mode == "finetune"
    if finetune and (cfg.probe_steps or probe is not None):  # LP-FT: the probe's head, standardisation folded in
        if probe is None:
            probe_cfg = replace(cfg, mode="linear", steps=cfg.probe_steps, lr=cfg.probe_lr, probe_steps=0)
            probe = fit(model, images, targets, probe_cfg, weights, num_outputs, progress, log_every, tokens)
        head = copy.deepcopy(probe.head)
        head.fc.fold_standardization(*probe.feature_norm)
    else:
        head = make_head(cfg, encoder, num_outputs)
    feats = norm = None
    if not finetune:  # standardise the frozen features once (MAE's BatchNorm without affine)
        feats = _frozen_features(encoder, images, tokens, _pool(cfg))
        norm = _feature_norm(feats)
        feats = _standardize(feats, norm)
    watch = None
    if monitor is not None:
        every, fn = monitor
        watch = (int(every), lambda h: fn(Fitted(encoder, h, cfg, [], norm)))
    history = _train(encoder, head, images, feats, targets, weights, cfg, progress, log_every, watch)
    return Fitted(encoder, head, cfg, history, norm)


def _check_fit_inputs(model, images, targets, cfg, tokens, probe):
    """-> (the encoder to train, a copy of model's; images as an array), or a clear error."""
    if not isinstance(cfg, FitConfig):
        raise TypeError(f"cfg must be a FitConfig, got {type(cfg).__name__}")
    images = np.asarray(images)
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be float32 (n, 3, S, S), got {images.dtype} {images.shape}")
    n = len(images)
    if len(targets) != n or n < 1:
        raise ValueError(f"need one target per image: {n} images, {len(targets)} targets")
    encoder = encoder_of(model)
    if images.shape[2:] != (encoder.config.img_size,) * 2:
        raise ValueError(f"images must be {encoder.config.img_size} px for this encoder, got {images.shape[2:]}")
    finetune = cfg.mode == "finetune"
    if tokens is not None and (len(tokens) != n or (finetune and not cfg.probe_steps and probe is None)):
        raise ValueError("tokens must be the frozen encoder's output for the same images, linear probes only")
    if probe is not None and (not finetune or probe.config.mode != "linear" or probe.config.task != cfg.task):
        raise ValueError("probe must be a linear probe of the same task, to start fine-tuning from")
    return encoder, images


def _num_outputs(cfg, targets):
    if cfg.task == "alignment":
        return np.shape(targets)[1]
    return 11 if cfg.task == "parsing" else int(np.max(targets)) + 1


def _pool(cfg):
    """The identity task's embedding ("cls" or "mean"); None: heads on the patch tokens."""
    return cfg.head if cfg.task == "identity" else None


def _frozen_features(encoder, images, tokens, pool):
    if tokens is not None:
        return H.embeddings(tokens, pool) if pool else tokens
    return encode(encoder, images, pool=pool)


def _train(encoder, head, images, feats, targets, weights, cfg, progress, log_every, watch=None):
    """cfg.steps of AdamW on the head (and, fine-tuning, the encoder) -> the loss history
    (with ``watch`` = (every, fn(head) -> dict), fn's values every so many steps)."""
    finetune, pool = cfg.mode == "finetune", _pool(cfg)
    opt = AdamW(encoder, lr=cfg.base_lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999),
                clip_grad_norm=cfg.clip_grad or None) if finetune else None
    scales = layer_decay_scales(encoder, cfg.layer_decay) if finetune else None
    targets = np.asarray(targets)
    weights = None if weights is None else np.asarray(weights)
    history, bar = [], None
    if progress:
        bar = tqdm(total=cfg.steps, desc=f"{cfg.task} {cfg.mode}", leave=False)
    batches = _batches(len(images), cfg.batch_size, cfg.seed)
    for step in range(cfg.steps):
        idx = np.sort(next(batches))
        lr = cosine_lr(step, cfg.base_lr, cfg.steps, cfg.warmup)
        tokens = encoder.encode(np.ascontiguousarray(images[idx])) if finetune else None
        head.forward((H.embeddings(tokens, pool) if pool else tokens) if finetune else feats[idx])
        if cfg.task == "alignment":
            loss, d = head.loss(targets[idx], None if weights is None else weights[idx])
        else:
            loss, d = head.loss(targets[idx])
        if not math.isfinite(loss):
            raise FloatingPointError(f"{cfg.task} {cfg.mode}: the loss is {loss} at step {step + 1}")
        head.zero_grad()
        if finetune:
            _encoder_update(encoder, head, d, tokens, pool, opt, lr, scales)
        else:
            head.backward(d, False)
        head.step(lr, cfg.weight_decay)
        if step % log_every == 0 or step == cfg.steps - 1:
            history.append({"step": step + 1, "loss": float(loss), "lr": lr})
        if watch is not None and ((step + 1) % watch[0] == 0 or step == cfg.steps - 1):
            history.append({"step": step + 1, **watch[1](head)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
    if bar is not None:
        bar.close()
    return history


def _encoder_update(encoder, head, d, tokens, pool, opt, lr, scales):
    """Fine-tuning: the head's gradient back through the encoder, then its AdamW step."""
    encoder.zero_grad()
    dx = head.backward(d, True)
    if pool:  # the embedding's gradient back onto the tokens
        dtok = np.zeros_like(tokens)
        if pool == "cls":
            dtok[:, 0] = dx
        else:
            dtok[:, 1:] = dx[:, None] / (tokens.shape[1] - 1)
        dx = dtok
    encoder.encoder_backward(np.ascontiguousarray(dx, np.float32))
    opt.lr = lr
    opt.step(lr_scale=scales)
