"""One line per (arm, seed) of a synthface-v2 sweep, the README's per-seed table.

``pacofr sweep --tables-only`` writes the means over seeds (``table.md``); the README also
shows each seed's row with the pre-training diagnostics beside the scores, which this prints
as markdown from the sweep's ``rows.jsonl``:

    python benchmarks/experiments/synthface_v2_rows.py benchmarks/results/experiments/synthface_v2
"""
import argparse
import json
import sys
from pathlib import Path

COLUMNS = (("NME LP 1%", "alignment/linear/1%/nme"), ("F1 LP 1%", "parsing/linear/1%/f1"),
           ("NME FT 1%", "alignment/finetune/1%/nme"), ("F1 FT 1%", "parsing/finetune/1%/f1"),
           ("NME 10%", "alignment/linear/10%/nme"), ("F1 10%", "parsing/linear/10%/f1"),
           ("NME 100%", "alignment/linear/100%/nme"), ("F1 100%", "parsing/linear/100%/f1"),
           ("NME large pose", "alignment/linear/1%/nme/large_pose"),
           ("NME occlusion", "alignment/linear/1%/nme/occlusion"),
           ("NME illumination", "alignment/linear/1%/nme/illumination"),
           ("verification", "identity/verification"))
DIAGNOSTICS = (("token cosine", "diag/token_cosine"), ("position probe", "diag/position_acc"))


def _cell(value, scale):
    return "" if value is None else f"{scale * value:.2f}"


def table(rows):
    """Markdown for ``rows`` (dicts of a sweep's rows.jsonl), in the order they ran; scores in
    percent, diagnostics as logged (the last ``diag/*`` of the run; empty for scratch)."""
    head = ["arm (seed)", "steps"] + [c for c, _ in COLUMNS] + [c for c, _ in DIAGNOSTICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        m, diag = r["metrics"], r.get("diagnostics") or {}
        cells = [f"{r['arm']} ({r['seed']})", str(r["steps"])]
        cells += [_cell(m.get(key), 100) for _, key in COLUMNS]
        cells += [_cell(diag.get(key), 1) for _, key in DIAGNOSTICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a sweep's --out folder (holds rows.jsonl)")
    args = ap.parse_args(argv)
    path = args.out / "rows.jsonl"
    if not path.is_file():
        ap.error(f"{path} does not exist: run `pacofr sweep FILE --out {args.out}` first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(table(rows))


if __name__ == "__main__":
    sys.exit(main())
