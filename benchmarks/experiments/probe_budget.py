"""Head budgets of protocol synthface-v2, chosen on the val split: the linear probes (and
optionally LP-FT fine-tuning) of given encoders at each label budget, trained for several step
counts (a cosine schedule always flattens at its end, so convergence is shown by a doubled
budget changing the final score by little), with their validation curves.

    python benchmarks/experiments/probe_budget.py --encoder mae=RUN_FOLDER --encoder scratch \
        --labels 0.01 0.1 1.0 --probe-steps 300 600 1200 --out benchmarks/results/experiments/synthface_v2/budget

Writes OUT/curves.json (one entry per encoder, budget, task, mode and labels: [[step, value],
...]), OUT/final.md (the final scores per step count) and OUT/curves.png. A rerun skips the
curves it has."""
import argparse
import json
import sys
import time
from pathlib import Path

import pacofr
from pacofr.eval import protocol as P
from pacofr.eval.benchmark import load_encoder


def plot(curves, path):
    from pacofr.eval import report
    keys = sorted({k.split(" | ", 1)[1] for k in curves})
    fig = report._figure(4 * len(keys), 3.2)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, c in curves.items():
            enc, k = name.split(" | ", 1)
            if k == key and c:
                ax.plot([s for s, _ in c], [100 * v for _, v in c], label=enc)
        ax.set(title=key, xlabel="head steps", ylabel="val %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    report._save(fig, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", action="append", required=True, metavar="NAME=RUN | scratch")
    p.add_argument("--labels", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--finetune-labels", type=float, nargs="*", default=[])
    p.add_argument("--probe-steps", type=int, nargs="+", default=[300, 600, 1200])
    p.add_argument("--finetune-steps", type=int, default=1000)
    p.add_argument("--probe-lr", type=float, default=0.0, help="linear-probe learning rate (0: the default, 2e-2)")
    p.add_argument("--curve-every", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--tasks", nargs="+", default=["alignment", "parsing"])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--out", default="benchmarks/results/experiments/synthface_v2/budget")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        pacofr.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "curves.json"
    curves = json.loads(path.read_text()) if path.exists() else {}
    for spec in args.encoder:
        name, _, run = spec.partition("=")
        model = load_encoder(run or name, args.model)
        for steps in args.probe_steps:
            for labels in args.labels:
                ft = [labels] if labels in args.finetune_labels else []
                proto = P.Protocol(split="val", labels=(labels,), finetune_labels=tuple(ft), tasks=tuple(args.tasks),
                                   probe_steps=steps, parsing_probe_steps=steps, probe_lr=args.probe_lr,
                                   finetune_steps=args.finetune_steps, curve_every=args.curve_every,
                                   batch_size=args.batch_size, eval_images=args.eval_images)
                tag = f"{name} {steps} steps" + (f" lr {args.probe_lr:g}" if args.probe_lr else "")
                modes = ["linear"] + ["finetune"] * bool(ft)
                want = [f"{tag} | {t}/{m}/{100 * labels:g}%" for t in args.tasks for m in modes]
                if all(w in curves for w in want):
                    continue
                t0 = time.time()
                res = P.evaluate(model, proto)
                for k, c in res["curves"].items():
                    curves[f"{tag} | {k}"] = c
                path.write_text(json.dumps(curves, indent=1))
                print(f"{time.strftime('%H:%M:%S')} {tag} labels {labels}: "
                      + ", ".join(f"{k} {100 * c[-1][1]:.2f}%" for k, c in res["curves"].items())
                      + f" ({time.time() - t0:.0f} s)", flush=True)
    lines = ["| encoder, head steps | head | final val % |", "|---|---|---|"]
    lines += [f"| {k.split(' | ')[0]} | {k.split(' | ')[1]} | {100 * c[-1][1]:.2f} |"
              for k, c in sorted(curves.items())]
    (out / "final.md").write_text("\n".join(lines) + "\n")
    try:
        plot(curves, out / "curves.png")
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
