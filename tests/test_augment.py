"""Augmentation: deterministic draws, flips that relabel landmarks and parsing, geometry that
moves pixels and landmarks together, and the C colour / blur kernels against NumPy twins."""
import numpy as np
import pytest

from pacofr import _C
from pacofr.data.augment import AugmentConfig, augment
from pacofr.data.schemes import CANONICAL_68, SCHEMES
from pacofr.ref import photometric as ref

S = 64


def faces(rng, B=4):
    images = rng.integers(0, 256, (B, S, S, 3), dtype=np.uint8)
    lm = np.stack([CANONICAL_68 * S - 0.5 + rng.normal(0, 0.5, (68, 2)) for _ in range(B)]).astype(np.float32)
    parsing = np.zeros((B, S, S), np.uint8)
    parsing[:, 10:20, 5:15] = 4   # "left eye" on the image left
    parsing[:, 10:20, 49:59] = 5   # the mirror image of the left eye region
    return images, lm, parsing


def test_deterministic_by_seed_epoch_index(rng):
    images, lm, parsing = faces(rng)
    a = augment(images, [0, 1, 2, 3], seed=7, epoch=2, landmarks=lm, parsing=parsing)
    b = augment(images, [0, 1, 2, 3], seed=7, epoch=2, landmarks=lm, parsing=parsing)
    for k in ("images", "landmarks", "parsing"):
        np.testing.assert_array_equal(a[k], b[k])
    c = augment(images, [0, 1, 2, 3], seed=7, epoch=3, landmarks=lm, parsing=parsing)
    assert not np.array_equal(a["images"], c["images"])
    # one sample's draw does not depend on its batch neighbours
    d = augment(images[2:3], [2], seed=7, epoch=2)
    np.testing.assert_array_equal(d["images"][0], a["images"][2])


def test_flip_relabels_landmarks_and_parsing(rng):
    images, lm, parsing = faces(rng)
    cfg = AugmentConfig(flip=1.0, rotate=0, scale=0, translate=0, brightness=0, contrast=0, saturation=0,
                        grayscale=0, blur=0)
    out = augment(images, range(4), seed=0, epoch=0, landmarks=lm, parsing=parsing, config=cfg)
    np.testing.assert_array_equal(out["images"], images[:, :, ::-1])
    np.testing.assert_allclose(out["landmarks"], SCHEMES["68"].flip_landmarks(lm, S - 1), atol=1e-4)
    # the left eye label (4) is still on the image left after the flip: the mirrored region
    # was relabelled
    assert (out["parsing"][:, 10:20, 5:15] == 4).all() and (out["parsing"][:, 10:20, 49:59] == 5).all()


def test_geometry_moves_pixels_with_landmarks():
    rng = np.random.default_rng(3)
    images = np.zeros((6, S, S, 3), np.uint8)
    lm = np.stack([CANONICAL_68 * S - 0.5 for _ in range(6)]).astype(np.float32)
    for b in range(6):
        for k in (30, 36, 45, 8):
            x, y = np.round(lm[b, k]).astype(int)
            images[b, y - 1:y + 2, x - 1:x + 2] = 255
    cfg = AugmentConfig(flip=0.5, rotate=20, scale=0.1, translate=0.05, brightness=0, contrast=0, saturation=0,
                        grayscale=0, blur=0)
    out = augment(images, rng.integers(0, 1000, 6), seed=1, epoch=0, landmarks=lm, config=cfg)
    for b in range(6):
        for k in (30, 36, 45, 8):
            x, y = np.round(out["landmarks"][b, k]).astype(int)
            assert out["images"][b, y - 1:y + 2, x - 1:x + 2].max() > 100, (b, k)


@pytest.mark.parametrize("params", [(1.2, 0.8, 1.3, 0.0), (0.7, 1.2, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0)])
def test_color_jitter_matches_twin(rng, params):
    images = rng.integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    got = images.copy()
    _C.color_jitter(got, np.array([params, params], np.float32))
    for b in range(2):
        diff = np.abs(got[b].astype(int) - ref.color_jitter(images[b], *params).astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.3, 4.0])
def test_blur_matches_twin(rng, sigma):
    images = rng.integers(0, 256, (1, 13, 17, 3), dtype=np.uint8)
    got = images.copy()
    _C.gaussian_blur(got, np.array([sigma], np.float32))
    diff = np.abs(got[0].astype(int) - ref.gaussian_blur(images[0], sigma).astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    if sigma > 0:
        assert got.std() < images.std()


def test_bad_arguments(rng):
    images, lm, _ = faces(rng, 2)
    with pytest.raises(ValueError, match="images must be uint8"):
        augment(images.astype(np.float32), [0, 1], 0, 0)
    with pytest.raises(ValueError, match="one index per image"):
        augment(images, [0], 0, 0)
    with pytest.raises(ValueError, match=r"sigmas\[0\] must lie in \[0, 20\]"):
        _C.gaussian_blur(images.copy(), np.array([-1, 0], np.float32))
    with pytest.raises(ValueError, match="images must be writeable"):
        ro = images.copy()
        ro.setflags(write=False)
        _C.color_jitter(ro, np.ones((2, 4), np.float32))


def test_add_noise_statistics_and_determinism():
    base = np.full((3, 64, 64, 3), 128, np.uint8)
    a, b = base.copy(), base.copy()
    _C.add_noise(a, np.array([0, 4, 10], np.float32), np.array([1, 2, 3], np.int64))
    _C.add_noise(b, np.array([0, 4, 10], np.float32), np.array([1, 2, 3], np.int64))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0], base[0])
    for k, sigma in ((1, 4), (2, 10)):
        d = a[k].astype(float) - 128
        assert abs(d.mean()) < 0.3 and abs(d.std() - sigma) < 0.1 * sigma
    c = base.copy()
    _C.add_noise(c, np.array([0, 4, 10], np.float32), np.array([1, 2, 4], np.int64))
    assert np.array_equal(c[1], a[1]) and not np.array_equal(c[2], a[2])
