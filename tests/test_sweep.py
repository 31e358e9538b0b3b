"""pacofr sweep: the sweep file's checks, equal-compute step counts, the 95% intervals, and a
whole sweep on the tiny model (rows, table, resume where it stopped, a changed sweep refused)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import pacofr.runtime
from pacofr.sweep import aggregate, parse_sweep, run_sweep, step_counts
from pacofr.sweep.runner import measure_step_seconds, read_rows

TINY_PROTOCOL = {"labels": [0.5], "train_images": 12, "eval_images": 10, "probe_steps": 4, "parsing_probe_steps": 4,
                 "curve_every": 2,
                 "batch_size": 4}
BASE = {"model": "pacofr_test_tiny", "batch_size": 4, "synth_images": 64, "dtype": "fp32", "teacher_dtype": "fp32",
        "preview_every": 0, "log_every": 1}


def sweep_dict(**change):
    d = {"name": "tiny", "seconds": 3, "seeds": [0, 1], "base": BASE,
         "per_step": {"warmup_steps": 0.5, "incubation_steps": 0.5, "diag_every": 0.5},
         "arms": {"scratch": {"pretrain": False}, "mae": {"preset": "mae"}, "pacofr": {"steps": 2}},
         "protocol": TINY_PROTOCOL}
    d.update(change)
    return d


@pytest.mark.parametrize("change,message", [
    ({"speed": 1}, r"unknown fields \['speed'\]"),
    ({"seconds": 0}, "seconds must be a positive number"),
    ({"seeds": [0, 0]}, "seeds must be a list of distinct ints"),
    ({"seeds": []}, "seeds must be a list"),
    ({"arms": {}}, "arms must be a non-empty mapping"),
    ({"arms": {"a": {"seed": 3}}}, r"arm 'a': \['seed'\] are set by the sweep"),
    ({"arms": {"a": {"preset": "beit"}}}, "arm 'a': unknown preset 'beit'"),
    ({"arms": {"a": {"masking": "spiral"}}}, "arm 'a': masking must be one of"),
    ({"arms": {"a": [1]}}, "arm 'a' must be a mapping"),
    ({"arms": {"a b": {}, "a_b": {}}}, "same folder name"),
    ({"base": {"out": "x"}}, "base must be a mapping of config fields without"),
    ({"per_step": {"lr": 0.1}}, "per_step may set"),
    ({"per_step": {"warmup_steps": 2}}, "fractions of the step count"),
    ({"protocol": {"split": "test2"}}, "protocol: split must be 'val'"),
    ({"protocol": {"probe": 3}}, r"protocol: unknown protocol fields \['probe'\]"),
    ({"protocol": {"labels": [0.1], "finetune_labels": [0.5]}}, "finetune_labels must be among labels"),
])
def test_bad_sweep_files_say_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep(sweep_dict(**change))


def test_equal_compute_step_counts_and_per_step_fields():
    sweep = parse_sweep(sweep_dict(seconds=100, arms={"scratch": {"pretrain": False}, "mae": {"preset": "mae"},
                                                       "pacofr": {}, "fixed": {"steps": 7}}))
    counts = step_counts(sweep, {"mae": 0.4, "pacofr": 0.53})
    assert counts == {"scratch": 0, "mae": 250, "pacofr": 188, "fixed": 7}   # floor(100 / t)
    cfg = sweep.config(sweep.arms[2], 1, counts["pacofr"], "somewhere")
    assert (cfg.steps, cfg.seed, cfg.warmup_steps, cfg.incubation_steps, cfg.diag_every) == (188, 1, 94, 94, 94)
    mae = sweep.config(sweep.arms[1], 0, 250, "x")
    assert mae.masking == "random" and mae.codebook_size == 0 and mae.model == "pacofr_test_tiny"


def test_ci95_is_the_student_t_interval():
    mean, half, n = aggregate.ci95([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.302652729911275 / math.sqrt(3), rel=1e-9)
    assert aggregate.ci95([0.5, None, float("nan")])[1:] == (pytest.approx(float("nan"), nan_ok=True), 1)
    assert aggregate.ci95([])[2] == 0


def test_summary_and_table_from_rows():
    rows = [{"arm": a, "seed": s, "steps": 10, "step_seconds": 0.5,
             "metrics": {"alignment/linear/1%/nme": v, "parsing/linear/1%/f1": 1 - v}}
            for a, vals in (("mae", (0.10, 0.12)), ("pacofr", (0.20, 0.22))) for s, v in enumerate(vals)]
    summary = aggregate.summarize(rows)
    m = summary["mae"]["metrics"]["alignment/linear/1%/nme"]
    assert m["mean"] == pytest.approx(0.11) and m["n"] == 2 and m["values"] == [0.10, 0.12]
    assert m["ci95"] == pytest.approx(12.706204736 * 0.01414213562 / math.sqrt(2), rel=1e-6)
    table = aggregate.table_markdown(summary, {"protocol": {"labels": [0.01]}})
    assert "| mae | 2 | 10 | 0.500 | 11.00 ± 12.71 | 89.00 ± 12.71 |" in table


def test_a_tiny_sweep_runs_resumes_and_refuses_another_sweep(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "step_times.json").write_text(json.dumps({"seconds_per_step": {"mae": 1.0}}))  # 3 s / 1 s: 3 steps
    sweep = parse_sweep(sweep_dict())
    summary = run_sweep(sweep, out, progress=False, log=None)
    rows = read_rows(out)
    assert [(r["arm"], r["seed"], r["steps"]) for r in rows] == [
        ("scratch", 0, 0), ("mae", 0, 3), ("pacofr", 0, 2), ("scratch", 1, 0), ("mae", 1, 3), ("pacofr", 1, 2)]
    for r in rows:
        assert set(r["metrics"]) >= {"alignment/linear/50%/nme", "alignment/linear/50%/auc",
                                     "alignment/linear/50%/nme/large_pose", "parsing/linear/50%/f1"}
        assert [p[0] for p in r["curves"]["alignment/linear/50%"]] == [2, 4]
        assert all(np.isfinite(r["metrics"]["parsing/linear/50%/f1"]) for r in rows)
        assert ("diag/token_cosine" in r["diagnostics"]) == (r["arm"] != "scratch")
        assert r["cpu"] == pacofr.runtime.cpu_name() and r["isa"] == pacofr.runtime.build_info()["isa"]
    assert summary["mae"]["metrics"]["alignment/linear/50%/nme"]["n"] == 2
    table = (out / "table.md").read_text()
    assert "| pacofr | 2 | 2 |" in table and "±" in table and "| pacofr - mae | " in table
    pairs = json.loads((out / "pairs.json").read_text())
    assert [(p["a"], p["b"]) for p in pairs] == [("scratch", "mae"), ("scratch", "pacofr"), ("mae", "pacofr")]
    assert pairs[2]["metrics"]["alignment/linear/50%/nme"]["paired_n"] == 2
    # two seeds of one arm differ (weights, masks and order follow the seed; the data does not)
    assert rows[1]["metrics"] != rows[4]["metrics"]
    # resume: the last row lost (killed while scoring) is scored again, without pre-training again
    ck = sorted(p.name for p in (out / "runs" / "pacofr" / "seed_1" / "checkpoints").iterdir())
    lines = (out / "rows.jsonl").read_text().splitlines()
    (out / "rows.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])   # and a torn line
    run_sweep(sweep, out, progress=False, log=None)
    again = read_rows(out)
    assert len(again) == 6 and again[-1]["metrics"] == rows[-1]["metrics"]
    assert sorted(p.name for p in (out / "runs" / "pacofr" / "seed_1" / "checkpoints").iterdir()) == ck
    with pytest.raises(ValueError, match="holds another sweep"):
        run_sweep(parse_sweep(sweep_dict(seconds=4)), out, progress=False, log=None)


def test_a_sweep_runs_only_the_arms_and_seeds_asked_then_the_rest(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "step_times.json").write_text(json.dumps({"seconds_per_step": {"mae": 1.0}}))
    sweep = parse_sweep(sweep_dict(arms={"scratch": {"pretrain": False}, "mae": {"preset": "mae"}}))
    run_sweep(sweep, out, progress=False, log=None, arms=["scratch"], seeds=[1])
    assert [(r["arm"], r["seed"]) for r in read_rows(out)] == [("scratch", 1)]
    assert not (out / "runs").exists()                   # no arm was pre-trained
    run_sweep(sweep, out, progress=False, log=None, arms=["mae"])
    assert [(r["arm"], r["seed"]) for r in read_rows(out)] == [("scratch", 1), ("mae", 0), ("mae", 1)]
    run_sweep(sweep, out, progress=False, log=None)
    assert sorted((r["arm"], r["seed"]) for r in read_rows(out)) == [("mae", 0), ("mae", 1), ("scratch", 0),
                                                                     ("scratch", 1)]
    with pytest.raises(ValueError, match="no arm 'pacofr'; its arms: scratch, mae"):
        run_sweep(sweep, out, progress=False, log=None, arms=["pacofr"])
    with pytest.raises(ValueError, match="no seed 7; its seeds: 0, 1"):
        run_sweep(sweep, out, progress=False, log=None, seeds=[7])


def test_cli_runs_one_arm_and_refuses_an_unknown_one(tmp_path):
    path, out = tmp_path / "s.json", tmp_path / "o"
    path.write_text(json.dumps(sweep_dict(seeds=[0])))
    cmd = [sys.executable, "-m", "pacofr.cli", "sweep", str(path), "--out", str(out), "--no-progress"]
    r = subprocess.run(cmd + ["--arm", "mea"], capture_output=True, text=True)
    assert r.returncode == 2 and "no arm 'mea'" in r.stderr
    r = subprocess.run(cmd + ["--arm", "scratch", "--seed", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [(r["arm"], r["seed"]) for r in read_rows(out)] == [("scratch", 0)]


def test_added_arms_are_timed_beside_a_reference_and_scaled(tmp_path, monkeypatch):
    from pacofr.sweep import runner
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "step_times.json").write_text(json.dumps({"seconds_per_step": {"mae": 1.0}, "measured": {}}))
    first = parse_sweep(sweep_dict(seconds=8, seeds=[0], arms={"mae": {"preset": "mae"}}))
    run_sweep(first, out, progress=False, log=None)
    now = {"mae": 0.5, "no sc": 0.75}            # the machine is twice as fast today
    monkeypatch.setattr(runner, "measure_step_seconds", lambda sweep, arm: now[arm.name])
    more = parse_sweep(sweep_dict(seconds=8, seeds=[0], arms={"mae": {"preset": "mae"}, "no sc": {"lambda_sc": 0}}))
    run_sweep(more, out, progress=False, log=None)
    times = json.loads((out / "step_times.json").read_text())
    assert times["seconds_per_step"] == {"mae": 1.0, "no sc": 1.5} and times["scaled"] == {"no sc": 2.0}
    assert times["cpu"] == pacofr.runtime.cpu_name() and times["threads"] == pacofr.runtime.get_num_threads()
    assert [(r["arm"], r["steps"]) for r in read_rows(out)] == [("mae", 8), ("no sc", 5)]
    changed = parse_sweep(sweep_dict(seconds=8, seeds=[0], arms={"mae": {"preset": "mae", "lr": 1e-3}}))
    with pytest.raises(ValueError, match="arm 'mae'"):
        run_sweep(changed, out, progress=False, log=None)


def test_a_change_of_defaults_under_an_arm_is_refused_and_a_pinned_field_accepted(tmp_path, monkeypatch):
    from pacofr.sweep import runner
    from pacofr.train.config import PRESETS, PretrainConfig
    default = PretrainConfig().lambda_sc
    out = tmp_path / "sweep"
    out.mkdir()
    sweep = parse_sweep(sweep_dict())
    runner._check_same_sweep(sweep, out)
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["resolved"]["pacofr"]["lambda_sc"] == default and stored["resolved"]["pacofr"]["steps"] == 2
    assert stored["resolved"]["mae"]["lambda_sc"] == 0.0
    assert stored["resolved"]["scratch"] == {"pretrain": False, "steps": 0, "model": "pacofr_test_tiny"}
    monkeypatch.setitem(PRESETS, "pacofr", {**PRESETS["pacofr"], "lambda_sc": 0.5})     # pacofr's defaults change
    with pytest.raises(ValueError, match=rf"arm 'pacofr' \(lambda_sc: {default} then, 0.5 now\)"):
        runner._check_same_sweep(parse_sweep(sweep_dict()), out)
    arms = {"scratch": {"pretrain": False}, "mae": {"preset": "mae"},
            "pacofr": {"steps": 2, "lambda_sc": default}}
    runner._check_same_sweep(parse_sweep(sweep_dict(arms=arms)), out)     # pinned to what they ran with
    # a sweep.json from before resolved configurations: the arms' fields are compared, then it is upgraded
    old = json.loads((out / "sweep.json").read_text())
    del old["resolved"]
    (out / "sweep.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="arm 'pacofr'"):
        changed = sweep_dict(arms={**arms, "pacofr": {"steps": 3, "lambda_sc": default}})
        runner._check_same_sweep(parse_sweep(changed), out)
    runner._check_same_sweep(parse_sweep(sweep_dict(arms=arms)), out)
    assert json.loads((out / "sweep.json").read_text())["resolved"]["pacofr"]["lambda_sc"] == default


def test_step_time_is_measured(tmp_path):
    sweep = parse_sweep(sweep_dict())
    t = measure_step_seconds(sweep, sweep.arms[1], steps=2, warm=1)
    assert 0 < t < 30


def test_cli_reports_a_bad_sweep_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sweep_dict(seconds=-1)))
    r = subprocess.run([sys.executable, "-m", "pacofr.cli", "sweep", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "seconds must be a positive number" in r.stderr


def _rows(values):
    """rows.jsonl lines: {arm: [(nme, f1) per seed]}."""
    return [{"arm": arm, "seed": s, "steps": 1, "metrics": {"alignment/linear/1%/nme": nme, "parsing/linear/1%/f1": f1}}
            for arm, seeds in values.items() for s, (nme, f1) in enumerate(seeds)]


def test_compare_ranks_arms_best_first_and_counts_concordant_pairs():
    from pacofr.sweep import compare
    big = aggregate.summarize(_rows({"mae": [(0.30, 0.50), (0.32, 0.48)], "pacofr": [(0.35, 0.40)],
                                     "scratch": [(0.40, 0.30)], "only here": [(0.1, 0.9)]}))
    proxy = aggregate.summarize(_rows({"mae": [(0.33, 0.40)], "paco, renamed": [(0.34, 0.45)],
                                       "scratch": [(0.38, 0.20)]}))
    res = compare.compare(big, proxy, rename={"paco, renamed": "pacofr"})
    nme, f1 = res["alignment/linear/1%/nme"], res["parsing/linear/1%/f1"]
    assert [a for a, _ in nme["a"]] == ["mae", "pacofr", "scratch"]          # lower NME first
    assert nme["a"][0][1] == pytest.approx(0.31)                             # the mean over seeds
    assert nme["same"] and (nme["concordant"], nme["pairs"]) == (3, 3)
    assert [a for a, _ in f1["b"]] == ["pacofr", "mae", "scratch"]           # higher F1 first
    assert not f1["same"] and (f1["concordant"], f1["pairs"]) == (2, 3)
    assert compare.lower_is_better("alignment/linear/1%/nme/large_pose")
    assert compare.lower_is_better("alignment/finetune/10%/fr")
    assert not compare.lower_is_better("identity/verification") and not compare.lower_is_better("parsing/linear/1%/f1")
    with pytest.raises(ValueError, match="unknown metric 'nme_median'"):     # no guess from the key's spelling
        compare.lower_is_better("alignment/linear/1%/nme_median")
    text = compare.compare_markdown(res, "default", "proxy")
    assert "| parsing/linear/1%/f1 | mae (49.00) > pacofr (40.00) > scratch (30.00) |" in text and "| 2 / 3 |" in text


def test_pairs_say_whether_intervals_are_apart_and_which_arm_is_better():
    s = aggregate.summarize(_rows({"mae": [(0.30, 0.40), (0.31, 0.41), (0.32, 0.39)],
                                   "paco": [(0.20, 0.42), (0.21, 0.40), (0.22, 0.44)], "one seed": [(0.5, 0.1)]}))
    res = aggregate.pairs(s, ["alignment/linear/1%/nme", "parsing/linear/1%/f1"])
    assert [(r["a"], r["b"]) for r in res] == [("mae", "paco"), ("mae", "one seed"), ("paco", "one seed")]
    nme, f1 = res[0]["metrics"]["alignment/linear/1%/nme"], res[0]["metrics"]["parsing/linear/1%/f1"]
    assert nme["diff"] == pytest.approx(-0.10) and nme["apart"] and nme["better"]
    assert nme["paired_mean"] == pytest.approx(-0.10) and nme["paired_ci95"] == pytest.approx(0, abs=1e-12)
    assert nme["paired_n"] == 3
    # F1: +2 points, but the intervals (2.48 and 4.97 points) overlap; paired: [+2, -1, +5]
    assert f1["diff"] == pytest.approx(0.02) and f1["apart"] is False and f1["better"]
    assert f1["paired_ci95"] == pytest.approx(4.302652729911275 * 0.03 / math.sqrt(3))
    worse = res[1]["metrics"]["alignment/linear/1%/nme"]
    assert worse["apart"] is None and not worse["better"] and worse["paired_n"] == 1
    table = aggregate.pairs_markdown(res)
    assert ("| paco - mae | -10.00 (paired ± 0.00), **apart**, better | +2.00 (paired ± 7.45), overlap, better |"
            in table)
    assert "| one seed - mae | +19.00 | -30.00 |" in table
    assert aggregate.pair_keys({"labels": [0.01, 1.0]})[-1] == "alignment/linear/1%/nme/illumination"


def test_cli_compare_writes_compare_md(tmp_path, capsys):
    from pacofr import cli
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(sweep_dict()))
    a, b = tmp_path / "a", tmp_path / "b"
    for out, values in ((a, {"mae": [(0.3, 0.5)], "scratch": [(0.4, 0.3)]}),
                        (b, {"mae": [(0.5, 0.2)], "scratch": [(0.45, 0.25)]})):
        out.mkdir()
        (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(values)))
    assert cli.main(["sweep", str(spec), "--out", str(a), "--tables-only", "--compare", str(b)]) == 0
    text = (a / "compare.md").read_text()
    assert ("| alignment/linear/1%/nme | mae (30.00) > scratch (40.00) | scratch (45.00) > mae (50.00) | no | 0 / 1 |"
            in text)
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["compare"] == str(a / "compare.md")
    assert cli.main(["sweep", str(spec), "--out", str(a), "--tables-only", "--compare", str(b), "--rename", "x"]) == 2
    assert cli.main(["sweep", str(spec), "--out", str(a), "--tables-only", "--compare", str(tmp_path / "none")]) == 2


def test_a_sweep_started_before_protocol_fields_were_added_resumes(tmp_path):
    """sweep.json of a sweep started before the pacofr eval preset's fields joined Protocol
    (head, pools, ...): those fields read as their defaults, so the sweep is the same one; a
    changed protocol is still refused."""
    from pacofr.sweep.spec import sweep_dict as written
    sweep = parse_sweep(sweep_dict(), "s.json")
    old = written(sweep)
    for field in ("head", "parsing_head", "layer_decay", "normalizer", "pools", "identity_probe"):
        del old["protocol"][field]
    (tmp_path / "sweep.json").write_text(json.dumps(old))
    run_sweep(sweep, tmp_path, tables_only=True)
    assert json.loads((tmp_path / "sweep.json").read_text())["protocol"]["pools"] == ["mean"]
    old["protocol"]["probe_steps"] = 5
    (tmp_path / "sweep.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"holds another sweep \(differs in \['protocol'\]\)"):
        run_sweep(sweep, tmp_path, tables_only=True)


def test_parse_seeds_reads_ranges_and_lists():
    from pacofr.sweep.spec import parse_seeds
    assert parse_seeds("3-6") == [3, 4, 5, 6]
    assert parse_seeds("0,2,5") == [0, 2, 5]
    assert parse_seeds("5,0-1") == [0, 1, 5]
    for bad in ("", "a", "3-", "6-3", "1,,2", "-1"):
        with pytest.raises(ValueError, match="seeds must read like"):
            parse_seeds(bad)
