"""The training loop against its isolated step: what `pacofr pretrain` adds to a step.

    python benchmarks/speed/bench_loop.py                          # PaCo-FR, tiny, batch 64, auto dtype
    python benchmarks/speed/bench_loop.py --preset mae --dtype fp32 --rounds 4 --block 5 --save
    python benchmarks/speed/bench_loop.py --quick                  # pacofr_test_tiny, batch 8, 1 x 2 steps

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

Before timing, the loop's first step is checked: its batch must be the loader's first batch
(read again, directly), and its loss terms finite and equal to those of the isolated step on
that batch in a second run set up alike (same weights, same step).
"""
import importlib
import itertools
import tempfile
import time

import numpy as np

from pacofr.distributed import World
from pacofr.testing import bench
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


def _config(args):
    return make_config(args.preset, model=args.model, batch_size=args.batch, steps=10 ** 6,
                       out=tempfile.mkdtemp(prefix="bench_loop_"), dtype=args.dtype, preview_every=0,
                       log_every=args.log_every, checkpoint_every=args.checkpoint_every)


def check_first_step(rep, args, r, loop_step, last):
    """The loop's first step (taken here) against the loader read directly and against the
    isolated step on the same batch in a second run set up alike."""
    direct = next(iter(r.loader.iterate(0, 0)))
    loop_step()
    got = last["batch"]
    rep.require("loop batch shape and dtype", got["images"].shape == direct["images"].shape
                and got["images"].dtype == direct["images"].dtype, f"{got['images'].shape} {got['images'].dtype}")
    for k in ("indices", "images"):
        rep.require(f"loop batch {k} = loader's", np.array_equal(got[k], direct[k]), f"{got[k].shape}")
    twin = driver._setup(_config(args), World())
    terms = train_one_step(twin.paco, twin.optimizer, itertools.repeat(direct), twin.pos, twin.cfg)[0]
    for k in sorted(terms):
        if isinstance(terms[k], float) and k in last["terms"]:
            rep.check(f"loop step {k} = isolated step's", last["terms"][k], terms[k], rtol=1e-6, atol=1e-7)
    rep.require("loop step loss finite", bool(np.isfinite(last["terms"]["loss"])), f"{last['terms']['loss']:.6g}")


def run(rep, args):
    cfg = _config(args)
    r = driver._setup(cfg, World())
    cfg = r.cfg
    metrics, throughput = log.Metrics(r.out, 0), log.Throughput()
    it = _Timed(batches(r.loader, r.pos))
    times = {"loop": [], "isolated": []}
    parts = {"loader wait": 0.0, "snapshot": 0.0, "after step": 0.0}
    last = {}

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
        last.update(terms=terms, batch=batch)
        return t3 - t0

    blas = driver._one_blas_thread()  # as pretrain's loop does
    check_first_step(rep, args, r, loop_step, last)
    fixed = itertools.repeat(next(it))

    def isolated_step():
        t0 = time.perf_counter()
        train_one_step(r.paco, r.optimizer, fixed, r.pos, cfg)
        return time.perf_counter() - t0

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
    res = {"loop s/step": bench.median(times["loop"]), "isolated s/step": bench.median(times["isolated"]),
           "loop mean s/step": sum(times["loop"]) / n, "isolated mean s/step": sum(times["isolated"]) / n,
           **{f"{k} s/step": v / n for k, v in parts.items()}}
    return res, times, r.model.dtype


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--preset", default="pacofr", choices=["pacofr", "mae"])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=200)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch, args.rounds, args.block, args.log_every = "pacofr_test_tiny", 8, 1, 2, 2
    rep = bench.Report("bench_loop", args, dtype=args.dtype)
    res, times, dtype = run(rep, args)
    rep.print(f"\n{args.preset}, {args.model}, batch {args.batch}, {dtype}, {args.threads} threads, "
              f"{args.rounds} x {args.block} steps each\n")
    cells = [[k, f"{v:.4f}"] for k, v in res.items()]
    ratios = {"loop images/s / isolated images/s (medians)": res["isolated s/step"] / res["loop s/step"],
              "same, means": res["isolated mean s/step"] / res["loop mean s/step"]}
    cells += [[k, f"{v:.3f}"] for k, v in ratios.items()]
    rep.table(["measure", "value"], cells)
    for k, v in {**res, **ratios}.items():
        rep.row(preset=args.preset, model=args.model, batch=args.batch, dtype=dtype, measure=k, value=v)
    rep.row(preset=args.preset, model=args.model, batch=args.batch, dtype=dtype, measure="all s/step", value=times)
    rep.finish()


if __name__ == "__main__":
    main()
