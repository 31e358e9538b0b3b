"""Facial region maps (pacofr/regions.py, docs/method.md section 1): the canonical map, maps from
landmarks and from parsing masks, their mirror images, and every bad-argument path."""
import numpy as np
import pytest

from pacofr import regions as R
from pacofr.data import SynthFace
from pacofr.data.schemes import CANONICAL_68

C = {name: i for i, name in enumerate(R.COMPONENTS)}


@pytest.fixture(scope="module")
def synth():
    return SynthFace(seed=0, size=112).render_batch(range(4))


def test_components_in_id_order():
    assert R.COMPONENTS == ("left_brow", "right_brow", "left_eye", "right_eye", "nose", "mouth", "left_cheek",
                            "right_cheek", "forehead", "chin", "left_jaw", "right_jaw", "hair_background")
    flip = np.asarray(R.COMPONENT_FLIP)
    assert (flip[flip] == np.arange(13)).all()
    for c, name in enumerate(R.COMPONENTS):
        assert R.COMPONENTS[flip[c]] == name.replace("left", "@").replace("right", "left").replace("@", "right")


def test_canonical_map_grid14_looks_like_a_face():
    r = R.region_map(14)
    assert r.shape == (196,) and r.dtype == np.int64
    counts = np.bincount(r, minlength=13)
    assert (counts >= 1).all(), dict(zip(R.COMPONENTS, counts))
    g = r.reshape(14, 14)
    rows = {c: np.nonzero(g == C[c])[0].mean() for c in R.COMPONENTS}
    cols = {c: np.nonzero(g == C[c])[1].mean() for c in R.COMPONENTS}
    # top to bottom: forehead, brows, eyes, nose, mouth, chin
    assert rows["forehead"] < rows["left_brow"] < rows["left_eye"] < rows["nose"] < rows["mouth"] < rows["chin"]
    assert rows["left_brow"] == rows["right_brow"] and rows["left_eye"] == rows["right_eye"]
    # left components on the image left, right ones on the right, the rest centred
    for side in ("brow", "eye", "cheek", "jaw"):
        assert cols["left_" + side] < 6.5 < cols["right_" + side]
    for c in ("nose", "mouth", "chin", "forehead"):
        assert cols[c] == 6.5
    assert cols["left_jaw"] < cols["left_cheek"] < cols["nose"]
    # hair / background all round the border, the face inside
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    assert (border == C["hair_background"]).all()
    assert (g[5:10, 3:11] != C["hair_background"]).all()
    # the canonical face is symmetric: its map is its own mirror image
    np.testing.assert_array_equal(R.flip_region_map(r, 14), r)


def test_canonical_map_cached_and_read_only():
    a = R.region_map(14)
    assert R.region_map(14) is a
    with pytest.raises(ValueError):
        a[0] = 3
    for G in (1, 4, 7, 28):
        r = R.region_map(G)
        assert r.shape == (G * G,) and r.min() >= 0 and r.max() < 13


@pytest.mark.parametrize("size", [112, 224, 100])
def test_canonical_landmarks_give_the_canonical_map(size):
    lm = np.stack([CANONICAL_68 * size - 0.5] * 2)
    for G in (4, 7, 14, 16):
        out = R.region_map_from_landmarks(lm, size, G)
        assert out.shape == (2, G * G) and out.dtype == np.int64
        np.testing.assert_array_equal(out, np.stack([R.region_map(G)] * 2))


def test_landmark_maps_follow_the_face(synth):
    lm = synth["landmarks"]
    before = lm.copy()
    r = R.region_map_from_landmarks(lm, 112, 14)
    np.testing.assert_array_equal(lm, before)   # inputs untouched
    for b in range(4):
        for comp, idx in (("left_eye", range(36, 42)), ("right_eye", range(42, 48)), ("nose", [30, 33]),
                          ("mouth", [62, 66])):
            x, y = lm[b, list(idx)].mean(0)    # the part's centre: its patch, or one next to it
            py, px = int((y + 0.5) // 8), int((x + 0.5) // 8)
            assert (r[b].reshape(14, 14)[py - 1:py + 2, px - 1:px + 2] == C[comp]).any(), (b, comp)
        assert (np.bincount(r[b], minlength=13) >= 1).all()   # every component, even with closed eyes


def test_parsing_maps_put_parts_where_the_landmarks_are(synth):
    parsing, lm = synth["parsing"], synth["landmarks"]
    groups = {"left_brow": range(17, 22), "right_brow": range(22, 27), "left_eye": range(36, 42),
              "right_eye": range(42, 48), "nose": range(27, 36), "mouth": range(48, 60)}
    for G in (14, 28):
        p = 112 // G
        r = R.region_map_from_parsing(parsing, G)
        assert r.shape == (4, G * G) and r.dtype == np.int64
        for b in range(4):
            for comp, idx in groups.items():
                ys, xs = np.divmod(np.flatnonzero(r[b] == C[comp]), G)
                lo = np.floor((lm[b, list(idx)].min(0) + 0.5) / p) - 1   # landmark box, one patch of slack
                hi = np.floor((lm[b, list(idx)].max(0) + 0.5) / p) + 1
                assert ((xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1])).all(), (G, b, comp)
            assert (r[b] == C["nose"]).any() and (r[b] == C["mouth"]).any()
    # at 4-pixel patches the thin parts win patches too (image 1 has its eyes closed)
    r = R.region_map_from_parsing(parsing, 28)
    for b in range(4):
        assert (r[b] == C["left_brow"]).any() and (r[b] == C["right_brow"]).any()
        if synth["attributes"][b]["close_eyes"] == 0:
            assert (r[b] == C["left_eye"]).any() and (r[b] == C["right_eye"]).any()


def test_parsing_skin_takes_the_canonical_skin_components():
    G, S = 14, 56
    canon = R.region_map(G)
    skin_comp = np.isin(canon, R.SKIN_COMPONENTS)
    r = R.region_map_from_parsing(np.ones((1, S, S), np.uint8), G)[0]   # all skin
    assert np.isin(r, R.SKIN_COMPONENTS).all()
    np.testing.assert_array_equal(r[skin_comp], canon[skin_comp])
    # a non-skin canonical patch takes its nearest skin patch: the nose's neighbours are cheeks
    nose = np.flatnonzero(canon == C["nose"])
    assert set(r[nose]) <= {C["left_cheek"], C["right_cheek"], C["forehead"]}
    # hair and background both give hair_background
    for label in (0, 10):
        assert (R.region_map_from_parsing(np.full((1, S, S), label, np.uint8), G) == C["hair_background"]).all()


def test_parsing_majority_and_ties():
    # one patch: grid 1 on a 4 x 4 parsing map, 16 labels
    def one(labels):
        return int(R.region_map_from_parsing(np.array(labels, np.uint8).reshape(1, 4, 4), 1)[0, 0])
    assert one([7] * 5 + [9] * 5 + [1] * 6) == C["mouth"]            # 7, 8, 9 count together
    assert one([2] * 8 + [3] * 8) == C["left_brow"]                   # ties: lower id
    assert one([4] * 8 + [1] * 8) == C["left_eye"]                    # parts before skin
    assert one([1] * 8 + [0] * 4 + [10] * 4) != C["hair_background"]  # skin before hair + background
    assert one([0] * 5 + [10] * 4 + [1] * 7) == C["hair_background"]   # hair and background count together


def test_region_map_bad_arguments(synth):
    lm = synth["landmarks"]
    with pytest.raises(ValueError, match=r"grid must be in \[1, 512\], got 0"):
        R.region_map(0)
    with pytest.raises(ValueError, match=r"grid must be in \[1, 512\], got 513"):
        R.region_map(513)
    with pytest.raises(TypeError, match="grid must be an integer"):
        R.region_map("14")
    with pytest.raises(ValueError, match=r"landmarks must have shape \(B, 68, 2\), got \(4, 5, 2\)"):
        R.region_map_from_landmarks(lm[:, :5], 112, 14)
    with pytest.raises(ValueError, match=r"landmarks must have shape \(B, 68, 2\), got \(68, 2\)"):
        R.region_map_from_landmarks(lm[0], 112, 14)
    bad = lm.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="landmarks contain NaN or Inf"):
        R.region_map_from_landmarks(bad, 112, 14)
    bad = lm.copy()
    bad[2, 45] = bad[2, 36]
    with pytest.raises(ValueError, match=r"landmarks\[2\]: outer eye corners 36 and 45 coincide"):
        R.region_map_from_landmarks(bad, 112, 14)
    for size in (0, -5, float("inf"), "112", None):
        with pytest.raises(ValueError, match="size must be a positive number"):
            R.region_map_from_landmarks(lm, size, 14)
    p = synth["parsing"]
    with pytest.raises(ValueError, match="parsing must have dtype uint8 .*got int64"):
        R.region_map_from_parsing(p.astype(np.int64), 14)
    with pytest.raises(ValueError, match=r"parsing must have shape \(B, S, S\), got \(112, 112\)"):
        R.region_map_from_parsing(p[0], 14)
    with pytest.raises(ValueError, match=r"parsing must have shape \(B, S, S\), got \(4, 112, 100\)"):
        R.region_map_from_parsing(p[:, :, :100], 14)
    with pytest.raises(ValueError, match="parsing side 112 must be a positive multiple of grid 15"):
        R.region_map_from_parsing(p, 15)
    bad = p.copy()
    bad[0, 0, 0] = 11
    with pytest.raises(ValueError, match="parsing holds label 11; LaPa-11 labels are 0..10"):
        R.region_map_from_parsing(bad, 14)
    with pytest.raises(ValueError, match=r"regions must have shape \(..., 196\), got \(195,\)"):
        R.flip_region_map(np.zeros(195, np.int64), 14)
    with pytest.raises(ValueError, match=r"component ids in \[0, 13\)"):
        R.flip_region_map(np.full(196, 20), 14)
