"""Every speed benchmark (benchmarks/speed/bench_*.py) runs with --quick and writes a result
that carries the machine header, the correctness checks it passed before timing, and rows; and
the harness they share (pacofr/testing/bench.py, workers.py) keeps its promises: nothing is
timed before a check, a wrong result stops the run, result files are named by what they
measured, a worker that dies or hangs is reported while the run goes on."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pacofr.testing import bench
from pacofr.testing.data import shared_data
from pacofr.testing.workers import Workers, ready_or_error, serve

ROOT = Path(__file__).resolve().parents[1]
SPEED = sorted((ROOT / "benchmarks" / "speed").glob("bench_*.py"))
NEEDS = {"bench_prepare": ("detector", "shared_data"), "bench_distributed": ("mpirun",)}


def test_every_speed_benchmark_is_found():
    assert len(SPEED) >= 12, [p.name for p in SPEED]


@pytest.mark.parametrize("script", SPEED, ids=lambda p: p.stem)
def test_quick_run(script, tmp_path, request):
    for need in NEEDS.get(script.stem, ()):
        if need == "shared_data":
            if not shared_data().is_dir():
                pytest.skip(f"no shared data at {shared_data()}")
        else:
            request.getfixturevalue(need)
    if "torch" in script.read_text():
        request.getfixturevalue("torch")
    out = tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(script), "--quick", "--json", str(out), "--save", str(tmp_path / "save")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    seconds = time.perf_counter() - t
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["bench"] == script.stem and doc["quick"] is True
    assert {"cpu", "isa", "onednn", "threads", "commit"} <= set(doc["machine"])
    assert doc["checks"], "a benchmark must check its results before it times them"
    assert doc["rows"], "no figures"
    assert r.stdout.startswith(f"# {script.stem}: {doc['machine']['cpu']}")
    saved = sorted(p.name for p in (tmp_path / "save").iterdir())
    stem = f"{script.stem}-{doc['dtype']}-{bench.cpu_tag(doc['machine']['cpu'])}-"
    assert len(saved) == 2 and all(n.startswith(stem) for n in saved), saved
    print(f"{script.stem} --quick: {seconds:.1f} s")


def _args(**kw):
    base = dict(quick=False, threads=1, json=None, save=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_nothing_is_timed_before_a_check(capsys):
    rep = bench.Report("bench_x", _args())
    with pytest.raises(RuntimeError, match="nothing was checked"):
        rep.alternate({"a": lambda: None}, rounds=1)
    rep.check("sum", 3.0, 3.0)
    times = rep.alternate({"a": lambda: None, "b": lambda: None}, rounds=3, reps=2)
    assert set(times) == {"a", "b"} and all(len(t) == 3 for t in times.values())
    assert capsys.readouterr().out.startswith("# bench_x: ")


def test_a_wrong_result_stops_the_run():
    rep = bench.Report("bench_x", _args())
    with pytest.raises(bench.CheckFailed, match="max \\|error\\|"):
        rep.check("product", np.ones(4) * 1.01, np.ones(4), rtol=1e-3, atol=0.0)
    with pytest.raises(bench.CheckFailed, match="shape"):
        rep.check("product", np.ones(3), np.ones(4))
    with pytest.raises(bench.CheckFailed):
        rep.check("nan", np.array([np.nan]), np.array([np.nan]))
    with pytest.raises(bench.CheckFailed):
        rep.check("exact", np.array([1.0, 2.0]), np.array([1.0, 2.5]), rtol=0.0, atol=0.0)
    with pytest.raises(bench.CheckFailed, match="count failed: 3 of 4"):
        rep.require("count", False, "3 of 4")
    assert rep.checks == []
    rep.check("close", np.ones(4) * 1.0001, np.ones(4), rtol=1e-3)
    rep.check("exact", np.array([0.0, 2.0]), np.array([0.0, 2.0]), rtol=0.0, atol=0.0)
    assert len(rep.checks) == 2


def test_result_files_are_named_by_what_they_measured(tmp_path):
    assert bench.cpu_tag("Intel(R) Xeon(R) Processor (family 6 model 167)") == "intel-xeon-f6m167"
    assert bench.cpu_tag("AMD EPYC 9R14 96-Core Processor (family 25 model 17)") == "amd-epyc-9r14-f25m17"
    rep = bench.Report("bench_x", _args(json=str(tmp_path / "a.json"), save=str(tmp_path / "s")), dtype="bf16")
    rep.check("x", 1.0, 1.0)
    rep.row(seconds=np.float64(0.5), all=np.array([0.5, 0.6]))
    doc = rep.finish()
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    stem = f"bench_x-bf16-{bench.cpu_tag(doc['machine']['cpu'])}-{doc['machine']['commit'].replace('+', '-')}"
    assert names == [stem + ".json", stem + ".md"]
    assert json.loads((tmp_path / "a.json").read_text())["rows"] == [{"seconds": 0.5, "all": [0.5, 0.6]}]
    assert (tmp_path / "s" / (stem + ".md")).read_text().startswith("# bench_x: ")


def _worker(conn, variant):
    if variant == "dies at start":
        os._exit(3)

    def step():
        if variant == "dies in a step":
            os._exit(4)
        if variant == "hangs":
            time.sleep(60)
    step0 = ready_or_error(conn, lambda: (lambda: None))
    if step0 is not None:
        serve(conn, step)


def test_a_dead_or_hung_worker_is_reported_and_the_run_goes_on():
    pool = Workers(_worker, ["fine", "dies at start", "dies in a step", "hangs"], timeout=3.0)
    assert "exit code 3" in pool.notes["dies at start"]
    answers = {v: pool.ask(v, "step") for v in pool.variants}
    pool.close()
    assert isinstance(answers["fine"], float)
    assert answers["dies in a step"] is None and "exit code 4" in pool.notes["dies in a step"]
    assert answers["hangs"] is None and "no answer in 3 s" in pool.notes["hangs"]


def script_problems(paths):
    """"path: why" for each script that edits sys.path or imports another script of the tree."""
    import ast
    scripts = {p.stem for p in paths}
    out = []
    for p in paths:
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                out.append(f"{p.name}:{node.lineno}: sys.path")
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            out += [f"{p.name}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in scripts]
    return out


def test_no_script_edits_sys_path_or_imports_another(tmp_path):
    assert script_problems(sorted((ROOT / "benchmarks").rglob("*.py"))) == []
    (tmp_path / "a.py").write_text("import sys\nsys.path.insert(0, '.')\n")
    (tmp_path / "b.py").write_text("from a import x\n")
    assert script_problems([tmp_path / "a.py", tmp_path / "b.py"]) == ["a.py:2: sys.path", "b.py:1: imports a"]
