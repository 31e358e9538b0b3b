"""Pre-training step speed: pacofr's PaCo-FR and MAE presets against the same steps written in
PyTorch eager fp32 (pacofr/testing/torch_paco.py, pacofr/testing/torch_ref.py), in one run, plus where a
pacofr PaCo-FR step spends its time.

    python benchmarks/speed/bench_pretrain.py                      # tiny model, batch 64, 5 steps
    python benchmarks/speed/bench_pretrain.py --steps 7 --json benchmarks/results/speed/bench_pretrain-fp32-amd-epyc-f26m2-cf21c31.json
    python benchmarks/speed/bench_pretrain.py --baseline ../old   # also pacofr from another checkout

One step = masks + forward + backward + AdamW (+ the EMA teacher for PaCo-FR), after
incubation (the codebook learning end to end), on a fixed batch of SynthFace faces. Each
variant runs in its own worker process; the parent runs one step of each in turn after a
warm-up, pausing 0.5 s between steps so that one worker's idle OpenMP threads (which spin
for a while after a parallel region) never steal the cores of the next; figures are medians. "incubation" rows time the PaCo-FR step during incubation
(cross-entropy and EMA k-means instead of the codebook's gradient).
"""
import argparse
import importlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import pacofr
from pacofr.config import get_config

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]


def make_batch(name, B):
    from pacofr.data import SynthFace
    from pacofr.data.loader import Loader
    cfg = get_config(name)
    loader = Loader(SynthFace(seed=0, size=max(64, cfg.img_size), num_images=B), B, shuffle=False, prefetch=0)
    images = next(iter(loader))["images"]
    if images.shape[-1] != cfg.img_size:
        f = images.shape[-1] // cfg.img_size
        images = images.reshape(B, 3, cfg.img_size, f, cfg.img_size, f).mean((3, 5)).astype(np.float32)
    return np.ascontiguousarray(images)


def _use_pacofr_from(path):
    """Import pacofr from another checkout (built in place) in this worker, for --baseline."""
    global pacofr
    for k in [k for k in sys.modules if k == "pacofr" or k.startswith("pacofr.")]:
        del sys.modules[k]
    sys.path.insert(0, str(Path(path).resolve()))
    pacofr = importlib.import_module("pacofr")
    if not pacofr.__file__.startswith(str(Path(path).resolve())):
        raise RuntimeError(f"--baseline {path}: imported pacofr from {pacofr.__file__} instead")


def _paco_stepper(model, cfg, incubation_steps):
    """-> (micro-step function (images, indices, step) -> terms, phase times, teacher update),
    with pacofr.paco.PacoFR, or the train.PacoStep of checkouts before it (--baseline)."""
    if not (Path(pacofr.__file__).parent / "paco.py").is_file():   # (an editable install would serve ours)
        from pacofr.train import PacoStep
        stepper = PacoStep(model, cfg, incubation_steps)
        return stepper.run, stepper.times, stepper.update_teacher
    from pacofr.paco import PacoFR
    paco = PacoFR(model, cfg, incubation_steps)

    def run(images, indices, step):
        out = paco.forward(images, indices, step)
        out.update(paco.backward())
        return out
    return run, paco.times, paco.update_teacher


def pacofr_step(name, preset, images, incubation, dtype="fp32"):
    from pacofr.train import make_config
    cfg = make_config(preset, model=name, batch_size=len(images))
    model = pacofr.create_model(name, dtype=dtype, codebook_size=cfg.codebook_size if cfg.uses_codebook else 0,
                                belief_hidden=cfg.belief_hidden)
    opt = pacofr.AdamW(model, lr=cfg.base_lr(), weight_decay=cfg.weight_decay, betas=cfg.betas,
                       clip_grad_norm=cfg.clip_grad)
    run, times, update_teacher = _paco_stepper(model, cfg, 10 ** 9 if incubation else 0)
    indices = np.arange(len(images))
    state = {"step": 0}

    def step():
        model.zero_grad()
        out = run(images, indices, state["step"])
        t = time.perf_counter()
        opt.step()
        times["optimizer"] += time.perf_counter() - t
        update_teacher()
        state["step"] += 1
        return out["loss"]
    return step, times


def torch_paco_step(name, images):
    import torch
    from torch_paco import PacoReference
    from pacofr import masking
    from pacofr.train import make_config
    cfg = make_config("pacofr", model=name, batch_size=len(images))
    vit = get_config(name)
    ref = PacoReference(name, num_codes=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
    ref.set_teacher(ref.encoder_state())
    teacher = ref.teacher()
    decay = [p for n, p in ref.named_parameters() if p.requires_grad and p.ndim >= 2 and not n.startswith("codebook")
             and "pos_embed" not in n and "token" not in n]
    ids = {id(p) for p in decay}
    rest = [p for p in ref.parameters() if p.requires_grad and id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.base_lr(), betas=cfg.betas)
    enc = [(n, p) for n, p in ref.named_parameters() if not n.startswith(("decoder", "mask_token", "codebook", "belief"))]
    tparams = dict(teacher.named_parameters())
    pairs = [(tparams[n], p) for n, p in enc if n in tparams]
    x = torch.from_numpy(images)
    B, G = len(images), vit.grid_size
    n_keep = vit.num_patches - round(cfg.mask_ratio * vit.num_patches)
    s = round(cfg.subst_ratio * n_keep)
    state = {"step": 0}

    def step():
        mask, ids_keep, _ = masking.make_masks("structured", B, G, cfg.mask_ratio, 0, state["step"])
        rng = np.random.default_rng(state["step"])
        pos = np.sort(np.stack([rng.choice(n_keep, s, replace=False) for _ in range(B)]), 1)
        subst = np.take_along_axis(ids_keep, pos, 1)
        opt.zero_grad(set_to_none=True)
        out = ref.loss(x, torch.from_numpy(ids_keep), torch.from_numpy(subst), None, k=cfg.topk, tau=cfg.tau,
                       beta=cfg.beta, lambda_sc=cfg.lambda_sc)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.clip_grad)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_([t for t, _ in pairs], [p for _, p in pairs], 1 - cfg.teacher_momentum)
        state["step"] += 1
        return out["total"].item()
    return step, None


def torch_mae_step(name, images):
    import torch
    from _torch_mae import MAE, decay_groups
    from pacofr import masking
    from pacofr.train import make_config
    cfg = make_config("mae", model=name, batch_size=len(images))
    vit = get_config(name)
    model = MAE(vit)
    decay, no_decay = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.base_lr(), betas=cfg.betas)
    x = torch.from_numpy(images)
    state = {"step": 0}

    def step():
        _, ids_keep, _ = masking.make_masks("random", len(images), vit.grid_size, cfg.mask_ratio, 0, state["step"])
        opt.zero_grad(set_to_none=True)
        loss = model(x, torch.from_numpy(ids_keep))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        opt.step()
        state["step"] += 1
        return loss.item()
    return step, None


VARIANTS = {
    "pacofr PaCo-FR": lambda n, im: pacofr_step(n, "pacofr", im, False),
    "torch PaCo-FR eager fp32": torch_paco_step,
    "pacofr MAE": lambda n, im: pacofr_step(n, "mae", im, False),
    "torch MAE eager fp32": torch_mae_step,
    "pacofr PaCo-FR, incubation": lambda n, im: pacofr_step(n, "pacofr", im, True),
    "pacofr PaCo-FR bf16": lambda n, im: pacofr_step(n, "pacofr", im, False, "bf16"),
    "pacofr MAE bf16": lambda n, im: pacofr_step(n, "mae", im, False, "bf16"),
}


BASELINE = " (baseline)"


def worker(conn, variant, name, batch, threads, baseline):
    try:
        if variant.endswith(BASELINE):
            _use_pacofr_from(baseline)
            variant = variant[:-len(BASELINE)]
        pacofr.set_num_threads(threads)
        if "torch" in variant:
            import torch
            torch.set_num_threads(threads)
        images = make_batch(name, batch)
        step, times = VARIANTS[variant](name, images)
        step()  # warm-up
        if times is not None:
            times.clear()
        conn.send(("ready", None))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"))
        return
    from _worker import serve
    serve(conn, step, {"times": lambda: dict(times) if times is not None else None})


def _print_tables(med, phases, args):
    """The speed table (median s/step, ratio against each variant's peer) and each variant's
    time per phase."""
    print("\n| variant | s/step | images/s | speed-up of pacofr |")
    print("|---|---|---|---|")
    for v in med:
        peer = {"pacofr PaCo-FR": "torch PaCo-FR eager fp32", "pacofr MAE": "torch MAE eager fp32",
                "pacofr PaCo-FR" + BASELINE: "pacofr PaCo-FR", "pacofr MAE" + BASELINE: "pacofr MAE"}.get(v)
        ratio = f"{med[peer] / med[v]:.2f}x over {peer}" if peer in med else "-"
        if v.endswith(BASELINE) and peer in med:   # the checkout under test against this baseline
            ratio = f"{peer} is {med[v] / med[peer]:.3f}x as fast as this baseline"
        print(f"| {v} | {med[v]:.3f} | {args.batch / med[v]:.1f} | {ratio} |")
    for v, ph in phases.items():
        if not ph:
            continue
        total = sum(ph.values())
        print(f"\n{v}: time per phase, % of the step ({args.steps} steps)\n")
        print("| phase | % |")
        print("|---|---|")
        for k, sec in sorted(ph.items(), key=lambda kv: -kv[1]):
            print(f"| {k} | {100 * sec / total:.1f} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="run only these variants (names as in the table)")
    p.add_argument("--baseline", help="another pacofr checkout (built in place): its pacofr variants run "
                                      "in the same rounds, as '(baseline)' rows")
    args = p.parse_args(argv)
    import torch
    info = pacofr.build_info()
    print(f"# bench_pretrain: pacofr {info['version']}, oneDNN {info['onednn']} ({info['isa']}), torch "
          f"{torch.__version__}, {args.threads} threads, {args.model}, batch {args.batch}, median of {args.steps} steps",
          flush=True)
    from _worker import start_workers
    variants = list(VARIANTS)
    if args.baseline:
        variants += [v + BASELINE for v in VARIANTS if v.startswith("pacofr")]
    if args.variants:
        unknown = set(args.variants) - set(variants)
        if unknown:
            p.error(f"unknown variants {sorted(unknown)}; choose from {variants}")
        variants = [v for v in variants if v in args.variants]
    conns, notes, procs = start_workers(worker, variants, args.model, args.batch, args.threads, args.baseline)
    times = defaultdict(list)
    for _ in range(args.steps):
        for v, c in conns.items():
            time.sleep(0.5)  # let the previous worker's OpenMP threads stop spinning first
            c.send("step")
            times[v].append(c.recv())
    phases = {}
    for v, c in conns.items():
        c.send("times")
        phases[v] = c.recv()
        c.send("quit")
    for proc in procs:
        proc.join(timeout=60)
    med = {v: float(np.median(t)) for v, t in times.items()}
    _print_tables(med, phases, args)
    for v, why in notes.items():
        print(f"\n{v}: not run ({why})")
    if args.json:
        Path(args.json).write_text(json.dumps({"median_s": med, "all_s": times, "phases": phases,
                                               "model": args.model, "batch": args.batch}, indent=1))


if __name__ == "__main__":
    main()
