"""How much of the spread between pre-training seeds is the probe's own noise?

At the default scale of synthface-v2, MAE's landmark NME at 1% labels (linear probe, test
split) moved by 3.8 points between two pre-training seeds. The protocol trains each head once,
from one seed (``Protocol.seed``), on 20 labelled faces; this scores the same encoders again on
the **val** split with several head seeds (head initialisation and batch order; the labelled
faces stay the first 1% of train), so that the spread over head seeds for a fixed encoder can be
set beside the spread over encoders. Rows go to OUT/probe_seeds.jsonl as they finish (the
script resumes); OUT/probe_seeds.md summarises them.

    python benchmarks/experiments/probe_seeds.py benchmarks/experiments/sweeps/synthface_v2.json \\
        benchmarks/results/experiments/synthface_v2/runs/mae/seed_2 \\
        benchmarks/results/experiments/synthface_v2/runs/pacofr_no_consistency/seed_1 \\
        --head-seeds 0-3 --out benchmarks/results/experiments/synthface_v2_probe_seeds
"""
import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from pacofr import checkpoint
from pacofr._io import atomic_write_bytes
from pacofr.eval.protocol import evaluate
from pacofr.sweep.aggregate import ci95
from pacofr.sweep.spec import load_sweep
from pacofr.sweep.spec import parse_seeds

KEYS = (("NME %", "alignment/linear/1%/nme"), ("F1 %", "parsing/linear/1%/f1"))


def read_rows(out):
    path = out / "probe_seeds.jsonl"
    return [json.loads(s) for s in path.read_text().splitlines()] if path.exists() else []


def summary(rows):
    """Markdown: per encoder, mean, sample sd and 95% interval over head seeds, and the range."""
    lines = ["| encoder | head seeds | " + " | ".join(f"{c} mean ± 95% | {c} sd | {c} range" for c, _ in KEYS) + " |",
             "|---|---|" + "---|---|---|" * len(KEYS)]
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        mine = [r for r in rows if r["encoder"] == enc]
        cells = [enc, ", ".join(str(r["head_seed"]) for r in mine)]
        for _, key in KEYS:
            v = [100 * r["metrics"][key] for r in mine]
            mean, half, _ = ci95(v)
            sd = statistics.stdev(v) if len(v) > 1 else float("nan")
            cells += [f"{mean:.2f} ± {half:.2f}", f"{sd:.2f}", f"{min(v):.2f} - {max(v):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="the sweep file whose protocol is used (on val, 1% labels, linear probes)")
    ap.add_argument("runs", nargs="+", help="pre-training run folders (with checkpoints/)")
    ap.add_argument("--head-seeds", dest="head_seeds", type=parse_seeds, default=parse_seeds("0-3"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    sweep, out = load_sweep(args.sweep), Path(args.out)
    protocol = dataclasses.replace(sweep.protocol, split="val", labels=(0.01,), finetune_labels=(),
                                   tasks=("alignment", "parsing"))
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(out)
    done = {(r["encoder"], r["head_seed"]) for r in rows}
    for run in args.runs:
        enc = "/".join(Path(run).resolve().parts[-2:])
        model = None
        for seed in args.head_seeds:
            if (enc, seed) in done:
                continue
            model = model or checkpoint.load_model(run)
            t0 = time.perf_counter()
            res = evaluate(model, dataclasses.replace(protocol, seed=seed))
            rows.append({"encoder": enc, "head_seed": seed, "seconds": time.perf_counter() - t0,
                         "metrics": {k: res["metrics"][k] for _, k in KEYS}})
            atomic_write_bytes(out / "probe_seeds.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
            print(f"{enc} head seed {seed}: " + ", ".join(f"{c} {100 * res['metrics'][k]:.2f}" for c, k in KEYS),
                  flush=True)
    text = summary(rows)
    atomic_write_bytes(out / "probe_seeds.md", (text + "\n").encode())
    print(text)


if __name__ == "__main__":
    main()
