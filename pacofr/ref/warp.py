"""NumPy twin of the C warp (bilinear with rounding, or nearest; constant fill outside)."""
import numpy as np


def warp(src, inv, out_h, out_w, nearest=False, fill=0):
    """src (H, W, C) uint8; inv (2, 3) output pixel -> source position."""
    H, W, C = src.shape
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]

    def sample(ix, iy):
        inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
        vals = src[np.clip(iy, 0, H - 1), np.clip(ix, 0, W - 1)].astype(np.float64)
        return np.where(inside[..., None], vals, float(fill))

    if nearest:
        return sample(np.floor(sx + 0.5).astype(int), np.floor(sy + 0.5).astype(int)).astype(np.uint8)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    ax, ay = (sx - x0)[..., None], (sy - y0)[..., None]
    acc = ((1 - ax) * (1 - ay) * sample(x0, y0) + ax * (1 - ay) * sample(x0 + 1, y0)
           + (1 - ax) * ay * sample(x0, y0 + 1) + ax * ay * sample(x0 + 1, y0 + 1))
    return np.floor(acc + 0.5).astype(np.uint8)
