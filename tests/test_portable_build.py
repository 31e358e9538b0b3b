"""A build without oneDNN works, says so, and refuses the 'dnnl' back end clearly."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import numpy as np, pacofr
info = pacofr.build_info()
assert info["onednn"] is None and info["isa"] is None, info
assert info["gemm_backend"] == "portable", info
try:
    pacofr.set_gemm_backend("dnnl")
except RuntimeError as exc:
    assert "built without oneDNN" in str(exc), exc
else:
    raise AssertionError("set_gemm_backend('dnnl') did not raise")
rng = np.random.default_rng(0)
a = rng.standard_normal((70, 130)).astype(np.float32)
b = rng.standard_normal((50, 130)).astype(np.float32)
for dtype in ("fp32", "bf16"):
    out = pacofr.ops.matmul(a, b, trans_b=True, dtype=dtype)
    err = np.abs(out - a.astype(np.float64) @ b.astype(np.float64).T).max()
    assert err < (1e-4 if dtype == "fp32" else 0.5), (dtype, err)
print("portable build ok")
"""


def test_build_without_onednn(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "csrc", src / "csrc")
    shutil.copytree(ROOT / "pacofr", src / "pacofr",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env = dict(os.environ, PACOFR_DNNL="0")
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=src,
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    assert "building with the portable GEMM back end only" in build.stderr
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=src, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "portable build ok" in run.stdout
