"""A sweep's rows, aggregated: mean and 95% confidence interval (Student's t over the
pre-training seeds) of every metric per arm, written as OUT/summary.json and OUT/table.md;
every pair of arms on the headline metrics (difference of means, whether the two intervals
are apart, the paired interval over shared seeds) as OUT/pairs.json and a second table in
table.md; the heads' validation curves (OUT/curves.png) and the pre-training diagnostics over
steps (OUT/diagnostics.png) when matplotlib is installed."""
import json
import math
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes
from ..eval import metrics, report
from .spec import slug, sweep_dict

__all__ = ["ci95", "summarize", "write", "headline", "finite", "lower_is_better", "pairs", "pairs_markdown"]

SUBSETS_SHOWN = ("large_pose", "occlusion", "illumination")
DIAG_SHOWN = ("diag/token_cosine", "diag/effective_rank_norm", "diag/position_acc", "diag/rec/face", "usage")


def lower_is_better(key):
    """Whether a flat key's metric is an error (lower is better): its entry in pacofr/eval/metrics.py
    says; a key of no registered metric raises ValueError."""
    return metrics.lower_is_better(key)


def finite(row):
    """A row with NumPy values made plain and NaN / Inf made None (strict JSON)."""
    return report.jsonable(row)


def ci95(values):
    """(mean, half-width of the 95% t-interval, n) of the finite values; the half-width is NaN
    with fewer than two."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    if v.size < 2:
        return float(v[0]), float("nan"), 1
    from scipy.stats import t
    half = float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), half, int(v.size)


def summarize(rows):
    """{arm: {"metrics": {key: {"mean", "ci95", "n", "values"}}, "steps", "step_seconds",
    "seeds"}} in the order arms first appear."""
    out = {}
    for r in rows:
        a = out.setdefault(r["arm"], {"rows": [], "steps": r.get("steps"), "step_seconds": r.get("step_seconds")})
        a["rows"].append(r)
    for arm, a in out.items():
        keys = sorted({k for r in a["rows"] for k in r["metrics"]})
        a["seeds"] = [r["seed"] for r in a["rows"]]
        a["metrics"] = {}
        for k in keys:
            vals = [r["metrics"].get(k) for r in a["rows"]]
            mean, half, n = ci95(vals)
            a["metrics"][k] = {"mean": mean, "ci95": half, "n": n, "values": vals}
        diag_keys = sorted({k for r in a["rows"] for k in r.get("diagnostics", {})})
        a["diagnostics"] = {k: ci95([r.get("diagnostics", {}).get(k) for r in a["rows"]])[0] for k in diag_keys}
        del a["rows"]
    return out


def _cell(m, scale=100.0):
    """A metric (a fraction) times its scale (percent): mean ± 95% half-width."""
    if m is None or m["n"] == 0:
        return "-"
    if m["n"] < 2:
        return f"{scale * m['mean']:.2f}"
    return f"{scale * m['mean']:.2f} ± {scale * m['ci95']:.2f}"


def _heading(key):
    """A flat key's column heading: its registered label, `` %`` for a metric shown in percent."""
    return metrics.label(key) + (" %" if metrics.metric_of(key).scale == 100 else "")


def _headline_keys(labels, modes):
    """The headline metrics of the head tasks at each label fraction and mode, in registry order."""
    return [f"{task}/{mode}/{100 * lab:g}%/{m.name}" for lab in labels for mode in modes
            for task in metrics.HEAD_TASKS for m in metrics.of_task(task, headline=True)]


def _subset_keys(protocol):
    """The first budget's linear probe on the hard subsets, for each headline metric scored per subset."""
    first = f"{100 * protocol['labels'][0]:g}%"
    return [f"alignment/linear/{first}/{m.name}/{s}" for m in metrics.of_task("alignment", headline=True)
            if m.by_subset for s in SUBSETS_SHOWN]


def columns(summary, protocol):
    """The table's metric keys: the headline metrics (NME, F1) at each budget and mode, the
    first budget's probe on the hard subsets, and every identity metric scored."""
    keys = {k for a in summary.values() for k in a["metrics"]}
    cols = [c for lab in protocol["labels"] for c in _headline_keys([lab], metrics.MODES) if c in keys]
    cols += [c for c in _subset_keys(protocol) if c in keys]
    cols += sorted(k for k in keys if k.startswith("identity/"))
    return cols


def table_markdown(summary, sweep_d):
    """The summary as a markdown table (percentages, mean ± 95% interval over seeds)."""
    cols = columns(summary, sweep_d["protocol"])
    rows = []
    for arm, a in summary.items():
        row = {"arm": arm, "seeds": len(a["seeds"]), "steps": a["steps"],
               "s/step": "-" if a["step_seconds"] is None else f"{a['step_seconds']:.3f}"}
        for c in cols:
            row[_heading(c)] = _cell(a["metrics"].get(c), metrics.metric_of(c).scale)
        rows.append(row)
    if not rows:
        return "(no rows yet)\n"
    return report.markdown_table(rows, list(rows[0]))


def pair_keys(protocol):
    """The metrics arms are paired on: the headline metrics (landmark NME, parsing F1) of the
    first budget's linear probe, then that probe on the hard subsets."""
    return _headline_keys(protocol["labels"][:1], ["linear"]) + _subset_keys(protocol)


def _pair(a, b, key):
    """Arm b against arm a (their summaries) on one metric, or None where either lacks it."""
    ma, mb = a["metrics"].get(key), b["metrics"].get(key)
    if not ma or not mb or not ma["n"] or not mb["n"]:
        return None
    diff = mb["mean"] - ma["mean"]
    apart = bool(abs(diff) > ma["ci95"] + mb["ci95"]) if ma["n"] > 1 and mb["n"] > 1 else None
    va, vb = dict(zip(a["seeds"], ma["values"])), dict(zip(b["seeds"], mb["values"]))
    shared = [vb[s] - va[s] for s in va if s in vb and va[s] is not None and vb[s] is not None]
    mean, half, n = ci95(shared)
    better = diff < 0 if lower_is_better(key) else diff > 0
    return {"diff": diff, "apart": apart, "better": bool(better), "paired_mean": mean, "paired_ci95": half,
            "paired_n": n}


def pairs(summary, keys):
    """[{"a", "b", "metrics": {key: _pair}}] for every two arms, b after a in the summary's
    order; ``diff`` = b's mean - a's mean; ``apart``: the two 95% intervals do not overlap
    (None below two seeds each); ``better``: b's mean is the better one; ``paired_*``: the
    95% t-interval of the per-seed differences over the seeds both arms ran."""
    arms = list(summary)
    return [{"a": x, "b": y, "metrics": {k: _pair(summary[x], summary[y], k) for k in keys}}
            for i, x in enumerate(arms) for y in arms[i + 1:]]


def _pair_cell(p, scale=100.0):
    if p is None:
        return "-"
    text = f"{scale * p['diff']:+.2f}"
    if p["paired_n"] > 1:
        text += f" (paired ± {scale * p['paired_ci95']:.2f})"
    if p["apart"] is not None:
        text += ", " + ("**apart**, " if p["apart"] else "overlap, ") + ("better" if p["better"] else "worse")
    return text


def pairs_markdown(result):
    """The pairs as a markdown table: b - a in points, its paired interval, and whether the two
    arms' 95% intervals are apart and b's mean the better one."""
    if not result:
        return "(fewer than two arms)\n"
    keys = list(result[0]["metrics"])
    rows = [{"arms (b - a)": f"{r['b']} - {r['a']}",
             **{_heading(k): _pair_cell(r["metrics"][k], metrics.metric_of(k).scale) for k in keys}} for r in result]
    return report.markdown_table(rows, list(rows[0]))


def headline(values):
    """One line of a run's main numbers (the registry's headline metrics, whole split), for the log."""
    def shown(key):
        return metrics.metric_of(key).headline and metrics.split_key(key).subset is None
    return ", ".join(f"{metrics.label(k)} {metrics.metric_of(k).scale * v:.2f}%" for k, v in values.items()
                     if v is not None and shown(k))


def write(out, sweep, rows):
    """summary.json, table.md and the figures of the rows so far -> the summary."""
    out = Path(out)
    sd = sweep_dict(sweep)
    summary = summarize(rows)
    p = sd["protocol"]
    title = (f"# Sweep {sd['name']}\n\nProtocol {p['name']}, split `{p['split']}`, {sd['seconds']:g} s of "
             f"pre-training compute per arm and seed; mean ± 95% interval (Student's t) over the seeds; "
             f"values in percent.\n\n")
    pr = pairs(summary, pair_keys(p))
    text = (title + table_markdown(summary, sd) + "\n\n## Arm against arm\n\nb's mean minus a's, in points; "
            "the paired interval is over the seeds both ran; **apart**: the two arms' 95% intervals do not "
            "overlap; better / worse: b against a (NME lower is better, F1 higher).\n\n" + pairs_markdown(pr) + "\n")
    atomic_write_bytes(out / "table.md", text.encode())
    atomic_write_bytes(out / "summary.json", json.dumps(report.jsonable(summary), indent=1).encode())
    atomic_write_bytes(out / "pairs.json", json.dumps(report.jsonable(pr), indent=1).encode())
    try:
        plot_curves(rows, out / "curves.png")
        plot_diagnostics(out, sweep, out / "diagnostics.png")
    except ImportError:
        pass
    return summary


def plot_curves(rows, path):
    """The heads' validation curves, mean over seeds per arm, one panel per head."""
    keys = sorted({k for r in rows for k in r.get("curves", {})})
    if not keys:
        return None
    fig = report._figure(4 * len(keys), 3.2)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for j, arm in enumerate(dict.fromkeys(r["arm"] for r in rows)):
            curves = [np.asarray(r["curves"][key], np.float64) for r in rows if r["arm"] == arm and key in r["curves"]]
            n = min(len(c) for c in curves)
            if n:
                c = np.mean([c[:n] for c in curves], 0)
                ax.plot(c[:, 0], 100 * c[:, 1], label=arm, color=f"C{j % 10}")
        ax.set(title=key, xlabel="head steps", ylabel="validation %")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.tight_layout()
    return report._save(fig, path)


def plot_diagnostics(out, sweep, path):
    """Pre-training diagnostics over steps: every run of each arm, one colour per arm and one
    line style per seed (seeds of one arm may settle in different regimes)."""
    series = {}
    for arm in sweep.arms:
        for seed in sweep.seeds:
            metrics = Path(out) / "runs" / slug(arm.name) / f"seed_{seed}" / "metrics.jsonl"
            if metrics.exists():
                rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
                series.setdefault(arm.name, {})[seed] = rows
    if not series:
        return None
    styles = ("-", "--", ":", "-.")
    fig = report._figure(3.6 * len(DIAG_SHOWN), 3.2)
    for i, key in enumerate(DIAG_SHOWN):
        ax = fig.add_subplot(1, len(DIAG_SHOWN), i + 1)
        for j, (arm, runs) in enumerate(series.items()):     # an arm keeps its colour in every panel
            for seed, rows in runs.items():
                pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
                if pts:
                    ax.plot(*zip(*pts), label=f"{arm} (seed {seed})", color=f"C{j % 10}",
                            linestyle=styles[sweep.seeds.index(seed) % len(styles)])
        ax.set(title=key, xlabel="pre-training step")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=6)
    fig.tight_layout()
    return report._save(fig, path)
