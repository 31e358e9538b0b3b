"""Issue 13, data half: every bad input to the readers, data sets and SynthFace raises a
ValueError / TypeError naming the argument or the file (and line), quickly: never a crash, a
hang, NaN, silent truncation or a foreign exception type."""
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from pacofr.data import formats
from pacofr.data.datasets import ImageFolder, LandmarkFaces, open_landmark_faces

HRNET_HEADER = "image_name,scale,center_w,center_h,a,b,c,d,e,f,g,h,i,j\n"
ROW = "1.5,10,20,30,40,50,40,40,50,35,60,45,60"   # scale, centre, 5 points


@pytest.fixture(autouse=True)
def under_a_second():
    t = time.perf_counter()
    yield
    assert time.perf_counter() - t < 1.0


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def coco(file_name, keypoints=(1, 2, 1) * 5, bbox=(0, 0, 10, 10)):
    import json
    return json.dumps({"images": [{"id": 7, "file_name": file_name}],
                       "annotations": [{"image_id": 7, "keypoints": list(keypoints), "bbox": list(bbox)}]})


# ---------------------------------------------------------------- 1. files outside the data root

@pytest.mark.parametrize("name", ["../x.png", "/etc/passwd", "a/../../x.png", "a/../b.png"])
def test_hrnet_csv_rejects_image_paths_outside_the_root(tmp_path, name):
    p = write(tmp_path, "a.csv", HRNET_HEADER + f"ok.png,{ROW}\n{name},{ROW}\n")
    with pytest.raises(ValueError, match=r"a\.csv:3: image path .* leads outside the data root"):
        formats.read_hrnet_csv(p)
    assert formats.read_hrnet_csv(p, allow_outside_root=True)[1]["image"] == name


@pytest.mark.parametrize("name", ["../x.png", "/abs/x.png"])
def test_coco_rejects_file_names_outside_the_root(tmp_path, name):
    p = write(tmp_path, "a.json", coco(name))
    with pytest.raises(ValueError, match=r"a\.json: image id 7: image path .* leads outside"):
        formats.read_coco_keypoints(p)
    assert formats.read_coco_keypoints(p, allow_outside_root=True)[0]["image"] == name


def test_coco_rejects_a_file_name_that_is_not_a_path(tmp_path):
    with pytest.raises(ValueError, match=r"a\.json: image id 7: expected an image path, got 3"):
        formats.read_coco_keypoints(write(tmp_path, "a.json", coco(3)))


def test_dataset_openers_keep_images_inside_the_root(tmp_path):
    csv_path = write(tmp_path, "a.csv", HRNET_HEADER + f"../x.png,{ROW}\n")
    with pytest.raises(ValueError, match=r"a\.csv:2: .*allow_outside_root=True"):
        open_landmark_faces(csv_path)
    assert len(open_landmark_faces(csv_path, allow_outside_root=True)) == 1
    json_path = write(tmp_path, "b.json", coco("/abs/x.png"))
    with pytest.raises(ValueError, match=r"b\.json: image id 7"):
        LandmarkFaces.from_coco(json_path)
    assert len(LandmarkFaces.from_coco(json_path, allow_outside_root=True)) == 1


def test_wflw_rejects_image_paths_outside_the_root(tmp_path):
    coords = " ".join(["5"] * 196)
    p = write(tmp_path, "w.txt", f"{coords} 1 2 3 4 0 0 0 0 0 0 ../../x.jpg\n")
    with pytest.raises(ValueError, match=r"w\.txt:1: image path '../../x.jpg' leads outside"):
        formats.read_wflw_txt(p)
    assert formats.read_wflw_txt(p, allow_outside_root=True)[0]["image"] == "../../x.jpg"


@pytest.mark.parametrize("line", ["../etc 1 2", "a/b 1 2", "A 1 .. 2", "A 0 2", "A 1 -2", "A 1 +2"])
def test_lfw_pairs_names_are_folder_names_and_indices_positive(tmp_path, line):
    with pytest.raises(ValueError, match=r"p\.txt:1: expected"):
        formats.read_lfw_pairs(write(tmp_path, "p.txt", line + "\n"))


def test_aflw_names_stay_inside_the_root(tmp_path):
    from scipy.io import savemat
    names = np.empty((1, 1), dtype=object)
    names[0, 0] = "../../secret.jpg"
    savemat(tmp_path / "a.mat", {"data": np.ones((1, 38)), "bbox": np.ones((1, 4)), "nameList": names})
    with pytest.raises(ValueError, match=r"a\.mat: face 0: image path .* leads outside"):
        formats.read_aflw_mat(tmp_path / "a.mat")
    assert formats.read_aflw_mat(tmp_path / "a.mat", allow_outside_root=True)["names"] == ["../../secret.jpg"]


# ---------------------------------------------------------------- 2. images

def png_header(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [100000, 10000])   # over PIL's error limit, and its warning one
def test_decompression_bomb_is_a_value_error_with_the_declared_size(tmp_path, side):
    p = write(tmp_path, "bomb.png", png_header(side, side))
    with pytest.warns(Image.DecompressionBombWarning) if side == 10000 else _nothing():
        with pytest.raises(ValueError, match=rf"bomb\.png: image declares {side}x{side} pixels"):
            formats.read_image(p)


def _nothing():
    import contextlib
    return contextlib.nullcontext()


def test_decompression_bomb_in_an_image_folder_is_skippable(tmp_path):
    from pacofr.data.loader import Loader
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    write(tmp_path, "b.png", png_header(100000, 100000))
    loader = Loader(ImageFolder(tmp_path, size=8), 1, shuffle=False, on_error="skip", drop_last=False)
    assert len(list(loader)) == 1 and "b.png: image declares 100000x100000" in loader.skipped[0][1]


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.jpg")
    data = (tmp_path / "x.jpg").read_bytes()
    write(tmp_path, "t.jpg", data[: len(data) // 2])
    write(tmp_path, "garbage.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    for name in ("t.jpg", "garbage.png"):
        with pytest.raises(ValueError, match=rf"{name}: cannot decode image"):
            formats.read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        formats.read_image(tmp_path / "missing.png")


def test_celebamask_bomb_and_bad_arguments(tmp_path):
    (tmp_path / "0").mkdir()
    write(tmp_path / "0", "00003_skin.png", png_header(100000, 100000))
    with pytest.raises(ValueError, match=r"00003_skin\.png: mask declares 100000x100000"):
        formats.read_celebamask(tmp_path, 3, size=8)
    with pytest.raises(ValueError, match=r"index must be in \[0, inf\], got -1"):
        formats.read_celebamask(tmp_path, -1)
    with pytest.raises(TypeError, match="index must be an integer, got float"):
        formats.read_celebamask(tmp_path, 3.5)
    with pytest.raises(TypeError, match="size must be an integer, got bool"):
        formats.read_celebamask(tmp_path, 3, size=True)


# ---------------------------------------------------------------- 3. JSON nested deeply

def test_deeply_nested_json_is_a_value_error(tmp_path):
    p = write(tmp_path, "deep.json", "[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match=r"deep\.json: JSON nested too deeply"):
        formats.read_coco_keypoints(p)
    p = write(tmp_path, "deep1000.json", '{"images": ' + "[" * 1000 + "]" * 1000 + "}")
    with pytest.raises(ValueError, match=r"deep1000\.json"):
        formats.read_coco_keypoints(p)


def test_json_with_an_endless_integer_or_huge_number(tmp_path):
    with pytest.raises(ValueError, match=r"a\.json: not valid JSON"):
        formats.read_coco_keypoints(write(tmp_path, "a.json", "[" + "9" * 5000 + "]"))
    with pytest.raises(ValueError, match=r"b\.json: annotation 0: malformed"):
        formats.read_coco_keypoints(write(tmp_path, "b.json", coco("x.png", keypoints=(10 ** 400, 1, 1))))
    with pytest.raises(ValueError, match=r"c\.json: annotation 0: non-finite"):
        formats.read_coco_keypoints(write(tmp_path, "c.json", coco("x.png").replace("[1, 2, 1", "[1e999, 2, 1")))


def test_coco_visibility_must_be_0_1_or_2(tmp_path):
    with pytest.raises(ValueError, match=r"a\.json: annotation 0: visibility v must be 0, 1 or 2, got 300"):
        formats.read_coco_keypoints(write(tmp_path, "a.json", coco("x.png", keypoints=(1, 2, 300))))


# ---------------------------------------------------------------- 4. non-UTF-8 bytes

@pytest.mark.parametrize("reader,name,data", [
    (formats.read_hrnet_csv, "a.csv", HRNET_HEADER.encode() + b"caf\xe9.png," + ROW.encode() + b"\n"),
    (formats.read_wflw_txt, "w.txt", b"1 2\n\xff\xfe\n"),
    (formats.read_lfw_pairs, "pairs.txt", b"A 1 2\nB\x80 1 2\n"),
    (formats.read_pts, "a.pts", b"version: 1\nn_points: 1\n{\n1 \xc3\n}\n"),
    (formats.read_coco_keypoints, "a.json", b'{"images": \xff}'),
])
def test_non_utf8_bytes_name_the_file_and_line(tmp_path, reader, name, data):
    p = write(tmp_path, name, data)
    line = data[: next(i for i, b in enumerate(data) if b >= 0x80)].count(b"\n") + 1
    with pytest.raises(ValueError, match=rf"{name}:{line}: expected UTF-8 text"):
        reader(p)


def test_csv_errors_are_value_errors(tmp_path):
    p = write(tmp_path, "big.csv", HRNET_HEADER + "x" * 200000 + "," + ROW + "\n")
    with pytest.raises(ValueError, match=r"big\.csv:2: not a CSV row"):
        formats.read_hrnet_csv(p)


# ---------------------------------------------------------------- 5. NaN and absurd landmarks

def lapa_root(tmp_path, text):
    base = tmp_path / "test"
    for sub in ("images", "labels", "landmarks"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(base / "images" / "a.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(base / "labels" / "a.png")
    (base / "landmarks" / "a.txt").write_text(text)
    return tmp_path


@pytest.mark.parametrize("bad", ["nan", "inf", "1e300", "-2e6"])
def test_lapa_rejects_non_finite_or_absurd_landmarks(tmp_path, bad):
    text = "106\n" + "".join(f"{i} {i}\n" if i != 4 else f"{bad} 1\n" for i in range(106))
    with pytest.raises(ValueError, match=r"a\.txt:6: (non-finite coordinates|coordinates must lie within)"):
        formats.read_lapa(lapa_root(tmp_path, text), "test")


@pytest.mark.parametrize("bad", [np.nan, np.inf, 5e6])
def test_aflw_rejects_non_finite_or_absurd_landmarks_and_boxes(tmp_path, bad):
    from scipy.io import savemat
    data, bbox = np.ones((4, 38)), np.ones((4, 4))
    data[2, 7] = bad
    savemat(tmp_path / "a.mat", {"data": data, "bbox": bbox})
    with pytest.raises(ValueError, match=r"a\.mat: face 2: landmarks must be finite"):
        formats.read_aflw_mat(tmp_path / "a.mat")
    bbox[3, 1] = bad
    savemat(tmp_path / "b.mat", {"data": np.ones((4, 38)), "bbox": bbox})
    with pytest.raises(ValueError, match=r"b\.mat: face 3: box must be finite"):
        formats.read_aflw_mat(tmp_path / "b.mat")


def test_aflw_garbage_fields_are_value_errors(tmp_path):
    from scipy.io import savemat
    savemat(tmp_path / "a.mat", {"data": np.ones((4, 38)), "bbox": np.ones((4, 4)), "mask_new": np.ones((4, 3))})
    with pytest.raises(ValueError, match=r"a\.mat: expected numeric data"):
        formats.read_aflw_mat(tmp_path / "a.mat")


@pytest.mark.parametrize("value", ["1e7", "-1e300", "1e39"])
def test_text_readers_reject_absurd_coordinates(tmp_path, value):
    with pytest.raises(ValueError, match=r"a\.pts: coordinates must lie within"):
        formats.read_pts(write(tmp_path, "a.pts", f"version: 1\nn_points: 1\n{{\n{value} 2\n}}\n"))
    with pytest.raises(ValueError, match=r"a\.csv:2: values must lie within"):
        formats.read_hrnet_csv(write(tmp_path, "a.csv", HRNET_HEADER + f"x.png,1,2,3,{value}" + ",1" * 9 + "\n"))
    coords = " ".join(["5"] * 195)
    with pytest.raises(ValueError, match=r"w\.txt:1: values must lie within"):
        formats.read_wflw_txt(write(tmp_path, "w.txt", f"{coords} {value} 1 2 3 4 0 0 0 0 0 0 x.jpg\n"))
    with pytest.raises(ValueError, match=r"a\.json: annotation 0: values must lie within"):
        formats.read_coco_keypoints(write(tmp_path, "a.json", coco("x.png", keypoints=(float(value), 1, 1))))


def test_hrnet_scale_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match=r"a\.csv:2: scale must be positive, got '0'"):
        formats.read_hrnet_csv(write(tmp_path, "a.csv", HRNET_HEADER + "x.png,0" + ",1" * 12 + "\n"))


@pytest.mark.parametrize("lm,msg", [
    (np.full((5, 2), np.nan), "finite"), (np.full((5, 2), 1e9), "within"), (np.ones(10), r"\(K, 2\)"),
])
def test_landmark_faces_checks_its_records(lm, msg):
    with pytest.raises(ValueError, match=rf"records\[1\]: .*{msg}"):
        LandmarkFaces([{"image": "a.png", "landmarks": np.ones((5, 2))}, {"image": "b.png", "landmarks": lm}])
    with pytest.raises(ValueError, match=r"records\[0\]: expected a dict"):
        LandmarkFaces([{"landmarks": np.ones((5, 2))}])


@pytest.mark.parametrize("size,err", [(100.7, TypeError), ("112", TypeError), (True, TypeError), (0, ValueError)])
def test_data_set_sizes_are_positive_integers(tmp_path, size, err):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(err, match="size must be"):
        ImageFolder(tmp_path, size=size)
    with pytest.raises(err, match="size must be"):
        LandmarkFaces([{"image": "a.png", "landmarks": np.ones((5, 2))}], size=size)
