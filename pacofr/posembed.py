"""Fixed 2-D sine-cosine position embeddings, as MAE builds them."""
import numpy as np


def sincos_1d(dim, positions):
    """(M,) positions -> (M, dim): [sin(pos * w), cos(pos * w)], w = 1 / 10000^(2i/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(np.asarray(positions, np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid_size, cls_token=True):
    """(1 + G*G, dim) float32 (a zero row first for the cls token): the first half encodes the
    column index, the second the row index, in MAE's (meshgrid w-first) convention."""
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be a multiple of 4, got {dim}")
    gw, gh = np.meshgrid(np.arange(grid_size, dtype=np.float64), np.arange(grid_size, dtype=np.float64))
    emb = np.concatenate([sincos_1d(dim // 2, gw), sincos_1d(dim // 2, gh)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return emb.astype(np.float32)
