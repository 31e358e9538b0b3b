"""SynthFace (first renderer): determinism, identities, and ground truth that agrees with the
pixels."""
import numpy as np
import pytest

from pacofr.data.synth import synthface as sf
from pacofr.data.synth.synthface import SynthFace


@pytest.fixture(scope="module")
def batch():
    return SynthFace(seed=0, size=112, num_images=500).render_batch(range(40))


def test_shapes_and_types(batch):
    assert batch["image"].shape == (40, 112, 112, 3) and batch["image"].dtype == np.uint8
    assert batch["landmarks"].shape == (40, 68, 2) and batch["landmarks"].dtype == np.float32
    assert batch["parsing"].shape == (40, 112, 112) and batch["parsing"].max() <= 10
    assert batch["visible"].dtype == bool and len(batch["attributes"]) == 40
    assert {"yaw", "pitch", "roll"} <= set(batch["attributes"][0])
    one = SynthFace(seed=0, size=112, num_images=500)[3]
    np.testing.assert_array_equal(one["image"], batch["image"][3])


def test_pure_function_of_seed_and_index(batch):
    again = SynthFace(seed=0, size=112, num_images=500).render_batch([5, 1, 30])
    np.testing.assert_array_equal(again["image"], batch["image"][[5, 1, 30]])
    np.testing.assert_array_equal(again["parsing"], batch["parsing"][[5, 1, 30]])
    other = SynthFace(seed=1, size=112, num_images=500).render_batch([5])
    assert not np.array_equal(other["image"][0], batch["image"][5])


def test_identity_fixes_shape_and_skin():
    ds = SynthFace(seed=0, size=112, num_images=2000, num_identities=5)
    ids = np.array([ds.identity_of(i) for i in range(200)])
    same = np.flatnonzero(ids == ids[0])[:2]
    a, b = (ds.identity_params(ds.identity_of(i)) for i in same)
    np.testing.assert_array_equal(a["skin"], b["skin"])
    assert a["shape"] == b["shape"]
    assert len(set(ids.tolist())) == 5


def test_parsing_agrees_with_landmarks(batch):
    """Where a face is near-frontal and unoccluded, each eye centre carries its eye label, the
    mouth centre a mouth label and the nose tip the nose label."""
    checked = 0
    for k, a in enumerate(batch["attributes"]):
        if abs(a["yaw"]) > 25 or a["occluder"] != 0 or a["close_eyes"]:
            continue
        lm, lab = batch["landmarks"][k], batch["parsing"][k]
        at = lambda p: lab[int(round(p[1])), int(round(p[0]))]
        assert at(lm[36:42].mean(0)) == sf.LEFT_EYE and at(lm[42:48].mean(0)) == sf.RIGHT_EYE
        assert at(lm[[50, 52, 56, 58]].mean(0)) in (sf.UPPER_LIP, sf.INNER_MOUTH, sf.LOWER_LIP)
        assert at(lm[31:36].mean(0)) == sf.NOSE
        assert at(lm[8] + [0, -4]) == sf.SKIN
        checked += 1
    assert checked >= 10


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be between 64 and 256"):
        SynthFace(size=32)
    with pytest.raises(IndexError):
        SynthFace(num_images=10)[10]


@pytest.mark.parametrize("kwargs,err,msg", [
    ({"size": 100.7}, TypeError, "size must be an integer, got float"),
    ({"size": True}, TypeError, "size must be an integer, got bool"),
    ({"size": "112"}, TypeError, "size must be an integer, got str"),
    ({"num_images": 1.5}, TypeError, "num_images must be an integer, got float"),
    ({"num_images": 0}, ValueError, r"num_images must be in \[1, "),
    ({"num_images": 2 ** 64}, ValueError, r"num_images must be in \[1, "),
    ({"seed": 2.5}, TypeError, "seed must be an integer, got float"),
    ({"seed": -1}, ValueError, r"seed must be in \[0, inf\], got -1"),
    ({"seed": False}, TypeError, "seed must be an integer, got bool"),
    ({"num_identities": 3.0}, TypeError, "num_identities must be an integer"),
    ({"num_identities": 0}, ValueError, r"num_identities must be in \[1, "),
])
def test_constructor_refuses_non_integers_and_out_of_range_instead_of_truncating(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        SynthFace(**kwargs)


def test_constructor_accepts_numpy_integers():
    ds = SynthFace(seed=np.int64(3), size=np.int32(64), num_images=np.uint16(20), num_identities=np.int8(2))
    assert (ds.seed, ds.size, ds.num_images, ds.num_identities) == (3, 64, 20, 2)
    assert all(type(v) is int for v in (ds.seed, ds.size, ds.num_images, ds.num_identities))


def test_indexing_refuses_floats_bools_and_out_of_range():
    ds = SynthFace(size=64, num_images=10)
    for bad, err, msg in [(1.5, TypeError, "index must be an integer, got float"),
                          (True, TypeError, "index must be an integer, got bool"),
                          (-1, ValueError, r"index must be in \[0, 10\) \(num_images\), got -1"),
                          (10, IndexError, r"index must be in \[0, 10\)")]:
        with pytest.raises(err, match=msg):
            ds[bad]
    assert isinstance(pytest.raises(ValueError, ds.__getitem__, 10).value, sf.IndexOutOfRange)
    np.testing.assert_array_equal(ds[np.int64(2)]["image"], ds[2]["image"])


def test_render_batch_refuses_floats_bools_and_out_of_range():
    ds = SynthFace(size=64, num_images=10)
    for bad, err, msg in [([0.5], TypeError, "indices must be integers, got dtype float64"),
                          ([1, True], TypeError, "indices must be integers, got a bool"),
                          (np.array([True]), TypeError, "indices must be integers, got dtype bool"),
                          ([1, -2], ValueError, r"indices\[1\] must be in \[0, 10\)"),
                          ([3, 10], IndexError, r"indices\[1\] must be in \[0, 10\)"),
                          ([], ValueError, "needs at least one index"),
                          ("3", TypeError, "indices must be integers")]:
        with pytest.raises(err, match=msg):
            ds.render_batch(bad)
    with pytest.raises(TypeError, match="chunk must be an integer"):
        ds.render_batch([1], chunk=2.5)
    with pytest.raises(ValueError, match=r"chunk must be in \[1, inf\]"):
        ds.render_batch([1], chunk=0)
    with pytest.raises(TypeError, match="i must be an integer"):
        ds.image_params(1.5)


def test_subsets_and_five_points(batch):
    for k, a in enumerate(batch["attributes"]):
        assert set(a["subsets"]) == set(sf.SUBSETS)
        assert a["subsets"]["occlusion"] == (a["occluder"] != 0)
        assert a["subsets"]["large_pose"] == (abs(a["yaw"]) >= 45 or abs(a["pitch"]) >= 25 or abs(a["roll"]) >= 25)
        np.testing.assert_allclose(batch["landmarks5"][k, 2], batch["landmarks"][k, 30])
        np.testing.assert_allclose(batch["landmarks5"][k, 0], batch["landmarks"][k, 36:42].mean(0), atol=1e-4)
    counts = {s: sum(a["subsets"][s] for a in batch["attributes"]) for s in sf.SUBSETS}
    assert all(0 < c < len(batch["attributes"]) for c in counts.values()), counts


def test_raster_bad_arguments():
    from pacofr import _C
    sq = np.array([1, -1, 255, 0, 0, 0, 4, 2, 2, 9, 2, 9, 9, 2, 9], np.float32)
    params = np.array([[5, 5, 5, 5, 0, 0, 1, 1] + [0] * 8], np.float32)
    ok = (np.array([0, len(sq)], np.int64), params, np.zeros((1, 6), np.float32), np.zeros(1, np.int64))
    img, lab = _C.raster_faces(sq, *ok, 12)
    assert lab[0, 5, 5] == 1 and lab[0, 0, 0] == 0 and img[0, 5, 5, 0] == 255
    with pytest.raises(ValueError, match="offsets must rise from 0 to len"):
        _C.raster_faces(sq, np.array([0, len(sq) + 1], np.int64), *ok[1:], 12)
    with pytest.raises(ValueError, match=r"params\[0\]: head radii must be positive"):
        _C.raster_faces(sq, ok[0], np.zeros((1, 16), np.float32), *ok[2:], 12)
    with pytest.raises(ValueError, match="size must be in"):
        _C.raster_faces(sq, *ok, 0)
    with pytest.raises(ValueError, match="layers contains NaN"):
        _C.raster_faces(np.full_like(sq, np.nan), *ok, 12)
    with pytest.raises(ValueError, match=r"params must have shape \(1, 16\)"):
        _C.raster_faces(sq, ok[0], np.zeros((1, 8), np.float32), *ok[2:], 12)
    with pytest.raises(ValueError, match=r"keys must have shape \(1,\)"):
        _C.raster_faces(sq, *ok[:3], np.zeros(2, np.int64), 12)
    bad = params.copy()
    bad[0, 13] = 50
    with pytest.raises(ValueError, match=r"params\[0\]: texture cells"):
        _C.raster_faces(sq, ok[0], bad, *ok[2:], 12)


def test_add_noise_bad_arguments():
    from pacofr import _C
    im = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"sigmas must have shape \(2,\)"):
        _C.add_noise(im, np.zeros(3, np.float32), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="keys must have dtype int64"):
        _C.add_noise(im, np.zeros(2, np.float32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="sigmas contains NaN"):
        _C.add_noise(im, np.array([np.nan, 0], np.float32), np.zeros(2, np.int64))


@pytest.fixture(scope="module")
def many():
    return SynthFace(seed=7, size=96, num_images=5000, num_identities=400).render_batch(range(0, 5000, 12))


def test_every_hair_style_and_occluder_appears(many):
    attrs = many["attributes"]
    assert {a["hair_style"] for a in attrs} == set(sf.HAIR_STYLES)
    assert {a["occluder_name"] for a in attrs} == set(sf.OCCLUDERS)
    for k, a in enumerate(attrs):
        hair_px = (many["parsing"][k] == sf.HAIR).sum()
        assert (hair_px == 0) == (a["hair_style"] == "bald") or a["occluder_name"] == "hat", (k, a["hair_style"])


def test_occluded_landmarks_are_invisible_and_unlabelled(many):
    """A landmark hidden by an occluder is flagged invisible, and the pixel under it is not
    labelled as a face part; sunglasses hide every eye point."""
    from pacofr.data.synth import geometry as g
    hidden = on_background = 0
    for k, a in enumerate(many["attributes"]):
        lm, vis, lab = many["landmarks"][k], many["visible"][k], many["parsing"][k]
        if a["occluder_name"] == "sunglasses":
            assert not vis[np.r_[g.EYE_R, g.EYE_L]].any()
        if a["occluder"] == 0 or abs(a["yaw"]) > 30:
            continue
        for j in np.flatnonzero(~vis):
            x, y = np.round(lm[j]).astype(int)
            if 0 <= x < 96 and 0 <= y < 96:
                hidden += 1
                on_background += lab[y, x] == sf.BACKGROUND
    assert hidden > 50 and on_background >= 0.9 * hidden, (hidden, on_background)


def test_same_images_on_one_thread():
    import pacofr
    ds = SynthFace(seed=2, size=80, num_images=100)
    a = ds.render_batch(range(20))
    old = pacofr.get_num_threads()
    try:
        pacofr.set_num_threads(1)
        b = ds.render_batch(range(20), chunk=5)
    finally:
        pacofr.set_num_threads(old)
    for key in ("image", "parsing", "landmarks", "visible"):
        np.testing.assert_array_equal(a[key], b[key])


def test_raster_textures_follow_their_key():
    """Skin texture multiplies a lit layer by (1 + value noise) that depends only on the key;
    amplitude 0 leaves a flat colour."""
    from pacofr import _C
    S = 32
    sq = np.array([1, -1, 200, 150, 100, 2, 4, -1, -1, S, -1, S, S, -1, S], np.float32)
    offsets = np.array([0, len(sq)], np.int64)

    def paint(amp, key):
        params = np.array([[16, 16, 16, 16, 0, 0, 1, 1, 0, amp, 3, 0, 0, 4, 0, 0]], np.float32)
        return _C.raster_faces(sq, offsets, params, np.zeros((1, 6), np.float32), np.array([key], np.int64), S)[0][0]

    flat = paint(0.0, 1)
    assert (flat == [200, 150, 100]).all()
    a, b, c = paint(0.1, 1), paint(0.1, 1), paint(0.1, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    ratio = a[..., 0].astype(float) / 200
    assert 0.003 < ratio.std() < 0.1 and abs(ratio.mean() - 1) < 0.05 and ratio.max() <= 1.1 + 1e-2


def test_cli_writes_a_preview(tmp_path):
    from pacofr.cli import main
    from PIL import Image
    out = tmp_path / "grid.png"
    assert main(["synthface", "--num", "4", "--columns", "4", "--size", "64", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w > 300 and h > 150
