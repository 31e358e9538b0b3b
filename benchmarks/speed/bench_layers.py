"""Where the time of one training step goes, by layer kind: pacofr's C profiler beside
PyTorch's profiler (eager fp32, grouped by aten op) on the same model and batch.

    python benchmarks/speed/bench_layers.py                      # pacofr_vit_tiny_p8_112, batch 64
    python benchmarks/speed/bench_layers.py --model pacofr_vit_small_p16_224 --batch 32 --dtype bf16 --save
    python benchmarks/speed/bench_layers.py --quick --json out.json   # pacofr_test_tiny, batch 8, 1 step

Before anything is profiled, pacofr's loss and gradients on the model are checked against
PyTorch autograd on the same weights (``pacofr.testing.torch_ref``; fp32, and for --dtype bf16
also the bf16 loss, loosely). The figures are means over --steps steps after a warm-up step,
timed around each profiler (not Report.alternate: one variant at a time, under its profiler);
the header, checks, rows and files go through the Report.
"""
import time


import pacofr
from pacofr import _C
from pacofr.config import get_config
from pacofr.testing import bench
from pacofr.testing.steps import batch, check_mae_against_torch, keep, pacofr_step, step_flops, torch_step

BF16_LOSS_RTOL = 3e-2  # bf16 products: the loss within a few per cent of fp32 PyTorch's


def check_against_torch(rep, name, dtype, B):
    """pacofr's fp32 loss and gradients against PyTorch autograd on the same weights and batch;
    for bf16 also the bf16 loss."""
    model, images, ids, want = check_mae_against_torch(rep, name, B)
    if dtype == "bf16":
        m16 = pacofr.create_model(name, dtype="bf16")
        m16.load_state_dict(model.state_dict())
        rep.check(f"{name} bf16 loss", m16.forward(images, ids), want, rtol=BF16_LOSS_RTOL)


def pacofr_profile(name, B, dtype, steps):
    cfg = get_config(name)
    images, ids = batch(cfg, B, keep(cfg))
    step = pacofr_step(name, dtype, images, ids)
    step()
    _C.profile_reset()
    _C.profile(True)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    total = (time.perf_counter() - t) / steps
    _C.profile(False)
    rows = {k: s / steps for k, (s, _) in _C.profile_read().items()}
    return total, rows


def torch_profile(name, B, steps):
    from torch.profiler import ProfilerActivity, profile
    cfg = get_config(name)
    images, ids = batch(cfg, B, keep(cfg))
    step = torch_step(name, "eager", images, ids)
    step()
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    total = (time.perf_counter() - t) / steps
    rows = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            rows[e.key] = e.self_cpu_time_total / 1e6 / steps
    return total, rows


def report_pacofr(rep, args, flops):
    total, rows = pacofr_profile(args.model, args.batch, args.dtype, args.steps)
    rep.require("pacofr profiler: layer times within the step", 0 < sum(rows.values()) <= 1.05 * total,
                f"{sum(rows.values()):.3f} of {total:.3f} s")
    rep.print(f"\n## pacofr: {total:.3f} s/step, {flops / total / 1e9:.1f} GFLOP/s effective\n")
    rest = total - sum(rows.values())
    cells = [[k, f"{s:.3f}", f"{100 * s / total:.1f}%"] for k, s in sorted(rows.items(), key=lambda kv: -kv[1])]
    cells.append(["(outside the layers: Python, zeroing, buffers)", f"{rest:.3f}", f"{100 * rest / total:.1f}%"])
    rep.table(["layer kind", "s/step", "% of step"], cells)
    rep.row(profile="pacofr", kind="(step)", seconds=total, gflops=flops / total / 1e9)
    for k, s in rows.items():
        rep.row(profile="pacofr", kind=k, seconds=s, share=s / total)
    rep.row(profile="pacofr", kind="(outside the layers)", seconds=rest, share=rest / total)


def report_torch(rep, args, torch):
    ttotal, trows = torch_profile(args.model, args.batch, args.steps)
    rep.print(f"\n## PyTorch {torch.__version__} eager fp32 (under its profiler): {ttotal:.3f} s/step\n")
    top = sorted(trows.items(), key=lambda kv: -kv[1])
    rest = sum(s for _, s in top[15:])
    cells = [[k, f"{s:.3f}", f"{100 * s / ttotal:.1f}%"] for k, s in top[:15]]
    cells.append(["(other aten ops)", f"{rest:.3f}", f"{100 * rest / ttotal:.1f}%"])
    rep.table(["aten op (self time)", "s/step", "% of step"], cells)
    rep.row(profile="torch", kind="(step)", seconds=ttotal)
    for k, s in top:
        rep.row(profile="torch", kind=k, seconds=s, share=s / ttotal)


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--no-torch", action="store_true", help="profile pacofr only (PyTorch still checks it)")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch, args.steps = "pacofr_test_tiny", 8, 1
    import torch
    torch.set_num_threads(args.threads)
    cfg = get_config(args.model)
    flops = step_flops(cfg, args.batch, keep(cfg))
    rep = bench.Report("bench_layers", args, dtype=args.dtype,
                       note=f"{args.model}, batch {args.batch}, {args.dtype}, mean of {args.steps} steps")
    check_against_torch(rep, args.model, args.dtype, min(4, args.batch))
    report_pacofr(rep, args, flops)
    if not args.no_torch:
        report_torch(rep, args, torch)
    rep.finish()


if __name__ == "__main__":
    main()
