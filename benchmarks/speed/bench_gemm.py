"""GEMM throughput on the ViT shapes of docs/performance.md: GFLOP/s of each pacofr back end
and dtype at 1 and --threads threads, beside NumPy's own matmul and oneDNN's bare dnnl_sgemm,
measured in one run.

    python benchmarks/speed/bench_gemm.py                  # full table, 1 and 2 threads (2-3 minutes)
    python benchmarks/speed/bench_gemm.py --thread-counts 2 --save
    python benchmarks/speed/bench_gemm.py --quick --json out.json   # three shapes (every
                                                           # transpose case), 3 rounds: seconds

Every variant's result is checked against the float64 product (pacofr.ref.gemm, within its
error bound for the dtype) before anything is timed. Variants are timed in alternation
(A B C ... A B C ..., Report.alternate, ~50 ms per sample) over several rounds after a
warm-up; the figure is the median. After each NumPy sample the run pauses briefly: OpenBLAS's
worker threads keep spinning for a while after a call, and on 2 cores they would otherwise
steal the CPU from the next variant (and libgomp's spinning workers from NumPy's).
"""
import ctypes

import numpy as np

import pacofr
from pacofr.ref import gemm as ref
from pacofr.testing import bench

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
QUICK = {"tiny fc1 dX     3200x768x192", "tiny fc2 dW     192x3200x768", "attn QK^T       50x64x50"}  # N N, T N, N T
VARIANTS = [("numpy", None, "fp32"), ("raw dnnl_sgemm", "raw", "fp32"),
            ("dnnl fp32", "dnnl", "fp32"), ("dnnl bf16", "dnnl", "bf16"),
            ("portable fp32", "portable", "fp32"), ("portable bf16", "portable", "bf16")]


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


def operands(case):
    name, M, K, N, ta, tb = case
    rng = np.random.default_rng(0)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    return a, b


def check_case(rep, case, variants, threads):
    """Every variant's product against float64, within ref.error_bound for its dtype."""
    name, M, K, N, ta, tb = case
    a, b = operands(case)
    exact = ref.gemm(a, b, ta, tb)
    for v in variants:
        out = np.full((M, N), np.nan, np.float32)
        make_call(v, a, b, out, ta, tb)()
        ratio = np.abs(out - exact) / ref.error_bound(a, b, ta, tb, 1.0, v[2])
        worst = float(np.max(ratio)) if np.all(np.isfinite(out)) else float("inf")
        rep.require(f"{' '.join(name.split())} {v[0]}, {threads} thread(s)", worst <= 1.0,
                    f"max |error| / error bound {worst:.3g}")


def measure(rep, case, rounds, variants):
    """-> ({variant: GFLOP/s (median)}, {variant: [seconds per call, per round]})."""
    name, M, K, N, ta, tb = case
    a, b = operands(case)
    calls = {v[0]: make_call(v, a, b, np.empty((M, N), np.float32), ta, tb) for v in variants}
    times = rep.alternate(calls, rounds, settle={v[0]: SETTLE_S for v in variants if v[1] is None})
    return {k: 2.0 * M * N * K / bench.median(t) / 1e9 for k, t in times.items()}, times


def ratios(g):
    if "dnnl fp32" not in g:
        return ["-", "-", "-"]
    return [f"{g['dnnl fp32'] / g['raw dnnl_sgemm']:.2f}x" if "raw dnnl_sgemm" in g else "-",
            f"{g['dnnl bf16'] / g['dnnl fp32']:.2f}x", f"{g['portable fp32'] / g['dnnl fp32']:.2f}x"]


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--thread-counts", type=int, nargs="+", help="thread counts to time (default 1 and --threads)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)
    counts = args.thread_counts or sorted({1, args.threads})
    info = pacofr.build_info()
    cases = [c for c in CASES if not args.quick or c[0] in QUICK]
    rounds = 3 if args.quick else args.rounds
    variants = [v for v in VARIANTS if v[1] not in ("dnnl", "raw") or info["onednn"]]
    if raw_sgemm() is None:
        variants = [v for v in variants if v[1] != "raw"]
    rep = bench.Report("bench_gemm", args, dtype="fp32-bf16",
                       note=f"pacofr {info['version']}, fp32={info['matmul_impl_fp32']} "
                            f"bf16={info['matmul_impl_bf16']}, portable kernel {info['portable_kernel']}; "
                            f"GFLOP/s, median of {rounds} rounds")
    backend0 = pacofr.get_gemm_backend()
    names = [v[0] for v in variants]
    try:
        for threads in counts:
            pacofr.set_num_threads(threads)
            with bench.numpy_threads(threads):
                for case in cases:
                    check_case(rep, case, variants, threads)
        for threads in counts:
            pacofr.set_num_threads(threads)
            rep.print(f"\n## {threads} thread{'s' if threads > 1 else ''}\n")
            cells = []
            with bench.numpy_threads(threads):
                for case in cases:
                    g, times = measure(rep, case, rounds, variants)
                    rep.row(case=case[0], threads=threads, **g, seconds=times)
                    cells.append([case[0], *(f"{g[n]:.1f}" for n in names), *ratios(g)])
            rep.table(["shape (M x K x N)", *names, "dnnl fp32 / raw sgemm", "bf16 / fp32 (dnnl)",
                       "portable / dnnl fp32"], cells)
    finally:
        pacofr.set_gemm_backend(backend0)
        pacofr.set_num_threads(args.threads)
    rep.finish()


if __name__ == "__main__":
    main()
