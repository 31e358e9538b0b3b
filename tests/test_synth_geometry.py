"""SynthFace geometry: a plausible 3-D face whose near-frontal mean matches real 300-W shape."""
from pathlib import Path

import numpy as np
import pytest

from pacofr.data import formats
from pacofr.data.align import similarity_transform, transform_points
from pacofr.data.schemes import CANONICAL_68
from pacofr.data.synth import geometry as g

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def procrustes_mean(shapes, iters=5):
    mean = shapes[0]
    for _ in range(iters):
        mean = np.mean([transform_points(similarity_transform(s, mean), s) for s in shapes], axis=0)
    return mean


def nme_io(a, b):
    A = similarity_transform(a, b)
    return np.linalg.norm(transform_points(A, a) - b, axis=1).mean() / np.linalg.norm(b[36] - b[45])


def random_faces(n, max_yaw, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ident = g.identity_shape(rng)
        ex = g.Expression(*(rng.random(4) * [0.5, 0.3, 0.5, 0.3]))
        xy, _ = g.pose_and_project(g.shaped(ident, ex), rng.uniform(-max_yaw, max_yaw),
                                   rng.uniform(-10, 10), rng.uniform(-10, 10))
        out.append(xy)
    return np.array(out)


def test_template_is_the_canonical_face_in_front_view():
    xy, vis = g.pose_and_project(g.TEMPLATE_3D)
    np.testing.assert_allclose(xy, CANONICAL_68, atol=1e-9)
    assert vis.all()
    # the nose tip is the most forward point; the jaw corners the furthest back
    z = g.TEMPLATE_3D[:, 2]
    assert z.argmax() == 30 and z[[0, 16]].max() < z[[8, 30, 33]].min()


def test_pose_behaves():
    xy0, _ = g.pose_and_project(g.TEMPLATE_3D)
    xy, vis = g.pose_and_project(g.TEMPLATE_3D, yaw=60)
    # turned to the image right: the nose tip moves right of the eye midpoint, the near cheek
    # (image left) shows and the far side of the jaw (image right) hides behind the head
    assert xy[30, 0] > (xy[39, 0] + xy[42, 0]) / 2
    assert vis[0] and not vis[16]
    xy, _ = g.pose_and_project(g.TEMPLATE_3D, roll=90)
    assert abs(np.arctan2(*(xy[45] - xy[36])[::-1]) - np.pi / 2) < 0.05
    xy, _ = g.pose_and_project(g.TEMPLATE_3D, pitch=30)  # looking down: features drop toward the chin
    assert (xy[30, 1] - xy[27, 1]) < (xy0[30, 1] - xy0[27, 1])


def test_expressions():
    ident = {k: 0.0 for k in g.IDENTITY_FIELDS}
    neutral = g.shaped(ident)
    smile = g.shaped(ident, g.Expression(smile=1))
    assert smile[48, 1] < neutral[48, 1] and smile[54, 0] > neutral[54, 0]
    opened = g.shaped(ident, g.Expression(open_mouth=1))
    assert opened[66, 1] - opened[62, 1] > neutral[66, 1] - neutral[62, 1] + 0.03 and opened[8, 1] > neutral[8, 1]
    closed = g.shaped(ident, g.Expression(close_eyes=1))
    assert abs(closed[37, 1] - closed[41, 1]) < 0.2 * abs(neutral[37, 1] - neutral[41, 1])
    raised = g.shaped(ident, g.Expression(raise_brows=1))
    assert (raised[17:27, 1] < neutral[17:27, 1]).all()


def test_identities_differ_and_stay_faces():
    faces = random_faces(200, max_yaw=20)
    spread = np.std([nme_io(f, CANONICAL_68) for f in faces])
    assert spread > 0.005  # identities, expressions and poses really vary the shape
    for f in faces:
        assert f[36, 0] < f[30, 0] < f[45, 0] and f[27, 1] < f[30, 1] < f[51, 1] < f[57, 1] < f[8, 1] + 1e-6


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")
def test_near_frontal_mean_matches_300w():
    """Issue 4: after Procrustes, the mean 68-point shape of near-frontal (|yaw| < 20) synthetic
    faces is within 3% inter-ocular NME of the mean of the real 300-W annotations."""
    csv = DATA / "300w-annotations" / "face_landmarks_300w_valid.csv"
    real = np.array([r["landmarks"] for r in formats.read_hrnet_csv(csv)], np.float64)
    real_mean = procrustes_mean(real)
    synth_mean = procrustes_mean(random_faces(500, max_yaw=20, seed=1))
    assert nme_io(synth_mean, real_mean) < 0.03
