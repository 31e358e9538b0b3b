"""GEMM throughput on the ViT shapes of docs/performance.md: GFLOP/s of each pacofr back end
and dtype at 1 and 2 threads, beside NumPy's own matmul, measured in one run.

    python benchmarks/speed/bench_gemm.py            # full table (about a minute on 2 cores)
    python benchmarks/speed/bench_gemm.py --quick    # a few shapes
    python benchmarks/speed/bench_gemm.py --json out.json

Every variant is validated against float64 before it is timed. Variants are timed in
alternation (A B C ... A B C ...) over several rounds after warm-up; the figure is the median.
After each NumPy sample the run pauses briefly: OpenBLAS's worker threads keep spinning for a
while after a call, and on 2 cores they would otherwise steal the CPU from the next variant
(and libgomp's spinning workers from NumPy's).
"""
import argparse
import ctypes
import json
import subprocess
import time
from pathlib import Path

import numpy as np

import pacofr
from pacofr.ref import gemm as ref
from pacofr.runtime import cpu_name

# (name, M, K, N, trans_a, trans_b): Y = X W^T forward, dX = dY W, dW = dY^T X, as in a ViT layer
# with timm's (out, in) weights; batch 64, 112 px, p = 8: 50 tokens (49 kept + cls) or 197.
CASES = [
    ("tiny qkv fwd    3200x192x576", 3200, 192, 576, False, True),
    ("tiny proj fwd   3200x192x192", 3200, 192, 192, False, True),
    ("tiny fc1 fwd    3200x192x768", 3200, 192, 768, False, True),
    ("tiny fc2 fwd    3200x768x192", 3200, 768, 192, False, True),
    ("tiny fc1 dX     3200x768x192", 3200, 768, 192, False, False),
    ("tiny fc1 dW     768x3200x192", 768, 3200, 192, True, False),
    ("tiny fc2 dW     192x3200x768", 192, 3200, 768, True, False),
    ("tiny197 qkv fwd 12608x192x576", 12608, 192, 576, False, True),
    ("tiny197 fc1 fwd 12608x192x768", 12608, 192, 768, False, True),
    ("small fc1 fwd   3200x384x1536", 3200, 384, 1536, False, True),
    ("small197 fc1    12608x384x1536", 12608, 384, 1536, False, True),
    ("attn QK^T       50x64x50", 50, 64, 50, False, True),
    ("attn AV         50x50x64", 50, 50, 64, False, False),
    ("attn197 QK^T    197x64x197", 197, 64, 197, False, True),
    ("attn197 AV      197x197x64", 197, 197, 64, False, False),
]
SETTLE_S = 0.3  # pause after a NumPy sample: see the module docstring
QUICK = {"tiny qkv fwd    3200x192x576", "tiny fc2 dW     192x3200x768",
         "small fc1 fwd   3200x384x1536", "attn QK^T       50x64x50"}
VARIANTS = [("numpy", None, "fp32"), ("raw dnnl_sgemm", "raw", "fp32"),
            ("dnnl fp32", "dnnl", "fp32"), ("dnnl bf16", "dnnl", "bf16"),
            ("portable fp32", "portable", "fp32"), ("portable bf16", "portable", "bf16")]


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def numpy_threads(n):
    """A context limiting NumPy's BLAS to n threads (threadpoolctl), or a no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(n)
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


def raw_sgemm():
    """oneDNN's own dnnl_sgemm through ctypes: the reference the 'dnnl fp32' path must match.
    It runs on the calling thread's OpenMP count, which pacofr's last oneDNN call has set."""
    try:
        lib = ctypes.CDLL("libdnnl.so.2")
    except OSError:
        return None
    f = lib.dnnl_sgemm
    i64, fp = ctypes.c_int64, ctypes.POINTER(ctypes.c_float)
    f.argtypes = [ctypes.c_char, ctypes.c_char, i64, i64, i64, ctypes.c_float, fp, i64, fp, i64,
                  ctypes.c_float, fp, i64]
    f.restype = ctypes.c_int
    return f


def make_call(variant, a, b, out, ta, tb):
    name, backend, dtype = variant
    if backend is None:
        aa, bb = (a.T if ta else a), (b.T if tb else b)
        return lambda: np.matmul(aa, bb, out=out)
    if backend == "raw":
        f, fp = raw_sgemm(), ctypes.POINTER(ctypes.c_float)
        M, N = out.shape
        K = a.shape[0] if ta else a.shape[1]
        args = (b"T" if ta else b"N", b"T" if tb else b"N", M, N, K, 1.0, a.ctypes.data_as(fp),
                a.shape[1], b.ctypes.data_as(fp), b.shape[1], 0.0, out.ctypes.data_as(fp), N)

        def call():
            pacofr.set_gemm_backend("dnnl")
            if f(*args) != 0:
                raise RuntimeError("dnnl_sgemm failed")
        return call

    def call():
        pacofr.set_gemm_backend(backend)
        pacofr.ops.matmul(a, b, ta, tb, out=out, dtype=dtype)
    return call


def measure(case, threads, rounds, variants):
    name, M, K, N, ta, tb = case
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    flops = 2.0 * M * N * K
    exact = ref.gemm(a, b, ta, tb)
    calls = {}
    for v in variants:
        out = np.empty((M, N), np.float32)
        call = make_call(v, a, b, out, ta, tb)
        call()
        bound = ref.error_bound(a, b, ta, tb, 1.0, v[2])
        if not np.all(np.abs(out - exact) <= bound):
            raise AssertionError(f"{name} {v[0]}: wrong result, not timed")
        t = time.perf_counter()
        call()
        once = time.perf_counter() - t
        calls[v[0]] = (call, max(1, int(0.01 / max(once, 1e-7))))  # ~10 ms per sample
    times = {v[0]: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            call, reps = calls[v[0]]
            t = time.perf_counter()
            for _ in range(reps):
                call()
            times[v[0]].append((time.perf_counter() - t) / reps)
            if v[1] is None:
                time.sleep(SETTLE_S)
    return {k: flops / np.median(t) / 1e9 for k, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="four shapes, fewer rounds")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)

    info = pacofr.build_info()
    cases = [c for c in CASES if not args.quick or c[0] in QUICK]
    rounds = 3 if args.quick else args.rounds
    variants = [v for v in VARIANTS if v[1] not in ("dnnl", "raw") or info["onednn"]]
    if raw_sgemm() is None:
        variants = [v for v in variants if v[1] != "raw"]
    backend0 = pacofr.get_gemm_backend()
    print(f"# bench_gemm: {cpu_name()}, pacofr {info['version']} ({commit()}), oneDNN "
          f"{info['onednn']} isa={info['isa']} fp32={info['matmul_impl_fp32']} "
          f"bf16={info['matmul_impl_bf16']}, portable kernel {info['portable_kernel']}; "
          f"GFLOP/s, median of {rounds} rounds")
    results = []
    for threads in args.threads:
        pacofr.set_num_threads(threads)
        print(f"\n## {threads} thread{'s' if threads > 1 else ''}\n")
        names = [v[0] for v in variants]
        print("| shape (M x K x N) | " + " | ".join(names)
              + " | dnnl fp32 / raw sgemm | bf16 / fp32 (dnnl) | portable / dnnl fp32 |")
        print("|---" * (len(names) + 4) + "|")
        with numpy_threads(threads):
            for case in cases:
                g = measure(case, threads, rounds, variants)
                results.append({"case": case[0], "threads": threads, **g})
                ratios = ["-", "-", "-"]
                if "dnnl fp32" in g:
                    ratios = [f"{g['dnnl fp32'] / g['raw dnnl_sgemm']:.2f}x" if "raw dnnl_sgemm" in g else "-",
                              f"{g['dnnl bf16'] / g['dnnl fp32']:.2f}x",
                              f"{g['portable fp32'] / g['dnnl fp32']:.2f}x"]
                print(f"| {case[0]} | " + " | ".join(f"{g[n]:.1f}" for n in names) + " | "
                      + " | ".join(ratios) + " |", flush=True)
    pacofr.set_gemm_backend(backend0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "commit": commit(), "build_info": info,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
