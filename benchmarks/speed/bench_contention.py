"""A training step beside one competing single-thread process, per OpenMP wait setting.

    python benchmarks/speed/bench_contention.py                       # MAE tiny, batch 64, auto dtype
    python benchmarks/speed/bench_contention.py --rounds 3 --steps 4 --save
    python benchmarks/speed/bench_contention.py --quick               # pacofr_test_tiny, batch 8, 1 x 1 step

libgomp reads its wait policy when it loads, so every setting runs in its own worker
process. Each round, every worker times --steps steps alone, then --steps steps while a
`while True: pass` process holds a core, then the competitor is stopped. Figures are medians
over the rounds' steps; the slow-down is (with the competitor) / (alone). An "auto" dtype is
resolved once, in the parent, and given to every worker.

Before timing, every worker's first step (same weights, same batch) must give a finite loss,
equal in every setting to that of "pacofr default" (a wait policy changes no arithmetic). A
worker that dies, or gives no answer within --timeout seconds, is reported and the run goes on.
"""
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from pacofr.testing import bench

SETTINGS = {
    "pacofr default": {},
    "libgomp default (spin ~300k)": {"GOMP_SPINCOUNT": "300000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=5000": {"GOMP_SPINCOUNT": "5000"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
}
WORKER = r"""
import sys, time, pacofr
from pacofr.config import get_config
from pacofr.testing.steps import batch, keep, pacofr_step
pacofr.set_num_threads({threads})
cfg = get_config({model!r})
images, ids = batch(cfg, {batch}, keep(cfg))
dtype = {dtype!r}
step = pacofr_step({model!r}, dtype, images, ids)
loss = step()
print("ready", repr(float(loss)), dtype, flush=True)
for line in sys.stdin:
    t = time.perf_counter(); step(); print(time.perf_counter() - t, flush=True)
"""


class Lost(RuntimeError):
    """A worker died or gave no answer in time."""


class Worker:
    """One setting's process: a thread reads its stdout into a queue, so that every answer can
    wait with a timeout; its stderr goes to a file, whose tail explains a death."""

    def __init__(self, env_extra, args, dtype):
        env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        env.update(env_extra)
        code = WORKER.format(model=args.model, batch=args.batch, dtype=dtype, threads=args.threads)
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True, bufsize=1)
        self.lines, self.timeout = queue.Queue(), args.timeout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # EOF

    def answer(self):
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.stop(kill=True)
            raise Lost(f"no answer in {self.timeout:g} s; stopped") from None
        if line is None:
            code = self.proc.wait(timeout=30)
            self.err.seek(0)
            tail = [ln for ln in self.err.read().splitlines() if ln.strip()][-1:]
            raise Lost(f"died (exit code {code})" + (f": {tail[0][:200]}" if tail else ""))
        return line.split()

    def steps(self, n):
        out = []
        for _ in range(n):
            try:
                self.proc.stdin.write("step\n")
            except OSError:
                pass  # a dead worker: answer() says how it died
            out.append(float(self.answer()[0]))
        return out

    def stop(self, kill=False):
        """End the worker: close its stdin and wait for it, or kill it (a hung one) at once."""
        if self.proc.poll() is None:
            try:
                if kill:
                    raise OSError("kill")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if not self.err.closed:
            self.err.close()


def start(rep, args, dtype, notes):
    """-> {setting: Worker} of the workers that started, their first losses checked."""
    workers, losses = {}, {}
    for name, env in SETTINGS.items():
        w = Worker(env, args, dtype)
        try:
            word, loss, used = w.answer()
            if word != "ready":
                raise Lost(f"said {word!r} instead of 'ready'")
        except (Lost, ValueError) as exc:
            notes[name] = str(exc)
            w.stop()
            continue
        workers[name], losses[name] = w, float(loss)
        rep.require(f"{name}: step 1 loss finite", bool(np.isfinite(losses[name])), f"{losses[name]:.6g} ({used})")
    if "pacofr default" in losses:
        for name, loss in losses.items():
            rep.check(f"{name}: step 1 loss = pacofr default's", loss, losses["pacofr default"], rtol=1e-6, atol=1e-7)
    return workers


def measure(args, workers, notes):
    alone, busy = {n: [] for n in workers}, {n: [] for n in workers}
    for _ in range(args.rounds):
        for name, w in list(workers.items()):
            time.sleep(0.5)  # let the previous worker's threads go idle
            hog = None
            try:
                alone[name] += w.steps(args.steps)
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.3)
                busy[name] += w.steps(args.steps)
            except Lost as exc:
                notes[name] = str(exc)
                w.stop()
                del workers[name]
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    for w in workers.values():
        w.stop()
    return {n: {"alone": bench.median(alone[n]), "competing": bench.median(busy[n]), "all alone": alone[n],
                "all competing": busy[n]} for n in workers if alone[n] and busy[n]}


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a worker may take to answer")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch, args.steps, args.rounds = "pacofr_test_tiny", 8, 1, 1
    from pacofr.runtime import choose_dtype
    rep = bench.Report("bench_contention", args, dtype=args.dtype)
    dtype = choose_dtype(args.dtype)[0]   # once, here: every worker runs the same arithmetic
    rep.print(f"{args.model}, batch {args.batch}, dtype {args.dtype} ({dtype}), {args.rounds} rounds x "
              f"{args.steps} steps, medians")
    notes = {}
    workers = start(rep, args, dtype, notes)
    rows = measure(args, workers, notes)
    rep.print("")
    rep.table(["setting", "alone s/step", "with the competitor", "slow-down"],
              [[n, f"{r['alone']:.3f}", f"{r['competing']:.3f}", f"{r['competing'] / r['alone']:.2f}x"]
               for n, r in rows.items()])
    for n, r in rows.items():
        rep.row(setting=n, model=args.model, batch=args.batch, slowdown=r["competing"] / r["alone"], **r)
    for n, why in notes.items():
        rep.print(f"\n{n}: not run ({why})")
        rep.row(setting=n, model=args.model, batch=args.batch, error=why)
    rep.finish()


if __name__ == "__main__":
    main()
