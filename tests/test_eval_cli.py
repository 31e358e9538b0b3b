"""``pacofr eval`` keeps what users read: the same files in its output folder, the same
eval.json keys and the same eval.md tables as before it became a preset of the one driver
(``pacofr.eval.protocol``). The expectation, tests/golden/eval_cli_skeleton.json, was captured
from the driver it replaced (pacofr/eval/benchmark.py at b0677da) with the command below."""
import json
import re
import subprocess
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "eval_cli_skeleton.json"
ARGS = ["--model", "pacofr_test_tiny", "--train-images", "40", "--test-images", "40", "--steps", "5",
        "--batch-size", "8", "--no-progress"]


def _paths(value, at=""):
    """Every leaf of a JSON value as a slash path; a list is one leaf marked ``[]``."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, f"{at}/{k}")]
    return [at + "[]"] if isinstance(value, list) else [at]


def skeleton(out):
    """What a user reads in a ``pacofr eval`` folder, numbers left out: the file names, the
    eval.json key paths in order, and eval.md with every number written as #."""
    out = Path(out)
    md = (out / "eval.md").read_text().splitlines()
    return {"files": sorted(p.name for p in out.iterdir()),
            "json_keys": _paths(json.loads((out / "eval.json").read_text())),
            "md": [re.sub(r"-?\d+(\.\d+)?", "#", line) for line in md]}


def test_pacofr_eval_writes_the_same_files_keys_and_tables(tmp_path):
    out = tmp_path / "ev"
    r = subprocess.run([sys.executable, "-m", "pacofr.cli", "eval", *ARGS, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    expected = json.loads(GOLDEN.read_text())
    got = skeleton(out)
    assert got["files"] == expected["files"]
    assert got["json_keys"] == expected["json_keys"]
    assert got["md"] == expected["md"]
    for png in (n for n in got["files"] if n.endswith(".png")):
        assert (out / png).stat().st_size > 1000
    res = json.loads((out / "eval.json").read_text())
    assert res["protocol"] == "synthface-v1" and res["encoder"] == "scratch"
    assert 0 < res["alignment"]["subsets"]["all"]["nme"] < 2
