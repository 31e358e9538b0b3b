"""``pacofr eval``: protocol ``synthface-v1``, a preset of the one driver
(``protocol.evaluate``), with one encoder through the SynthFace benchmarks (and optionally
public landmark files, LaPa and annotated photos) and its report: ``eval.json`` (the results
nested by task), ``eval.md`` and PNG figures (CED curve, per-class F1 bars, ROC, landmark and
parsing overlays)."""
from pathlib import Path

from ..checkpoint import load_model
from ..data.formats import read_lapa
from ..model import create_model
from . import metrics, protocol as proto, report, tasks
from .finetune import FitConfig, fit
from .parsing import LAPA_CLASSES, per_class_table
from .photos import lapa_data, score_lapa, score_photos

ALL_TASKS = ("alignment", "parsing", "recognition", "quality")


def load_encoder(spec, model_name="pacofr_vit_tiny_p8_112", seed=0):
    """A model from ``spec``: "scratch" (MAE's random initialisation of ``model_name``), a
    pre-training run folder (its latest checkpoint) or a saved model folder."""
    if spec == "scratch":
        return create_model(model_name, seed=seed, encoder_only=True)
    return load_model(spec)


def preset(which=ALL_TASKS, mode="linear", head="heatmap", parsing_head="linear", labels=1.0, train_images=2000,
           test_images=500, steps=300, batch_size=32, lr=0.0, layer_decay=0.75, seed=0, normalizer="inter_ocular",
           split="test"):
    """The ``synthface-v1`` Protocol of ``pacofr eval``'s options: one label budget, one mode
    (``finetune``: LP-FT from the budget's linear probe), every head ``steps`` long."""
    unknown = set(which) - set(ALL_TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {ALL_TASKS}")
    if mode not in ("linear", "finetune"):
        raise ValueError(f"mode must be 'linear' or 'finetune', got {mode!r}")
    return proto.Protocol.preset(
        "synthface-v1", split=_scored_split(split), labels=(labels,), tasks=tuple(t for t in ALL_TASKS if t in which),
        train_images=train_images, eval_images=test_images, probe_steps=steps, parsing_probe_steps=steps,
        probe_lr=lr if mode == "linear" else 0.0, finetune_labels=(labels,) if mode == "finetune" else (),
        finetune_steps=steps, finetune_lr=lr, batch_size=batch_size, seed=seed, head=head, parsing_head=parsing_head,
        layer_decay=layer_decay, normalizer=normalizer)


def evaluate(model, which=ALL_TASKS, mode="linear", head="heatmap", parsing_head="linear", labels=1.0,
             train_images=2000, test_images=500, steps=300, batch_size=32, lr=0.0, layer_decay=0.75, seed=0,
             photos=None, progress=False, train_data=None, test_data=None, normalizer="inter_ocular", lapa=None,
             split="test"):
    """Run the named tasks on SynthFace ``synthface-v1`` splits at the model's image size.
    photos: records (``image``, 68-point ``landmarks``) to score the trained alignment and
    parsing heads on real images too. train_data / test_data: landmark data sets in a public
    format (``tasks.landmark_data``) that replace SynthFace for the alignment task. lapa: a LaPa
    root whose ``train`` split trains the parsing head and whose ``test`` split is scored at the
    photos' own resolution (``photos.score_lapa``), in place of SynthFace. split: the SynthFace
    split scored, "test" (final numbers) or "val" (synthface-v2's split for every choice). Returns
    (results, artefacts for the figures; ``artefacts["fitted"]`` holds the trained heads)."""
    p = preset(which, mode, head, parsing_head, labels, train_images, test_images, steps, batch_size, lr,
               layer_decay, seed, normalizer, split)
    size = model.config.img_size
    results = {"protocol": p.name, "split": split, "image_size": size, "train_images": train_images,
               "test_images": test_images, "labels": labels, "mode": mode}
    driven = tuple(t for t in p.tasks if not (t == "parsing" and lapa))
    run = {"results": {}, "fitted": {}, "data": {}}
    if driven:
        run = proto.evaluate(model, proto.Protocol(**{**p.to_dict(), "tasks": driven}), progress=progress,
                             details=True, data=_landmark_sets(p, size, train_data, test_data))
    art = {"test": run["data"].get("eval"), "fitted": {}}
    prefix = {t: f"{t}/{mode}/{100 * labels:g}%" for t in ("alignment", "parsing")}
    if "alignment" in driven:
        res = run["results"][prefix["alignment"]]
        res["data"] = {"train": str(train_data or "synthface-v1 train"), "test": str(test_data or "synthface-v1 test")}
        art["alignment"], art["alignment_test"] = res, run["data"]["alignment"][1]
        art["fitted"]["alignment"] = run["fitted"][prefix["alignment"]]
        results["alignment"] = {k: v for k, v in res.items() if k != "pred"}
    if "parsing" in p.tasks and lapa:
        cfg = FitConfig(task="parsing", head=parsing_head, mode=mode, steps=steps, batch_size=batch_size, lr=lr,
                        layer_decay=layer_decay, seed=seed, probe_steps=steps if mode == "finetune" else 0)
        results["parsing"], art["fitted"]["parsing"] = _lapa_parsing(model, lapa, cfg, train_images, labels, progress)
    elif "parsing" in p.tasks:
        res = art["parsing"] = run["results"][prefix["parsing"]]
        art["fitted"]["parsing"] = run["fitted"][prefix["parsing"]]
        results["parsing"] = {k: v for k, v in res.items() if k not in ("pred", "confusion")}
        results["parsing"]["confusion"] = res["confusion"]
    results.update({t: run["results"][t] for t in ("recognition", "quality") if t in run["results"]})
    if photos:
        res = art["photos"] = score_photos(art["fitted"].get("alignment"), art["fitted"].get("parsing"), photos)
        results["photos"] = {k: v for k, v in res.items() if k != "pred"}
    return results, art


def _landmark_sets(p, size, train_data, test_data):
    """The alignment task's (train, test) when public landmark files replace a SynthFace split, else None."""
    if not (train_data or test_data):
        return None
    train, test = proto.split_data(p, size)
    return {"alignment": (tasks.landmark_data(train_data, size) if train_data else train,
                          tasks.landmark_data(test_data, size) if test_data else test)}


def _scored_split(split):
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    return split


def _lapa_parsing(model, lapa, cfg, train_images, labels, progress):
    """The parsing head trained on LaPa's train split, scored on its test split at the photos'
    resolution -> (results, the fitted head)."""
    tr = lapa_data(lapa, "train", model.config.img_size, limit=train_images)
    k = tasks.label_budget(len(tr["images"]), labels)
    fitted = fit(model, tr["images"][:k], tr["parsing"][:k], cfg, num_outputs=11, progress=progress)
    res = score_lapa(fitted, read_lapa(lapa, "test"))
    return {**res, "data": str(lapa), "train_images": k, "config": cfg.__dict__}, fitted


def tables(results):
    """Markdown tables of one evaluate() result."""
    out = {}
    if "alignment" in results:
        shown = {f"{m.label} %" if m.scale == 100 else m.label: m for m in metrics.of_task("alignment")}
        rows = [{"subset": name, "images": r["count"], **{c: m.scale * r[m.name] for c, m in shown.items()}}
                for name, r in results["alignment"]["subsets"].items()]
        p = results["alignment"]["protocol"]
        out[f"Face alignment (NME {p['normalizer']}, {p['points']} points, test: "
            f"{results['alignment']['data']['test']})"] = report.markdown_table(rows, ["subset", "images", *shown])
    if "parsing" in results:
        out["Face parsing (LaPa-11 F1, one confusion matrix)"] = per_class_table(results["parsing"], LAPA_CLASSES)
    if "recognition" in results:
        rows = []
        for pool in ("cls", "mean"):
            r = results["recognition"].get(pool)
            if r:
                v = r["verification"]
                rows.append({"embedding": pool, "verification acc %": 100 * v["mean"], "± std": 100 * v["std"],
                             "TAR@FAR1e-3 %": 100 * v["tar_at_far"][1e-3], "TAR@FAR1e-2 %": 100 * v["tar_at_far"][1e-2],
                             "kNN top-1 %": 100 * r["knn_top1"],
                             "linear probe top-1 %": 100 * r.get("linear_probe_top1", float("nan"))})
        out["Verification (10-fold pairs, cosine, no flip) and identification"] = report.markdown_table(
            rows, list(rows[0]) if rows else [])
    if "quality" in results:
        rows = [{"embedding": pool, "consistency %": 100 * q["consistency"], "eff. rank": q["effective_rank"],
                 "norm. eff. rank %": 100 * q["normalized_effective_rank"], "IQ %": 100 * q["iq"]}
                for pool, q in results["quality"].items()]
        out["Representation quality (k = 10, alpha = 0.5, centred)"] = report.markdown_table(
            rows, ["embedding", "consistency %", "eff. rank", "norm. eff. rank %", "IQ %"])
    if "photos" in results:
        p = results["photos"]
        rows = [{"images": p["images"], "NME % (inter-ocular, original pixels)": 100 * p.get("nme", float("nan")),
                 "parsing mean F1 % (vs landmark polygons)": 100 * p["parsing"]["mean_f1"] if "parsing" in p
                 else float("nan")}]
        out["Real photos, end to end"] = report.markdown_table(rows, list(rows[0]))
    return out


def write(results, art, out_dir, name="eval", label="encoder"):
    """Write the JSON, the Markdown tables and the figures into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = report.write_report(out, name, results, tables(results))
    test = art["test"]
    if "alignment" in art:
        a = art["alignment"]
        paths["ced"] = report.plot_ced({label: a["per_image_nme"]}, 0.1, out / "ced.png")
        at = art.get("alignment_test", test)
        paths["landmarks"] = report.plot_landmarks(at["images_u8"][:16], a["pred"][:16], at["landmarks"][:16],
                                                   out / "landmarks.png")
    if "parsing" in art:
        p = art["parsing"]
        paths["f1"] = report.plot_f1_bars({label: p["per_class"]}, LAPA_CLASSES, out / "f1.png")
        paths["parsing"] = report.plot_parsing(test["images_u8"][:8], p["pred"][:8], test["parsing"][:8],
                                               out / "parsing.png")
    if "recognition" in results:
        curves = {f"{label} ({pool})": (r["verification"]["fpr"], r["verification"]["tpr"])
                  for pool, r in results["recognition"].items() if isinstance(r, dict) and "verification" in r}
        paths["roc"] = report.plot_roc(curves, out / "roc.png")
    return {k: str(v) for k, v in paths.items()}
