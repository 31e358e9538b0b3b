"""Loader throughput (images/s) beside what a training step consumes, in one run.

    python benchmarks/speed/bench_loader.py [--size 112] [--batch 64] [--images 512] [--save]
    python benchmarks/speed/bench_loader.py --quick          # 64 images, batch 8, pacofr_test_tiny step

Times, at 2 threads: SynthFace rendering alone (images/s, median of 3 passes); the Loader over
SynthFace (render, augment, normalise, prefetch); the Loader over a folder of JPEG face-sized
images (random content: decoding cost is what matters); and one pacofr MAE step of
pacofr_vit_tiny_p8_112 on a batch of the same size.

Before timing, a Loader batch (no augmentation, no shuffle, prefetch on) must equal the SynthFace
images of the same seed rendered directly and normalised here in NumPy, with the shape (B, 3, S,
S) and dtype float32; the augmented SynthFace and JPEG loaders' first batches must have that
shape, dtype and finite values, and the MAE step's loss must be finite.
"""
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pacofr.config import get_config
from pacofr.data import SynthFace
from pacofr.data.augment import AugmentConfig
from pacofr.data.datasets import ImageFolder
from pacofr.data.loader import IMAGENET_MEAN, IMAGENET_STD, Loader
from pacofr.testing import bench
from pacofr.testing.steps import batch, keep, pacofr_step


def check_batch(rep, what, b, B, S):
    images = b["images"]
    rep.require(f"{what}: images (B, 3, S, S) float32", images.shape == (B, 3, S, S) and images.dtype == np.float32,
                f"{images.shape} {images.dtype}")
    rep.require(f"{what}: images finite", bool(np.isfinite(images).all()))
    rep.require(f"{what}: indices ({B},) int64", b["indices"].shape == (B,) and b["indices"].dtype == np.int64)


def check_loader(rep, args):
    """A plain Loader batch against SynthFace's own rendering of the same seed and indices."""
    B, S = args.batch, args.size
    loader = Loader(SynthFace(seed=1, size=S, num_images=2 * B), B, shuffle=False, prefetch=2)
    got = next(iter(loader))
    want = SynthFace(seed=1, size=S, num_images=2 * B).render_batch(range(B))["image"]
    want = (want.astype(np.float64) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    check_batch(rep, "SynthFace loader", got, B, S)
    rep.check("SynthFace loader indices", got["indices"], np.arange(B), rtol=0, atol=1e-9)
    rep.check("SynthFace loader images = rendered, normalised", got["images"], want.transpose(0, 3, 1, 2),
              rtol=1e-6, atol=1e-5)


def render_rate(args):
    ds = SynthFace(seed=0, size=args.size, num_images=100000)
    ds.render_batch(range(64))
    times = []
    for k in range(3):
        idx = range(1000 + k * args.images, 1000 + (k + 1) * args.images)
        t = time.perf_counter()
        ds.render_batch(idx)
        times.append(time.perf_counter() - t)
    return args.images / bench.median(times)


def loader_rate(rep, what, loader, args, warm=False):
    """Images/s of one pass over loader (after one untimed pass when warm), its first batch checked."""
    first = next(iter(loader))
    check_batch(rep, what, first, args.batch, args.size)
    if warm:
        list(loader)  # warm the page cache
    t = time.perf_counter()
    n = sum(len(b["indices"]) for b in loader)
    return n / (time.perf_counter() - t)


def step_rate(rep, args):
    cfg = get_config(args.model)
    images, ids = batch(cfg, args.batch, keep(cfg))
    step = pacofr_step(args.model, "fp32", images, ids)
    times, losses = [], []
    for _ in range(3):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    rep.require("MAE step losses finite", bool(np.isfinite(losses).all()), " ".join(f"{v:.4g}" for v in losses))
    return args.batch / bench.median(times[1:])


def _times(ratio):
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2f}x"


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112", help="the model of the MAE step")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.batch, args.model = 64, 8, "pacofr_test_tiny"
    rep = bench.Report("bench_loader", args, dtype="fp32")
    check_loader(rep, args)
    rates = {"render": render_rate(args)}
    rates["synth"] = loader_rate(rep, "augmented SynthFace loader", Loader(
        SynthFace(seed=1, size=args.size, num_images=args.images), args.batch, augment=AugmentConfig(), prefetch=2),
        args)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (160, 140, 3), dtype=np.uint8)).save(Path(tmp) / f"{i:05d}.jpg",
                                                                                       quality=90)
        rates["jpeg"] = loader_rate(rep, "JPEG loader", Loader(ImageFolder(tmp, args.size), args.batch,
                                                              augment=AugmentConfig(), prefetch=2), args, warm=True)
    rates["step"] = step_rate(rep, args)
    r, step = rates, rates["step"]
    cells = [(f"SynthFace render_batch at {args.size} px, {args.threads} threads", r["render"],
              f"{r['render']:.0f} images/s"),
             ("loader over SynthFace (render, augment, normalise)", r["synth"], f"{r['synth']:.0f} images/s"),
             (f"loader (JPEG decode, centre crop, augment, normalise), {args.threads} threads", r["jpeg"],
              f"{r['jpeg']:.0f} images/s"),
             (f"MAE step, {args.model} fp32, batch {args.batch}", step, f"{step:.1f} images/s"),
             ("SynthFace loader / step", r["synth"] / step, _times(r["synth"] / step)),
             ("JPEG loader / step", r["jpeg"] / step, _times(r["jpeg"] / step))]
    rep.print("")
    rep.table(["measure", "rate"], [[m, text] for m, _, text in cells])
    for m, v, _ in cells:
        rep.row(measure=m, value=v, unit="x" if "/ step" in m else "images/s", size=args.size, batch=args.batch,
                images=args.images)
    rep.finish()


if __name__ == "__main__":
    main()
