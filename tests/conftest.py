import os
import signal
import subprocess
import time

import numpy as np
import pytest

import pacofr

HAVE_DNNL = pacofr.build_info()["onednn"] is not None
# CI sets PACOFR_REQUIRE_DNNL=1 and PACOFR_REQUIRE_TORCH=1: there a build without oneDNN,
# or a machine without PyTorch for the live comparisons, is a failure, not a skip.
REQUIRE_DNNL = os.environ.get("PACOFR_REQUIRE_DNNL") == "1"
REQUIRE_TORCH = os.environ.get("PACOFR_REQUIRE_TORCH") == "1"
REQUIRE_DETECT = os.environ.get("PACOFR_REQUIRE_DETECT") == "1"   # CI: the [detect] extra must be there
REQUIRE_MPI = os.environ.get("PACOFR_REQUIRE_MPI") == "1"         # CI: mpirun and mpi4py must be there
try:
    import torch as _torch
except ImportError:
    _torch = None

BACKENDS = ["dnnl", "portable"]


def pytest_sessionstart(session):
    if REQUIRE_DNNL and not HAVE_DNNL:
        raise pytest.UsageError("PACOFR_REQUIRE_DNNL=1 but pacofr was built without oneDNN")
    if REQUIRE_TORCH and _torch is None:
        raise pytest.UsageError("PACOFR_REQUIRE_TORCH=1 but PyTorch is not installed")
    if REQUIRE_MPI and mpirun_missing():
        raise pytest.UsageError(f"PACOFR_REQUIRE_MPI=1 but {mpirun_missing()}")
    if REQUIRE_DETECT:
        from pacofr.data import detect
        try:
            detect.backend()
        except ImportError as exc:
            raise pytest.UsageError(f"PACOFR_REQUIRE_DETECT=1 but {exc}") from None


def mpirun_missing():
    """Why multi-rank tests cannot run here (None when they can)."""
    import importlib.util
    import shutil
    if shutil.which("mpirun") is None:
        return "no mpirun (apt-get install openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return "no mpi4py (pip install 'pacofr[mpi]')"
    return None


@pytest.fixture
def mpirun():
    """The launch prefix for N ranks on this machine (a function of N); a skip without MPI."""
    why = mpirun_missing()
    if why:
        pytest.skip(why)
    return lambda n: ["mpirun", "-np", str(n), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
                      "-x", "OMP_NUM_THREADS=1"]


@pytest.fixture
def detector():
    """dlib's detector and 5-point model (the [detect] extra); a skip where it is missing."""
    from pacofr.data import detect
    try:
        return detect.backend()
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test on each GEMM back end, restoring the previous one afterwards."""
    if request.param == "dnnl" and not HAVE_DNNL:
        pytest.skip("pacofr was built without oneDNN (apt-get install libdnnl-dev)")
    previous = pacofr.get_gemm_backend()
    pacofr.set_gemm_backend(request.param)
    yield request.param
    pacofr.set_gemm_backend(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def torch():
    """PyTorch for the live comparisons; the golden files cover machines without it."""
    if _torch is None:
        pytest.skip("PyTorch not installed: the golden-file tests cover this comparison")
    _torch.manual_seed(0)
    return _torch


def assert_close(got, want, rtol=1e-4, atol=1e-6, what=""):
    """|got - want| <= atol + rtol * max|want| everywhere (scale-aware, for float32 results)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = np.abs(want).max() if want.size else 0.0
    err = np.abs(got - want).max() if want.size else 0.0
    assert err <= atol + rtol * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def start_and_kill(cmd, ready, timeout=120):
    """Start cmd, SIGKILL it as soon as ready() is true (polled every 5 ms), and check that it
    died of the kill rather than finishing first."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready() and p.poll() is None:
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
