"""Does the EMA teacher keep its targets in bf16? The teacher of a trained PaCo-FR run encodes 64
SynthFace faces (49 kept patches each) in fp32 and in bf16: the latents' relative error, the
token-affinity targets' difference, the affinity loss that the bf16 targets alone put under a
student equal to the fp32 teacher (against the run's last training L_sc), and the forward's
time in each dtype (median of 5).

    python benchmarks/experiments/teacher_dtype.py runs/pacofr
"""
import json
import pathlib
import sys
import time

import numpy as np

import pacofr
from pacofr import _C, Model
from pacofr.data.loader import normalize_images
from pacofr.data.synth.downscale import synthface_at

run = sys.argv[1]
student = pacofr.load_model(run)
cfg = student.config.replace(encoder_only=True, codebook_size=0)
ds = synthface_at(112, seed=123, num_images=64)
imgs = np.stack([ds[i]["image"] for i in range(64)])
images = normalize_images(imgs)
rng = np.random.default_rng(0)
ids = np.sort(np.stack([rng.permutation(196)[:49] for _ in range(64)]), 1).astype(np.int64)
out = {}
lat = {}
for dt in ("fp32", "bf16"):
    t = Model(cfg, dtype=dt)
    n = t.flat_params.size
    t.flat_params[...] = student.flat_params[:n]
    t.encode(images, ids)
    ts = []
    for i in range(5):
        t0 = time.perf_counter(); lat[dt] = t.encode(images, ids).copy(); ts.append(time.perf_counter() - t0)
    out[dt + "_s"] = float(np.median(ts))
y32, y16 = lat["fp32"][:, 1:], lat["bf16"][:, 1:]
out["latent_rel_err"] = float(np.linalg.norm(y16 - y32) / np.linalg.norm(y32))
def aff(y):
    z = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return z @ z.transpose(0, 2, 1)
a32, a16 = aff(y32.astype(np.float64)), aff(y16.astype(np.float64))
out["affinity_max_abs_diff"] = float(np.abs(a16 - a32).max())
out["affinity_rms_diff"] = float(np.sqrt(((a16 - a32) ** 2).mean()))
out["affinity_rms"] = float(np.sqrt((a32 ** 2).mean()))
# L_sc between the fp32 teacher's latents (as a student equal to the teacher) and the bf16
# teacher's: the floor that bf16 targets alone put under the loss
out["sc_floor_bf16"] = float(_C.affinity_loss_forward(np.ascontiguousarray(y32), np.ascontiguousarray(y16), None)[0])
rows = [json.loads(l) for l in (pathlib.Path(run) / "metrics.jsonl").read_text().splitlines() if l.strip()]
sc = [r["sc"] for r in rows if "sc" in r]
out["training_sc_last"] = sc[-1] if sc else None
print(json.dumps(out, indent=1))
