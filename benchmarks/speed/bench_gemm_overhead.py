"""What pacofr's matmul loses against the bare oneDNN primitive, on the ViT shapes.

    python benchmarks/speed/bench_gemm_overhead.py                 # 2 threads, 9 rounds
    python benchmarks/speed/bench_gemm_overhead.py --threads 1 --json out.json

"bare" is oneDNN's matmul primitive created once, on buffers allocated once (bf16 inputs
already in bf16), executed in a loop inside C (_C.dnnl_bare_matmul): the best oneDNN does
on this CPU. "pacofr" is _C.gemm as a caller uses it: fp32 operands (bf16 converts them per
call), and "pacofr w16" passes the weight already in bf16, as the model does (it converts
its weights once per forward). PyTorch's matmul on the same shapes is the peer. Variants
alternate round by round (median of the rounds); after each PyTorch sample the run pauses
so its OpenMP workers stop spinning before the next variant.
"""
import argparse
import json
import time

import numpy as np

import pacofr
from pacofr import _C
from pacofr.ref.gemm import bf16_bits

# (name, M, K, N): Y (M, N) = X (M, K) W^T with timm's (N, K) weights (batch 64: 50 or 197 tokens)
SHAPES = [("tiny qkv    3200x192x576", 3200, 192, 576), ("tiny proj   3200x192x192", 3200, 192, 192),
          ("tiny fc1    3200x192x768", 3200, 192, 768), ("tiny fc2    3200x768x192", 3200, 768, 192),
          ("dec qkv    12608x128x384", 12608, 128, 384), ("dec fc1    12608x128x512", 12608, 128, 512),
          ("dec fc2    12608x512x128", 12608, 512, 128), ("small fc1   3200x384x1536", 3200, 384, 1536)]
SETTLE_S = 0.2


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def variants(M, K, N, rng, torch):
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    w16, out = bf16_bits(w), np.empty((M, N), np.float32)
    v = {"bare fp32": lambda: _C.dnnl_bare_matmul(M, N, K, trans_b=True, dtype="fp32", reps=1),
         "pacofr fp32": lambda: timed(lambda: _C.gemm(x, w, out, trans_b=True)),
         "bare bf16": lambda: _C.dnnl_bare_matmul(M, N, K, trans_b=True, dtype="bf16", reps=1),
         "pacofr bf16": lambda: timed(lambda: _C.gemm(x, w, out, trans_b=True, dtype="bf16")),
         "pacofr w16": lambda: timed(lambda: _C.gemm(x, w16, out, trans_b=True, dtype="bf16"))}
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        bx, bw = tx.bfloat16(), tw.bfloat16()
        v["torch fp32"] = lambda: timed(lambda: tx @ tw.T)
        v["torch bf16"] = lambda: timed(lambda: bx @ bw.T)
    return v


def run(threads, rounds, use_torch):
    pacofr.set_num_threads(threads)
    torch = None
    if use_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    rng, rows = np.random.default_rng(0), []
    for name, M, K, N in SHAPES:
        fns = variants(M, K, N, rng, torch)
        samples = {k: [] for k in fns}
        for r in range(rounds + 1):  # round 0 warms up
            for k, fn in fns.items():
                t = fn()
                if r:
                    samples[k].append(t)
                if k.startswith("torch"):
                    time.sleep(SETTLE_S)
        flops = 2.0 * M * N * K
        rows.append({"shape": name, **{k: flops / np.median(s) / 1e9 for k, s in samples.items()}})
    return rows


def table(rows, threads):
    keys = [k for k in rows[0] if k != "shape"]
    lines = [f"#### {threads} thread(s), GFLOP/s", "",
             "| shape (M x K x N) | " + " | ".join(keys) + " | pacofr/bare fp32 | pacofr w16/bare bf16 |",
             "|---" * (len(keys) + 3) + "|"]
    for r in rows:
        cells = " | ".join(f"{r[k]:.0f}" for k in keys)
        lines.append(f"| {r['shape']} | {cells} | {r['pacofr fp32'] / r['bare fp32']:.2f} | "
                     f"{r['pacofr w16'] / r['bare bf16']:.2f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()
    info = pacofr.build_info()
    if not info["onednn"]:
        raise SystemExit("pacofr was built without oneDNN: there is no bare primitive to compare against")
    print(f"# bench_gemm_overhead: oneDNN {info['onednn']} ({info['isa']}; fp32 {info['matmul_impl_fp32']}, "
          f"bf16 {info['matmul_impl_bf16']}), median of {args.rounds} rounds\n")
    results = {}
    for t in args.threads:
        results[t] = run(t, args.rounds, not args.no_torch)
        print(table(results[t], t) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build_info": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
