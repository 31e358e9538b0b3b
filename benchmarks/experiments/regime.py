"""How often does each arm of a sweep settle in the "alike tokens" regime early in pre-training?

At the default scale of synthface-v2, MAE's seed 0 kept the tokens of an image alike (mean
pairwise cosine about 0.6 for the whole run) and scored 3.8 points of landmark NME worse than
its seed 1, whose token cosine fell to about 0.2 by step 330, as both seeds of "pacofr, no
consistency" did. Scoring a seed costs an hour, so this counts the regime instead: each
(arm, seed) runs the first ``--stop`` steps of its sweep run (the same config, step count and
learning-rate schedule as the full run, so its first steps are the full run's) and logs the
pre-training diagnostics; a run whose token cosine at the last diagnostics is at least
``--alike`` is counted in the alike regime. Runs resume where they stopped; rows go to
OUT/regime.jsonl as they finish, and OUT/regime.md, OUT/regime.png summarise them.

    python benchmarks/experiments/regime.py benchmarks/experiments/sweeps/synthface_v2.json \\
        --steps-from benchmarks/results/experiments/synthface_v2 --arm mae --arm "pacofr, no consistency" \\
        --seeds 3-10 --out benchmarks/results/experiments/synthface_v2_regime
"""
import argparse
import json
import sys
from pathlib import Path

from pacofr import checkpoint
from pacofr._io import atomic_write_bytes
from pacofr.sweep.runner import step_counts
from pacofr.sweep.spec import load_sweep, parse_seeds, slug
from pacofr.train import pretrain


def trajectory(metrics_path, stop):
    """[(step, token cosine, position probe, normalised effective rank)] up to ``stop``."""
    out = []
    for line in Path(metrics_path).read_text().splitlines():
        r = json.loads(line)
        if "diag/token_cosine" in r and r["step"] <= stop:
            out.append((r["step"], r["diag/token_cosine"], r["diag/position_acc"], r["diag/effective_rank_norm"]))
    return out


def run_one(sweep, arm, seed, steps, stop, out):
    """Pre-train (arm, seed) for its first ``stop`` of ``steps`` steps in OUT/runs (resuming)."""
    run = out / "runs" / slug(arm.name) / f"seed_{seed}"
    cfg = sweep.config(arm, seed, steps, run)
    have = checkpoint.checkpoint_dirs(run)
    done = checkpoint.step_of(have[-1]) if have else 0
    if done < stop:
        pretrain(cfg, progress=False, resume=bool(have), stop_after=stop - done)
    t = trajectory(run / "metrics.jsonl", stop)
    if not t:
        raise SystemExit(f"{run}: no diagnostics by step {stop} (diag_every is {cfg.diag_every}): raise --stop")
    return t


def read_rows(out):
    path = out / "regime.jsonl"
    return [json.loads(s) for s in path.read_text().splitlines()] if path.exists() else []


def summary(rows, alike):
    """Markdown: per arm, the runs in the alike regime and the mean final token cosine; and
    Fisher's exact test between the first two arms when SciPy is there."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    counts = {}
    lines = [f"| arm | runs | alike (cosine >= {alike}) | seeds alike | mean token cosine at the end |",
             "|---|---|---|---|---|"]
    for a in arms:
        mine = [r for r in rows if r["arm"] == a]
        hit = [r["seed"] for r in mine if r["trajectory"][-1][1] >= alike]
        counts[a] = (len(hit), len(mine))
        mean = sum(r["trajectory"][-1][1] for r in mine) / len(mine)
        lines.append(f"| {a} | {len(mine)} | {len(hit)} | {', '.join(map(str, hit)) or '-'} | {mean:.3f} |")
    if len(arms) >= 2:
        try:
            from scipy.stats import fisher_exact
        except ImportError:
            return "\n".join(lines)
        (h0, n0), (h1, n1) = counts[arms[0]], counts[arms[1]]
        p = fisher_exact([[h0, n0 - h0], [h1, n1 - h1]])[1]
        lines.append(f"\nFisher's exact test, {arms[0]} against {arms[1]}: two-sided p = {p:.3f}")
    return "\n".join(lines)


def figure(rows, path, alike):
    """Token cosine against step, one line per run, one colour per arm."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        c = f"C{arms.index(r['arm'])}"
        t = r["trajectory"]
        ax[0].plot([s for s, *_ in t], [v[1] for v in t], color=c, alpha=0.7)
        ax[1].plot([s for s, *_ in t], [v[2] for v in t], color=c, alpha=0.7)
    for i, a in enumerate(arms):
        ax[0].plot([], [], color=f"C{i}", label=a)
    ax[0].axhline(alike, color="grey", ls=":")
    ax[0].set(xlabel="step", ylabel="mean pairwise token cosine", title="tokens of an image alike?")
    ax[1].set(xlabel="step", ylabel="position probe accuracy", title="patch position from tokens")
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", help="the sweep file whose arms are run")
    ap.add_argument("--steps-from", dest="steps_from", required=True,
                    help="that sweep's OUT folder: its step_times.json sets each arm's steps")
    ap.add_argument("--arm", dest="arms", action="append", required=True)
    ap.add_argument("--seeds", type=parse_seeds, default=parse_seeds("3-10"))
    ap.add_argument("--stop", type=int, default=440, help="steps run of each run's schedule")
    ap.add_argument("--alike", type=float, default=0.4, help="token cosine from which a run counts as alike")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    sweep, out = load_sweep(args.sweep), Path(args.out)
    times = json.loads((Path(args.steps_from) / "step_times.json").read_text())["seconds_per_step"]
    counts = step_counts(sweep, times)
    by_name = {a.name: a for a in sweep.arms}
    unknown = [a for a in args.arms if a not in by_name]
    if unknown:
        sys.exit(f"no arm {unknown} in {args.sweep}: it has {sorted(by_name)}")
    out.mkdir(parents=True, exist_ok=True)
    rows = read_rows(out)
    done = {(r["arm"], r["seed"], r["stop"]) for r in rows}
    for seed in args.seeds:
        for name in args.arms:
            if (name, seed, args.stop) in done:
                continue
            t = run_one(sweep, by_name[name], seed, counts[name], args.stop, out)
            rows.append({"arm": name, "seed": seed, "steps": counts[name], "stop": args.stop, "trajectory": t})
            atomic_write_bytes(out / "regime.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
            print(f"{name} seed {seed}: token cosine {t[-1][1]:.3f} at step {t[-1][0]}", flush=True)
    chosen = [r for r in rows if r["arm"] in args.arms and r["stop"] == args.stop]
    atomic_write_bytes(out / "regime.md", (summary(chosen, args.alike) + "\n").encode())
    figure(chosen, out / "regime.png", args.alike)
    print(summary(chosen, args.alike))


if __name__ == "__main__":
    main()
