"""One MAE training step (forward, backward, AdamW) of pacofr against the same model in
PyTorch, in one run: pacofr fp32 and bf16, PyTorch eager fp32, bf16 autocast, torch.compile.

    python benchmarks/bench_step.py                       # both models, 5 timed steps each
    python benchmarks/bench_step.py --models pacofr_vit_tiny_p8_112 --steps 5
    python benchmarks/bench_step.py --no-compile --no-autocast

Each variant lives in its own worker process (PyTorch bundles its own OpenMP runtime; two in one
process fight over the cores), and the parent runs one step of each in turn, A B C ... A B C
..., after a warm-up step; figures are medians. Peak RSS is each worker's own high-water mark (VmHWM).
Effective GFLOP/s counts the matrix products of the step.
"""
import argparse
import json
import resource
import sys
from pathlib import Path

import numpy as np

import pacofr
from pacofr.config import get_config

BATCH = {"pacofr_vit_tiny_p8_112": 64, "pacofr_vit_small_p16_224": 32, "pacofr_test_tiny": 8}
KEEP_RATIO = 0.25  # keep 49 of 196 patches, as MAE's default masking ratio 0.75
PEAK = {"fp32": 427.0, "bf16": 6100.0}  # docs/performance.md, 2 threads: AVX-512 FMA and AMX-bf16 peaks


def step_flops(cfg, B, n):
    """Matrix-product FLOPs of forward + backward (3x forward) of the MAE step."""
    def stack(T, C, H, depth):
        per_token = 2 * (3 * C * C + C * C + 2 * C * H)
        attn = 2 * 2 * T * C  # QK^T and AV per token
        return depth * B * T * (per_token + attn)
    C, Cd, N = cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_patches
    fwd = stack(1 + n, C, int(C * cfg.mlp_ratio), cfg.depth)
    fwd += stack(1 + N, Cd, int(Cd * cfg.mlp_ratio), cfg.decoder_depth)
    fwd += 2 * B * n * cfg.patch_dim * C + 2 * B * (1 + n) * C * Cd + 2 * B * (1 + N) * Cd * cfg.patch_dim
    return 3 * fwd


def keep(cfg):
    return max(1, int(cfg.num_patches * KEEP_RATIO))


def batch(cfg, B, n, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((B, 3, cfg.img_size, cfg.img_size)).astype(np.float32)
    ids = np.stack([rng.permutation(cfg.num_patches)[:n] for _ in range(B)]).astype(np.int64)
    return images, ids


def pacofr_step(name, dtype, images, ids):
    model = pacofr.create_model(name, dtype=dtype)
    opt = pacofr.AdamW(model, lr=1e-4, weight_decay=0.05)

    def step():
        model.zero_grad()
        loss = model.forward(images, ids)
        model.backward()
        opt.step()
        return loss
    return step


def torch_step(name, mode, images, ids):
    import torch
    from _torch_mae import MAE, decay_groups
    cfg = get_config(name)
    model = MAE(cfg)
    decay, no_decay = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95))
    x, i = torch.from_numpy(images), torch.from_numpy(ids)
    fwd = torch.compile(model) if mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            loss = fwd(x, i)
        loss.backward()
        opt.step()
        return loss.item()
    return step


VARIANTS = {
    "pacofr fp32": lambda n, im, ids: pacofr_step(n, "fp32", im, ids),
    "pacofr bf16": lambda n, im, ids: pacofr_step(n, "bf16", im, ids),
    "torch eager fp32": lambda n, im, ids: torch_step(n, "eager", im, ids),
    "torch bf16 autocast": lambda n, im, ids: torch_step(n, "autocast", im, ids),
    "torch.compile fp32": lambda n, im, ids: torch_step(n, "compile", im, ids),
}


def peak_rss_mib():
    """This process's own peak RSS: VmHWM, which starts afresh at exec (ru_maxrss would carry
    the parent's high-water mark over from the fork)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(conn, variant, name, threads):
    """Build one variant, then answer 'step' (seconds of one step) and 'rss' (peak MiB)."""
    try:
        pacofr.set_num_threads(threads)
        if "torch" in variant:
            import torch
            torch.set_num_threads(threads)
        cfg = get_config(name)
        images, ids = batch(cfg, BATCH.get(name, 32), keep(cfg))
        step = VARIANTS[variant](name, images, ids)
        step()  # warm-up (and compilation)
        conn.send(("ready", None))
    except Exception as exc:  # torch.compile may not work on a machine
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
        return
    from _worker import serve
    serve(conn, step, {"rss": peak_rss_mib,
                       "modules": lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "scipy"))})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["pacofr_vit_tiny_p8_112", "pacofr_vit_small_p16_224"])
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-autocast", action="store_true")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)

    import torch
    pacofr.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    info = pacofr.build_info()
    print(f"# bench_step: pacofr {info['version']}, oneDNN {info['onednn']} ({info['isa']}), "
          f"torch {torch.__version__}, {args.threads} threads, median of {args.steps} steps", flush=True)
    results = []
    for name in args.models:
        cfg = get_config(name)
        B = BATCH.get(name, 32)
        n = keep(cfg)
        images, ids = batch(cfg, B, n)
        flops = step_flops(cfg, B, n)
        names = [v for v in VARIANTS if not (args.no_compile and "compile" in v)
                 and not (args.no_autocast and "autocast" in v)]
        from _worker import start_workers
        steps, notes, procs = start_workers(worker, names, name, args.threads)
        times = {v: [] for v in steps}
        for _ in range(args.steps):
            for v, conn in steps.items():
                conn.send("step")
                times[v].append(conn.recv())
        med = {v: float(np.median(t)) for v, t in times.items()}
        rss = {}
        for v, conn in steps.items():
            if not args.no_rss:
                conn.send("rss")
                rss[v] = conn.recv()
            conn.send("quit")
        for proc in procs:
            proc.join(timeout=60)
        print(f"\n## {name}, batch {B}, keep {n} of {cfg.num_patches}, {flops / 1e9:.0f} GFLOP per step\n")
        print("| variant | s/step | images/s | pacofr fp32 speed-up | pacofr bf16 speed-up | GFLOP/s | % of docs/performance.md peak | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|---|")
        for v in steps:
            dt = "bf16" if ("bf16" in v) else "fp32"
            gf = flops / med[v] / 1e9
            r = rss.get(v)
            print(f"| {v} | {med[v]:.3f} | {B / med[v]:.1f} | {med[v] / med['pacofr fp32']:.2f}x | "
                  f"{med[v] / med['pacofr bf16']:.2f}x | {gf:.1f} | {100 * gf / PEAK[dt]:.1f}% | "
                  + (f"{r:.0f} |" if r else "- |"))
            results.append({"model": name, "variant": v, "seconds": med[v], "all": times[v], "gflops": gf, "rss_mib": r})
        for v, why in notes.items():
            print(f"\n{v}: not run here ({why})")
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
