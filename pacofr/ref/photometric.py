"""NumPy twins of the C colour jitter and blur."""
import math

import numpy as np


def color_jitter(img, brightness, contrast, saturation, grayscale):
    """img (H, W, 3) uint8 -> uint8, as pf_color_jitter_u8."""
    x = img.astype(np.float64)
    luma = np.array([0.299, 0.587, 0.114])
    m = (x @ luma).mean() * brightness
    v = (x * brightness - m) * contrast + m
    g = (v @ luma)[..., None]
    out = g if grayscale else g + (v - g) * saturation
    out = np.broadcast_to(out, x.shape)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)


def gaussian_blur(img, sigma):
    """img (H, W, C) uint8, separable Gaussian, radius ceil(3 sigma), mirrored edges."""
    if sigma <= 0:
        return img.copy()
    r = min(64, math.ceil(3 * sigma))
    k = np.exp(-0.5 * np.arange(-r, r + 1) ** 2 / sigma ** 2)
    k /= k.sum()

    def mirror(i, n):
        i = np.where(i < 0, -i, i)
        i = np.where(i >= n, 2 * n - 2 - i, i)
        return np.clip(i, 0, n - 1)

    H, W, _ = img.shape
    x = img.astype(np.float64)
    tmp = sum(k[j + r] * x[:, mirror(np.arange(W) + j, W)] for j in range(-r, r + 1))
    out = sum(k[j + r] * tmp[mirror(np.arange(H) + j, H)] for j in range(-r, r + 1))
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)
