"""The ``pacofr`` command line (argparse sub-commands)."""
import argparse
import json
import os
import sys
from pathlib import Path

from . import masking, runtime
from ._io import atomic_write_bytes
from .data import SynthFace
from .data.datasets import LandmarkFaces
from .data.formats import list_images
from .distributed import world
from .data.synth.preview import save_grid
from .eval import benchmark
from .runtime import build_info
from .train import make_config, pretrain


def cmd_info(args):
    if args.threads:
        runtime.set_num_threads(args.threads)
    print(json.dumps(build_info(), indent=2))
    return 0


def cmd_synthface(args):
    if args.threads:
        runtime.set_num_threads(args.threads)
    num_images = max(10000, args.start + args.num)
    if args.shards:                     # any size: SynthFace renders at 64+ and downscales below
        from .data.shards import write_shards
        from .data.synth import synthface_at
        ds = synthface_at(args.size, seed=args.seed, num_images=num_images)
        n = write_shards(args.shards, _synth_faces(ds, args.start, args.num, args.seed), args.size,
                         args.shard_faces, made_by="pacofr synthface", seed=args.seed)
        print(json.dumps({"out": args.shards, "faces": n}))
        return 0
    ds = SynthFace(seed=args.seed, size=args.size, num_images=num_images)
    save_grid(ds.render_batch(range(args.start, args.start + args.num)), args.out, columns=args.columns)
    print(args.out)
    return 0


def _synth_faces(ds, start, num, seed, chunk=256):
    from tqdm import tqdm
    with tqdm(total=num, unit="face", desc="synthface") as bar:
        for a in range(start, start + num, chunk):
            images = ds.render_batch(range(a, min(a + chunk, start + num)))["image"]
            for k, image in enumerate(images):
                yield image, {"source": "synthface", "seed": seed, "index": a + k}
            bar.update(len(images))


def cmd_prepare(args):
    from .data.prepare import PrepareOptions, prepare
    try:
        opts = PrepareOptions(size=args.size, faces=args.faces, min_size=args.min_size, min_score=args.min_score,
                              margin=args.margin, quality=args.quality, shard_photos=args.shard_photos)
        summary = prepare(args.src, args.out, opts, workers=args.workers, progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        print(f"pacofr prepare: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


def cmd_pretrain(args):
    overrides = {k: getattr(args, k) for k in ("model", "steps", "batch_size", "seed", "out", "data", "dtype",
                                                "threads", "accum_steps", "lr", "masking", "log_every",
                                                "checkpoint_every", "preview_every")}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value  # a bare string, e.g. sc_mode=region
    try:
        cfg = make_config(args.preset, args.config, **overrides)
        result = pretrain(cfg, resume=args.resume, progress=not args.no_progress)
    except (ValueError, TypeError, FileNotFoundError, ArithmeticError, ImportError) as exc:  # NonFiniteLoss too
        print(f"pacofr pretrain: {exc}", file=sys.stderr)
        return 2
    if world().is_root:                 # one line per job, not per rank
        print(json.dumps({"out": str(result.out), "step": result.step, **result.metrics}))
    return 0


def cmd_sweep(args):
    from .sweep import load_sweep, run_sweep
    if args.threads:
        runtime.set_num_threads(args.threads)
    try:
        sweep = load_sweep(args.file)
        out = args.out or str(Path("sweeps") / Path(args.file).stem)
        run_sweep(sweep, out, progress=not args.no_progress, tables_only=args.tables_only,
                  arms=args.arms, seeds=args.seeds)
        result = {"out": out, "table": str(Path(out) / "table.md")}
        if args.compare:
            result["compare"] = _compare_sweeps(out, args.compare, args.rename)
    except (ValueError, TypeError, FileNotFoundError, ArithmeticError, ImportError) as exc:
        print(f"pacofr sweep: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _compare_sweeps(out, other, renames):
    """OUT/compare.md: the arms both sweeps ran, ranked in each (pacofr.sweep.compare)."""
    from .sweep import compare
    rename = {}
    for item in renames or ():
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ValueError(f"--rename takes OTHER_ARM=ARM, got {item!r}")
        rename[old] = new
    res = compare.compare(compare.load_summary(out), compare.load_summary(other), rename=rename)
    text = compare.compare_markdown(res, Path(out).name, Path(other).name)
    path = Path(out) / "compare.md"
    atomic_write_bytes(path, text.encode())
    print(text)
    return str(path)


def _annotated_photos(folder):
    """The photos of an --photos folder that have 68-point .pts files beside them (scored),
    or None when none has."""
    if not any(p.with_suffix(".pts").exists() for p in list_images(folder)):
        return None
    records = LandmarkFaces.from_pts_folder(folder).records
    if any(len(r["landmarks"]) != 68 for r in records):
        raise ValueError(f"{folder}: the .pts files of --photos must have 68 points")
    return records


def cmd_eval(args):
    if args.threads:
        runtime.set_num_threads(args.threads)
    which = benchmark.ALL_TASKS if args.task == "all" else (args.task,)
    photos = None
    try:
        if args.photos:
            from .data.detect import backend
            backend()                   # the [detect] extra, before the long part
            photos = _annotated_photos(args.photos)
        model = benchmark.load_encoder(args.encoder, args.model, args.seed)
        results, art = benchmark.evaluate(model, which, mode=args.mode, head=args.head,
                                          parsing_head=args.parsing_head, labels=args.labels,
                                          train_images=args.train_images, test_images=args.test_images,
                                          steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                          layer_decay=args.layer_decay, seed=args.seed, photos=photos,
                                          progress=not args.no_progress, train_data=args.train_data,
                                          test_data=args.test_data, normalizer=args.normalizer, lapa=args.lapa,
                                          split=args.split)
        results["encoder"] = args.encoder
        if not world().is_root:         # under mpirun every rank holds the same results: rank 0 writes
            return 0
        if args.photos and {"alignment", "parsing"} & set(art["fitted"]):   # each photo's trouble stays its own
            from .eval.inference import predict_folder
            folder = Path(args.out) / "photos"
            summary = predict_folder(args.photos, folder, art["fitted"].get("alignment"), art["fitted"].get("parsing"),
                                     progress=not args.no_progress)
            results["photo_predictions"] = {"folder": str(folder), **summary}
        paths = benchmark.write(results, art, args.out, label=args.encoder if args.encoder == "scratch" else "encoder")
    except BaseException as exc:
        if world().size > 1:            # the other ranks wait in a collective: stop them all
            world().abort(exc)
        if not isinstance(exc, (ValueError, TypeError, FileNotFoundError, ArithmeticError, ImportError)):
            raise
        print(f"pacofr eval: {exc}", file=sys.stderr)
        return 2
    print(open(paths["md"]).read())
    print(json.dumps(paths))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="pacofr", description="PaCo-FR facial representation "
                                "pre-training and evaluation on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print build facts: oneDNN version and ISA, back ends, threads")
    info.add_argument("--threads", type=int, help="set the thread count first")
    info.set_defaults(func=cmd_info)
    _add_synthface(sub)
    _add_prepare(sub)
    _add_pretrain(sub)
    _add_eval(sub)
    _add_sweep(sub)
    return p


def _add_synthface(sub):
    sf = sub.add_parser("synthface", help="render SynthFace faces with their landmarks and parsing maps to a PNG, "
                        "or as pre-training shards (--shards)")
    sf.add_argument("--num", type=int, default=16, help="how many faces (default 16)")
    sf.add_argument("--start", type=int, default=0, help="first image index")
    sf.add_argument("--seed", type=int, default=0)
    sf.add_argument("--size", type=int, default=112)
    sf.add_argument("--columns", type=int, default=8)
    sf.add_argument("--threads", type=int)
    sf.add_argument("--out", default="synthface.png")
    sf.add_argument("--shards", metavar="FOLDER", help="instead of a PNG, write the faces as a pre-training shard "
                    "folder (as pacofr prepare does) for pacofr pretrain --data FOLDER")
    sf.add_argument("--shard-faces", dest="shard_faces", type=int, default=1000, help="faces per shard")
    sf.set_defaults(func=cmd_synthface)


def _add_prepare(sub):
    pp = sub.add_parser("prepare", help="detect and align the faces of a folder of photos into tar shards "
                        "(WebDataset layout) for `pacofr pretrain --data OUT`; resumable (needs pacofr[detect])")
    pp.add_argument("src", help="a folder of photos (walked recursively) or a text file listing photo paths")
    pp.add_argument("out", help="output folder: shard-NNNNNN.tar, manifest.json, skipped.jsonl, logs/")
    pp.add_argument("--size", type=int, default=112, help="crop side in pixels (default 112, the models' input)")
    pp.add_argument("--faces", choices=["largest", "all"], default="largest", help="faces kept per photo")
    pp.add_argument("--min-size", dest="min_size", type=float, default=40.0,
                    help="smallest face box side kept, in photo pixels (default 40)")
    pp.add_argument("--min-score", dest="min_score", type=float, default=-0.5,
                    help="faces scoring >= 0 (dlib's threshold) are kept; a photo with none is searched again "
                    "down to this score (default -0.5, for faces turned away); faces below it are dropped")
    pp.add_argument("--margin", type=float, default=0.0, help="zoom out: the face fills 1 / (1 + margin) of "
                    "the canonical crop (default 0: the crop pacofr aligns faces to)")
    pp.add_argument("--quality", type=int, default=95, help="JPEG quality of the crops")
    pp.add_argument("--shard-photos", dest="shard_photos", type=int, default=1000, help="photos per shard at most")
    pp.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="processes (default: one per CPU this process may use)")
    pp.add_argument("--no-progress", action="store_true")
    pp.set_defaults(func=cmd_prepare)


def _add_pretrain(sub):
    pt = sub.add_parser("pretrain", help="PaCo-FR (or MAE) pre-training; with no arguments, PaCo-FR on SynthFace faces")
    pt.add_argument("--preset", choices=["pacofr", "mae"], default="pacofr")
    pt.add_argument("--model", help="model preset, e.g. pacofr_vit_tiny_p8_112 (default)")
    pt.add_argument("--steps", type=int)
    pt.add_argument("--batch-size", dest="batch_size", type=int)
    pt.add_argument("--accum-steps", dest="accum_steps", type=int, help="micro-batches per optimizer step")
    pt.add_argument("--lr", type=float, help="peak learning rate (default 4e-3 * batch / 256: 5e-4 at batch 32)")
    pt.add_argument("--masking", choices=masking.KINDS)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--data", help="'synthface' (default), a folder of face images (with iBUG .pts beside them: "
                    "aligned, landmark region maps), a COCO keypoint .json or an HRNet .csv")
    pt.add_argument("--dtype", choices=["auto", "fp32", "bf16"],
                    help="auto (default): bf16 where a short calibration shows it faster on this CPU")
    pt.add_argument("--threads", type=int)
    pt.add_argument("--out", help="run folder (metrics.jsonl, checkpoints/, previews/)")
    pt.add_argument("--log-every", dest="log_every", type=int)
    pt.add_argument("--checkpoint-every", dest="checkpoint_every", type=int)
    pt.add_argument("--preview-every", dest="preview_every", type=int)
    pt.add_argument("--config", help="a JSON or YAML file of config fields (pacofr.train.PretrainConfig)")
    pt.add_argument("--set", action="append", metavar="FIELD=VALUE", help="any config field, e.g. --set sc_mode=region")
    pt.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    pt.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    pt.set_defaults(func=cmd_pretrain)


def _add_eval(sub):
    ev = sub.add_parser("eval", help="evaluate an encoder on SynthFace (synthface-v1 splits): landmarks, parsing, "
                        "verification, representation quality; writes eval.json, eval.md and PNG figures")
    ev.add_argument("--encoder", default="scratch", help="a pre-training run folder, a saved model folder, or "
                    "'scratch' (random initialisation; default)")
    ev.add_argument("--model", default="pacofr_vit_tiny_p8_112", help="model preset for --encoder scratch")
    ev.add_argument("--task", choices=["all", "alignment", "parsing", "recognition", "quality"], default="all")
    ev.add_argument("--mode", choices=["linear", "finetune"], default="linear",
                    help="linear probe (frozen encoder) or full fine-tuning with layer-wise lr decay")
    ev.add_argument("--head", choices=["heatmap", "regression"], default="heatmap", help="landmark head")
    ev.add_argument("--parsing-head", dest="parsing_head", choices=["linear", "upsample"], default="linear",
                    help="per-patch linear to p*p*K logits, or the light upsampling head (a 2x coarser linear, "
                    "bilinear up)")
    ev.add_argument("--labels", type=float, default=1.0, help="fraction of the training labels used (e.g. 0.01)")
    ev.add_argument("--train-images", dest="train_images", type=int, default=2000)
    ev.add_argument("--test-images", dest="test_images", type=int, default=500)
    ev.add_argument("--split", choices=["test", "val"], default="test", help="the SynthFace split scored: test "
                    "(final numbers) or val (synthface-v2: make every choice on it, keep test for the end)")
    ev.add_argument("--steps", type=int, default=300, help="head training steps")
    ev.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    ev.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: 2e-2 linear, 5e-4 fine-tune)")
    ev.add_argument("--layer-decay", dest="layer_decay", type=float, default=0.75)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--train-data", dest="train_data", help="landmarks in a public format for the alignment task: "
                    "a COCO keypoint .json, an HRNet .csv or a folder with .pts files (default: SynthFace)")
    ev.add_argument("--test-data", dest="test_data", help="the same for the alignment test set")
    ev.add_argument("--normalizer", choices=["inter_ocular", "inter_pupil"], default="inter_ocular",
                    help="NME normaliser of the alignment task (docs/evaluation.md indices for 68, 98 and 19 points)")
    ev.add_argument("--lapa", help="a LaPa root (train/ and test/ with images, labels, landmarks): the parsing task "
                    "trains on its train split and is scored on its test split at the photos' resolution")
    ev.add_argument("--photos", help="a folder of raw photos: the trained heads predict on every face the detector "
                    "finds (landmarks in the photo's pixels, parsing maps; OUT/photos/, needs pacofr[detect]); photos "
                    "with 68-point .pts files beside them are also scored")
    ev.add_argument("--threads", type=int)
    ev.add_argument("--out", default="eval", help="output folder (default ./eval)")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)


def _add_sweep(sub):
    sw = sub.add_parser("sweep", help="arms x seeds of pre-training at equal compute, each scored by protocol "
                        "synthface-v2; resumable; rows.jsonl and a table with 95%% intervals (pacofr.sweep)")
    sw.add_argument("file", help="a JSON or YAML sweep file (pacofr/sweep/spec.py describes its fields)")
    sw.add_argument("--out", help="output folder (default sweeps/<file name>); a rerun continues it")
    sw.add_argument("--tables-only", dest="tables_only", action="store_true",
                    help="only rewrite the table and figures from the rows so far")
    sw.add_argument("--arm", dest="arms", action="append", metavar="NAME",
                    help="run only this arm's rows now (repeatable; the others stay to do)")
    sw.add_argument("--seed", dest="seeds", action="append", type=int, metavar="SEED",
                    help="run only this seed's rows now (repeatable)")
    sw.add_argument("--compare", metavar="OTHER_OUT",
                    help="then rank the arms both sweeps ran in each (e.g. a proxy against the default scale) "
                         "into OUT/compare.md")
    sw.add_argument("--rename", action="append", metavar="OTHER_ARM=ARM",
                    help="an arm of OTHER_OUT that is ARM here under another name (repeatable)")
    sw.add_argument("--threads", type=int)
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=cmd_sweep)


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
