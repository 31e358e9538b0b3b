"""SynthFace: faces drawn from a parametric head with exact ground truth.

Image i of ``SynthFace(seed)`` is a pure function of (seed, i). Identity (face shape, skin,
hair, eyes) is a pure function of (seed, identity id), so images of one identity differ only
in pose, expression, lighting, background and occluders. Labels follow LaPa's 11 classes
(EVAL.md); this first renderer takes "left" as the image's left."""
import numpy as np

from ... import _C
from ..schemes import SCHEMES
from . import geometry as g

SUBSETS = ("large_pose", "expression", "illumination", "occlusion", "blur")


def subsets_of(a):
    """EVAL.md's SynthFace subsets (mirroring WFLW's) from one image's attributes."""
    return {"large_pose": abs(a["yaw"]) >= 45 or abs(a["pitch"]) >= 25 or abs(a["roll"]) >= 25,
            "expression": a["smile"] > 0.5 or a["open_mouth"] > 0.3 or a["raise_brows"] > 0.5 or a["close_eyes"] > 0,
            "illumination": a["ambient"] < 0.45 or a["colour_cast"] > 0.1,
            "occlusion": a["occluder"] != 0,
            "blur": a["blur"] > 0}

# LaPa-11
BACKGROUND, SKIN, LEFT_BROW, RIGHT_BROW, LEFT_EYE, RIGHT_EYE, NOSE, UPPER_LIP, INNER_MOUTH, LOWER_LIP, HAIR = range(11)

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 158], [224, 172, 128], [198, 134, 96], [161, 102, 68],
                       [120, 74, 48], [88, 54, 36]], np.float64)
HAIR_COLOURS = np.array([[20, 16, 14], [60, 40, 28], [110, 74, 42], [170, 130, 80], [220, 190, 130],
                         [140, 60, 30], [120, 120, 120]], np.float64)
IRIS_COLOURS = np.array([[70, 45, 25], [110, 75, 40], [60, 100, 140], [80, 120, 80], [120, 120, 130]], np.float64)


def _ellipse(cx, cy, rx, ry, n=24, angle=0.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _thick(points, width_top, width_bottom):
    """A closed band around an open polyline (brows): the upper edge raised, the lower one lowered."""
    top = points - [0, width_top]
    bottom = points[::-1] + [0, width_bottom]
    return np.concatenate([top, bottom])


class SynthFace:
    """``ds[i]`` -> dict with ``image`` uint8 (S, S, 3), ``landmarks`` float32 (68, 2, iBUG
    order, x then y), ``landmarks5`` (5, 2), ``visible`` bool (68,), ``parsing`` uint8 (S, S)
    (LaPa-11), ``identity`` int and ``attributes`` (yaw, pitch, roll in degrees, expression
    values, illumination, occluder, blur, and ``subsets``: large_pose, expression,
    illumination, occlusion, blur); ``render_batch(indices)`` stacks them."""

    def __init__(self, seed=0, size=112, num_images=10000, num_identities=None):
        if not 64 <= size <= 256:
            raise ValueError(f"size must be between 64 and 256, got {size}")
        self.seed, self.size, self.num_images = int(seed), int(size), int(num_images)
        self.num_identities = int(num_identities or max(1, num_images // 10))

    def __len__(self):
        return self.num_images

    def __getitem__(self, i):
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {i} out of range for {self.num_images} images")
        b = self.render_batch([i])
        return {k: v[0] for k, v in b.items()}

    # ---- parameters
    def identity_of(self, i):
        return int(np.random.default_rng([self.seed, 0x5EED, int(i)]).integers(self.num_identities))

    def identity_params(self, ident):
        rng = np.random.default_rng([self.seed, 0x1D, ident])
        shape = g.identity_shape(rng)
        tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.93, 1.05, 3)
        return {"shape": shape, "skin": tone, "hair": HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15),
                "hair_style": int(rng.integers(4)), "iris": IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
                "lips": tone * np.array([0.85, 0.55, 0.55]) + rng.uniform(-10, 10, 3),
                "brows": HAIR_COLOURS[rng.integers(3)] * rng.uniform(0.8, 1.2)}

    def image_params(self, i):
        rng = np.random.default_rng([self.seed, int(i)])
        large = rng.random() < 0.2
        yaw = rng.uniform(-70, 70) if large else rng.normal(0, 12)
        return {"yaw": float(np.clip(yaw, -70, 70)), "pitch": float(np.clip(rng.normal(0, 10), -35, 35)),
                "roll": float(np.clip(rng.normal(0, 8), -35, 35)),
                "expression": g.Expression(smile=float(rng.random() ** 2), open_mouth=float(rng.random() ** 3),
                                           raise_brows=float(rng.random() ** 3), close_eyes=float(rng.random() < 0.08)),
                "scale": float(rng.uniform(0.9, 1.05)), "shift": rng.normal(0, 0.015, 2),
                "light": rng.normal(0, 1, 3) * [0.6, 0.6, 0.3] + [0, 0, 1], "ambient": float(rng.uniform(0.35, 0.75)),
                "cast": rng.uniform(0.85, 1.1, 3), "background": rng.uniform(20, 235, 6),
                "gaze": rng.normal(0, 0.15, 2), "blur": float(rng.uniform(0.6, 1.6) if rng.random() < 0.15 else 0.0),
                "noise": float(rng.uniform(0, 6)), "occluder": int(rng.choice(4, p=[0.8, 0.08, 0.08, 0.04]))}

    # ---- drawing
    def _layers(self, lm, ident, p, hx, hy, hrx, hry):
        S = self.size
        L = []

        def add(poly, colour, label, only=-1, shade=0):
            poly = np.asarray(poly, np.float32)
            L.append(np.concatenate([[label, only, *np.clip(colour, 0, 255), shade, len(poly)], poly.ravel()]))

        skin = ident["skin"] * p["cast"]
        hair = ident["hair"] * p["cast"]
        jaw = lm[g.JAW]
        # hair behind the head, then the face: jaw line closed by a forehead arc
        if ident["hair_style"] != 3:
            add(_ellipse(hx, hy - 0.08 * S, hrx * 1.12, hry * 1.02, 32), hair * 0.8, HAIR)
        top_y = min(lm[17:27, 1].min(), jaw[:, 1].min()) - 0.22 * hry
        cx = (jaw[0, 0] + jaw[-1, 0]) / 2
        t = np.linspace(0, np.pi, 15)[1:-1]
        arc = np.stack([cx + (jaw[-1, 0] - cx) * np.cos(t),
                        jaw[[0, -1], 1].mean() - (jaw[[0, -1], 1].mean() - top_y) * np.sin(t)], 1)
        add(np.concatenate([jaw, arc]), skin, SKIN, shade=1)
        # hair fringe over the forehead (styles 0-1), ears hidden under hair
        if ident["hair_style"] in (0, 1):
            depth = 0.35 if ident["hair_style"] == 0 else 0.6
            brow_top = lm[17:27, 1].min()
            fringe_y = top_y + (brow_top - top_y) * depth
            add(np.concatenate([arc, [[jaw[0, 0], fringe_y], [jaw[-1, 0], fringe_y]][::-1]]), hair, HAIR)
        # brows (image-left brow first), eyes with iris and pupil, nose, lips, inner mouth
        for idx, label in ((np.arange(17, 22), LEFT_BROW), (np.arange(22, 27), RIGHT_BROW)):
            add(_thick(lm[idx], 0.012 * S, 0.012 * S), ident["brows"], label)
        gaze = p["gaze"]
        for idx, label in ((g.EYE_R, LEFT_EYE), (g.EYE_L, RIGHT_EYE)):
            eye = lm[idx]
            add(eye, np.array([235, 230, 225]) * p["cast"], label)
            c = eye.mean(0)
            r = 0.42 * np.linalg.norm(eye[3] - eye[0])
            centre = c + gaze * r
            add(_ellipse(*centre, r * 0.62, r * 0.62), ident["iris"], -1, only=label)
            add(_ellipse(*centre, r * 0.28, r * 0.28), [15, 12, 10], -1, only=label)
        add(np.concatenate([[lm[31] + [-0.01 * S, -0.04 * S]], lm[31:36], [lm[35] + [0.01 * S, -0.04 * S]], lm[[28]]]),
            skin * 0.93, NOSE, shade=1)
        for k in (32, 34):
            add(_ellipse(*lm[k] + [0, -0.004 * S], 0.012 * S, 0.006 * S, 12), skin * 0.45, -1)
        add(np.concatenate([lm[48:55], lm[[64, 63, 62, 61, 60]]]), ident["lips"] * p["cast"], UPPER_LIP, shade=1)
        add(np.concatenate([lm[[54, 55, 56, 57, 58, 59, 48]], lm[[60, 67, 66, 65, 64]]]), ident["lips"] * p["cast"] * 0.92,
            LOWER_LIP, shade=1)
        if np.linalg.norm(lm[66] - lm[62]) > 0.01 * S:
            add(lm[60:68], [70, 25, 30], INNER_MOUTH)
        # occluders: 1 sunglasses, 2 face mask, 3 a hand-like blob
        occ = p["occluder"]
        if occ == 1:
            for idx in (g.EYE_R, g.EYE_L):
                c = lm[idx].mean(0)
                w = np.linalg.norm(lm[idx][3] - lm[idx][0])
                add(_ellipse(*c, w * 0.95, w * 0.7), [15, 15, 20], BACKGROUND)
        elif occ == 2:
            add(np.concatenate([lm[2:15], lm[[28]] + [0.0, 0.02 * S]][::-1]), [220, 225, 230], BACKGROUND)
        elif occ == 3:
            c = lm[[48, 54, 8]].mean(0)
            add(_ellipse(*c, 0.16 * S, 0.1 * S, 20, angle=0.5), skin * 0.97, BACKGROUND, shade=1)
        return np.concatenate(L).astype(np.float32)

    def render_batch(self, indices):
        S = self.size
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self.num_images:
                raise IndexError(f"index {i} out of range for {self.num_images} images")
        layers, offsets, params, backgrounds, noise = [], [0], [], [], []
        landmarks, visible, ids, attrs = [], [], [], []
        for i in indices:
            ident_id = self.identity_of(i)
            ident = self.identity_params(ident_id)
            p = self.image_params(i)
            pts3 = g.shaped(ident["shape"], p["expression"])
            xy, vis = g.pose_and_project(pts3, p["yaw"], p["pitch"], p["roll"], p["scale"], p["shift"])
            lm = xy * S - 0.5
            hx, hy = (g.HEAD_CENTRE[:2] + p["shift"]) * S - 0.5  # the head centre does not move under pose
            hrx, hry = g.HEAD_RADII[:2] * S * p["scale"]
            lay = self._layers(lm, ident, p, hx, hy, hrx, hry)
            layers.append(lay)
            offsets.append(offsets[-1] + len(lay))
            light = p["light"] / np.linalg.norm(p["light"])
            params.append([hx, hy, hrx * 0.95, hry * 0.9, light[0], light[1], light[2], p["ambient"]])
            backgrounds.append(p["background"])
            noise.append(p["noise"])
            if p["occluder"] == 1:
                vis = vis & ~np.isin(np.arange(68), np.r_[g.EYE_R, g.EYE_L])
            elif p["occluder"] == 2:
                vis = vis & ~np.isin(np.arange(68), np.r_[np.arange(2, 15), g.NOSTRILS, g.MOUTH])
            landmarks.append(lm.astype(np.float32))
            visible.append(vis)
            ids.append(ident_id)
            e = p["expression"]
            attrs.append({"yaw": p["yaw"], "pitch": p["pitch"], "roll": p["roll"], "smile": e.smile,
                          "open_mouth": e.open_mouth, "raise_brows": e.raise_brows, "close_eyes": e.close_eyes,
                          "ambient": p["ambient"], "colour_cast": float(np.abs(p["cast"] - 1).max()),
                          "light": [float(v) for v in light], "occluder": p["occluder"], "blur": p["blur"]})
            attrs[-1]["subsets"] = subsets_of(attrs[-1])
        images, parsing = _C.raster_faces(np.concatenate(layers), np.array(offsets, np.int64),
                                          np.array(params, np.float32), np.array(backgrounds, np.float32), S)
        blur = np.array([a["blur"] for a in attrs], np.float32)
        if blur.any():
            _C.gaussian_blur(images, blur)
        # sensor noise, a pure function of (seed, i)
        keys = np.array([(self.seed * 0x9E3779B1 + i) & 0x7FFFFFFFFFFFFFFF for i in indices], np.int64)
        _C.add_noise(images, np.array(noise, np.float32), keys)
        lms = np.stack(landmarks)
        return {"image": images, "landmarks": lms, "landmarks5": SCHEMES["68"].five_points(lms).astype(np.float32),
                "visible": np.stack(visible),
                "parsing": parsing, "identity": np.array(ids, np.int64), "attributes": attrs}
