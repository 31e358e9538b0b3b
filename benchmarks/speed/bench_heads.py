"""The downstream heads' losses, forward + backward, against PyTorch in the same run: soft-argmax
landmarks (heatmaps over every pixel) and per-pixel cross-entropy (parsing), at the sizes the
protocol's probes train with (pacofr_vit_tiny_p8_112, batch 16). These run once per head step,
thousands of times per scored encoder. PyTorch gets its natural layout, (B, L, S*S) and
(B, K, S, S), so no unpatchify is charged to it; pacofr reads the per-patch layout its linear
head writes. Median of --rounds, 2 threads each.

    python benchmarks/speed/bench_heads.py [--rounds 7] [--json out.json]
"""
import argparse
import json
import statistics
import time

import numpy as np

import pacofr
from pacofr import _C
from pacofr.runtime import cpu_name

B, G, P, L, K = 16, 14, 8, 68, 11


def median_seconds(fn, rounds):
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pacofr_softargmax(z, dxy):
    def run():
        xy, lse = _C.softargmax_forward(z, P)
        dz = np.zeros_like(z)
        _C.softargmax_backward(dxy, z, lse, xy, P, dz)
    return run


def torch_softargmax(torch, z, dxy):
    S = G * P
    maps = torch.tensor(np.ascontiguousarray(z.reshape(B, L, S * S)), requires_grad=True)  # its own layout
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)                                 # (S*S, 2)
    g = torch.tensor(dxy)

    def run():
        maps.grad = None
        coords = torch.softmax(maps, -1) @ grid
        coords.backward(g)
    return run


def pacofr_ce(z, labels):
    def run():
        _C.pixel_ce_forward(z, labels, P, -1)
        dz = np.zeros_like(z)
        _C.pixel_ce_backward(z, labels, P, -1, 1.0, dz)
    return run


def torch_ce(torch, z, labels):
    S = G * P
    logits = torch.tensor(np.ascontiguousarray(z.reshape(B, K, S, S)), requires_grad=True)
    y = torch.tensor(labels)

    def run():
        logits.grad = None
        torch.nn.functional.cross_entropy(logits, y, ignore_index=-1).backward()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    pacofr.set_num_threads(2)
    rng = np.random.default_rng(0)
    S = G * P
    cases = {}
    for spread in (1.0, 40.0):      # a fresh head, and a trained one's peaked heatmaps
        z = (rng.standard_normal((B, G * G, P * P * L)) * spread).astype(np.float32)
        dxy = (rng.standard_normal((B, L, 2)) * 1e-4).astype(np.float32)
        cases[f"soft-argmax, spread {spread:g}"] = (pacofr_softargmax(z, dxy), torch_softargmax(torch, z, dxy))
        zc = (rng.standard_normal((B, G * G, P * P * K)) * spread).astype(np.float32)
        labels = rng.integers(0, K, (B, S, S)).astype(np.int64)
        cases[f"pixel cross-entropy, spread {spread:g}"] = (pacofr_ce(zc, labels), torch_ce(torch, zc, labels))
    rows = []
    for name, (ours, theirs) in cases.items():
        a, b = median_seconds(ours, args.rounds), median_seconds(theirs, args.rounds)
        rows.append({"case": name, "pacofr_ms": 1e3 * a, "torch_ms": 1e3 * b, "torch_over_pacofr": b / a})
    info = pacofr.build_info()
    print(f"# bench_heads: {cpu_name()}, oneDNN {info['onednn']} {info['isa']}, PyTorch {torch.__version__}, "
          f"2 threads, B={B}, {S}x{S}, L={L}, K={K}, median of {args.rounds}\n")
    print("| forward + backward | pacofr ms | PyTorch ms | PyTorch / pacofr |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['pacofr_ms']:.1f} | {r['torch_ms']:.1f} | {r['torch_over_pacofr']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "build_info": info, "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
