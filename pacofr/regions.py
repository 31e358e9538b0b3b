"""Facial region geometry for PaCo-FR's structured masking (docs/method.md section 1).

A region map gives each patch of a G x G grid one of the 13 ``COMPONENTS`` (row-major, int64).
It is built from 68 landmarks: each component is a union of polygons drawn from the landmarks
(below), painted in a fixed order at ``SAMPLES x SAMPLES`` samples per patch with the C
rasteriser of SynthFace (``_C.raster_faces``); each patch takes the component with the most
samples, ties to the lower id. ``region_map`` is the canonical map (the 300-W mean shape of
``pacofr.data.schemes.CANONICAL_68``, cached per grid); ``region_map_from_landmarks`` and
``region_map_from_parsing`` build per-image maps.

The component polygons, in painting order (later ones win where they overlap). Lengths are
fractions of the outer-eye-corner distance D, offsets follow the face's own axes (x from
landmark 36 to 45, y perpendicular, downwards), so the construction turns and scales with the
face and mirrors exactly under a horizontal flip ("left" = image left, as in LaPa):
  forehead   the whole face, jaw line 0-16 closed by an elliptic arc whose top lies
             FOREHEAD_HEIGHT of the brow-to-chin height above the highest brow point; what no
             later polygon covers (forehead, temples, glabella) stays forehead
  cheeks     eye bottom 36-41 (39-36), out to contour 0 (16), down contour 0-5 (16-11), to the
             mouth corner 48 (54), up the nose's side
  chin       contour 5-11 closed by the mouth's lower outline 54-59, 48
  jaws       strips JAW_WIDTH wide along contour 0-5 / 11-16, towards the nose (30)
  mouth      the outer lip contour 48-59 scaled by MOUTH_SCALE about its centre, plus the skin
             between the nose base and the upper lip (so that the two cheeks never touch)
  nose       27-35 widened: NOSE_TOP_HALF either side of 27, nostrils 31 / 35 pushed out by
             NOSE_BASE_OUT, 33 lowered by NOSE_DOWN
  brows      bands BROW_HALF_WIDTH either side of 17-21 / 22-26, extended by BROW_EXTEND at
             both ends
  eyes       ellipses about the centre of 36-41 / 42-47, half axes EYE_HALF_AXES of the eye's
             corner-to-corner length (along, across it): open or closed, an eye keeps its region
  hair_background  everything else.
"""
import functools

import numpy as np

from . import _C
from ._checks import check_grid, int_array
from .data.schemes import CANONICAL_68


__all__ = ["COMPONENTS", "COMPONENT_FLIP", "SKIN_COMPONENTS", "region_map", "region_map_from_landmarks",
           "region_map_from_parsing", "flip_region_map"]

COMPONENTS = ("left_brow", "right_brow", "left_eye", "right_eye", "nose", "mouth", "left_cheek", "right_cheek",
              "forehead", "chin", "left_jaw", "right_jaw", "hair_background")
(LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, MOUTH, LEFT_CHEEK, RIGHT_CHEEK, FOREHEAD, CHIN, LEFT_JAW,
 RIGHT_JAW, HAIR_BACKGROUND) = range(len(COMPONENTS))
# component id after a horizontal flip: left and right swap
COMPONENT_FLIP = (RIGHT_BROW, LEFT_BROW, RIGHT_EYE, LEFT_EYE, NOSE, MOUTH, RIGHT_CHEEK, LEFT_CHEEK, FOREHEAD, CHIN,
                  RIGHT_JAW, LEFT_JAW, HAIR_BACKGROUND)
# the components made of skin: where a parsing map says skin, these come from the canonical map
SKIN_COMPONENTS = (LEFT_CHEEK, RIGHT_CHEEK, FOREHEAD, CHIN, LEFT_JAW, RIGHT_JAW)

SAMPLES = 8              # rasterised samples per patch side
MAX_GRID = 512           # SAMPLES * MAX_GRID = 4096, the rasteriser's largest image
FOREHEAD_HEIGHT = 0.25   # of the brow-to-chin height (0.25 puts the canonical top at 0.05 of the crop)
BROW_HALF_WIDTH = 0.07
BROW_EXTEND = 0.05
EYE_HALF_AXES = (0.75, 0.40)
NOSE_TOP_HALF = 0.10
NOSE_BASE_OUT = 0.06
NOSE_DOWN = 0.03
MOUTH_SCALE = 1.2
JAW_WIDTH = 0.20
MAX_COORD_FACTOR = 100   # landmarks farther than this many image sizes from the origin are data errors

# ellipse vertices, symmetric under reflection about either axis (so a flip maps them onto themselves)
_EYE_ANGLES = (np.arange(16)[:, None] * 2 + 1) * np.pi / 16
# LaPa-11 label -> parsing category: 0-5 the part components, 6 skin, 7 hair or background
_LAPA_CATEGORY = np.array([7, 6, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, MOUTH, MOUTH, MOUTH, 7], np.int64)
_SKIN_CATEGORY, _HAIR_CATEGORY = 6, 7


# ---------------------------------------------------------------- region maps

def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _polygons(lm):
    """lm (B, 68, 2) in unit-crop coordinates -> [(component, (B, n, 2) polygon)], in painting
    order (see the module docstring)."""
    P = lambda *idx: lm[:, list(idx)]  # noqa: E731  (B, k, 2)
    ex = _unit(lm[:, 45] - lm[:, 36])[:, None]                  # (B, 1, 2) face x axis
    ey = np.concatenate([-ex[..., 1:], ex[..., :1]], -1)         # (B, 1, 2) face y axis, downwards
    D = np.linalg.norm(lm[:, 45] - lm[:, 36], axis=-1)[:, None, None]
    proj = lambda p: (p * ey).sum(-1)  # noqa: E731

    # the face outline: jaw line, then an elliptic arc over the forehead from 16 back to 0
    centre, half = (lm[:, :1] + lm[:, 16:17]) / 2, (lm[:, 16:17] - lm[:, :1]) / 2
    brow_top, chin = proj(lm[:, 17:27]).min(1), proj(lm[:, 8:9])[:, 0]
    height = (proj(centre)[:, 0] - brow_top + FOREHEAD_HEIGHT * (chin - brow_top))[:, None, None]
    t = np.linspace(0.0, np.pi, 17)[1:-1, None]
    face = np.concatenate([lm[:, :17], centre + half * np.cos(t) - ey * height * np.sin(t)], 1)

    nose_top = [lm[:, 27:28] - NOSE_TOP_HALF * D * ex, lm[:, 27:28] + NOSE_TOP_HALF * D * ex]
    nose_base = [lm[:, 31:32] - NOSE_BASE_OUT * D * ex, lm[:, 35:36] + NOSE_BASE_OUT * D * ex]
    nose_bottom = [P(32), lm[:, 33:34] + NOSE_DOWN * D * ey, P(34)]
    nose = np.concatenate([nose_top[0], nose_base[0], *nose_bottom, nose_base[1], nose_top[1]], 1)

    cheeks = [np.concatenate([P(36, 0, 1, 2, 3, 4, 5, 48), nose_base[0], nose_top[0], P(39, 40, 41)], 1),
              np.concatenate([P(45, 16, 15, 14, 13, 12, 11, 54), nose_base[1], nose_top[1], P(42, 47, 46)], 1)]
    chin_poly = P(5, 6, 7, 8, 9, 10, 11, 54, 55, 56, 57, 58, 59, 48)

    def strip(idx):
        pts = P(*idx)
        inner = pts + JAW_WIDTH * D * _unit(lm[:, 30:31] - pts)
        return np.concatenate([pts, inner[:, ::-1]], 1)

    lips = lm[:, 48:60]
    mid = lips.mean(1, keepdims=True)
    philtrum = np.concatenate([nose_base[0], *nose_bottom, nose_base[1], P(54, 53, 52, 51, 50, 49, 48)], 1)

    def brow(idx):
        pts = P(*idx)
        along = _unit(pts[:, -1:] - pts[:, :1])
        pts = np.concatenate([pts[:, :1] - BROW_EXTEND * D * along, pts, pts[:, -1:] + BROW_EXTEND * D * along], 1)
        w = BROW_HALF_WIDTH * D * ey
        return np.concatenate([pts - w, (pts + w)[:, ::-1]], 1)

    def eye(idx):
        pts = P(*idx)
        length = np.linalg.norm(pts[:, 3:4] - pts[:, :1], axis=-1, keepdims=True)   # corner to corner
        along = _unit(pts[:, 3:4] - pts[:, :1])
        across = np.concatenate([-along[..., 1:], along[..., :1]], -1)
        return (pts.mean(1, keepdims=True) + EYE_HALF_AXES[0] * length * np.cos(_EYE_ANGLES) * along
                + EYE_HALF_AXES[1] * length * np.sin(_EYE_ANGLES) * across)

    return [(FOREHEAD, face), (LEFT_CHEEK, cheeks[0]), (RIGHT_CHEEK, cheeks[1]), (CHIN, chin_poly),
            (LEFT_JAW, strip(range(0, 6))), (RIGHT_JAW, strip(range(16, 10, -1))),
            (MOUTH, mid + MOUTH_SCALE * (lips - mid)), (MOUTH, philtrum), (NOSE, nose),
            (LEFT_BROW, brow(range(17, 22))), (RIGHT_BROW, brow(range(22, 27))),
            (LEFT_EYE, eye(range(36, 42))), (RIGHT_EYE, eye(range(42, 48)))]


def _region_maps_unit(lm, grid):
    """lm (B, 68, 2) float64 in unit-crop coordinates (x right, y down, the crop is [0, 1]^2)
    -> (B, grid * grid) int64 component ids."""
    B, R = lm.shape[0], grid * SAMPLES
    blocks = []
    for comp, poly in _polygons(lm):
        n = poly.shape[1]
        head = np.tile(np.array([comp + 1, -1, 0, 0, 0, 0, n], np.float64), (B, 1))
        blocks += [head, (poly * R - 0.5).reshape(B, 2 * n)]   # unit -> pixel centres at 0..R-1
    layers = np.ascontiguousarray(np.concatenate(blocks, 1), np.float32)
    offsets = np.arange(B + 1, dtype=np.int64) * layers.shape[1]
    params = np.zeros((B, 16), np.float32)
    params[:, 2:4] = 1.0   # head radii: unused (no lit layers), but the rasteriser wants them positive
    _, labels = _C.raster_faces(layers.ravel(), offsets, params, np.zeros((B, 6), np.float32),
                                np.zeros(B, np.int64), R)
    comp = np.where(labels == 0, HAIR_BACKGROUND, labels.astype(np.int64) - 1)
    comp = comp.reshape(B, grid, SAMPLES, grid, SAMPLES).transpose(0, 1, 3, 2, 4).reshape(B * grid * grid, -1)
    K = len(COMPONENTS)
    votes = np.bincount((np.arange(B * grid * grid)[:, None] * K + comp).ravel(), minlength=B * grid * grid * K)
    return votes.reshape(B, grid * grid, K).argmax(-1)   # first maximum: ties to the lower id


@functools.lru_cache(maxsize=None)
def _canonical(grid):
    out = _region_maps_unit(CANONICAL_68[None], grid)[0]
    out.flags.writeable = False
    return out


def region_map(grid):
    """The canonical region map: (grid * grid,) int64 component ids, row-major, from the 68-point
    mean shape of the aligned frame. Cached per grid (a read-only array)."""
    return _canonical(check_grid(grid, MAX_GRID))


def region_map_from_landmarks(landmarks, size, grid):
    """Per-image region maps from 68 landmarks (B, 68, 2) in pixel coordinates of size x size
    images (pixel centres at 0..size-1, as ``canonical_five``) -> (B, grid * grid) int64."""
    grid = check_grid(grid, MAX_GRID)
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or Inf")
    if (isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, float, np.integer, np.floating))
            or not 0 < size < np.inf):
        raise ValueError(f"size must be a positive number, got {size!r}")
    far = np.abs(lm).max(initial=0.0)
    if far > MAX_COORD_FACTOR * size:
        raise ValueError(f"landmarks must lie near the {size} px image (|coordinate| <= {MAX_COORD_FACTOR} x size), "
                         f"got a coordinate of magnitude {far:.3g}")
    corners = np.linalg.norm(lm[:, 45] - lm[:, 36], axis=-1)
    if (corners <= 0).any():
        raise ValueError(f"landmarks[{int(np.argmax(corners <= 0))}]: outer eye corners 36 and 45 coincide")
    if lm.shape[0] == 0:
        return np.zeros((0, grid * grid), np.int64)
    return _region_maps_unit((lm + 0.5) / float(size), grid)


@functools.lru_cache(maxsize=None)
def _skin_fill(grid):
    """(grid * grid,) the skin component a skin patch takes: the canonical map's where it has
    one, else that of the nearest canonical skin patch (ties to the lower patch index);
    forehead when the canonical map has no skin patch at all."""
    canon = _canonical(grid)
    skin = np.isin(canon, SKIN_COMPONENTS)
    if not skin.any():
        out = np.full(grid * grid, FOREHEAD, np.int64)
    else:
        yx = np.stack(np.divmod(np.arange(grid * grid), grid), 1)
        d2 = ((yx[:, None] - yx[None, skin]) ** 2).sum(-1)
        out = np.where(skin, canon, canon[skin][d2.argmin(1)])
    out.flags.writeable = False
    return out


def region_map_from_parsing(parsing, grid):
    """Per-image region maps from LaPa-11 parsing maps (B, S, S) uint8 -> (B, grid * grid) int64.

    Each patch takes the majority of its pixels over brows, eyes, nose, mouth (upper lip, inner
    mouth and lower lip together), skin and hair + background, ties in that order. Brows, eyes,
    nose and mouth give their component, hair + background ``hair_background``; a skin patch
    takes the canonical map's skin component there (cheeks, forehead, chin, jaws), else the
    nearest one. S must be a multiple of grid."""
    grid = check_grid(grid, MAX_GRID)
    p = np.asarray(parsing)
    if p.dtype != np.uint8:
        raise ValueError(f"parsing must have dtype uint8 (LaPa-11 labels), got {p.dtype}")
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"parsing must have shape (B, S, S), got {p.shape}")
    B, S = p.shape[0], p.shape[1]
    if S == 0 or S % grid:
        raise ValueError(f"parsing side {S} must be a positive multiple of grid {grid}")
    if p.size and p.max() > 10:
        raise ValueError(f"parsing holds label {int(p.max())}; LaPa-11 labels are 0..10")
    s, N = S // grid, grid * grid
    cat = _LAPA_CATEGORY[p].reshape(B, grid, s, grid, s).transpose(0, 1, 3, 2, 4).reshape(B * N, s * s)
    votes = np.bincount((np.arange(B * N)[:, None] * 8 + cat).ravel(), minlength=B * N * 8)
    best = votes.reshape(B, N, 8).argmax(-1)
    out = np.where(best == _HAIR_CATEGORY, HAIR_BACKGROUND, best)
    return np.where(best == _SKIN_CATEGORY, _skin_fill(grid)[None], out).astype(np.int64)


def flip_region_map(regions, grid):
    """The region map(s) (..., grid * grid) of the horizontally flipped image(s): columns
    mirrored, left and right components swapped."""
    grid = check_grid(grid, MAX_GRID)
    r = int_array(regions, "regions")
    if r.ndim < 1 or r.shape[-1] != grid * grid:
        raise ValueError(f"regions must have shape (..., {grid * grid}), got {r.shape}")
    if r.size and (r.min() < 0 or r.max() >= len(COMPONENTS)):
        raise ValueError(f"regions must hold component ids in [0, {len(COMPONENTS)}), got values in "
                         f"[{r.min()}, {r.max()}]")
    mirrored = r.reshape(*r.shape[:-1], grid, grid)[..., ::-1].reshape(r.shape)
    return np.asarray(COMPONENT_FLIP, np.int64)[mirrored]
