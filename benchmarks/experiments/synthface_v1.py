"""The synthface-v1 experiment (docs/evaluation.md): scratch vs MAE vs PaCo-FR on pacofr_vit_tiny_p8_112.

1. Pre-training at equal wall-clock compute: PaCo-FR for --pretrain-steps steps, MAE for that
   times the measured ratio of their step times (--mae-step-ratio, or measured here), both
   batch 32 on SynthFace split ``pretrain`` (seed 0). Existing run folders are reused (--run).
2. Downstream on split ``train`` (seed 1) at each label fraction, scored on ``test`` (seed 2):
   landmarks (heatmap head; NME inter-ocular, AUC@0.1, FR@0.1 per subset) and parsing (mean
   F1), as a linear probe at every fraction and fully fine-tuned from that probe (LP-FT, layer
   decay 0.75) at the fractions of --ft-labels; verification, kNN,
   identity linear probe and IQ from the frozen encoder. One JSON line per result in
   OUT/rows.jsonl; a rerun skips the rows it has.
3. Ablations (--ablations): docs/method.md's variants pre-trained for --ablation-seconds each (steps
   from each variant's measured step time), scored by linear probes at 1% labels.
4. Tables (OUT/tables.md) and figures (OUT/*.png) from the rows.

    python benchmarks/experiments/synthface_v1.py --run pacofr=runs/pacofr --run mae=runs/mae --ablations
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import pacofr
from pacofr.eval import report, tasks
from pacofr.eval.benchmark import load_encoder
from pacofr.eval.finetune import FitConfig, encode, encoder_of

MODEL = "pacofr_vit_tiny_p8_112"
ABLATIONS = {"pacofr (all components)": {}, "mae (reference)": {"masking": "random", "subst_ratio": 0.0,
                                                                  "codebook_size": 0, "lambda_sc": 0.0},
             "masking random": {"masking": "random"},
             "masking block": {"masking": "block"}, "no codebook": {"subst_ratio": 0.0, "codebook_size": 0},
             "k = 1": {"topk": 1}, "k = 8": {"topk": 8}, "no incubation": {"incubation_steps": 0},
             "lambda_sc = 0": {"lambda_sc": 0.0}}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def pretrain_config(preset, steps, out, args, **extra):
    fields = dict(model=MODEL, steps=steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                  log_every=20, checkpoint_every=500, preview_every=1000, out=str(out), threads=args.threads)
    return pacofr.train.make_config(preset, None, **{**fields, **extra})


def step_seconds(preset, args, **extra):
    """Median seconds per optimizer step of a preset, from a short throw-away run."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        cfg = pretrain_config(preset, 1000, tmp, args, **extra).replace(log_every=1, checkpoint_every=1000,
                                                                         preview_every=0)
        pacofr.pretrain(cfg, progress=False, stop_after=7)
        rows = [json.loads(line) for line in open(Path(tmp) / "metrics.jsonl")]
    ips = [r["images_per_s"] for r in rows if "images_per_s" in r][2:]
    return args.batch_size / float(np.median(ips))


def has_final(run, steps):
    ck = Path(run) / "checkpoints"
    return ck.is_dir() and any(d.name == f"step_{steps:07d}" for d in ck.iterdir())


def pretrain_main(args, runs):
    ratio = args.mae_step_ratio or step_seconds("pacofr", args) / step_seconds("mae", args)
    steps = {"pacofr": args.pretrain_steps, "mae": int(round(args.pretrain_steps * ratio))}
    log(f"equal wall-clock: pacofr {steps['pacofr']} steps, mae {steps['mae']} (step-time ratio {ratio:.3f})")
    for name in [n for n in ("pacofr", "mae") if n in args.encoders]:
        run = runs[name]
        if Path(run).is_dir() and (Path(run) / "checkpoints").is_dir():
            log(f"{name}: reusing {run}")
            continue
        pacofr.pretrain(pretrain_config(name, steps[name], run, args), progress=False)
    return {"step_ratio": ratio, "steps": steps}


def done_keys(path):
    if not path.exists():
        return set()
    return {tuple(json.loads(line)["key"]) for line in open(path) if line.strip()}


def add_row(path, key, row):
    with open(path, "a") as f:
        f.write(json.dumps(report.jsonable({"key": list(key), **row})) + "\n")


def trim_alignment(res):
    return {"subsets": res["subsets"], "per_image_nme": res["per_image_nme"], "train_images": res["train_images"]}


def trim_parsing(res):
    return {"mean_f1": res["mean_f1"], "per_class": res["per_class"], "train_images": res["train_images"]}


def evaluate_encoder(name, model, train, test, args, rows_path, done):
    """Linear probes at every label fraction, then LP-FT fine-tuning (from those probes) at the
    fractions of --ft-labels; one row per (task, mode, labels)."""
    tokens = None
    for labels in args.labels:
        for task in ("alignment", "parsing"):
            want_ft = labels in args.ft_labels and (name, task, "finetune", labels) not in done
            if (name, task, "linear", labels) in done and not want_ft:
                continue
            if tokens is None:
                enc = encoder_of(model)
                tokens = (encode(enc, train["images"]), encode(enc, test["images"]))
            run = tasks.run_alignment if task == "alignment" else tasks.run_parsing
            trim = trim_alignment if task == "alignment" else trim_parsing
            head = "heatmap" if task == "alignment" else "linear"
            t0 = time.time()
            cfg = FitConfig(task=task, head=head, mode="linear", steps=args.lp_steps, batch_size=args.batch_size_down,
                            seed=args.seed)
            res, probe = run(model, train, test, cfg, labels, tokens=tokens)
            if (name, task, "linear", labels) not in done:
                add_row(rows_path, (name, task, "linear", labels), {**trim(res), "seconds": time.time() - t0,
                                                                      "steps": args.lp_steps})
                log(f"{name} {task} linear labels {labels}: {summary(task, res)} ({time.time() - t0:.0f} s)")
            if want_ft:
                t0 = time.time()
                cfg = FitConfig(task=task, head=head, mode="finetune", steps=args.ft_steps,
                                batch_size=args.batch_size_down,
                                seed=args.seed)
                res, _ = run(model, train, test, cfg, labels, tokens=tokens, probe=probe)
                add_row(rows_path, (name, task, "finetune", labels),
                        {**trim(res), "seconds": time.time() - t0, "steps": args.ft_steps, "lp_steps": args.lp_steps})
                log(f"{name} {task} finetune labels {labels}: {summary(task, res)} ({time.time() - t0:.0f} s)")
    key = (name, "identity", "frozen", 1.0)
    if key not in done:
        t0 = time.time()
        test_tokens = None if tokens is None else tokens[1]
        rec = tasks.run_recognition(model, test, train, cfg=FitConfig(task="identity", head="cls", steps=args.lp_steps),
                                    tokens=test_tokens)
        q = tasks.run_quality(model, test, tokens=test_tokens)
        add_row(rows_path, key, {"recognition": rec, "quality": q, "seconds": time.time() - t0})
        log(f"{name} identity: verification {100 * rec['cls']['verification']['mean']:.2f}% (cls), "
            f"IQ {100 * q['cls']['iq']:.2f}%")


def summary(task, res):
    return (f"NME {100 * res['subsets']['all']['nme']:.2f}%" if task == "alignment"
            else f"mean F1 {100 * res['mean_f1']:.2f}%")


def ablations(args, train, test, rows_path, done):
    """Returns the measured step times of the two presets at the ablations' batch size."""
    root = Path(args.runs) / "ablations"
    measured = {"mae_s_per_step": step_seconds("mae", args), "pacofr_s_per_step": step_seconds("pacofr", args)}
    measured["measured_step_ratio"] = measured["pacofr_s_per_step"] / measured["mae_s_per_step"]
    log(f"measured step times: {measured}")
    for variant, change in ABLATIONS.items():
        key = (f"ablation: {variant}", "alignment", "linear", 0.01)
        if key in done:
            continue
        slug = variant.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "")
        run = root / slug
        sec = step_seconds("pacofr", args, **change)
        steps = max(20, int(args.ablation_seconds / sec))
        extra = dict(change)
        extra.setdefault("incubation_steps", max(1, steps // 5))  # one fifth of a short run, unless ablated
        extra["warmup_steps"] = max(1, steps // 20)
        log(f"ablation {variant}: {sec:.3f} s/step -> {steps} steps")
        if not has_final(run, steps):
            pacofr.pretrain(pretrain_config("pacofr", steps, run, args, **extra), progress=False,
                            resume=(run / "checkpoints").is_dir())
        model = pacofr.load_model(run)
        enc = encoder_of(model)
        few = train["images"][:tasks.label_budget(len(train["images"]), 0.01)]
        tokens = (encode(enc, few), encode(enc, test["images"]))
        cfg_a = FitConfig(task="alignment", head="heatmap", steps=args.lp_steps, batch_size=args.batch_size_down)
        cfg_p = FitConfig(task="parsing", head="linear", steps=args.lp_steps, batch_size=args.batch_size_down)
        ra, _ = tasks.run_alignment(model, train, test, cfg_a, 0.01, tokens=tokens)
        rp, _ = tasks.run_parsing(model, train, test, cfg_p, 0.01, tokens=tokens)
        q = tasks.run_quality(model, test, pools=("cls",))
        add_row(rows_path, key, {"variant": variant, "change": change, "pretrain_steps": steps, "step_seconds": sec,
                                 "nme": ra["subsets"]["all"]["nme"], "mean_f1": rp["mean_f1"], "iq": q["cls"]["iq"]})
        log(f"ablation {variant}: NME {100 * ra['subsets']['all']['nme']:.2f}%, F1 {100 * rp['mean_f1']:.2f}%")
    return measured


def write_tables(rows_path, out, meta):
    """tables.md and the figures (CED, F1 bars, ROC) from rows.jsonl -> the tables' path."""
    rows = [json.loads(line) for line in open(rows_path) if line.strip()]
    by = {tuple(r["key"]): r for r in rows}
    encoders = [e for e in ("scratch", "mae", "pacofr") if any(k[0] == e for k in by)]
    labels = sorted({k[3] for k in by if k[1] in ("alignment", "parsing") and not k[0].startswith("ablation")})
    md = [f"Protocol synthface-v1, {MODEL}. {json.dumps(meta)}\n"]
    md += _task_tables(by, encoders, labels) + _identity_tables(by, encoders)
    (out / "tables.md").write_text("\n".join(md) + "\n")
    _figures(by, encoders, labels, out)
    return out / "tables.md"


def _task_tables(by, encoders, labels):
    """Markdown sections: landmarks and parsing per mode and label budget, NME per subset."""
    md = []
    for mode in ("linear", "finetune"):
        t = []
        mode_labels = [lab for lab in labels if any(k[2] == mode and k[3] == lab for k in by)]
        for e in encoders:
            row = {"encoder": e}
            for lab in mode_labels:
                a, p = by.get((e, "alignment", mode, lab)), by.get((e, "parsing", mode, lab))
                pct = f"{100 * lab:g}%"
                row[f"NME % @{pct}"] = 100 * a["subsets"]["all"]["nme"] if a else float("nan")
                row[f"FR@0.1 % @{pct}"] = 100 * a["subsets"]["all"]["fr"] if a else float("nan")
                row[f"AUC@0.1 % @{pct}"] = 100 * a["subsets"]["all"]["auc"] if a else float("nan")
                row[f"parsing F1 % @{pct}"] = 100 * p["mean_f1"] if p else float("nan")
            t.append(row)
        if t:
            md.append(f"\n### {'Linear probe' if mode == 'linear' else 'Fine-tuning'}\n\n"
                      + report.markdown_table(t, list(t[0])))
    for mode in ("linear", "finetune"):
        for lab in labels:
            t = []
            for e in encoders:
                a = by.get((e, "alignment", mode, lab))
                if a:
                    t.append({"encoder": e, **{f"{s} NME %": 100 * v["nme"] for s, v in a["subsets"].items()}})
            if t:
                md.append(f"\n### NME per subset ({mode}, {100 * lab:g}% "
                          "labels)\n\n" + report.markdown_table(t, list(t[0])))
    return md


def _identity_tables(by, encoders):
    """Markdown sections: identity and representation quality, then the ablations."""
    md, t = [], []
    for e in encoders:
        r = by.get((e, "identity", "frozen", 1.0))
        if r:
            for pool in ("cls", "mean"):
                v, q = r["recognition"][pool], r["quality"][pool]
                t.append({"encoder": e, "embedding": pool, "verification %": 100 * v["verification"]["mean"],
                          "± std": 100 * v["verification"]["std"],
                          "TAR@FAR1e-2 %": 100 * v["verification"]["tar_at_far"]["0.01"],
                          "kNN top-1 %": 100 * v["knn_top1"], "id probe top-1 %": 100 * v["linear_probe_top1"],
                          "consistency %": 100 * q["consistency"],
                          "norm. eff. rank %": 100 * q["normalized_effective_rank"],
                          "IQ %": 100 * q["iq"]})
    if t:
        md.append("\n### Identity and representation quality (frozen "
                  "encoder)\n\n" + report.markdown_table(t, list(t[0])))
    t = [{"variant": r["variant"], "pre-train steps": r["pretrain_steps"], "s/step": r["step_seconds"],
          "NME % @1% (linear)": 100 * r["nme"], "parsing F1 % @1% (linear)": 100 * r["mean_f1"], "IQ %": 100 * r["iq"]}
         for k, r in by.items() if k[0].startswith("ablation")]
    if t:
        md.append("\n### Ablations (equal wall-clock per variant, linear probes at 1% labels)\n\n"
                  + report.markdown_table(t, list(t[0]), floatfmt=".3g"))
    return md


def _figures(by, encoders, labels, out):
    """CED at the smallest label budget (fine-tuned when present) and the largest, F1 bars, ROC."""
    lab = labels[0] if labels else None
    for mode in ("finetune", "linear"):
        curves = {e: np.asarray(by[(e, "alignment", mode, lab)]["per_image_nme"], np.float64)
                  for e in encoders if (e, "alignment", mode, lab) in by}
        if curves:
            report.plot_ced(curves, 0.1, out / f"ced_{mode}_{100 * lab:g}pct.png",
                            title=f"CED, {mode}, {100 * lab:g}% labels")
            report.plot_ced(curves, 0.5, out / f"ced_{mode}_{100 * lab:g}pct_wide.png",
                            title=f"CED up to 50% NME (AUC/FR at 0.5), {mode}, {100 * lab:g}% labels")
    if labels:
        top = labels[-1]
        curves = {e: np.asarray(by[(e, "alignment", "linear", top)]["per_image_nme"], np.float64)
                  for e in encoders if (e, "alignment", "linear", top) in by}
        if curves:
            report.plot_ced(curves, 0.1, out / f"ced_linear_{100 * top:g}pct.png",
                            title=f"CED, linear, {100 * top:g}% labels")
        bars = {e: np.asarray(by[(e, "parsing", "linear", lab)]["per_class"], np.float64)
                for e in encoders if (e, "parsing", "linear", lab) in by}
        if bars:
            from pacofr.eval.parsing import LAPA_CLASSES
            report.plot_f1_bars(bars, LAPA_CLASSES, out / f"f1_linear_{100 * lab:g}pct.png")
    roc = {e: (by[(e, "identity", "frozen", 1.0)]["recognition"]["cls"]["verification"]["fpr"],
               by[(e, "identity", "frozen", 1.0)]["recognition"]["cls"]["verification"]["tpr"])
           for e in encoders if (e, "identity", "frozen", 1.0) in by}
    if roc:
        report.plot_roc(roc, out / "roc.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/experiments/synthface_v1")
    p.add_argument("--runs", default="runs/synthface_v1", help="where pre-training runs go")
    p.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER",
                   help="reuse a pre-training run (pacofr, mae)")
    p.add_argument("--pretrain-steps", type=int, default=5000)
    p.add_argument("--mae-step-ratio", type=float, default=0.0, help="PaCo-FR / MAE step time; 0: measure")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--test-images", type=int, default=500)
    p.add_argument("--labels", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--lp-steps", type=int, default=200, help="linear-probe steps")
    p.add_argument("--ft-steps", type=int, default=100, help="fine-tuning steps (after the linear probe: LP-FT)")
    p.add_argument("--ft-labels", type=float, nargs="+", default=[0.01],
                   help="label fractions that are also fine-tuned")
    p.add_argument("--batch-size-down", type=int, default=32, help="downstream batch size")
    p.add_argument("--encoders", nargs="+", default=["scratch", "pacofr", "mae"])
    p.add_argument("--ablations", action="store_true")
    p.add_argument("--ablation-seconds", type=float, default=150)
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        pacofr.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    runs = {"pacofr": str(Path(args.runs) / "pacofr"), "mae": str(Path(args.runs) / "mae")}
    for item in args.run:
        name, _, folder = item.partition("=")
        runs[name] = folder
    meta = {"train_images": args.train_images, "test_images": args.test_images, "lp_steps": args.lp_steps,
            "ft_steps": args.ft_steps, "ft_labels": args.ft_labels, "cpu": pacofr.build_info()["isa"],
            "threads": pacofr.get_num_threads()}
    if not args.tables_only:
        if {"pacofr", "mae"} & set(args.encoders):
            meta.update(pretrain_main(args, runs))
        train = tasks.synthface_split("train", args.train_images)
        test = tasks.synthface_split("test", args.test_images)
        done = done_keys(rows_path)
        for name in args.encoders:
            model = load_encoder("scratch" if name == "scratch" else runs[name], MODEL, args.seed)
            evaluate_encoder(name, model, train, test, args, rows_path, done)
        if args.ablations:
            meta.update(ablations(args, train, test, rows_path, done))
        old = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
        meta = {**old, **meta}
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    elif (out / "meta.json").exists():
        meta = json.loads((out / "meta.json").read_text())
    log(f"tables: {write_tables(rows_path, out, meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
