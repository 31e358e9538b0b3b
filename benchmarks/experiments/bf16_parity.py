"""Does bf16 train as well as fp32? MAE and PaCo-FR on the tiny preset, both dtypes, same
seed, same data order, same steps; loss curves side by side.

    python benchmarks/experiments/bf16_parity.py --out runs/bf16_parity               # run (resumable)
    python benchmarks/experiments/bf16_parity.py --out runs/bf16_parity --report      # table + figure only

The four arms advance in turns of --chunk steps (each turn resumes its run from its last
checkpoint), so whatever time the session has, all arms stand at the same step count and
the comparison so far is valid. Figures: mean training loss over the last tenth of the
steps done, bf16 relative to fp32, and the curves (EMA-smoothed) in parity.png.
"""
import argparse
import json
from pathlib import Path

import numpy as np

ARMS = [("mae", "fp32"), ("mae", "bf16"), ("pacofr", "fp32"), ("pacofr", "bf16")]


def arm_dir(out, preset, dtype):
    return Path(out) / f"{preset}_{dtype}"


def losses(folder, key="loss"):
    path = folder / "metrics.jsonl"
    if not path.exists():
        return np.zeros(0), np.zeros(0)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if key in r]
    return np.array([r["step"] for r in rows]), np.array([r[key] for r in rows])


def train(args):
    from pacofr.train import pretrain
    arms = [a for a in ARMS if a[1] in args.dtypes]
    done = {a: 0 for a in arms}
    while min(done.values()) < args.steps:
        for preset, dtype in arms:
            folder = arm_dir(args.out, preset, dtype)
            steps, _ = losses(folder)
            have = int(steps.max()) if len(steps) else 0
            if have >= args.steps:
                done[(preset, dtype)] = have
                continue
            pretrain(preset, out=str(folder), steps=args.steps, batch_size=args.batch, dtype=dtype, seed=args.seed,
                     log_every=10, checkpoint_every=args.chunk, preview_every=0, progress=False,
                     resume=folder.exists() and any((folder / "checkpoints").glob("*")), stop_after=args.chunk)
            steps, _ = losses(folder)
            done[(preset, dtype)] = int(steps.max()) if len(steps) else 0
            print(json.dumps({"arm": f"{preset} {dtype}", "step": done[(preset, dtype)]}), flush=True)


def ema(x, a=0.9):
    out, s = np.empty_like(x), x[0]
    for i, v in enumerate(x):
        s = a * s + (1 - a) * v
        out[i] = s
    return out


def report(args):
    rows, curves = [], {}
    for preset in ("mae", "pacofr"):
        s32, l32 = losses(arm_dir(args.out, preset, "fp32"))
        s16, l16 = losses(arm_dir(args.out, preset, "bf16"))
        n = min(len(s32), len(s16))
        if n < 10:
            continue
        tail = slice(n - max(1, n // 10), n)
        m32, m16 = l32[:n][tail].mean(), l16[:n][tail].mean()
        rows.append(f"| {preset} | {int(s32[n - 1])} | {m32:.4f} | {m16:.4f} | {100 * (m16 / m32 - 1):+.2f}% |")
        curves[preset] = (s32[:n], l32[:n], l16[:n])
    print("| method | steps | fp32 loss (last tenth) | bf16 loss (last tenth) | bf16 vs fp32 |\n|---|---|---|---|---|")
    print("\n".join(rows))
    if curves:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5))
        for ax, (preset, (s, a, b)) in zip(np.atleast_1d(axes), curves.items()):
            ax.plot(s, ema(a), label="fp32")
            ax.plot(s, ema(b), label="bf16", ls="--")
            ax.set_title(f"{preset}: training loss (EMA 0.9)")
            ax.set_xlabel("step")
            ax.legend()
        fig.tight_layout()
        fig.savefig(Path(args.out) / "parity.png", dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bf16_parity")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--chunk", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="train only these arms (another seed's fp32 arms measure the seed-to-seed spread)")
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    if not args.report:
        train(args)
    report(args)


if __name__ == "__main__":
    main()
