"""The training loop against its isolated step: what `pacofr pretrain` adds to a step.

    python benchmarks/speed/bench_loop.py                          # PaCo-FR, tiny, batch 64, auto dtype
    python benchmarks/speed/bench_loop.py --preset mae --dtype fp32 --rounds 4 --block 5

One process, one run set up as `pacofr pretrain` sets it up (SynthFace loader with its
threads, the model, AdamW, the PaCo-FR state). Blocks of `--block` steps alternate:
  loop:     the pretrain loop's body: a snapshot for Ctrl-C, a step on the loader's next
            batch, then logging (metrics.jsonl + TensorBoard at log_every) and checkpoints
            at checkpoint_every, exactly as pretrain runs them;
  isolated: the same step on one batch taken from the loader beforehand (no loader, no
            logging, no snapshot).
Both run with NumPy's BLAS held to one thread, as pretrain's loop holds it.
Figures are medians over the blocks' steps; the loop's extra time is split into waiting
for the loader, the snapshot and what follows the step; one checkpoint is timed after the
blocks and shown per step at checkpoint_every.
"""
import argparse
import importlib
import itertools
import json
import statistics
import tempfile
import time

import pacofr
from pacofr.train import log, make_config
from pacofr.train.engine import batches, train_one_step

driver = importlib.import_module("pacofr.train.pretrain")  # the module (pacofr.train.pretrain is also a function)


class _Timed:
    """An iterator wrapper that adds the time spent in next() to self.wait."""

    def __init__(self, it):
        self.it, self.wait = it, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        b = next(self.it)
        self.wait += time.perf_counter() - t
        return b


def run(args):
    out = tempfile.mkdtemp(prefix="bench_loop_")
    cfg = make_config(args.preset, model=args.model, batch_size=args.batch, steps=10 ** 6, out=out,
                      dtype=args.dtype, preview_every=0, log_every=args.log_every,
                      checkpoint_every=args.checkpoint_every)
    r = driver._setup(cfg)
    metrics, throughput = log.Metrics(r.out, 0), log.Throughput()
    it = _Timed(batches(r.loader, r.pos))
    fixed = itertools.repeat(next(it))
    times = {"loop": [], "isolated": []}
    parts = {"loader wait": 0.0, "snapshot": 0.0, "after step": 0.0}

    def loop_step():
        t0 = time.perf_counter()
        r.paco.snapshot()
        t1 = time.perf_counter()
        wait0 = it.wait
        terms, seen, batch, lr, gnorm = train_one_step(r.paco, r.optimizer, it, r.pos, cfg)
        throughput.add(seen)
        t2 = time.perf_counter()
        driver._after_step(r, metrics, throughput, None, batch, None, (terms, lr, gnorm))
        t3 = time.perf_counter()
        parts["snapshot"] += t1 - t0
        parts["loader wait"] += it.wait - wait0
        parts["after step"] += t3 - t2
        return t3 - t0

    def isolated_step():
        t0 = time.perf_counter()
        train_one_step(r.paco, r.optimizer, fixed, r.pos, cfg)
        return time.perf_counter() - t0

    blas = driver._one_blas_thread()  # as pretrain's loop does
    isolated_step(), loop_step()  # warm-up
    parts.update({k: 0.0 for k in parts})
    for _ in range(args.rounds):
        for name, fn in (("loop", loop_step), ("isolated", isolated_step)):
            times[name] += [fn() for _ in range(args.block)]
    blas.__exit__(None, None, None)
    t = time.perf_counter()
    driver._save(r)  # one checkpoint, as pretrain writes every checkpoint_every steps
    parts["checkpoint, amortised"] = (time.perf_counter() - t) / cfg.checkpoint_every * len(times["loop"])
    it.it.close()
    metrics.close()
    n = len(times["loop"])
    return {"loop s/step": statistics.median(times["loop"]), "isolated s/step": statistics.median(times["isolated"]),
            "loop mean s/step": sum(times["loop"]) / n, "isolated mean s/step": sum(times["isolated"]) / n,
            **{f"{k} s/step": v / n for k, v in parts.items()}, "dtype": r.model.dtype}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="pacofr", choices=["pacofr", "mae"])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args()
    pacofr.set_num_threads(args.threads)
    res = run(args)
    info = pacofr.build_info()
    print(f"# bench_loop: {args.preset}, {args.model}, batch {args.batch}, {res['dtype']}, {args.threads} threads, "
          f"oneDNN {info['onednn']} ({info['isa']}), {args.rounds} x {args.block} steps each\n")
    print("| measure | value |\n|---|---|")
    for k, v in res.items():
        if k != "dtype":
            print(f"| {k} | {v:.4f} |")
    print(f"| loop images/s / isolated images/s (medians) | {res['isolated s/step'] / res['loop s/step']:.3f} |")
    print(f"| same, means | {res['isolated mean s/step'] / res['loop mean s/step']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": res, "build_info": info}, f, indent=1)


if __name__ == "__main__":
    main()
