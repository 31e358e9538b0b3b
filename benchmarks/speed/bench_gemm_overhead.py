"""What pacofr's matmul loses against the bare oneDNN primitive, on the ViT shapes.

    python benchmarks/speed/bench_gemm_overhead.py                 # 2 threads, 9 rounds, 8 shapes
    python benchmarks/speed/bench_gemm_overhead.py --threads 1 --save
    python benchmarks/speed/bench_gemm_overhead.py --thread-counts 1 2 --json out.json
    python benchmarks/speed/bench_gemm_overhead.py --quick         # two shapes, 3 rounds: seconds

"bare" is oneDNN's matmul primitive created once, on buffers allocated once (bf16 inputs
already in bf16), executed inside C (_C.dnnl_bare_matmul, which times its own run): the best
oneDNN does on this CPU. "pacofr" is _C.gemm as a caller uses it: fp32 operands (bf16 converts
them per call), and "pacofr w16" passes the weight already in bf16, as the model does (it
converts its weights once per forward). PyTorch's matmul on the same shapes is the peer.
Before timing, every pacofr and PyTorch product is checked against float64 (pacofr.ref.gemm,
within its error bound for the dtype) and the bare primitive must run and report a time.
Variants alternate round by round (Report.alternate, one call per sample; the bare variants'
samples are the seconds C measured around the primitive's execution, not the Python call
that builds it), median of the rounds; after each PyTorch sample the run pauses so its OpenMP
workers stop spinning before the next variant.
"""
import math

import numpy as np

import pacofr
from pacofr import _C
from pacofr.ref import gemm as ref
from pacofr.ref.gemm import bf16_bits
from pacofr.testing import bench

# (name, M, K, N): Y (M, N) = X (M, K) W^T with timm's (N, K) weights (batch 64: 50 or 197 tokens)
SHAPES = [("tiny qkv    3200x192x576", 3200, 192, 576), ("tiny proj   3200x192x192", 3200, 192, 192),
          ("tiny fc1    3200x192x768", 3200, 192, 768), ("tiny fc2    3200x768x192", 3200, 768, 192),
          ("dec qkv    12608x128x384", 12608, 128, 384), ("dec fc1    12608x128x512", 12608, 128, 512),
          ("dec fc2    12608x512x128", 12608, 512, 128), ("small fc1   3200x384x1536", 3200, 384, 1536)]
QUICK = {"tiny proj   3200x192x192", "dec fc2    12608x512x128"}
SETTLE_S = 0.2


def operands(M, K, N, rng):
    return rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((N, K)).astype(np.float32)


def products(x, w, torch):
    """{variant: () -> its product (M, N)} of every variant whose result is visible."""
    w16 = bf16_bits(w)
    v = {"pacofr fp32": lambda: _C.gemm(x, w, trans_b=True),
         "pacofr bf16": lambda: _C.gemm(x, w, trans_b=True, dtype="bf16"),
         "pacofr w16": lambda: _C.gemm(x, w16, trans_b=True, dtype="bf16")}
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        v["torch fp32"] = lambda: (tx @ tw.T).numpy()
        v["torch bf16"] = lambda: (tx.bfloat16() @ tw.bfloat16().T).float().numpy()
    return v


def check_shape(rep, name, M, K, N, rng, torch):
    x, w = operands(M, K, N, rng)
    exact = ref.gemm(x, w, trans_b=True)
    for v, fn in products(x, w, torch).items():
        out = np.asarray(fn(), np.float32)
        bound = ref.error_bound(x, w, trans_b=True, dtype="bf16" if "bf16" in v or "w16" in v else "fp32")
        worst = float(np.max(np.abs(out - exact) / bound)) if np.all(np.isfinite(out)) else math.inf
        rep.require(f"{' '.join(name.split())} {v}", out.shape == exact.shape and worst <= 1.0,
                    f"max |error| / error bound {worst:.3g}")
    for dt in ("fp32", "bf16"):
        s = _C.dnnl_bare_matmul(M, N, K, trans_b=True, dtype=dt, reps=1)
        rep.require(f"{' '.join(name.split())} bare {dt} runs", math.isfinite(s) and s > 0, f"{s:.3g} s")


def variants(M, K, N, rng, torch, bare):
    """{variant: () -> None}; the bare ones append the seconds C measured to bare[variant]."""
    x, w = operands(M, K, N, rng)
    w16, out = bf16_bits(w), np.empty((M, N), np.float32)

    def bare_call(dt):
        return lambda: bare[f"bare {dt}"].append(_C.dnnl_bare_matmul(M, N, K, trans_b=True, dtype=dt, reps=1))
    v = {"bare fp32": bare_call("fp32"),
         "pacofr fp32": lambda: _C.gemm(x, w, out, trans_b=True),
         "bare bf16": bare_call("bf16"),
         "pacofr bf16": lambda: _C.gemm(x, w, out, trans_b=True, dtype="bf16"),
         "pacofr w16": lambda: _C.gemm(x, w16, out, trans_b=True, dtype="bf16")}
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        bx, bw = tx.bfloat16(), tw.bfloat16()
        v["torch fp32"] = lambda: tx @ tw.T
        v["torch bf16"] = lambda: bx @ bw.T
    return v


def run(rep, threads, rounds, torch, shapes):
    """-> rows {"shape", variant: GFLOP/s (median)}, one per shape."""
    pacofr.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    rng, rows = np.random.default_rng(0), []
    for name, M, K, N in shapes:
        bare = {"bare fp32": [], "bare bf16": []}
        fns = variants(M, K, N, rng, torch, bare)
        times = rep.alternate(fns, rounds, warmup=1, reps=1, settle={k: SETTLE_S for k in fns if "torch" in k})
        for k, s in bare.items():
            times[k] = s[-rounds:]  # the warm-up's sample came first
        flops = 2.0 * M * N * K
        rows.append({"shape": name, **{k: flops / bench.median(s) / 1e9 for k, s in times.items()}})
        rep.row(threads=threads, **rows[-1], seconds=times)
    return rows


def table(rep, rows, threads):
    keys = [k for k in rows[0] if k != "shape"]
    rep.print(f"#### {threads} thread(s), GFLOP/s\n")
    cells = [[r["shape"], *(f"{r[k]:.0f}" for k in keys), f"{r['pacofr fp32'] / r['bare fp32']:.2f}",
              f"{r['pacofr w16'] / r['bare bf16']:.2f}"] for r in rows]
    rep.table(["shape (M x K x N)", *keys, "pacofr/bare fp32", "pacofr w16/bare bf16"], cells)
    rep.print("")


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--thread-counts", type=int, nargs="+", help="thread counts to time (default --threads)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    info = pacofr.build_info()
    if not info["onednn"]:
        raise SystemExit("pacofr was built without oneDNN: there is no bare primitive to compare against")
    counts = args.thread_counts or [args.threads]
    rounds = 3 if args.quick else args.rounds
    shapes = [s for s in SHAPES if not args.quick or s[0] in QUICK]
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    rep = bench.Report("bench_gemm_overhead", args, dtype="fp32-bf16",
                       note=f"fp32 {info['matmul_impl_fp32']}, bf16 {info['matmul_impl_bf16']}"
                            + (f", torch {torch.__version__}" if torch else "") + f", median of {rounds} rounds\n")
    for name, M, K, N in shapes:
        check_shape(rep, name, M, K, N, np.random.default_rng(1), torch)
    for t in counts:
        table(rep, run(rep, t, rounds, torch, shapes), t)
    pacofr.set_num_threads(args.threads)
    rep.finish()


if __name__ == "__main__":
    main()
