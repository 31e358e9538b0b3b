"""Data-parallel scaling: what one allreduce of the real gradient buffer costs, what 2 ranks of
1 thread do against 1 rank of 2 threads on this machine, and a model of many nodes.

    python benchmarks/speed/bench_distributed.py [--save]     # tiny, small, base; about 3 minutes
    python benchmarks/speed/bench_distributed.py --quick      # the test preset: seconds

It launches its own measurements under mpirun (2 ranks, --oversubscribe, 1 thread each):
1. allreduce of the flat gradient buffer of the tiny, small and base presets (PaCo-FR, with
   codebook and belief predictor), median of 10 after 2 warm-ups;
2. a PaCo-FR tiny step at global batch 64: 2 ranks x 1 thread (each rank 32 images, then the
   allreduce) against 1 process x 2 threads, median of the steps after a warm-up;
3. the model: step(n) = compute(batch / n per node) + ring allreduce of P bytes,
   2 (n - 1) / n * P / bandwidth + 2 (n - 1) * latency, for the base preset at 224 px, with
   compute scaled from a measured base step (FLOPs are linear in the batch) to a node of
   `--node-gflops` sustained GFLOP/s.

Before timing, each rank fills the buffer with rank + 1 and one allreduce must give 1.5 in every
element; the two-rank step's loss must be finite and equal on both ranks.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from pacofr.testing import bench

PRESETS = ("pacofr_vit_tiny_p8_112", "pacofr_vit_small_p16_224", "pacofr_vit_base_p16_224")
MPIRUN = ["mpirun", "-np", "2", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
          "-x", "OMP_NUM_THREADS=1"]

ALLREDUCE = r"""
import json, sys, time, numpy as np, pacofr
from pacofr import distributed
w = distributed.world()
out = {}
for name in sys.argv[1].split(","):
    m = pacofr.create_model(name, codebook_size=1024, belief_hidden=512)
    g = m.flat_grads
    g[...] = w.rank + 1.0
    w.allreduce_mean_(g)
    err = float(np.abs(g - 1.5).max())
    g[...] = 1.0
    ts = []
    for k in range(12):
        w.barrier(); t = time.perf_counter(); w.allreduce_mean_(g); ts.append(time.perf_counter() - t)
    out[name] = {"bytes": int(g.nbytes), "seconds": float(np.median(ts[2:])), "check_error": err}
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
threads, name, B, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pacofr.set_num_threads(threads)
cfg = make_config("pacofr", model=name, batch_size=B, steps=100, dtype="fp32", teacher_dtype="model",
                  incubation_steps=0)
model = pacofr.create_model(cfg.model, codebook_size=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
from pacofr.data.synth import synthface_at
from pacofr.data.loader import Loader
loader = Loader(synthface_at(model.config.img_size, seed=0, num_images=10 * B), B, part=(w.rank, w.size),
                prefetch=0)
batches = [b for _, b in zip(range(4), loader)]
paco = PacoFR(model, cfg, 0, w)
opt = pacofr.AdamW(model, lr=1e-4, weight_decay=0.05)
it, pos, ts, losses = iter(batches * 10), Position(), [], []
for k in range(n):
    w.barrier(); t = time.perf_counter()
    terms = train_one_step(paco, opt, it, pos, cfg)[0]
    losses.append(float(terms["loss"]))
    ts.append(time.perf_counter() - t)
every = w.allgather(np.array([float(np.abs(model.flat_params).astype(np.float64).sum())])).tolist()
if w.is_root:
    print(json.dumps({"ranks": w.size, "threads": threads, "seconds": float(np.median(ts[1:])),
                      "losses": losses, "param_sums": every}))
"""


def run(cmd, timeout):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"bench_distributed: {' '.join(cmd[-3:])} gave no answer in {timeout} s") from None
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


def measure(args):
    """-> (allreduce per preset, [2 ranks x 1 thread, 1 process x 2 threads] step rows)."""
    presets = PRESETS[:1] if args.quick else PRESETS
    name, B, n = ("pacofr_test_tiny", 8, 3) if args.quick else ("pacofr_vit_tiny_p8_112", 64, 6)
    limit = 300 if args.quick else 1800
    with tempfile.TemporaryDirectory() as tmp:
        script = pathlib.Path(tmp) / "allreduce.py"
        script.write_text(ALLREDUCE)
        allreduce = run(MPIRUN + [sys.executable, str(script), ",".join(presets)], limit)
        step = pathlib.Path(tmp) / "step.py"
        step.write_text(STEP)
        two_ranks = run(MPIRUN + [sys.executable, str(step), "1", name, str(B), str(n)], limit)
        one_rank = run([sys.executable, str(step), str(args.threads), name, str(B), str(n)], limit)
    return allreduce, [two_ranks, one_rank], name


def main(argv=None):
    ap = bench.parser(__doc__)
    ap.add_argument("--base-step", type=float, default=None,
                    help="seconds of one base-preset PaCo-FR step at batch 64 here (default: measure batch 8, x8)")
    ap.add_argument("--node-gflops", type=float, default=2000.0, help="sustained GFLOP/s of a cluster node")
    ap.add_argument("--here-gflops", type=float, default=130.0, help="sustained GFLOP/s of this machine's step")
    args = ap.parse_args(argv)
    rep = bench.Report("bench_distributed", args, dtype="fp32",
                       note="2 ranks x 1 thread (Open MPI, shared memory) against 1 process x 2 threads")
    allreduce, steps, step_model = measure(args)
    for name, a in allreduce.items():
        rep.check(f"allreduce mean of rank + 1, {name}", a["check_error"], 0.0, atol=1e-6)
    two = steps[0]
    rep.require("the step ran on 2 ranks", two["ranks"] == 2 and len(two["param_sums"]) == 2, str(two["ranks"]))
    rep.require("2-rank losses finite", bool(np.all(np.isfinite(two["losses"]))), str(two["losses"]))
    rep.check("2 ranks hold the same weights after the steps", two["param_sums"][1], two["param_sums"][0],
              rtol=1e-6)
    base_model = "pacofr_test_tiny" if args.quick else "pacofr_vit_base_p16_224"
    base = args.base_step or measure_base_step(base_model)
    result = {"allreduce": allreduce, "step": steps, "step_model": step_model, "base_step_64": base,
              "base_model": base_model,
              "model": model_nodes(base, allreduce[PRESETS[0] if args.quick else PRESETS[2]]["bytes"],
                                   args.node_gflops, args.here_gflops),
              "assumptions": {"node_gflops": args.node_gflops, "here_gflops": args.here_gflops,
                              "per_node_batch": 64, "latency_s": 20e-6, "overlap": "none"}}
    report(rep, result)
    rep.row(**result)
    rep.finish()


def measure_base_step(name):
    """One PaCo-FR step of preset name at batch 8 (median of 3 after a warm-up), times 8."""
    import time
    import pacofr
    from pacofr.paco import PacoFR
    from pacofr.train import make_config
    cfg = make_config("pacofr", model=name, batch_size=8, dtype="fp32",
                      teacher_dtype="model", incubation_steps=0)
    model = pacofr.create_model(cfg.model, codebook_size=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
    paco = PacoFR(model, cfg, 0)
    S = model.config.img_size
    images = np.random.default_rng(0).standard_normal((8, 3, S, S)).astype(np.float32)
    ts = []
    for k in range(4):
        t = time.perf_counter()
        model.zero_grad()
        paco.forward(images, np.arange(8), 100)
        paco.backward()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts[1:])) * 8


def report(rep, r):
    rep.print("\n| preset | gradient buffer MB | allreduce ms |\n|---|---|---|")
    for name, a in r["allreduce"].items():
        rep.print(f"| {name} | {a['bytes'] / 1e6:.1f} | {1000 * a['seconds']:.1f} |")
    rep.print(f"\n| PaCo-FR step ({r['step_model']}) | s/step |\n|---|---|")
    for s in r["step"]:
        rep.print(f"| {s['ranks']} rank(s) x {s['threads']} thread(s) | {s['seconds']:.3f} |")
    rep.print(f"\n{r['base_model']} step at batch 64 here: {r['base_step_64']:.2f} s")
    rep.print("\n| link | nodes | step s | efficiency | hours per epoch of 2M faces |\n|---|---|---|---|---|")
    for m in r["model"]:
        rep.print(f"| {m['gbps']} Gb/s | {m['nodes']} | {m['step_s']} | {m['efficiency']} | {m['epoch_hours']} |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
