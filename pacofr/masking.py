"""Patch masks for masked image modelling (docs/method.md section 1) and the positions of PaCo-FR's
substituted patches.

``make_masks`` returns MAE's (mask, ids_keep, ids_restore) for every kind of the registry
``REGISTRY``: ``random`` (MAE), ``block`` (BEiT block-wise), ``structured`` (whole facial
components of a ``pacofr.regions`` map, with an adjacent top-up) and ``facial`` (whole facial
components up to a budget, then random patches), each row a pure function of (seed, step, sample
index); the C core (csrc/paco/masking.c, one entry point ``_C.mask_sample``) computes them and
``pacofr.ref.masking`` is the NumPy twin. ``subst_positions`` draws PaCo-FR's substitution
positions from the same counter-based generator.

The registry is the one list of the kinds in Python: ``pacofr.train.config`` and ``pacofr.cli``
read ``KINDS`` from here, ``pacofr.paco`` asks ``needs_regions``. A new kind is a row here, a
kind of the C kernel (csrc/paco/masking.h, .c) and of the twin, and a test.
"""
from dataclasses import dataclass

import numpy as np

from . import _C
from ._checks import as_index, check_grid, int_array
from .regions import COMPONENTS, region_map

__all__ = ["KINDS", "MAX_MASK_GRID", "NEEDS_REGIONS", "REGISTRY", "MaskKind", "make_masks", "mask_kind",
           "needs_regions", "num_kept", "num_masked", "subst_positions"]


@dataclass(frozen=True)
class MaskKind:
    """One masking kind: ``name`` (the C core's, csrc/paco/masking.c's kind table), whether it
    reads a region map (``needs_regions``: make_masks then passes one, by default
    ``region_map(grid)``) and whether it takes ``region_ratio`` (``region_budget``: the share of
    the removed patches taken as whole components, passed to C as n_region)."""
    name: str
    needs_regions: bool = False
    region_budget: bool = False
    summary: str = ""


# in the C core's kind order (csrc/paco/masking.h pf_mask_kind; tests/test_masking.py pins it)
REGISTRY = (
    MaskKind("random", summary="a uniform random subset (MAE)"),
    MaskKind("block", summary="BEiT's block-wise rectangles, then a spatially coherent top-up"),
    MaskKind("structured", needs_regions=True,
             summary="whole components of the region map, then a spatially coherent top-up"),
    MaskKind("facial", needs_regions=True, region_budget=True,
             summary="whole facial components up to round(region_ratio * n_mask) patches, then random ones"),
)
KINDS = tuple(k.name for k in REGISTRY)
NEEDS_REGIONS = frozenset(k.name for k in REGISTRY if k.needs_regions)
_BY_NAME = {k.name: k for k in REGISTRY}
U64 = (1 << 64) - 1
MAX_MASK_GRID = 4096     # csrc/paco/masking.h PF_MASK_MAX_GRID

# ---------------------------------------------------------------- masks

def mask_kind(kind):
    """The registry's row for ``kind`` (a name of ``KINDS``); ValueError naming the kinds else."""
    if not isinstance(kind, str) or kind not in _BY_NAME:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    return _BY_NAME[kind]


def needs_regions(kind):
    """Whether masks of ``kind`` read a region map (ValueError for an unknown kind)."""
    return mask_kind(kind).needs_regions


def _u64(value, name):
    """An integer key (seed, step) as the C generator's uint64: negative ones wrap, as in C."""
    return as_index(value, name) & U64


def num_masked(ratio, num_patches):
    """round(ratio * N): how many patches every row of a mask removes."""
    return int(round(float(ratio) * num_patches))


def num_kept(ratio, num_patches):
    """N - round(ratio * N): how many patches every row of a mask keeps (the encoder's tokens less
    cls)."""
    return int(num_patches) - num_masked(ratio, num_patches)


def _regions(regions, B, N):
    if regions is None:
        return None
    r = int_array(regions, "regions")
    if r.shape not in ((N,), (B, N)):
        raise ValueError(f"regions must have shape ({N},) (one map for the batch) or ({B}, {N}) (one per "
                         f"image), got {r.shape}")
    if r.size and (r.min() < 0 or r.max() >= len(COMPONENTS)):
        bad = r[(r < 0) | (r >= len(COMPONENTS))].ravel()[0]
        raise ValueError(f"regions must hold component ids in [0, {len(COMPONENTS)}), got {bad}")
    return np.ascontiguousarray(r, np.int64)


def make_masks(kind, batch_size, grid, ratio, seed, step, regions=None, indices=None, region_ratio=0.5):
    """Masks for one batch: ``kind`` in ``KINDS``, ``batch_size`` images on a grid x grid patch
    grid, n_mask = round(ratio * N) patches removed in every row.

    regions: for the kinds in ``NEEDS_REGIONS`` (``structured``, ``facial``), None (the canonical
    ``region_map(grid)``), one (N,) map for the batch or (B, N) maps per image; checked but unused
    by the other kinds. ``facial`` masks whole facial components (every one but hair/background)
    in a random order while the count stays <= round(region_ratio * n_mask), then random patches
    (facial components first, as FSFM's CRFR-P and facial-video MAE work mask); region_ratio in
    [0, 1], read by the kinds with ``region_budget`` only. indices: (B,) global sample indices
    (default ``arange(B)``); row b is a pure function of (kind, seed, step, indices[b]) and of its
    region map, whatever the batch composition or thread count.

    Returns ``mask`` (B, N) uint8 (1 = removed), ``ids_keep`` (B, N - n_mask) int64 (kept
    patches, ascending) and ``ids_restore`` (B, N) int64 with ``ids_shuffle[ids_restore] ==
    arange(N)`` for ``ids_shuffle = concat(ids_keep, removed patches ascending)`` (MAE).

    Raises ValueError for an unknown kind, a ratio outside [0, 1), grid < 1, a negative batch
    size, indices not of shape (B,), or regions of the wrong shape or with ids outside [0, 13).
    """
    spec = mask_kind(kind)
    B = as_index(batch_size, "batch_size")
    if B < 0:
        raise ValueError(f"batch_size must be >= 0, got {B}")
    G = check_grid(grid, MAX_MASK_GRID)
    if isinstance(ratio, (bool, np.bool_)) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"ratio must be a number, got {type(ratio).__name__} {ratio!r}")
    r = float(ratio)
    if not 0.0 <= r < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    N = G * G
    seed, step = _u64(seed, "seed"), _u64(step, "step")
    if indices is None:
        idx = np.arange(B, dtype=np.int64)
    else:
        idx = int_array(indices, "indices")
        if idx.shape != (B,):
            raise ValueError(f"indices must have shape ({B},), got {idx.shape}")
        idx = np.ascontiguousarray(idx, np.int64)
    reg = _regions(regions, B, N)
    n_mask = num_masked(r, N)
    if n_mask >= N:
        raise ValueError(f"ratio {r} removes round({r} x {N}) = {n_mask} of the {N} patches: "
                         "nothing would be kept")
    n_region = _n_region(region_ratio, n_mask) if spec.region_budget else 0
    if spec.needs_regions and reg is None:
        reg = region_map(G)
    return _C.mask_sample(spec.name, idx, G, n_mask, seed, step, reg if spec.needs_regions else None, n_region)


def _n_region(region_ratio, n_mask):
    """round(region_ratio * n_mask): a region-budget kind's whole-component patches; region_ratio in [0, 1]."""
    if isinstance(region_ratio, bool) or not 0.0 <= float(region_ratio) <= 1.0:
        raise ValueError(f"region_ratio must be in [0, 1], got {region_ratio!r}")
    return int(round(float(region_ratio) * n_mask))


def subst_positions(seed, step, indices, n_keep, count):
    """Positions of PaCo-FR's substituted patches (docs/method.md §2): (B, count) int64, for each
    row ``count`` distinct positions within that row's ``ids_keep`` (in [0, n_keep)), ascending,
    uniform over subsets; row b is a pure function of (seed, step, indices[b]), drawn by the
    same counter-based generator as the masks under its own salt (csrc/paco/masking.c; the
    NumPy twin is ``pacofr.ref.masking.subst_positions``)."""
    seed, step = _u64(seed, "seed"), _u64(step, "step")
    n_keep, count = as_index(n_keep, "n_keep"), as_index(count, "count")
    if not 0 <= count <= n_keep:
        raise ValueError(f"count must be in [0, n_keep = {n_keep}], got {count}")
    idx = int_array(indices, "indices")
    if idx.ndim != 1:
        raise ValueError(f"indices must have shape (B,), got {idx.shape}")
    idx = np.ascontiguousarray(idx, np.int64)
    return _C.subst_positions(seed, step, idx, n_keep, count)
