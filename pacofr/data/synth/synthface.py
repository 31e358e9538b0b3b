"""SynthFace: faces drawn from a parametric head with exact ground truth.

Image i of ``SynthFace(seed)`` is a pure function of (seed, i). Identity (face shape, skin and
its texture, hair style and colour, eyes, ears, moles) is a pure function of (seed, identity
id), so images of one identity differ only in pose, expression, lighting, background, clothes,
occluders, blur and noise.

Parsing follows LaPa's 11 classes (docs/evaluation.md). LaPa's "left" brow and eye are the ones on the
image's left (the subject's right): FaRL's LaPa model names label 2 ``rb`` and label 4 ``re``
for the same masks, and LaPa's 106-point "left eye" points lie on the image left. Ears count as
skin, neck and clothes as background, hats, glasses, masks and hands as background over what
they hide (LaPa labels what is visible)."""
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ... import _C
from ..formats import check_int
from ..schemes import SCHEMES
from . import geometry as g

SUBSETS = ("large_pose", "expression", "illumination", "occlusion", "blur")
OCCLUDERS = ("none", "sunglasses", "face_mask", "hand", "hat", "blob")
HAIR_STYLES = ("short", "fringe", "swept", "bald", "long", "long_fringe")


INT64_MAX = 2 ** 63 - 1


class IndexOutOfRange(IndexError, ValueError):
    """An image index outside [0, num_images): an IndexError (so iteration stops) and a
    ValueError (as every bad argument)."""


def subsets_of(a):
    """docs/evaluation.md's SynthFace subsets (mirroring WFLW's) from one image's attributes."""
    return {"large_pose": abs(a["yaw"]) >= 45 or abs(a["pitch"]) >= 25 or abs(a["roll"]) >= 25,
            "expression": a["smile"] > 0.5 or a["open_mouth"] > 0.3 or a["raise_brows"] > 0.5 or a["close_eyes"] > 0,
            "illumination": a["ambient"] < 0.45 or a["colour_cast"] > 0.1,
            "occlusion": a["occluder"] != 0,
            "blur": a["blur"] > 0}


# LaPa-11
BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP, HAIR = range(11)
KEEP = -1  # a layer that paints without changing labels
LIT, SKIN_TEX, HAIR_TEX = 1, 2, 4  # shading flags (csrc/image/raster.h)

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 158], [224, 172, 128], [198, 134, 96], [161, 102, 68],
                       [120, 74, 48], [88, 54, 36]], np.float64)
HAIR_COLOURS = np.array([[20, 16, 14], [60, 40, 28], [110, 74, 42], [170, 130, 80], [220, 190, 130],
                         [140, 60, 30], [120, 120, 120], [200, 200, 205]], np.float64)
IRIS_COLOURS = np.array([[70, 45, 25], [110, 75, 40], [60, 100, 140], [80, 120, 80], [120, 120, 130]], np.float64)

_CIRCLES = {n: np.stack([np.cos(t), np.sin(t)], 1) for n in (10, 12, 16, 20, 24, 32)
            for t in [np.linspace(0, 2 * np.pi, n, endpoint=False)]}
# Ear anchors on the head ellipsoid (unit crop): centre height between the eyes and the nose base.
_EAR_Y = float(g.TEMPLATE_3D[[36, 45], 1].mean() * 0.45 + g.TEMPLATE_3D[33, 1] * 0.55)


def _ellipse(cx, cy, rx, ry, n=24, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)
    return _CIRCLES[n] @ np.array([[c * rx, s * rx], [-s * ry, c * ry]]) + (cx, cy)


def _cap(cx, cy, rx, ry, clip_y, n=24):
    """The part of an axis-aligned ellipse above the line y = clip_y (image y grows downwards),
    closed by its chord."""
    t0 = math.asin(min(1.0, max(-1.0, (clip_y - cy) / ry)))
    t = np.linspace(math.pi - t0, 2 * math.pi + t0, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _band(points, up, down):
    """A closed band around an open polyline: the upper edge raised by ``up``, the lower one
    lowered by ``down`` (brows, lash lines)."""
    return np.concatenate([points - [0, up], points[::-1] + [0, down]])


def _inside(points, poly):
    """Even-odd point-in-polygon for (P, 2) points against one (n, 2) polygon -> (P,) bool."""
    x, y = points[:, :1], points[:, 1:]
    xi, yi = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    crosses = (yi > y) != (yj > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = xi + (y - yi) / (yj - yi) * (xj - xi)
    return ((crosses & (x < xc)).sum(1) % 2) == 1


class _Scene:
    """The layer records of one image (csrc/image/raster.c's format), and the occluding polygons."""

    def __init__(self):
        self.records, self.occluders = [], []

    def add(self, poly, colour, label, only=KEEP, shade=0, occludes=False):
        poly = np.asarray(poly, np.float32)
        self.records += [np.array((label, only, colour[0], colour[1], colour[2], shade, len(poly)), np.float32),
                         poly.ravel()]
        if occludes:
            self.occluders.append(poly)

    def array(self):
        return np.concatenate(self.records)


class SynthFace:
    """``ds[i]`` -> dict with ``image`` uint8 (S, S, 3), ``landmarks`` float32 (68, 2, iBUG
    order, x then y), ``landmarks5`` (5, 2), ``visible`` bool (68,) (facing the camera and not
    under an occluder), ``parsing`` uint8 (S, S) (LaPa-11), ``identity`` int and ``attributes``
    (yaw, pitch, roll in degrees, expression values, illumination, occluder, blur, and
    ``subsets``: large_pose, expression, illumination, occlusion, blur);
    ``render_batch(indices)`` stacks them (attributes as a list of dicts).

    Arguments must be integers (Python or NumPy, never bools or floats; TypeError naming the
    argument otherwise) in range (ValueError): seed >= 0, 64 <= size <= 256, num_images >= 1,
    num_identities >= 1 or None (num_images // 10). An index outside [0, num_images) raises
    ``IndexOutOfRange`` (an IndexError and a ValueError)."""

    def __init__(self, seed=0, size=112, num_images=10000, num_identities=None):
        seed = check_int(seed, "seed", 0)
        size = check_int(size, "size")
        if not 64 <= size <= 256:
            raise ValueError(f"size must be between 64 and 256, got {size}")
        num_images = check_int(num_images, "num_images", 1, INT64_MAX)
        if num_identities is not None:
            num_identities = check_int(num_identities, "num_identities", 1, INT64_MAX)
        self.seed, self.size, self.num_images = seed, size, num_images
        self.num_identities = num_identities or max(1, num_images // 10)
        self._identities = {}  # identity id -> (params, neutral 3-D landmarks); a bounded cache

    def __len__(self):
        return self.num_images

    def __repr__(self):
        return (f"SynthFace(seed={self.seed}, size={self.size}, num_images={self.num_images}, "
                f"num_identities={self.num_identities})")

    def __getitem__(self, i):
        i = self._index(i, "index")
        b = self.render_batch([i])
        return {k: v[0] for k, v in b.items()}

    def _index(self, i, name):
        i = check_int(i, name)
        if not 0 <= i < self.num_images:
            raise IndexOutOfRange(f"{name} must be in [0, {self.num_images}) (num_images), got {i}")
        return i

    def _indices(self, indices):
        """render_batch's indices -> list of ints in range, else TypeError / ValueError."""
        if isinstance(indices, (list, tuple)) and any(isinstance(i, (bool, np.bool_)) for i in indices):
            raise TypeError("indices must be integers, got a bool")
        try:
            arr = np.asarray(indices)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"indices must be integers: {exc}") from None
        if arr.size == 0:
            raise ValueError("render_batch needs at least one index")
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {arr.dtype}")
        flat = arr.ravel()
        bad = np.flatnonzero((flat < 0) | (flat >= self.num_images))
        if bad.size:
            raise IndexOutOfRange(f"indices[{bad[0]}] must be in [0, {self.num_images}) (num_images), "
                                  f"got {flat[bad[0]]}")
        return [int(i) for i in flat]

    # ---- parameters
    def identity_of(self, i):
        i = check_int(i, "i", 0)
        return int(np.random.default_rng([self.seed, 0x5EED, i]).integers(self.num_identities))

    def identity_params(self, ident):
        rng = np.random.default_rng([self.seed, 0x1D, check_int(ident, "ident", 0)])
        shape = g.identity_shape(rng)
        tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05, 3)
        hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
        moles = [(int(rng.integers(68)), int(rng.integers(68)), float(rng.uniform(0.2, 0.8)))
                 for _ in range(int(rng.choice(4, p=[0.5, 0.25, 0.15, 0.1])))]
        return {"shape": shape, "skin": tone, "hair": hair, "hair_style": int(rng.integers(len(HAIR_STYLES))),
                "iris": IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2),
                "lips": tone * np.array([0.85, 0.55, 0.55]) + rng.uniform(-10, 10, 3),
                "brows": HAIR_COLOURS[rng.integers(3)] * rng.uniform(0.8, 1.2) if rng.random() < 0.7 else hair * 0.8,
                "skin_texture": float(rng.uniform(0.03, 0.09)), "skin_cell": float(rng.uniform(1.0, 2.2)),
                "hair_texture": float(rng.uniform(0.12, 0.35)), "ear_size": float(rng.uniform(0.9, 1.15)),
                "moles": moles}

    def _identity(self, ident):
        hit = self._identities.get(ident)
        if hit is None:
            if len(self._identities) >= 4096:
                self._identities.clear()
            params = self.identity_params(ident)
            hit = self._identities[ident] = (params, g.identity_points(params["shape"]))
        return hit

    def image_params(self, i):
        rng = np.random.default_rng([self.seed, check_int(i, "i", 0)])
        large = rng.random() < 0.2
        yaw = rng.uniform(-70, 70) if large else rng.normal(0, 12)
        return {"yaw": float(np.clip(yaw, -70, 70)), "pitch": float(np.clip(rng.normal(0, 10), -35, 35)),
                "roll": float(np.clip(rng.normal(0, 8), -35, 35)),
                "expression": g.Expression(smile=float(rng.random() ** 2), open_mouth=float(rng.random() ** 3),
                                           raise_brows=float(rng.random() ** 3), close_eyes=float(rng.random() < 0.08)),
                "scale": float(rng.uniform(0.9, 1.05)), "shift": rng.normal(0, 0.015, 2),
                "light": rng.normal(0, 1, 3) * [0.6, 0.6, 0.3] + [0, 0, 1], "ambient": float(rng.uniform(0.35, 0.75)),
                "specular": float(rng.uniform(0.0, 0.5)),
                "cast": rng.uniform(0.85, 1.1, 3), "background": rng.uniform(20, 235, 6),
                "bg_texture": float(rng.uniform(0, 40)), "bg_cell": float(rng.uniform(0.04, 0.3)),
                "bg_stripes": float(rng.uniform(0.04, 0.2)) if rng.random() < 0.2 else 0.0,
                "bg_angle": float(rng.uniform(0, np.pi)),
                "clutter": [(int(rng.integers(3)), rng.uniform(0, 1, 2), rng.uniform(0.05, 0.35, 2),
                             float(rng.uniform(0, np.pi)), rng.uniform(0, 255, 3))
                            for _ in range(int(rng.integers(5)))],
                "clothes": rng.uniform(10, 240, 3), "neckline": float(rng.uniform(0.6, 1.0)),
                "gaze": rng.normal(0, 0.15, 2), "blur": float(rng.uniform(0.6, 1.6) if rng.random() < 0.15 else 0.0),
                "noise": float(rng.uniform(0, 6)),
                "occluder": int(rng.choice(len(OCCLUDERS), p=[0.72, 0.06, 0.06, 0.06, 0.06, 0.04])),
                "occluder_colour": rng.uniform(0, 255, 3), "occluder_pose": rng.uniform(-1, 1, 3)}

    # ---- drawing
    def _ears(self, scene, ident, p, skin):
        """Ears on the sides of the head ellipsoid, posed with it; drawn before the face."""
        S, c, r = self.size, g.HEAD_CENTRE, g.HEAD_RADII
        R = g.rotation_matrix(p["yaw"], p["pitch"], p["roll"])
        for side in (-1, 1):
            anchor = np.array([c[0] + side * r[0] * 0.96, _EAR_Y, c[2]])
            q = (anchor - c) @ R.T
            normal = np.array([side, 0.0, 0.15]) @ R.T
            if normal[2] < -0.25:
                continue  # turned away
            xy = (c[:2] + p["scale"] * q[:2] + p["shift"]) * S - 0.5
            ry = 0.09 * S * p["scale"] * ident["ear_size"]
            rx = ry * (0.3 + 0.4 * max(normal[2], 0.0))
            angle = np.deg2rad(p["roll"]) + side * 0.15
            out = np.array([normal[0], normal[1]]) * 0.005 * S
            scene.add(_ellipse(*(xy + out), rx, ry, 16, angle), skin * 0.95, SKIN, shade=LIT | SKIN_TEX)
            scene.add(_ellipse(*(xy + out * 1.3), rx * 0.45, ry * 0.6, 12, angle), skin * 0.78, KEEP, shade=SKIN_TEX)

    def _layers(self, lm, ident, p, hx, hy, hrx, hry):
        """The scene of one face, back to front: backdrop, head, facial parts, occluder."""
        sc = _Scene()
        skin = ident["skin"] * p["cast"]
        sh_y = self._backdrop(sc, lm, ident, p, skin, hx, hy, hrx)
        top_y, brow_top = self._head(sc, lm, ident, p, skin, hx, hy, hrx, hry, sh_y)
        self._parts(sc, lm, ident, p, skin)
        self._occluder(sc, lm, p, skin, hx, hy, hrx, hry, top_y, brow_top)
        return sc

    def _backdrop(self, sc, lm, ident, p, skin, hx, hy, hrx):
        """Background clutter, clothes, long hair behind the shoulders and the neck -> the
        shoulders' height."""
        S, add = self.size, sc.add
        hair = ident["hair"] * p["cast"]
        style = HAIR_STYLES[ident["hair_style"]]
        jaw = lm[g.JAW]
        # background clutter: ellipses, rotated rectangles, triangles
        for kind, (ux, uy), (sx, sy), angle, colour in p["clutter"]:
            if kind == 0:
                poly = _ellipse(ux * S, uy * S, sx * S / 2, sy * S / 2, 20, angle)
            else:
                corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]] if kind == 1 else [[-1, 1], [0, -1], [1, 1]])
                c, s = np.cos(angle), np.sin(angle)
                pts = corners * [sx * S / 2, sy * S / 2]
                poly = np.stack([ux * S + c * pts[:, 0] - s * pts[:, 1], uy * S + s * pts[:, 0] + c * pts[:, 1]], 1)
            add(poly, colour * p["cast"], BACKGROUND)
        # clothes and neck (background in LaPa-11), long hair behind the shoulders
        chin = lm[8]
        sh_y = chin[1] + 0.16 * S
        w = hrx * 1.9
        add([[hx - w, S + 2], [hx - w, sh_y + 0.12 * S], [hx - 0.6 * w, sh_y], [hx + 0.6 * w, sh_y],
             [hx + w, sh_y + 0.12 * S], [hx + w, S + 2]], p["clothes"] * p["cast"], BACKGROUND)
        if style in ("long", "long_fringe"):
            add([[hx - hrx * 1.15, hy - 0.1 * S], [hx + hrx * 1.15, hy - 0.1 * S], [hx + hrx * 1.25, sh_y + 0.1 * S],
                 [hx - hrx * 1.25, sh_y + 0.1 * S]], hair * 0.75, HAIR, shade=HAIR_TEX)
        neck_w = 0.55 * abs(jaw[-3, 0] - jaw[2, 0]) / 2 + 0.05 * S
        nx = (jaw[5, 0] + jaw[11, 0]) / 2
        neck = [[nx - neck_w, jaw[5, 1]], [nx + neck_w, jaw[11, 1]], [nx + neck_w * 1.05, sh_y + 0.02 * S],
                [nx, sh_y + p["neckline"] * 0.1 * S], [nx - neck_w * 1.05, sh_y + 0.02 * S]]
        add(neck, skin * 0.8, BACKGROUND, shade=SKIN_TEX)
        return sh_y

    def _head(self, sc, lm, ident, p, skin, hx, hy, hrx, hry, sh_y):
        """Hair behind the head, ears, the face (jaw line closed by a forehead arc), moles,
        hair over the forehead and side locks -> (top of the forehead, top of the brows)."""
        S, add = self.size, sc.add
        hair = ident["hair"] * p["cast"]
        style = HAIR_STYLES[ident["hair_style"]]
        jaw = lm[g.JAW]
        # hair behind the head, ears, then the face: jaw line closed by a forehead arc
        if style != "bald":
            clip_y = hy if style.startswith("long") else (lm[2, 1] + lm[3, 1]) / 2
            add(_cap(hx, hy - 0.08 * S, hrx * 1.12, hry * 1.02, clip_y, 32), hair * 0.8, HAIR, shade=HAIR_TEX)
        self._ears(sc, ident, p, skin)
        top_y = min(lm[17:27, 1].min(), jaw[:, 1].min()) - 0.22 * hry
        cx = (jaw[0, 0] + jaw[-1, 0]) / 2
        t = np.linspace(0, np.pi, 15)[1:-1]
        arc = np.stack([cx + (jaw[-1, 0] - cx) * np.cos(t),
                        jaw[[0, -1], 1].mean() - (jaw[[0, -1], 1].mean() - top_y) * np.sin(t)], 1)
        add(np.concatenate([jaw, arc]), skin, SKIN, shade=LIT | SKIN_TEX)
        for a, b, u in ident["moles"]:
            m = lm[a] * (1 - u) + lm[b] * u
            add(_ellipse(*m, 0.006 * S, 0.006 * S, 10), skin * 0.55, KEEP, only=SKIN)
        # hair over the forehead, long side locks over the ears
        brow_top = lm[17:27, 1].min()
        if style != "bald":
            # hairline: from one temple through the middle of the forehead to the other
            depth = {"short": 0.3, "fringe": 0.65, "long_fringe": 0.55, "swept": 0.15, "long": 0.25}[style]
            fringe_y = top_y + (brow_top - top_y) * depth
            temple_y = fringe_y + (0.03 if style in ("fringe", "long_fringe") else 0.09) * S
            u = np.linspace(-1, 1, 9)
            tilt = 0.04 * S * u if style == "swept" else 0.0
            line = np.stack([cx + (jaw[-1, 0] - cx) * u * 0.98, fringe_y + (temple_y - fringe_y) * u ** 2 + tilt], 1)
            add(np.concatenate([arc, line]), hair, HAIR, shade=HAIR_TEX)
        if style in ("long", "long_fringe"):
            for k, side in ((0, -1), (16, 1)):
                x0 = jaw[k, 0]
                add([[x0 - side * 0.01 * S, top_y + 0.1 * S], [x0 + side * 0.07 * S, top_y + 0.05 * S],
                     [x0 + side * 0.09 * S, sh_y + 0.08 * S], [x0 + side * 0.01 * S, sh_y + 0.06 * S],
                     [x0 - side * 0.02 * S, lm[4 if k == 0 else 12, 1]]], hair, HAIR, shade=HAIR_TEX)
        return top_y, brow_top

    def _parts(self, sc, lm, ident, p, skin):
        """Brows, eyes (iris, pupil, highlight, lash line), nose and lips with the inner mouth."""
        S, add = self.size, sc.add
        # brows (image-left brow first), eyes with iris, pupil, highlight and lash line
        for idx, label in ((np.arange(17, 22), LEFT_BROW), (np.arange(22, 27), RIGHT_BROW)):
            add(_band(lm[idx], 0.012 * S, 0.012 * S), ident["brows"] * p["cast"], label, shade=HAIR_TEX)
        gaze = p["gaze"]
        light = p["light"] / np.linalg.norm(p["light"])
        for idx, label in ((g.EYE_R, LEFT_EYE), (g.EYE_L, RIGHT_EYE)):
            eye = lm[idx]
            add(eye, np.array([235, 230, 225]) * p["cast"], label)
            c = eye.mean(0)
            r = 0.42 * np.linalg.norm(eye[3] - eye[0])
            centre = c + gaze * r
            add(_ellipse(*centre, r * 0.62, r * 0.62, 16), ident["iris"], KEEP, only=label)
            add(_ellipse(*centre, r * 0.28, r * 0.28, 12), [15, 12, 10], KEEP, only=label)
            add(_ellipse(*(centre + light[:2] * r * 0.3), r * 0.12, r * 0.12, 10), [250, 250, 250], KEEP, only=label)
            add(_band(eye[[0, 1, 2, 3]], 0.006 * S, 0.0), [25, 20, 20], KEEP)
        add(np.concatenate([[lm[31] + [-0.01 * S, -0.04 * S]], lm[31:36], [lm[35] + [0.01 * S, -0.04 * S]], lm[[28]]]),
            skin * 0.93, NOSE, shade=LIT | SKIN_TEX)
        for k in (32, 34):
            add(_ellipse(*lm[k] + [0, -0.004 * S], 0.012 * S, 0.006 * S, 12), skin * 0.45, KEEP)
        lips = ident["lips"] * p["cast"]
        add(np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]]), lips, UPPER_LIP, shade=LIT)
        lower = np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]])
        add(lower, lips * 0.92, LOWER_LIP, shade=LIT)
        if np.linalg.norm(lm[66] - lm[62]) > 0.01 * S:
            add(lm[60:68], [70, 25, 30], INNER_MOUTH)
            teeth = np.concatenate([lm[60:65], (lm[[64, 63, 62, 61, 60]] * 0.6 + lm[[64, 65, 66, 67, 60]] * 0.4)])
            add(teeth, [235, 232, 220], KEEP, only=INNER_MOUTH)

    def _occluder(self, sc, lm, p, skin, hx, hy, hrx, hry, top_y, brow_top):
        """1 sunglasses, 2 face mask, 3 a hand, 4 a hat, 5 a blob; LaPa labels them background."""
        S, occ = self.size, p["occluder"]
        colour, jitter = p["occluder_colour"] * p["cast"], p["occluder_pose"]
        if occ == 1:
            centres = []
            widths = [np.linalg.norm(lm[idx][3] - lm[idx][0]) for idx in (g.EYE_R, g.EYE_L)]
            for idx, w in zip((g.EYE_R, g.EYE_L), widths):
                c = lm[idx].mean(0)
                centres.append(c)
                # a lens foreshortens across (yaw) but not up and down
                sc.add(_ellipse(*c, max(w, 0.5 * max(widths)) * 0.95, max(widths) * 0.7, 20,
                                math.radians(p["roll"])), colour * 0.15 + [8, 8, 12], BACKGROUND, occludes=True)
            a, b = centres
            d = (b - a) / (np.linalg.norm(b - a) + 1e-6) * 0.01 * S
            n = np.array([-d[1], d[0]])
            sc.add([a + 3 * d - n, b - 3 * d - n, b - 3 * d + n, a + 3 * d + n], [30, 30, 35], BACKGROUND,
                   occludes=True)
        elif occ == 2:
            sc.add(np.concatenate([lm[2:15], lm[[28]] + [0.0, 0.02 * S]][::-1]), colour * 0.3 + [160, 165, 170],
                   BACKGROUND, occludes=True)
        elif occ == 3:
            c = lm[[48, 54, 8]].mean(0) + jitter[:2] * 0.05 * S
            angle = 0.5 + 0.5 * jitter[2]
            palm = _ellipse(*c, 0.13 * S, 0.09 * S, 20, angle)
            sc.add(palm, skin * 0.97, BACKGROUND, shade=SKIN_TEX, occludes=True)
            ca, sa = np.cos(angle), np.sin(angle)
            for k in range(4):
                off = np.array([-0.09 + 0.06 * k, -0.06]) * S
                base = c + [ca * off[0] - sa * off[1], sa * off[0] + ca * off[1]]
                tip = base + np.array([sa, -ca]) * (0.1 - 0.012 * abs(k - 1.5)) * S
                finger = _ellipse(*(base + tip) / 2, 0.022 * S, 0.065 * S, 12, angle)
                sc.add(finger, skin * (0.95 - 0.02 * k), BACKGROUND, shade=SKIN_TEX, occludes=True)
        elif occ == 4:
            brim_y = top_y + (brow_top - top_y) * (0.15 + 0.3 * (jitter[0] + 1) / 2)
            sc.add(_cap(hx, brim_y, hrx * 0.98, 0.26 * S, brim_y), colour, BACKGROUND, occludes=True)
            sc.add(_ellipse(hx, brim_y, hrx * 1.35, 0.03 * S, 24), colour * 0.85, BACKGROUND, occludes=True)
        elif occ == 5:
            c = lm[int((jitter[0] + 1) * 33.5)] + jitter[1:] * 0.04 * S
            sc.add(_ellipse(*c, 0.1 * S, 0.07 * S, 20, jitter[2] * 3.14), colour, BACKGROUND, occludes=True)

    def _scene_batch(self, indices):
        """Python half of rendering: the layer records, per-image parameters and ground truth."""
        S = self.size
        layers, offsets, params, backgrounds, noise = [], [0], [], [], []
        landmarks, visible, ids, attrs = [], [], [], []
        for i in indices:
            ident_id = self.identity_of(i)
            ident, neutral = self._identity(ident_id)
            p = self.image_params(i)
            pts3 = g.expressed(neutral, p["expression"])
            xy, vis = g.pose_and_project(pts3, p["yaw"], p["pitch"], p["roll"], p["scale"], p["shift"])
            lm = xy * S - 0.5
            hx, hy = (g.HEAD_CENTRE[:2] + p["shift"]) * S - 0.5  # the head centre does not move under pose
            hrx, hry = g.HEAD_RADII[:2] * S * p["scale"]
            scene = self._layers(lm, ident, p, hx, hy, hrx, hry)
            lay = scene.array()
            layers.append(lay)
            offsets.append(offsets[-1] + len(lay))
            for poly in scene.occluders:
                vis = vis & ~_inside(lm, poly)
            light = p["light"] / np.linalg.norm(p["light"])
            u = S / 112
            params.append([hx, hy, hrx * 0.95, hry * 0.9, *light, p["ambient"], p["specular"],
                           ident["skin_texture"], ident["skin_cell"] * u, ident["hair_texture"],
                           p["bg_texture"], p["bg_cell"] * S, p["bg_stripes"] * S, p["bg_angle"]])
            backgrounds.append(p["background"])
            noise.append(p["noise"])
            landmarks.append(lm.astype(np.float32))
            visible.append(vis)
            ids.append(ident_id)
            e = p["expression"]
            attrs.append({"yaw": p["yaw"], "pitch": p["pitch"], "roll": p["roll"], "smile": e.smile,
                          "open_mouth": e.open_mouth, "raise_brows": e.raise_brows, "close_eyes": e.close_eyes,
                          "ambient": p["ambient"], "colour_cast": float(np.abs(p["cast"] - 1).max()),
                          "light": [float(v) for v in light], "occluder": p["occluder"],
                          "occluder_name": OCCLUDERS[p["occluder"]], "hair_style": HAIR_STYLES[ident["hair_style"]],
                          "blur": p["blur"]})
            attrs[-1]["subsets"] = subsets_of(attrs[-1])
        # per-image keys, pure functions of (seed, i): textures and sensor noise
        keys = np.array([(self.seed * 0x9E3779B1 + i) & 0x7FFFFFFFFFFFFFFF for i in indices], np.int64)
        paint_args = (np.concatenate(layers), np.array(offsets, np.int64), np.array(params, np.float32),
                      np.array(backgrounds, np.float32), keys, np.array(noise, np.float32),
                      np.array([a["blur"] for a in attrs], np.float32))
        lms = np.stack(landmarks)
        truth = {"landmarks": lms, "landmarks5": SCHEMES["68"].five_points(lms).astype(np.float32),
                 "visible": np.stack(visible), "identity": np.array(ids, np.int64), "attributes": attrs}
        return paint_args, truth

    def _paint(self, layers, offsets, params, backgrounds, keys, noise, blur):
        """C half of rendering (releases the GIL): raster, blur, sensor noise."""
        images, parsing = _C.raster_faces(layers, offsets, params, backgrounds, keys, self.size)
        if blur.any():
            _C.gaussian_blur(images, blur)
        _C.add_noise(images, noise, keys)
        return images, parsing

    def render_batch(self, indices, chunk=32):
        """Render images ``indices`` -> dict of stacked arrays (``attributes`` a list of dicts).
        Chunks of ``chunk`` images are painted in C on a worker thread while Python composes the
        next chunk's scene; the result does not depend on ``chunk``. TypeError / ValueError
        (``IndexOutOfRange`` for a range) naming ``indices`` or ``chunk`` unless indices are
        one or more integers in [0, num_images) and chunk a positive integer."""
        indices = self._indices(indices)
        chunk = check_int(chunk, "chunk", 1)
        parts = [indices[k:k + chunk] for k in range(0, len(indices), chunk)]
        if len(parts) == 1:
            args, truth = self._scene_batch(parts[0])
            painted, truths = [self._paint(*args)], [truth]
        else:
            with ThreadPoolExecutor(1) as pool:
                futures, truths = [], []
                for part in parts:
                    args, truth = self._scene_batch(part)
                    futures.append(pool.submit(self._paint, *args))
                    truths.append(truth)
                painted = [f.result() for f in futures]
        out = {"image": np.concatenate([p[0] for p in painted]), "parsing": np.concatenate([p[1] for p in painted])}
        for k in truths[0]:
            out[k] = sum((t[k] for t in truths), []) if k == "attributes" else np.concatenate([t[k] for t in truths])
        return {k: out[k] for k in ("image", "landmarks", "landmarks5", "visible", "parsing", "identity", "attributes")}
