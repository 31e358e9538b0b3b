"""Diagnostics of a pre-training run, logged beside the loss (``diag/*`` keys of
metrics.jsonl) so that a failing component shows itself while the run goes on:

- ``token_cosine``: the mean pairwise cosine similarity of an image's patch tokens (the
  encoder on the whole image, ``norm`` output, cls excluded), averaged over images. Near 1:
  every token says the same thing (the collapse an affinity loss against an EMA teacher
  allows); spatial detail is gone.
- ``effective_rank``: exp of the entropy of the singular values of the centred matrix of
  l2-normalised patch tokens of the batch (docs/evaluation.md's definition, on tokens), and its value
  divided by the width (``effective_rank_norm``).
- ``position_acc``: a ridge-regression probe from a token to its patch position, fitted on half
  of the images and scored (top-1 of N positions) on the other half; ``position_err``: the
  mean grid distance, in patches, of its guesses. Landmarks and parsing need tokens that know
  where they are.
- ``rec/<component>``: the reconstruction error (per-patch MSE, on the model's targets) of the
  training step's removed patches, per facial component of its region maps (docs/method.md §1).
- codebook usage and perplexity are already part of every logged step.

All of it runs on the batch of the step being logged (rank 0's slice under MPI), after the
step: it never changes the run."""
import numpy as np

from .. import ops
from ..regions import COMPONENTS

__all__ = ["diagnose", "position_probe", "region_errors", "token_cosine"]


def token_cosine(tokens):
    """tokens (B, N, C) -> mean over images of the mean cosine of distinct token pairs."""
    z = tokens / np.maximum(np.linalg.norm(tokens, axis=-1, keepdims=True), 1e-12)
    N = z.shape[1]
    if N < 2:
        raise ValueError("token_cosine needs at least 2 tokens per image")
    s = np.square(z.sum(1, dtype=np.float64)).sum(-1)          # |sum_i z_i|^2 = sum_ij z_i.z_j
    return float(np.mean((s - N) / (N * (N - 1))))


def position_probe(tokens, grid, ridge=1e-2):
    """tokens (B, N, C), B >= 2 -> (top-1 accuracy, mean grid distance in patches) of a
    ridge regression from standardised tokens to one-hot positions, fitted on the first half
    of the images and scored on the second."""
    B, N, C = tokens.shape
    if B < 2 or N != grid * grid:
        raise ValueError(f"position_probe needs >= 2 images of {grid}x{grid} tokens, got {tokens.shape}")
    h = B // 2
    x = tokens.reshape(B, N, C).astype(np.float64)
    mean, std = x[:h].reshape(-1, C).mean(0), x[:h].reshape(-1, C).std(0) + 1e-6
    x = (x - mean) / std
    fit = np.concatenate([x[:h].reshape(-1, C), np.ones((h * N, 1))], 1)
    target = np.tile(np.eye(N), (h, 1))
    gram = fit.T @ fit + ridge * len(fit) * np.eye(C + 1)
    w = np.linalg.solve(gram, fit.T @ target)
    test = np.concatenate([x[h:].reshape(-1, C), np.ones(((B - h) * N, 1))], 1)
    guess = (test @ w).argmax(1)
    truth = np.tile(np.arange(N), B - h)
    dist = np.hypot(guess // grid - truth // grid, guess % grid - truth % grid)
    return float(np.mean(guess == truth)), float(dist.mean())


def region_errors(pred, images, mask, regions, patch_size, norm_pix):
    """Per-component reconstruction error of the removed patches. pred (B, N, d) the decoder's
    output, images (B, 3, S, S) the clean images, mask (B, N) 1 = removed, regions (B, N)
    component ids -> {component: mean per-patch MSE} over the components with removed
    patches, plus "face" (every component but hair/background) and "all"."""
    P = ops.patchify(np.ascontiguousarray(images, np.float32), patch_size)
    if norm_pix:
        P = ops.patch_stats(P.reshape(-1, P.shape[-1]))[0].reshape(P.shape)
    err = np.square(pred - P).mean(-1)                                     # (B, N)
    removed = np.asarray(mask, bool)
    regions = np.broadcast_to(np.asarray(regions), removed.shape)
    out = {}
    for c, name in enumerate(COMPONENTS):
        sel = removed & (regions == c)
        if sel.any():
            out[name] = float(err[sel].mean())
    face = removed & (regions != COMPONENTS.index("hair_background"))
    if face.any():
        out["face"] = float(err[face].mean())
    if removed.any():
        out["all"] = float(err[removed].mean())
    return out


def diagnose(paco, images):
    """The diagnostics of a ``PacoFR`` after a step on ``images`` (B, 3, S, S), the step's
    (last micro-)batch -> {"diag/<name>": float}. Runs the student encoder on the whole
    images (its cached activations are the step's no longer)."""
    model, last = paco.model, paco.last
    out = {}
    if "mask" in last:
        errs = region_errors(model.prediction(), images, last["mask"], last.get("regions", paco.canonical),
                             model.config.patch_size, model.config.norm_pix_loss)
        out.update({f"diag/rec/{k}": v for k, v in errs.items()})
    tokens = model.encode(np.ascontiguousarray(images, np.float32))[:, 1:]
    B, N, C = tokens.shape
    out["diag/token_cosine"] = token_cosine(tokens)
    rank = ops.effective_rank(tokens.reshape(-1, C))
    out["diag/effective_rank"], out["diag/effective_rank_norm"] = rank, rank / C
    if B >= 2:
        out["diag/position_acc"], out["diag/position_err"] = position_probe(tokens, model.config.grid_size)
    return out
