"""One MAE training step (forward, backward, AdamW) of pacofr against the same model in
PyTorch, in one run: pacofr fp32 and bf16, PyTorch eager fp32, bf16 autocast, torch.compile.

    python benchmarks/speed/bench_step.py                 # both models, 5 timed steps each
    python benchmarks/speed/bench_step.py --models pacofr_vit_tiny_p8_112 --steps 5 --save
    python benchmarks/speed/bench_step.py --quick         # the test preset, 2 steps, no compile

Each variant lives in its own worker process (PyTorch bundles its own OpenMP runtime; two in one
process fight over the cores), and the parent runs one step of each in turn, A B C ... A B C
..., after a warm-up step; figures are medians. Before timing, pacofr's fp32 loss and gradients
are checked against PyTorch's on the same weights (``pacofr.testing.torch_ref``). Peak RSS is
each worker's own high-water mark (VmHWM). Effective GFLOP/s counts the matrix products of
the step. A worker that dies or hangs is reported and the run goes on.
"""
import sys


from pacofr.config import get_config
from pacofr.testing import bench
from pacofr.testing.steps import BATCH, batch, check_mae_against_torch, keep, pacofr_step, step_flops, torch_step
from pacofr.testing.workers import Workers, ready_or_error, serve

PEAK = {"fp32": 427.0, "bf16": 6100.0}  # docs/performance.md, 2 threads: AVX-512 FMA and AMX-bf16 peaks

VARIANTS = {
    "pacofr fp32": lambda n, im, ids: pacofr_step(n, "fp32", im, ids),
    "pacofr bf16": lambda n, im, ids: pacofr_step(n, "bf16", im, ids),
    "torch eager fp32": lambda n, im, ids: torch_step(n, "eager", im, ids),
    "torch bf16 autocast": lambda n, im, ids: torch_step(n, "autocast", im, ids),
    "torch.compile fp32": lambda n, im, ids: torch_step(n, "compile", im, ids),
    "torch eager fp32, SDPA + fused AdamW": lambda n, im, ids: torch_step(n, "eager", im, ids, best=True),
    "torch bf16 autocast, SDPA + fused AdamW": lambda n, im, ids: torch_step(n, "autocast", im, ids, best=True),
    "torch.compile fp32, SDPA + fused AdamW": lambda n, im, ids: torch_step(n, "compile", im, ids, best=True),
}


def worker(conn, variant, name, threads):
    """Build one variant, then answer 'step' (seconds of one step) and 'rss' (peak MiB)."""
    import pacofr
    pacofr.set_num_threads(threads)
    if "torch" in variant:
        import torch
        torch.set_num_threads(threads)
    cfg = get_config(name)
    images, ids = batch(cfg, BATCH.get(name, 32), keep(cfg))
    step = ready_or_error(conn, lambda: VARIANTS[variant](name, images, ids))
    if step is not None:
        serve(conn, step, {"rss": bench.peak_rss_mib,
                           "modules": lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "scipy"))})


def run_model(rep, args, name):
    cfg = get_config(name)
    B, n = BATCH.get(name, 32), keep(cfg)
    flops = step_flops(cfg, B, n)
    names = [v for v in VARIANTS if not (args.no_compile and "compile" in v)
             and not (args.no_autocast and "autocast" in v)]
    pool = Workers(worker, names, name, args.threads, timeout=args.timeout)
    times = {v: [] for v in pool.variants}
    for _ in range(args.steps):
        for v in pool.variants:
            t = pool.ask(v, "step")
            if t is not None:
                times[v].append(t)
    rss = {v: pool.ask(v, "rss") for v in pool.variants} if not args.no_rss else {}
    pool.close()
    med = {v: bench.median(t) for v, t in times.items() if t}
    rep.print(f"\n## {name}, batch {B}, keep {n} of {cfg.num_patches}, {flops / 1e9:.1f} GFLOP per step\n")
    cells = []
    for v, s in med.items():
        dt = "bf16" if "bf16" in v else "fp32"
        gf, r = flops / s / 1e9, rss.get(v)
        ups = [f"{s / med[b]:.2f}x" if b in med else "-" for b in ("pacofr fp32", "pacofr bf16")]
        cells.append([v, f"{s:.3f}", f"{B / s:.1f}", *ups, f"{gf:.1f}", f"{100 * gf / PEAK[dt]:.1f}%",
                      f"{r:.0f}" if r else "-"])
        rep.row(model=name, variant=v, seconds=s, all=times[v], gflops=gf, rss_mib=r)
    rep.table(["variant", "s/step", "images/s", "pacofr fp32 speed-up", "pacofr bf16 speed-up", "GFLOP/s",
               "% of docs/performance.md peak", "peak RSS MiB"], cells)
    for dt in ("fp32", "bf16"):
        peers = {v: s for v, s in med.items() if v.startswith("torch") and (("bf16" in v) == (dt == "bf16"))}
        mine = med.get(f"pacofr {dt}")
        if peers and mine:
            best = min(peers, key=peers.get)
            rep.print(f"\npacofr {dt} against PyTorch's best {dt} ({best}): {peers[best] / mine:.2f}x")
            rep.row(model=name, dtype=dt, best_peer=best, speedup_vs_best=peers[best] / mine)
    for v, why in pool.notes.items():
        rep.print(f"\n{v}: not run here ({why})")
        rep.row(model=name, variant=v, error=why)


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--models", nargs="+", default=["pacofr_vit_tiny_p8_112", "pacofr_vit_small_p16_224"])
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant (median)")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-autocast", action="store_true")
    p.add_argument("--no-rss", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a worker may take to answer")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.steps, args.no_compile = ["pacofr_test_tiny"], 2, True
    import torch
    torch.set_num_threads(args.threads)
    rep = bench.Report("bench_step", args, dtype="fp32-bf16",
                       note=f"torch {torch.__version__}, median of {args.steps} steps")
    for name in args.models:
        check_mae_against_torch(rep, name, min(4, BATCH.get(name, 32)))
    for name in args.models:
        run_model(rep, args, name)
    rep.finish()


if __name__ == "__main__":
    main()
