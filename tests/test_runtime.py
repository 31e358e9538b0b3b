"""Threads, build facts, memory over many calls, and calls from several Python threads."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import pacofr
import pacofr.runtime
from pacofr import _threads
from pacofr.ref import gemm as ref

from conftest import HAVE_DNNL


def test_build_info_keys():
    info = pacofr.build_info()
    for key in ("version", "onednn", "isa", "num_threads", "gemm_backend", "portable_kernel",
                "bf16_gemm", "attention_bf16"):
        assert key in info
    assert info["version"] == pacofr.__version__
    assert isinstance(info["cpu"], str) and info["cpu"]
    assert info["cpu"] == pacofr.runtime.cpu_name()
    assert info["num_threads"] == pacofr.get_num_threads()
    assert info["portable_kernel"] in info["portable_kernels"]
    if HAVE_DNNL:
        assert info["onednn"].count(".") == 2
        assert info["isa"] not in (None, "other")
        assert info["gemm_backend"] == "dnnl"
        assert info["matmul_impl_fp32"] != "unavailable"
    json.dumps(info)


IMPL_SCRIPT = r"""
import numpy as np, pacofr
x = np.ones((3200, 192), np.float32)
w = np.ones((768, 192), np.float32)
for dtype in ("fp32", "bf16"):
    try:
        pacofr.ops.matmul(x, w, trans_b=True, dtype=dtype)
    except RuntimeError:
        pass  # no bf16 product on this build
"""


@pytest.mark.skipif(not HAVE_DNNL, reason="oneDNN back end not built")
def test_build_info_names_the_kernel_onednn_runs():
    """build_info's matmul_impl_* against oneDNN's own verbose log of the same product."""
    info = pacofr.build_info()
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    out = subprocess.run([sys.executable, "-c", IMPL_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120).stdout
    ran = [line.split(",")[4] for line in out.splitlines() if ",exec," in line and ",matmul," in line]
    assert ran, out[-2000:]
    assert ran[0] == info["matmul_impl_fp32"]
    if len(ran) > 1:  # bf16 ran through oneDNN (it has a bf16 kernel on this CPU)
        assert ran[1] == info["matmul_impl_bf16"]


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="needs /proc/cpuinfo")
def test_attention_bf16_products_follow_the_cpu():
    flags = open("/proc/cpuinfo").read().split()
    want = "bf16 products" if "avx512_bf16" in flags else "fp32"
    assert pacofr.build_info()["attention_bf16"] == want


def test_set_num_threads_roundtrip():
    before = pacofr.get_num_threads()
    try:
        pacofr.set_num_threads(3)
        assert pacofr.get_num_threads() == 3
        assert pacofr.build_info()["num_threads"] == 3
    finally:
        pacofr.set_num_threads(before)


THREAD_COUNT_SCRIPT = r"""
import os, sys, numpy as np, pacofr
pacofr.set_gemm_backend(sys.argv[1])
a = np.ones((600, 600), np.float32)
counts = {}
for n in (1, 2):
    pacofr.set_num_threads(n)
    for dtype in ("fp32", "bf16"):
        pacofr.ops.matmul(a, a, dtype=dtype)
    counts[n] = len(os.listdir("/proc/self/task"))
print(counts[1], counts[2])
"""


@pytest.mark.parametrize("backend_name", ["dnnl", "portable"])
def test_thread_count_is_honoured(backend_name):
    """With 1 thread no OpenMP worker is ever started; with 2, one is."""
    if backend_name == "dnnl" and not HAVE_DNNL:
        pytest.skip("built without oneDNN")
    env = dict(os.environ, OMP_NUM_THREADS="1", PACOFR_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", THREAD_COUNT_SCRIPT, backend_name], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    one, two = int(out[0]), int(out[1])
    assert one == 1, f"{one} OS threads after running with 1 thread"
    assert two == 2, f"{two} OS threads after running with 2 threads"


def test_default_threads_from_env(monkeypatch):
    monkeypatch.setenv("PACOFR_NUM_THREADS", "5")
    assert _threads.default_num_threads() == 5
    monkeypatch.delenv("PACOFR_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert _threads.default_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    unset = _threads.default_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert _threads.default_num_threads() == unset


def test_default_threads_follow_affinity(monkeypatch):
    monkeypatch.delenv("PACOFR_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr(_threads, "_cgroup_quota", lambda: None)
    assert _threads.default_num_threads() == 6
    monkeypatch.setattr(_threads, "_cgroup_quota", lambda: 2.5)
    assert _threads.default_num_threads() == 3
    monkeypatch.setattr(_threads, "_cgroup_quota", lambda: 0.2)
    assert _threads.default_num_threads() == 1


def test_cgroup_quota_files(tmp_path):
    proc = tmp_path / "cgroup"
    proc.write_text("0::/\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _threads._cgroup_quota(str(tmp_path), str(proc)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _threads._cgroup_quota(str(tmp_path), str(proc)) is None
    (tmp_path / "cpu.max").unlink()
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert _threads._cgroup_quota(str(tmp_path), str(proc)) == 4.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert _threads._cgroup_quota(str(tmp_path), str(proc)) is None


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_flat_over_10000_calls(backend, rng):
    a = rng.standard_normal((40, 70)).astype(np.float32)
    b = rng.standard_normal((50, 70)).astype(np.float32)
    out = np.zeros((40, 50), np.float32)
    bad = np.ones((3, 3))

    def burst(n):
        for i in range(n):
            dtype = "bf16" if i % 2 else "fp32"
            pacofr.ops.matmul(a, b, trans_b=True, out=out, dtype=dtype, beta=0.5)
            pacofr.ops.matmul(a, b, trans_b=True, dtype=dtype)
            if i % 10 == 0:
                with pytest.raises(TypeError):
                    pacofr.ops.matmul(bad, b)

    refs = (sys.getrefcount(a), sys.getrefcount(b), sys.getrefcount(out))
    burst(1000)
    before = rss_bytes()
    burst(10_000)
    grown = rss_bytes() - before
    assert grown < 2 * 2 ** 20, f"RSS grew by {grown / 2 ** 20:.1f} MiB over 10,000 calls"
    assert (sys.getrefcount(a), sys.getrefcount(b), sys.getrefcount(out)) == refs


def test_concurrent_python_threads(backend, rng):
    """Eight Python threads at once, each its own shapes and dtype: every result correct."""
    jobs = []
    for i in range(8):
        M, N, K = 150 + 17 * i, 90 + 11 * i, 200 + 23 * i
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        jobs.append((a, b, "bf16" if i % 2 else "fp32"))
    results = [None] * len(jobs)
    errors = []

    def work(i):
        try:
            a, b, dtype = jobs[i]
            for _ in range(5):
                results[i] = pacofr.ops.matmul(a, b, dtype=dtype)
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    for (a, b, dtype), out in zip(jobs, results):
        exact = ref.gemm(a, b)
        assert np.all(np.abs(out - exact) <= ref.error_bound(a, b, dtype=dtype))


def test_omp_wait_env_sets_a_short_spin_only_while_loading():
    from pacofr import _threads
    env = {}
    with _threads.omp_wait_env(env):
        assert env == {"GOMP_SPINCOUNT": _threads.SPIN_COUNT}
    assert env == {} and _threads.wait_setting == f"GOMP_SPINCOUNT={_threads.SPIN_COUNT}"
    for user in ({"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "50"}):  # the user's choice wins
        env = dict(user)
        with _threads.omp_wait_env(env):
            assert env == user
        assert env == user and _threads.wait_setting == " ".join(f"{k}={v}" for k, v in user.items())


@pytest.mark.parametrize("user, shown", [({}, "'3000'"), ({"GOMP_SPINCOUNT": "77"}, "'77'")])
def test_libgomp_reads_the_wait_setting(user, shown):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(user, OMP_DISPLAY_ENV="verbose")
    code = "import os, pacofr; print(pacofr.build_info()['omp_wait']); print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert f"GOMP_SPINCOUNT = {shown}" in out.stderr + out.stdout  # libgomp's own report at load
    lines = out.stdout.split("\n")
    assert lines[-3] == "GOMP_SPINCOUNT=" + shown.strip("'")
    assert lines[-2] == user.get("GOMP_SPINCOUNT", "None")  # not left in the environment
