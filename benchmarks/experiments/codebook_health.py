"""Codebook health of a PaCo-FR run: the curves of metrics.jsonl (code usage, perplexity, belief
top-1 accuracy on the incubation targets, losses) and, on held-out SynthFace faces, how the
final codebook is used.

    python benchmarks/experiments/codebook_health.py runs/health5k [--images 256] [--png health.png]

Held-out usage: the belief predictor of the latest checkpoint picks a code (top-1) for every
patch of ``--images`` faces the run never saw (a different SynthFace seed); reported over the
first 1,000 choices (docs/method.md's window) and over all of them, with the perplexity of the
choices and the same for the nearest codes (the incubation targets), and the belief's top-1
accuracy against those targets. A collapsed codebook shows as a few codes taking most choices.
"""
import argparse
import json
from pathlib import Path

import numpy as np

import pacofr
from pacofr import _C
from pacofr.data import SynthFace
from pacofr.data.loader import Loader


def usage(ids, K):
    counts = np.bincount(ids, minlength=K)
    p = counts[counts > 0] / ids.size
    top10 = float(np.sort(counts)[::-1][:10].sum() / ids.size)
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum())), top10


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--png")
    args = ap.parse_args(argv)
    run = Path(args.run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "usage" in r]
    model = pacofr.load_model(run)
    cfg = model.config
    K, p = cfg.codebook_size, cfg.patch_size
    loader = Loader(SynthFace(seed=12345, size=cfg.img_size, num_images=args.images), 64, shuffle=False, prefetch=0)
    P = np.concatenate([_C.patchify(b["images"], p).reshape(-1, cfg.patch_dim) for b in loader])
    xn, _, _ = _C.patch_stats(P)
    C = model.param("codebook.weight")
    h = _C.gelu_forward(_C.linear_forward(xn, model.param("belief.fc1.weight"), model.param("belief.fc1.bias"), "fp32"))
    logits = _C.linear_forward(h, model.param("belief.fc2.weight"), model.param("belief.fc2.bias"), "fp32")
    choice = logits.argmax(1)
    nearest, dist = _C.codebook_nearest(xn, C)
    rng = np.random.default_rng(0)
    first = rng.permutation(len(choice))[:1000]
    u1000, pp1000, _ = usage(choice[first], K)
    uall, ppall, top10 = usage(choice, K)
    unear, ppnear, top10near = usage(nearest, K)
    print(f"run {run}: {rows[-1]['step']} steps, K = {K}, {len(choice)} held-out patches")
    print("\n| measure | value |\n|---|---|")
    print(f"| belief top-1 usage, 1,000 choices (docs/method.md window) | {100 * u1000:.1f}% (perplexity {pp1000:.0f}) "
          "|")
    print(f"| belief top-1 usage, all {len(choice)} choices | {100 * uall:.1f}% (perplexity {ppall:.0f}; top 10 codes "
          f"take {100 * top10:.1f}%) |")
    print(f"| nearest-code usage, all patches | {100 * unear:.1f}% (perplexity {ppnear:.0f}; top 10 codes take "
          f"{100 * top10near:.1f}%) |")
    print(f"| belief top-1 accuracy vs nearest code (held out) | {100 * float((choice == nearest).mean()):.1f}% |")
    print(f"| mean squared distance to the nearest code (normalised patches, d = {cfg.patch_dim}) | "
          f"{float(dist.mean() / cfg.patch_dim):.3f} per value |")
    print("\n| step | loss | rec | belief acc | usage (last 1,000) | perplexity |\n|---|---|---|---|---|---|")
    marks = sorted({min(len(rows) - 1, int(round(f * (len(rows) - 1)))) for f in np.linspace(0, 1, 11)})
    for i in marks:
        r = rows[i]
        print(f"| {r['step']} | {r['loss']:.3f} | {r['rec']:.3f} | {r['belief_acc']:.3f} | {r['usage']:.3f} | "
              f"{r['perplexity']:.0f} |")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        steps = [r["step"] for r in rows]
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
        ax[0].plot(steps, [r["usage"] for r in rows], label="code usage (last 1,000 choices)")
        ax[0].plot(steps, [r["belief_acc"] for r in rows], label="belief top-1 accuracy")
        ax[0].set_xlabel("step"); ax[0].legend(); ax[0].set_ylim(0, 1)
        ax[1].plot(steps, [r["perplexity"] for r in rows])
        ax[1].set(xlabel="step", title="perplexity of the choices")
        for k in ("rec", "inc", "align", "sc"):
            xs = [r["step"] for r in rows if k in r]
            ax[2].plot(xs, [r[k] for r in rows if k in r], label=k)
        ax[2].set_yscale("log"); ax[2].set_xlabel("step"); ax[2].legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\nfigure: {args.png}")


if __name__ == "__main__":
    main()
