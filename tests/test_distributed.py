"""Data-parallel pre-training on MPI: a single process is a world of one; a loader split across
ranks hands each its slice of the same global batches; N ranks with batch B follow one
process's trajectory with batch B (N = 1, 2, 4); checkpoints move between rank counts; a
rank that fails or runs another config stops the job with a message naming it."""
import json
import subprocess
import sys
import time

import numpy as np
import pytest

import pacofr
from pacofr import distributed
from pacofr.data import shards
from pacofr.data.loader import Loader
from pacofr.data.synth import synthface_at
from pacofr.paco import PacoFR
from pacofr.train import make_config

# lr pinned to the former default (1.5e-4 * 8 / 256): the key biases' noise moves by about lr per
# step (assert_same_model), which the 1e-6 floor covers at this lr
RUN = ["--model", "pacofr_test_tiny", "--batch-size", "8", "--lr", "4.6875e-6", "--no-progress", "--log-every", "1",
       "--preview-every", "0", "--threads", "1", "--dtype", "fp32", "--set", "synth_images=64",
       "--set", "codebook_size=32", "--set", "belief_hidden=16", "--set", "incubation_steps=8",
       "--set", "teacher_dtype=model", "--checkpoint-every", "10"]


def pretrain_cmd(out, steps=20, preset="pacofr", extra=()):
    return [sys.executable, "-m", "pacofr.cli", "pretrain", "--preset", preset, "--steps", str(steps), "--out",
            str(out), *RUN, *extra]


def run_ok(cmd, timeout=300):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def assert_same_model(a, b, rtol=1e-5, atol=1e-6):
    """Every tensor within rtol of its own scale. The attention key biases have a zero true
    gradient (softmax ignores them): Adam turns rounding noise there into updates, so a 1e-6
    absolute floor covers tensors whose values sit at that noise."""
    ma, mb = pacofr.load_model(a), pacofr.load_model(b)
    for t in ma.tensors:
        x, y = ma.param(t.name), mb.param(t.name)
        err, scale = float(np.abs(x - y).max()), float(np.abs(x).max())
        assert err <= rtol * scale + atol, f"{t.name}: max difference {err:.3g} at scale {scale:.3g}"


def metrics(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_plain_process_is_a_world_of_one(monkeypatch):
    w = distributed.World()
    a = np.arange(6, dtype=np.float32)
    assert (w.rank, w.size, w.is_root) == (0, 1, True)
    assert w.allreduce_mean_(a) is a and a.tolist() == list(range(6))
    np.testing.assert_array_equal(w.allgather(a[:4]), a[:4])
    assert w.mean(2.5) == 2.5 and w.bcast({"x": 1}) == {"x": 1}
    w.agree("config", {"a": 1})
    for var in distributed._SIZE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert distributed.launched_size() == 3


def test_a_multi_rank_launch_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setattr(distributed, "_WORLD", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"2 ranks, but mpi4py is not installed: pip install 'pacofr\[mpi\]'"):
        distributed.world()


@pytest.mark.parametrize("source", ["synthface", "shards"])
def test_rank_slices_make_up_the_global_batches(tmp_path, source):
    if source == "synthface":
        data = synthface_at(32, seed=0, num_images=48)
    else:
        crops = synthface_at(32, seed=0, num_images=48).render_batch(range(48))["image"]
        shards.write_shards(tmp_path, ((c, {}) for c in crops), 32, shard_faces=10)
        data = shards.ShardSet(tmp_path, buffer=8)
    whole = list(Loader(data, 12, seed=3, prefetch=0).iterate(epoch=1, start=1))
    parts = [list(Loader(data, 12, seed=3, prefetch=0, part=(r, 4)).iterate(epoch=1, start=1)) for r in range(4)]
    assert len(whole) == 3 and all(len(p) == 3 for p in parts)
    for k, b in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([p[k]["indices"] for p in parts]), b["indices"])
        np.testing.assert_array_equal(np.concatenate([p[k]["images"] for p in parts]), b["images"])
    with pytest.raises(ValueError, match="divisible"):
        Loader(data, 12, part=(0, 5))
    with pytest.raises(ValueError, match="on_error='raise'"):
        Loader(data, 12, part=(0, 2), on_error="skip")


def test_masks_and_substitutions_of_a_slice_are_the_rows_of_the_whole_batch():
    cfg = make_config("pacofr", codebook_size=32, belief_hidden=16)
    paco = PacoFR(pacofr.create_model("pacofr_test_tiny", codebook_size=32, belief_hidden=16), cfg, 4)
    idx = np.arange(100, 108)
    whole, part = paco.sample(idx, step=5), paco.sample(idx[4:], step=5)
    for key in ("mask", "ids_keep", "ids_restore", "pos"):
        np.testing.assert_array_equal(part[key], whole[key][4:], err_msg=key)


@pytest.mark.parametrize("preset", ["pacofr", "mae"])
def test_n_ranks_follow_one_process(tmp_path, mpirun, preset):
    """20 steps (8 of incubation for PaCo-FR: codebook init, EMA k-means, re-seeding, then
    learned codes) on 1 process and on 2 and 4 ranks: the same weights and logged losses."""
    run_ok(pretrain_cmd(tmp_path / "n1", preset=preset))
    for n in (2, 4):
        run_ok(mpirun(n) + pretrain_cmd(tmp_path / f"n{n}", preset=preset))
        assert_same_model(tmp_path / "n1", tmp_path / f"n{n}")
        for a, b in zip(metrics(tmp_path / "n1"), metrics(tmp_path / f"n{n}"), strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["step"] == b["step"]
            assert a.get("usage") == b.get("usage")
    assert not list((tmp_path / "n2").glob("*rank*")), "only rank 0 writes"


STOP_AT_10 = """
import sys, pacofr
pacofr.set_num_threads(1)
pacofr.pretrain("pacofr", out=sys.argv[1], steps=20, stop_after=10, resume=sys.argv[2] == "resume", progress=False,
                model="pacofr_test_tiny", batch_size=8, log_every=1, preview_every=0, dtype="fp32", synth_images=64,
                codebook_size=32, belief_hidden=16, incubation_steps=8, teacher_dtype="model", checkpoint_every=10,
                lr=4.6875e-6)
"""


def test_checkpoints_move_between_rank_counts(tmp_path, mpirun):
    """Steps 1-10 on 2 ranks and 11-20 on 1 process, and the other way round, against 20
    steps on 1 process (the run is cut with ``stop_after``: same schedule); cut and resumed
    on 2 ranks, the same bits as 20 steps on 2 ranks."""
    run_ok(pretrain_cmd(tmp_path / "one", steps=20))
    half = [sys.executable, "-c", STOP_AT_10]
    run_ok(mpirun(2) + half + [str(tmp_path / "two_one"), "new"])
    run_ok(half + [str(tmp_path / "two_one"), "resume"])
    assert_same_model(tmp_path / "one", tmp_path / "two_one")
    run_ok(half + [str(tmp_path / "one_two"), "new"])
    run_ok(mpirun(2) + half + [str(tmp_path / "one_two"), "resume"])
    assert_same_model(tmp_path / "one", tmp_path / "one_two")
    assert [r["step"] for r in metrics(tmp_path / "one_two")] == list(range(1, 21))
    # the same rank count on both sides of the cut: bit-identical to an uncut run
    run_ok(mpirun(2) + pretrain_cmd(tmp_path / "two", steps=20))
    run_ok(mpirun(2) + half + [str(tmp_path / "two_two"), "new"])
    run_ok(mpirun(2) + half + [str(tmp_path / "two_two"), "resume"])
    np.testing.assert_array_equal(pacofr.load_model(tmp_path / "two").flat_params,
                                  pacofr.load_model(tmp_path / "two_two").flat_params)


def test_a_rank_with_another_config_refuses_to_start(tmp_path, mpirun):
    a = pretrain_cmd(tmp_path / "x", steps=4)
    b = pretrain_cmd(tmp_path / "x", steps=4, extra=["--lr", "1e-3"])
    cmd = mpirun(1) + a + [":"] + mpirun(1)[1:3] + b   # MPMD: rank 0 runs a, rank 1 runs b
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and time.time() - t < 60
    assert "ranks [1] were started with another config or pacofr version than rank 0" in r.stderr
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_a_failing_rank_stops_the_job_and_names_itself(tmp_path, mpirun):
    """Image 5 of the folder is corrupt: the rank whose slice holds it raises in its loader,
    and the whole job ends at once (MPI_Abort) with its message."""
    from PIL import Image
    folder = tmp_path / "faces"
    folder.mkdir()
    crops = synthface_at(32, seed=0, num_images=16).render_batch(range(16))["image"]
    for i, c in enumerate(crops):
        Image.fromarray(c).save(folder / f"{i:02d}.png")
    (folder / "05.png").write_bytes(b"\x89PNG broken")
    cmd = mpirun(2) + pretrain_cmd(tmp_path / "run", steps=40, extra=["--data", str(folder), "--set", "flip=false"])
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and time.time() - t < 60
    assert "pacofr: rank" in r.stderr and "05.png" in r.stderr


def test_eval_under_mpirun_gives_the_numbers_of_one_process(tmp_path, mpirun):
    """The encoding of the data sets is shared out among 2 ranks and gathered back: the report
    equals one process's."""
    cmd = lambda out: [sys.executable, "-m", "pacofr.cli", "eval", "--model", "pacofr_test_tiny", "--train-images",
                       "100", "--test-images", "70", "--steps", "3", "--threads", "1", "--out", str(out),
                       "--no-progress"]
    run_ok(cmd(tmp_path / "one"))
    r = run_ok(mpirun(2) + cmd(tmp_path / "two"))
    assert r.stdout.count('"json"') == 1, "one report line per job"
    one, two = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("one", "two"))
    assert one == two


def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path, mpirun):
    """SIGKILL one rank after the first checkpoint: mpirun ends the job within seconds (no
    hang in the other rank's allreduce), and the run resumes from its last checkpoint."""
    import os
    import signal
    from pacofr import checkpoint as ck
    out = tmp_path / "run"
    job = subprocess.Popen(mpirun(2) + pretrain_cmd(out, steps=400, extra=["--checkpoint-every", "2"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ck.checkpoint_dirs(out) and job.poll() is None:
        time.sleep(0.05)
    ranks = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
    assert job.poll() is None and len(ranks) == 2, "the job ended before a rank could be killed"
    os.kill(int(ranks[-1]), signal.SIGKILL)
    t = time.time()
    job.communicate(timeout=60)
    assert job.returncode != 0 and time.time() - t < 30
    last = ck.step_of(ck.checkpoint_dirs(out)[-1])
    run_ok(pretrain_cmd(out, steps=last + 2, extra=["--resume", "--checkpoint-every", "2"]))
    assert metrics(out)[-1]["step"] == last + 2
