"""SynthFace head geometry: a 3-D 68-landmark template (the 300-W mean face of
``schemes.CANONICAL_68`` lifted onto an ellipsoidal head with a nose), identity shape
variation, expressions, head pose, projection and per-landmark visibility.

Coordinates: unit crop (x right, y down, z towards the camera), the crop side is 1."""
from dataclasses import dataclass

import numpy as np

from ..schemes import CANONICAL_68

# Head ellipsoid (centre and radii): the face surface is its front half.
HEAD_CENTRE = np.array([0.5, 0.56, -0.08])
HEAD_RADII = np.array([0.37, 0.48, 0.34])

JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE_RIDGE = np.arange(27, 31)
NOSTRILS = np.arange(31, 36)
EYE_R, EYE_L = np.arange(36, 42), np.arange(42, 48)   # subject's right eye is on the image left
MOUTH = np.arange(48, 68)
UPPER_LIP_TOP = np.array([49, 50, 51, 52, 53])
LOWER_LIP_BOTTOM = np.array([55, 56, 57, 58, 59])
LOWER_MOUTH = np.array([55, 56, 57, 58, 59, 65, 66, 67])
UPPER_LIDS = np.array([37, 38, 43, 44])
LOWER_LIDS = np.array([41, 40, 47, 46])   # the lower-lid partner of each upper-lid point


def _template():
    xy = CANONICAL_68.copy()
    d = (xy - HEAD_CENTRE[:2]) / HEAD_RADII[:2]
    z = HEAD_CENTRE[2] + HEAD_RADII[2] * np.sqrt(np.clip(1.0 - (d ** 2).sum(1), 0.02, None))
    z[NOSE_RIDGE] += np.array([0.02, 0.045, 0.07, 0.095])
    z[NOSTRILS] += np.array([0.035, 0.05, 0.06, 0.05, 0.035])
    z[np.r_[EYE_R, EYE_L]] -= 0.015
    return np.concatenate([xy, z[:, None]], axis=1)


TEMPLATE_3D = _template()

IDENTITY_FIELDS = ("face_width", "face_length", "jaw", "eye_size", "eye_spacing", "brow_height", "brow_arch",
                   "nose_length", "nose_width", "mouth_width", "lip_thickness")


@dataclass(frozen=True)
class Expression:
    smile: float = 0.0        # 0..1
    open_mouth: float = 0.0   # 0..1
    raise_brows: float = 0.0  # 0..1
    close_eyes: float = 0.0   # 0..1


def identity_shape(rng):
    """One identity's shape parameters: standard normal draws, one per IDENTITY_FIELDS."""
    return dict(zip(IDENTITY_FIELDS, rng.standard_normal(len(IDENTITY_FIELDS))))


def shaped(identity, expression=Expression(), template=TEMPLATE_3D):
    """The (68, 3) landmarks of a neutral-pose head with this identity and expression."""
    return expressed(identity_points(identity, template), expression)


def identity_points(identity, template=TEMPLATE_3D):
    """The (68, 3) neutral-expression landmarks of one identity."""
    p = template.copy()
    c = HEAD_CENTRE
    sd = {k: float(v) for k, v in identity.items()}
    p[:, 0] = c[0] + (p[:, 0] - c[0]) * (1 + 0.05 * sd["face_width"])
    p[:, 1] = c[1] + (p[:, 1] - c[1]) * (1 + 0.04 * sd["face_length"])
    lower_jaw = JAW[4:13]
    p[lower_jaw, 0] = c[0] + (p[lower_jaw, 0] - c[0]) * (1 + 0.06 * sd["jaw"])
    for eye, side in ((EYE_R, -1), (EYE_L, 1)):
        centre = p[eye, :2].mean(0)
        p[eye, :2] = centre + (p[eye, :2] - centre) * (1 + 0.10 * sd["eye_size"])
        p[eye, 0] += side * 0.012 * sd["eye_spacing"]
    p[BROWS, 1] -= 0.012 * sd["brow_height"]
    p[[19, 24], 1] -= 0.008 * sd["brow_arch"]
    p[[18, 20, 23, 25], 1] -= 0.004 * sd["brow_arch"]
    p[np.r_[30, NOSTRILS], 1] += 0.015 * sd["nose_length"]
    nose_c = p[33, 0]
    p[NOSTRILS, 0] = nose_c + (p[NOSTRILS, 0] - nose_c) * (1 + 0.10 * sd["nose_width"])
    mouth_c = p[MOUTH, 0].mean()
    p[MOUTH, 0] = mouth_c + (p[MOUTH, 0] - mouth_c) * (1 + 0.08 * sd["mouth_width"])
    p[UPPER_LIP_TOP, 1] -= 0.005 * sd["lip_thickness"]
    p[LOWER_LIP_BOTTOM, 1] += 0.006 * sd["lip_thickness"]
    return p


_CORNERS = np.array([48, 54, 60, 64])
_JAW_DROP = np.array([0.3, 0.6, 0.85, 1.0, 0.85, 0.6, 0.3])


def expressed(points, e=Expression()):
    """Apply an expression to (68, 3) neutral landmarks -> a new (68, 3) array."""
    p = points.copy()
    mouth_c = p[MOUTH, 0].mean()
    p[_CORNERS, 0] += np.sign(p[_CORNERS, 0] - mouth_c) * 0.02 * e.smile
    p[_CORNERS, 1] -= 0.025 * e.smile
    p[[49, 53, 59, 55], 1] -= 0.008 * e.smile
    drop = 0.07 * e.open_mouth
    p[LOWER_MOUTH, 1] += drop
    p[[61, 62, 63], 1] -= 0.1 * drop
    p[JAW[5:12], 1] += drop * _JAW_DROP
    p[BROWS, 1] -= 0.03 * e.raise_brows
    p[UPPER_LIDS, 1] += (p[LOWER_LIDS, 1] - p[UPPER_LIDS, 1]) * min(max(e.close_eyes, 0.0), 1.0) * 0.95
    return p


def rotation_matrix(yaw, pitch, roll):
    """Degrees -> (3, 3): yaw about the vertical axis (positive turns the face to the image
    right), pitch about the horizontal axis (positive looks down), roll in the image plane."""
    y, x, z = np.deg2rad([yaw, pitch, roll])
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    Rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


def pose_and_project(points, yaw=0.0, pitch=0.0, roll=0.0, scale=1.0, shift=(0.0, 0.0)):
    """Rotate (68, 3) head points about the head centre, project orthographically (keeping the
    head centre at the crop centre plus shift), -> (68, 2) unit-crop points, (68,) visible."""
    R = rotation_matrix(yaw, pitch, roll)
    q = (points - HEAD_CENTRE) @ R.T
    xy = HEAD_CENTRE[:2] + scale * q[:, :2] + np.asarray(shift)
    # visibility: the ellipsoid normal at each point, rotated, must face the camera
    n = (points - HEAD_CENTRE) / HEAD_RADII ** 2
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    visible = (n @ R.T)[:, 2] > -0.05
    return xy, visible
