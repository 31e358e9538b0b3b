"""A training step beside one competing single-thread process, per OpenMP wait setting.

    python benchmarks/speed/bench_contention.py                       # MAE tiny, batch 64, auto dtype
    python benchmarks/speed/bench_contention.py --rounds 3 --steps 4 --json out.json

libgomp reads its wait policy when it loads, so every setting runs in its own worker
process. Each round, every worker times --steps steps alone, then --steps steps while a
`while True: pass` process holds a core, then the competitor is stopped. Figures are medians
over the rounds' steps; the slow-down is (with the competitor) / (alone).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SETTINGS = {
    "pacofr default": {},
    "libgomp default (spin ~300k)": {"GOMP_SPINCOUNT": "300000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=5000": {"GOMP_SPINCOUNT": "5000"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
}
WORKER = r"""
import sys, time, numpy as np, pacofr
sys.path.insert(0, {bench!r})
from bench_step import batch, keep
from pacofr.config import get_config
cfg = get_config({model!r})
images, ids = batch(cfg, {batch}, keep(cfg))
model = pacofr.create_model({model!r}, dtype=pacofr.runtime.choose_dtype({dtype!r})[0])
opt = pacofr.AdamW(model, lr=1e-4, weight_decay=0.05)
def step():
    model.zero_grad(); model.forward(images, ids); model.backward(); opt.step()
step()
print("ready", flush=True)
for line in sys.stdin:
    t = time.perf_counter(); step(); print(time.perf_counter() - t, flush=True)
"""


def start(name, env_extra, args):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    code = WORKER.format(bench=os.path.dirname(os.path.abspath(__file__)), model=args.model, batch=args.batch,
                         dtype=args.dtype)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    assert proc.stdout.readline().strip() == "ready", name
    return proc


def steps(proc, n):
    out = []
    for _ in range(n):
        proc.stdin.write("step\n")
        out.append(float(proc.stdout.readline()))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    procs = {name: start(name, env, args) for name, env in SETTINGS.items()}
    alone, busy = {n: [] for n in procs}, {n: [] for n in procs}
    for _ in range(args.rounds):
        for name, proc in procs.items():
            time.sleep(0.5)  # let the previous worker's threads go idle
            alone[name] += steps(proc, args.steps)
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.3)
            busy[name] += steps(proc, args.steps)
            hog.kill()
            hog.wait()
    for proc in procs.values():
        proc.stdin.close()
        proc.wait(timeout=60)
    rows = {n: {"alone": float(np.median(alone[n])), "competing": float(np.median(busy[n]))} for n in procs}
    print(f"# bench_contention: {args.model}, batch {args.batch}, dtype {args.dtype}, {args.rounds} rounds x "
          f"{args.steps} steps, medians\n")
    print("| setting | alone s/step | with the competitor | slow-down |\n|---|---|---|---|")
    for n, r in rows.items():
        print(f"| {n} | {r['alone']:.3f} | {r['competing']:.3f} | {r['competing'] / r['alone']:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
