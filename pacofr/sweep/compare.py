"""Two sweeps side by side: do they rank the arms they share the same way? This is how a
cheap proxy scale is checked against the default scale (issue 15: the proxy must rank MAE,
scratch and PaCo-FR as the default scale does). Each sweep's arms are ordered best first
by their mean over seeds; the orders are compared arm by arm and pair by pair."""
import itertools
import json
from pathlib import Path

from ..eval import metrics
from . import aggregate
from .aggregate import lower_is_better
from .runner import read_rows

__all__ = ["KEYS", "lower_is_better", "load_summary", "ranking", "compare", "compare_markdown"]

KEYS = ("alignment/linear/1%/nme", "parsing/linear/1%/f1")


def load_summary(out):
    """The per-arm summary of a sweep folder (its summary.json, else aggregated from rows.jsonl)."""
    out = Path(out)
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    rows = read_rows(out)
    if not rows:
        raise ValueError(f"{out} holds no sweep results (no summary.json nor rows.jsonl)")
    return aggregate.summarize(rows)


def ranking(summary, key):
    """[(arm, mean)] best first for ``key``, over the arms that have it."""
    have = [(a, s["metrics"][key]["mean"]) for a, s in summary.items()
            if key in s["metrics"] and s["metrics"][key]["n"]]
    return sorted(have, key=lambda am: am[1], reverse=not lower_is_better(key))


def compare(a, b, keys=KEYS, rename=None):
    """{key: {"a": ranking, "b": ranking, "same": bool, "concordant": int, "pairs": int}} over
    the arms both summaries have; ``rename`` maps b's arm names to a's (the same config may
    carry another name in each sweep)."""
    rename = rename or {}
    b = {rename.get(arm, arm): s for arm, s in b.items()}
    result = {}
    for key in keys:
        ra, rb = ranking(a, key), ranking(b, key)
        common = {arm for arm, _ in ra} & {arm for arm, _ in rb}
        ra, rb = [x for x in ra if x[0] in common], [x for x in rb if x[0] in common]
        pos_a = {arm: i for i, (arm, _) in enumerate(ra)}
        pos_b = {arm: i for i, (arm, _) in enumerate(rb)}
        pairs = list(itertools.combinations(sorted(common), 2))
        agree = sum((pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]) for x, y in pairs)
        result[key] = {"a": ra, "b": rb, "same": [m for m, _ in ra] == [m for m, _ in rb],
                       "concordant": agree, "pairs": len(pairs)}
    return result


def _order(ranked, scale=100.0):
    return " > ".join(f"{arm} ({scale * mean:.2f})" for arm, mean in ranked)


def compare_markdown(result, name_a, name_b):
    """The comparison as markdown: each key's two orders (best first) and their agreement."""
    lines = [f"# Ranking check: {name_a} against {name_b}", "",
             "Arms both sweeps ran, best first (mean over seeds, percent); pairs ordered alike.", "",
             "| metric | " + name_a + " | " + name_b + " | same order | concordant pairs |", "|---|---|---|---|---|"]
    for key, r in result.items():
        scale = metrics.metric_of(key).scale
        lines.append(f"| {key} | {_order(r['a'], scale)} | {_order(r['b'], scale)} | {'yes' if r['same'] else 'no'} | "
                     f"{r['concordant']} / {r['pairs']} |")
    return "\n".join(lines) + "\n"
