"""Training-time augmentation of aligned crops: horizontal flip (with each scheme's landmark
mirror permutation and the parsing left/right label swap), a small random similarity, colour
jitter, grayscale and blur. Every draw is a pure function of (seed, epoch, index); the pixel
work runs in C on the whole batch with the GIL released."""
from dataclasses import dataclass

import numpy as np

from .. import _C
from .align import transform_points, warp
from .schemes import scheme_for

# LaPa's 11 labels (docs/evaluation.md): left/right pairs that swap under a horizontal flip.
LAPA_FLIP_LABELS = ((2, 3), (4, 5))


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5            # probability of a horizontal flip
    rotate: float = 10.0         # degrees, uniform in [-rotate, rotate]
    scale: float = 0.05          # uniform factor in [1 - scale, 1 + scale]
    translate: float = 0.03      # fraction of the side, uniform in each axis
    brightness: float = 0.2      # factors uniform in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    grayscale: float = 0.05      # probability
    blur: float = 0.1            # probability of a Gaussian blur
    blur_sigma: tuple = (0.3, 1.5)


def sample_params(config, seed, epoch, index):
    """The augmentation of one sample: a dict of plain numbers, fixed by (seed, epoch, index)."""
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    u = rng.random(12)
    lo, hi = config.blur_sigma
    return {"flip": bool(u[0] < config.flip),
            "angle": (2 * u[1] - 1) * config.rotate,
            "scale": 1 + (2 * u[2] - 1) * config.scale,
            "tx": (2 * u[3] - 1) * config.translate, "ty": (2 * u[4] - 1) * config.translate,
            "brightness": 1 + (2 * u[5] - 1) * config.brightness,
            "contrast": 1 + (2 * u[6] - 1) * config.contrast,
            "saturation": 1 + (2 * u[7] - 1) * config.saturation,
            "grayscale": bool(u[8] < config.grayscale),
            "sigma": float(lo + (hi - lo) * u[10]) if u[9] < config.blur else 0.0}


def geometric_matrix(p, size):
    """The (2, 3) crop -> crop map of one sample: flip, then rotate and scale about the centre,
    then shift."""
    c = (size - 1) / 2.0
    r = np.deg2rad(p["angle"])
    R = p["scale"] * np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    F = np.diag([-1.0, 1.0]) if p["flip"] else np.eye(2)
    L = R @ F
    t = np.array([c, c]) + size * np.array([p["tx"], p["ty"]]) - L @ np.array([c, c])
    return np.concatenate([L, t[:, None]], axis=1)


def augment(images, indices, seed, epoch, landmarks=None, parsing=None, config=AugmentConfig(),
            flip_labels=LAPA_FLIP_LABELS):
    """images uint8 (B, S, S, 3); indices (B,) sample indices; landmarks (B, K, 2) and parsing
    uint8 (B, S, S) optional. Returns a dict with ``images`` and, when given, ``landmarks``
    (relabelled after a flip) and ``parsing`` (nearest, left/right labels swapped after a
    flip), and ``params`` (the draws)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be uint8 (B, S, S, 3), got {images.dtype} {images.shape}")
    B, S = images.shape[0], images.shape[1]
    indices = np.asarray(indices).reshape(-1)
    if len(indices) != B:
        raise ValueError(f"indices must hold one index per image ({B}), got {len(indices)}")
    params = [sample_params(config, seed, epoch, i) for i in indices]
    A = np.stack([geometric_matrix(p, S) for p in params])
    out = {"images": warp(images, A, S), "params": params}
    if landmarks is not None:
        lm = np.asarray(landmarks, np.float32)
        scheme = scheme_for(lm.shape[1])
        moved = np.stack([transform_points(A[b], lm[b]) for b in range(B)])
        out["landmarks"] = np.stack([moved[b][list(scheme.flip)] if params[b]["flip"] else moved[b]
                                     for b in range(B)])
    if parsing is not None:
        labels = warp(np.asarray(parsing, np.uint8), A, S, nearest=True)
        lut = np.arange(256, dtype=np.uint8)
        for a, b in flip_labels:
            lut[a], lut[b] = b, a
        for b in range(B):
            if params[b]["flip"]:
                labels[b] = lut[labels[b]]
        out["parsing"] = labels
    colour = np.array([[p["brightness"], p["contrast"], p["saturation"], float(p["grayscale"])] for p in params],
                      np.float32)
    _C.color_jitter(out["images"], colour)
    sigmas = np.array([p["sigma"] for p in params], np.float32)
    if sigmas.any():
        _C.gaussian_blur(out["images"], sigmas)
    return out
