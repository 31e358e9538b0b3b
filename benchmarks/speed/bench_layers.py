"""Where the time of one training step goes, by layer kind: pacofr's C profiler beside
PyTorch's profiler (eager fp32, grouped by aten op) on the same model and batch.

    python benchmarks/speed/bench_layers.py                      # pacofr_vit_tiny_p8_112, batch 64
    python benchmarks/speed/bench_layers.py --model pacofr_vit_small_p16_224 --batch 32 --dtype bf16
"""
import argparse
import time

import pacofr
from pacofr import _C
from pacofr.config import get_config

from bench_step import batch, keep, step_flops


def pacofr_profile(name, B, dtype, steps):
    cfg = get_config(name)
    images, ids = batch(cfg, B, keep(cfg))
    model = pacofr.create_model(name, dtype=dtype)
    opt = pacofr.AdamW(model, lr=1e-4)

    def step():
        model.zero_grad()
        model.forward(images, ids)
        model.backward()
        opt.step()
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
    from bench_step import torch_step
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    pacofr.set_num_threads(args.threads)
    cfg = get_config(args.model)
    flops = step_flops(cfg, args.batch, keep(cfg))
    total, rows = pacofr_profile(args.model, args.batch, args.dtype, args.steps)
    print(f"# bench_layers: {args.model}, batch {args.batch}, {args.dtype}, {args.threads} threads, "
          f"mean of {args.steps} steps")
    print(f"\n## pacofr: {total:.3f} s/step, {flops / total / 1e9:.1f} GFLOP/s effective\n")
    print("| layer kind | s/step | % of step |\n|---|---|---|")
    for k, s in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {s:.3f} | {100 * s / total:.1f}% |")
    rest = total - sum(rows.values())
    print(f"| (outside the layers: Python, zeroing, buffers) | {rest:.3f} | {100 * rest / total:.1f}% |")
    if args.no_torch:
        return
    import torch
    torch.set_num_threads(args.threads)
    ttotal, trows = torch_profile(args.model, args.batch, args.steps)
    print(f"\n## PyTorch {torch.__version__} eager fp32 (under its profiler): {ttotal:.3f} s/step\n")
    print("| aten op (self time) | s/step | % of step |\n|---|---|---|")
    top = sorted(trows.items(), key=lambda kv: -kv[1])
    for k, s in top[:15]:
        print(f"| {k} | {s:.3f} | {100 * s / ttotal:.1f}% |")
    rest = sum(s for _, s in top[15:])
    print(f"| (other aten ops) | {rest:.3f} | {100 * rest / ttotal:.1f}% |")


if __name__ == "__main__":
    main()
