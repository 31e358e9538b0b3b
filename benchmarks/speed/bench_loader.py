"""Loader throughput (images/s) beside what a training step consumes, in one run.

    python benchmarks/speed/bench_loader.py [--size 112] [--batch 64] [--images 512]

Times, at 2 threads: SynthFace rendering alone (images/s, median of 3 passes); the Loader over
SynthFace (render, augment, normalise, prefetch); the Loader over a folder of JPEG face-sized
images (random content: decoding cost is what matters); and one pacofr MAE step of
pacofr_vit_tiny_p8_112 on a batch of the same size.
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import pacofr
from pacofr.data import SynthFace
from pacofr.data.augment import AugmentConfig
from pacofr.data.datasets import ImageFolder
from pacofr.data.loader import Loader


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    pacofr.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    ds = SynthFace(seed=0, size=args.size, num_images=100000)
    ds.render_batch(range(64))
    times = []
    for k in range(3):
        idx = range(1000 + k * args.images, 1000 + (k + 1) * args.images)
        t = time.perf_counter()
        ds.render_batch(idx)
        times.append(time.perf_counter() - t)
    render_rate = args.images / np.median(times)
    loader = Loader(SynthFace(seed=1, size=args.size, num_images=args.images), args.batch, augment=AugmentConfig(),
                    prefetch=2)
    t = time.perf_counter()
    n = sum(len(b["indices"]) for b in loader)
    synth_rate = n / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 256, (160, 140, 3), dtype=np.uint8)).save(Path(tmp) / f"{i:05d}.jpg", quality=90)
        loader = Loader(ImageFolder(tmp, args.size), args.batch, augment=AugmentConfig(), prefetch=2)
        list(loader)  # warm the page cache
        t = time.perf_counter()
        n = sum(len(b["indices"]) for b in loader)
        load_rate = n / (time.perf_counter() - t)
    model = pacofr.create_model("pacofr_vit_tiny_p8_112")
    images = rng.standard_normal((args.batch, 3, 112, 112)).astype(np.float32)
    ids = np.stack([rng.permutation(196)[:49] for _ in range(args.batch)]).astype(np.int64)
    opt = pacofr.AdamW(model, lr=1e-4)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        model.zero_grad()
        model.forward(images, ids)
        model.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    step_rate = args.batch / np.median(times[1:])
    print(f"| SynthFace render_batch at {args.size} px, {args.threads} threads | {render_rate:.0f} images/s |")
    print(f"| loader over SynthFace (render, augment, normalise) | {synth_rate:.0f} images/s |")
    print(f"| loader (JPEG decode, centre crop, augment, normalise), {args.threads} threads | {load_rate:.0f} images/s |")
    print(f"| MAE step, pacofr_vit_tiny_p8_112 fp32, batch {args.batch} | {step_rate:.1f} images/s |")
    print(f"| SynthFace loader / step | {synth_rate / step_rate:.0f}x |")
    print(f"| JPEG loader / step | {load_rate / step_rate:.0f}x |")


if __name__ == "__main__":
    main()
