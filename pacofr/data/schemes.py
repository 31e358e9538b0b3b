"""Landmark schemes: the 5-point subset each one yields, its horizontal-flip permutation, its
NME normaliser indices (docs/evaluation.md), and the canonical face the aligned crops are built around.

Flip permutations follow each data set's own left/right correspondences (as mmpose's
data-set definitions list them); indices are 0-based."""
from dataclasses import dataclass

import numpy as np


def _mirror(n, pairs):
    perm = list(range(n))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _contour(n):
    """Jaw-line pairs i <-> n-1-i of an n-point contour that starts at index 0."""
    return [(i, n - 1 - i) for i in range(n // 2)]


@dataclass(frozen=True)
class Scheme:
    name: str
    num_points: int
    five: tuple            # indices (or index groups, averaged) of: eye at image-left, eye at
                           # image-right, nose tip, mouth corner image-left, image-right
    flip: tuple            # landmark i of the flipped face is landmark flip[i] of the original
    inter_ocular: tuple    # outer eye corners
    inter_pupil: tuple     # two index groups whose means are the pupils

    def five_points(self, landmarks):
        """(..., K, 2) -> (..., 5, 2)."""
        lm = np.asarray(landmarks, np.float64)
        if lm.shape[-2] != self.num_points:
            raise ValueError(f"scheme {self.name} has {self.num_points} points, got {lm.shape[-2]}")
        pts = [lm[..., list(g), :].mean(axis=-2) if isinstance(g, tuple) else lm[..., g, :] for g in self.five]
        return np.stack(pts, axis=-2)

    def flip_landmarks(self, landmarks, width):
        """Landmarks of the horizontally flipped image (x -> width - x), relabelled so each
        index names the same facial point. ``width``: in the landmarks' coordinate convention
        (pixel centres at 0..W-1: pass W - 1)."""
        lm = np.array(landmarks, np.float32)
        lm[..., 0] = width - lm[..., 0]
        return lm[..., list(self.flip), :]


SCHEMES = {
    "68": Scheme("68", 68, (tuple(range(36, 42)), tuple(range(42, 48)), 30, 48, 54),
                 _mirror(68, _contour(17) + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
                         + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
                         + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]),
                 (36, 45), (tuple(range(36, 42)), tuple(range(42, 48)))),
    "98": Scheme("98", 98, (96, 97, 54, 76, 82),
                 _mirror(98, _contour(33) + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50),
                                             (39, 49), (40, 48), (41, 47), (55, 59), (56, 58)]
                         + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
                         + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97)]),
                 (60, 72), ((96,), (97,))),
    "19": Scheme("19", 19, (7, 10, 13, 15, 17),
                 _mirror(19, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]),
                 (6, 11), ((7,), (10,))),
    "29": Scheme("29", 29, (16, 17, 20, 22, 23),
                 _mirror(29, [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17),
                              (18, 19), (22, 23)]),
                 (8, 9), ((16,), (17,))),
    "106": Scheme("106", 106, (104, 105, 54, 84, 90),
                  _mirror(106, _contour(33) + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50),
                                               (39, 49), (40, 48), (41, 47), (55, 65), (56, 64), (57, 63),
                                               (58, 62), (59, 61)]
                          + [(66, 79), (67, 78), (68, 77), (69, 76), (70, 75), (71, 82), (72, 81), (73, 80), (74, 83)]
                          + [(84, 90), (85, 89), (86, 88), (91, 95), (92, 94), (96, 100), (97, 99), (101, 103),
                             (104, 105)]),
                  (66, 79), ((104,), (105,))),
}


def scheme_for(num_points):
    try:
        return SCHEMES[str(int(num_points))]
    except KeyError:
        raise ValueError(f"no landmark scheme with {num_points} points; known: {', '.join(SCHEMES)}") from None


# The canonical face in unit crop coordinates (x right, y down; multiply by the crop side S):
# the generalised-Procrustes mean of the 689 300-W test faces (HRNet CSV), rotated so the eyes
# are level, made left-right symmetric with the 68-point flip, scaled so the jaw spans 0.70 of
# the crop, centred, with the chin at 0.90 (brows then sit at 0.22: room for forehead and hair).
CANONICAL_68 = np.array([
    [0.15, 0.3315], [0.15294, 0.42463], [0.16239, 0.51755], [0.1815, 0.60955], [0.2174, 0.69554],
    [0.27271, 0.77061], [0.3401, 0.83312], [0.41459, 0.88419], [0.5, 0.9], [0.58541, 0.88419],
    [0.6599, 0.83312], [0.72729, 0.77061], [0.7826, 0.69554], [0.8185, 0.60955], [0.83761, 0.51755],
    [0.84706, 0.42463], [0.85, 0.3315], [0.22117, 0.26733], [0.26346, 0.23119], [0.32144, 0.22001],
    [0.38197, 0.22861], [0.43956, 0.25044], [0.56044, 0.25044], [0.61803, 0.22861], [0.67856, 0.22001],
    [0.73654, 0.23119], [0.77883, 0.26733], [0.5, 0.3252], [0.5, 0.38513], [0.5, 0.44406],
    [0.5, 0.50457], [0.43246, 0.54612], [0.46451, 0.55878], [0.5, 0.56938], [0.53549, 0.55878],
    [0.56754, 0.54612], [0.28963, 0.33284], [0.32722, 0.31164], [0.37249, 0.31238], [0.4112, 0.34117],
    [0.36969, 0.34863], [0.32495, 0.34815], [0.5888, 0.34117], [0.62751, 0.31238], [0.67278, 0.31164],
    [0.71037, 0.33284], [0.67505, 0.34815], [0.63031, 0.34863], [0.36369, 0.65688], [0.41341, 0.63629],
    [0.46381, 0.62622], [0.5, 0.63434], [0.53619, 0.62622], [0.58659, 0.63629], [0.63631, 0.65688],
    [0.5885, 0.7059], [0.53913, 0.72906], [0.5, 0.73348], [0.46087, 0.72906], [0.4115, 0.7059],
    [0.38497, 0.65969], [0.46356, 0.65552], [0.5, 0.65934], [0.53644, 0.65552], [0.61503, 0.65969],
    [0.53713, 0.68406], [0.5, 0.68848], [0.46287, 0.68406]], np.float64)


def canonical_five(size):
    """The 5-point template (eyes, nose tip, mouth corners) of a size x size crop, in pixel
    coordinates with pixel centres at 0..size-1."""
    return SCHEMES["68"].five_points(CANONICAL_68) * size - 0.5
