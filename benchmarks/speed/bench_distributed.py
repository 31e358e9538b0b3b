"""Data-parallel scaling: what one allreduce of the real gradient buffer costs, what 2 ranks of
1 thread do against 1 rank of 2 threads on this machine, and a model of many nodes.

    python benchmarks/speed/bench_distributed.py [--json benchmarks/results/bench_distributed.json]

It launches its own measurements under mpirun (2 ranks, --oversubscribe, 1 thread each):
1. allreduce of the flat gradient buffer of the tiny, small and base presets (PaCo-FR, with
   codebook and belief predictor), median of 10 after 2 warm-ups;
2. a PaCo-FR tiny step at global batch 64: 2 ranks x 1 thread (each rank 32 images, then the
   allreduce) against 1 process x 2 threads, median of the steps after a warm-up;
3. the model: step(n) = compute(batch / n per node) + ring allreduce of P bytes,
   2 (n - 1) / n * P / bandwidth + 2 (n - 1) * latency, for the base preset at 224 px, with
   compute scaled from a measured base step (FLOPs are linear in the batch) to a node of
   `--node-gflops` sustained GFLOP/s.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
MPIRUN = ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
          "-x", "OMP_NUM_THREADS=1"]

ALLREDUCE = r"""
import json, sys, time, numpy as np, pacofr
from pacofr import distributed
w = distributed.world()
out = {}
for name in ("pacofr_vit_tiny_p8_112", "pacofr_vit_small_p16_224", "pacofr_vit_base_p16_224"):
    m = pacofr.create_model(name, codebook_size=1024, belief_hidden=512)
    g = m.flat_grads
    g[...] = 1.0
    ts = []
    for k in range(12):
        w.barrier(); t = time.perf_counter(); w.allreduce_mean_(g); ts.append(time.perf_counter() - t)
    out[name] = {"bytes": int(g.nbytes), "seconds": float(np.median(ts[2:]))}
    del m
if w.is_root:
    print(json.dumps(out))
"""

STEP = r"""
import json, sys, time, numpy as np, pacofr
from pacofr import distributed
from pacofr.paco import PacoFR
from pacofr.train import make_config
from pacofr.train.engine import Position, train_one_step
w = distributed.world()
pacofr.set_num_threads(int(sys.argv[1]))
cfg = make_config("pacofr", batch_size=64, steps=100, dtype="fp32", teacher_dtype="model", incubation_steps=0)
model = pacofr.create_model(cfg.model, codebook_size=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
from pacofr.data.synth import synthface_at
from pacofr.data.loader import Loader
loader = Loader(synthface_at(112, seed=0, num_images=640), 64, part=(w.rank, w.size), prefetch=0)
batches = [b for _, b in zip(range(4), loader)]
paco = PacoFR(model, cfg, 0, w)
opt = pacofr.AdamW(model, lr=1e-4, weight_decay=0.05)
it, pos, ts = iter(batches * 10), Position(), []
for k in range(6):
    w.barrier(); t = time.perf_counter()
    train_one_step(paco, opt, it, pos, cfg)
    ts.append(time.perf_counter() - t)
if w.is_root:
    print(json.dumps({"ranks": w.size, "threads": int(sys.argv[1]), "seconds": float(np.median(ts[1:]))}))
"""


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def model_nodes(step_base_64, p_bytes, node_gflops, here_gflops, images=2_000_000, per_node_batch=64,
                latency=20e-6):
    """Rows of the scaling model for the base preset: per-node batch fixed (weak scaling)."""
    compute = step_base_64 * here_gflops / node_gflops          # one node's step on 64 images
    rows = []
    for gbps in (10, 25, 100):
        bw = gbps * 1e9 / 8
        for n in (1, 2, 4, 8, 16, 32, 64):
            comm = 0.0 if n == 1 else 2 * (n - 1) / n * p_bytes / bw + 2 * (n - 1) * latency
            step = compute + comm                                # no overlap assumed
            epoch_h = images / (n * per_node_batch) * step / 3600
            rows.append({"gbps": gbps, "nodes": n, "step_s": round(step, 3), "efficiency": round(compute / step, 3),
                         "epoch_hours": round(epoch_h, 2)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json")
    ap.add_argument("--base-step", type=float, default=None,
                    help="seconds of one base-preset PaCo-FR step at batch 64 here (default: measure batch 8, x8)")
    ap.add_argument("--node-gflops", type=float, default=2000.0, help="sustained GFLOP/s of a cluster node")
    ap.add_argument("--here-gflops", type=float, default=130.0, help="sustained GFLOP/s of this machine's step")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = pathlib.Path(tmp) / "allreduce.py"
        script.write_text(ALLREDUCE)
        allreduce = run(MPIRUN + [sys.executable, str(script)])
        step = pathlib.Path(tmp) / "step.py"
        step.write_text(STEP)
        two_ranks = run(MPIRUN + [sys.executable, str(step), "1"])
        one_rank = run([sys.executable, str(step), "2"])
    base = args.base_step or measure_base_step()
    result = {"allreduce": allreduce, "step": [two_ranks, one_rank], "base_step_64": base,
              "model": model_nodes(base, allreduce["pacofr_vit_base_p16_224"]["bytes"], args.node_gflops,
                                   args.here_gflops),
              "assumptions": {"node_gflops": args.node_gflops, "here_gflops": args.here_gflops,
                              "per_node_batch": 64, "latency_s": 20e-6, "overlap": "none"}}
    report(result)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


def measure_base_step():
    """One base-preset PaCo-FR step at batch 8 (median of 3 after a warm-up), times 8."""
    import time
    import pacofr
    from pacofr.paco import PacoFR
    from pacofr.train import make_config
    cfg = make_config("pacofr", model="pacofr_vit_base_p16_224", batch_size=8, dtype="fp32",
                      teacher_dtype="model", incubation_steps=0)
    model = pacofr.create_model(cfg.model, codebook_size=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
    paco = PacoFR(model, cfg, 0)
    images = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    ts = []
    for k in range(4):
        t = time.perf_counter()
        model.zero_grad()
        paco.forward(images, np.arange(8), 100)
        paco.backward()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts[1:])) * 8


def report(r):
    from pacofr.runtime import cpu_name
    cpu = cpu_name()
    print(f"# bench_distributed: {cpu}, 2 ranks x 1 thread (Open MPI, shared memory)\n")
    print("| preset | gradient buffer MB | allreduce ms |\n|---|---|---|")
    for name, a in r["allreduce"].items():
        print(f"| {name} | {a['bytes'] / 1e6:.1f} | {1000 * a['seconds']:.1f} |")
    print("\n| PaCo-FR tiny step, global batch 64 | s/step |\n|---|---|")
    for s in r["step"]:
        print(f"| {s['ranks']} rank(s) x {s['threads']} thread(s) | {s['seconds']:.3f} |")
    print(f"\nbase preset step at batch 64 here: {r['base_step_64']:.1f} s")
    print("\n| link | nodes | step s | efficiency | hours per epoch of 2M faces |\n|---|---|---|---|---|")
    for m in r["model"]:
        print(f"| {m['gbps']} Gb/s | {m['nodes']} | {m['step_s']} | {m['efficiency']} | {m['epoch_hours']} |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
