"""Reconstruction previews: for a few images of the last batch, original | masked (removed
patches grey) | substituted (codebook tokens in place, removed grey) | reconstruction (the
decoder's prediction on removed patches, visible ones as given), un-normalised, as a PNG."""
import io
from pathlib import Path

import numpy as np
from PIL import Image

from .. import ops
from .._io import atomic_write_bytes
from ..data.loader import IMAGENET_MEAN, IMAGENET_STD


def to_uint8(images):
    """(B, 3, S, S) normalised float -> (B, S, S, 3) uint8."""
    x = images.transpose(0, 2, 3, 1) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def panels(paco, images, count=4):
    """(count, 4, S, S, 3) uint8 panels from a ``PacoFR``'s last forward on ``images``."""
    last, p = paco.last, paco.model.config.patch_size
    B = min(count, images.shape[0])
    mask = last["mask"][:B].astype(bool)
    pred = paco.model.prediction()[:B]                             # (B, N, d), normalised targets
    P = ops.patchify(np.ascontiguousarray(images[:B]), p)
    if paco.model.config.norm_pix_loss:
        _, mu, sigma = ops.patch_stats(P.reshape(-1, P.shape[-1]))
        pred = pred * sigma.reshape(B, -1, 1) + mu.reshape(B, -1, 1)
    recon = np.where(mask[..., None], pred, P)
    rec_img = ops.unpatchify(np.ascontiguousarray(recon, np.float32), p)
    grey = np.zeros_like(P)  # 0 in normalised space: the data set's mean colour
    m_img = ops.unpatchify(np.ascontiguousarray(np.where(mask[..., None], grey, P)), p)
    sub = last.get("x_in")
    if sub is not None:
        Ps = np.where(mask[..., None], grey, ops.patchify(np.ascontiguousarray(sub[:B]), p))
        s_img = ops.unpatchify(np.ascontiguousarray(Ps), p)
    else:
        s_img = m_img
    return np.stack([to_uint8(images[:B]), to_uint8(m_img), to_uint8(s_img), to_uint8(rec_img)], 1)


def save_preview(paco, batch, step, path, count=4, zoom=2):
    """The panels of the last forward on ``batch`` as one PNG, written atomically."""
    tiles = panels(paco, batch["images"], count)
    B, K, S = tiles.shape[:3]
    grid = tiles.transpose(0, 2, 1, 3, 4).reshape(B * S, K * S, 3)
    img = Image.fromarray(grid).resize((K * S * zoom, B * S * zoom), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
