"""Pre-training step speed: pacofr's PaCo-FR and MAE presets against the same steps written in
PyTorch eager fp32 (pacofr/testing/torch_paco.py, pacofr/testing/torch_ref.py), in one run, plus where a
pacofr PaCo-FR step spends its time.

    python benchmarks/speed/bench_pretrain.py                      # tiny model, batch 64, 5 steps
    python benchmarks/speed/bench_pretrain.py --steps 7 --save     # results to benchmarks/results/speed/
    python benchmarks/speed/bench_pretrain.py --baseline ../old   # also pacofr from another checkout
    python benchmarks/speed/bench_pretrain.py --quick              # pacofr_test_tiny, batch 8, 1 step

One step = masks + forward + backward + AdamW (+ the EMA teacher for PaCo-FR), after
incubation (the codebook learning end to end), on a fixed batch of SynthFace faces. Each
variant runs in its own worker process; the parent runs one step of each in turn after a
warm-up, pausing 0.5 s between steps so that one worker's idle OpenMP threads (which spin
for a while after a parallel region) never steal the cores of the next; figures are medians.
"incubation" rows time the PaCo-FR step during incubation (cross-entropy and EMA k-means
instead of the codebook's gradient).

Before timing, pacofr's PaCo-FR loss terms and MAE loss at step 0 are checked against PyTorch
(pacofr.testing.torch_paco, torch_ref) on the same weights, batch and masks, and every worker's
warm-up loss must be finite; the pacofr fp32 workers' must equal the checked ones (bf16 within
5%). A worker that dies or hangs is reported and the run goes on.
"""
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

import pacofr
from pacofr.config import get_config
from pacofr.testing import bench
from pacofr.testing.workers import Workers, ready_or_error, serve


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
    """Import pacofr from another checkout (built in place) in this worker, for --baseline: the
    package is loaded from PATH/pacofr/__init__.py and registered as ``pacofr`` in sys.modules."""
    global pacofr
    root = Path(path).resolve()
    for k in [k for k in sys.modules if k == "pacofr" or k.startswith("pacofr.")]:
        del sys.modules[k]
    init = root / "pacofr" / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"--baseline {path}: no {init}")
    spec = importlib.util.spec_from_file_location("pacofr", init, submodule_search_locations=[str(root / "pacofr")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["pacofr"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["pacofr"]
        raise
    pacofr = module
    for mod in (pacofr, sys.modules.get("pacofr._C")):
        where = Path(getattr(mod, "__file__", None) or "?").resolve()
        if mod is not None and not where.is_relative_to(root):
            raise RuntimeError(f"--baseline {path}: imported {mod.__name__} from {where} instead")


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


def _model(name, preset, B, dtype="fp32"):
    """-> (the preset's PretrainConfig, the model) as ``pacofr pretrain`` builds them."""
    from pacofr.train import make_config
    cfg = make_config(preset, model=name, batch_size=B)
    model = pacofr.create_model(name, dtype=dtype, codebook_size=cfg.codebook_size if cfg.uses_codebook else 0,
                                belief_hidden=cfg.belief_hidden)
    return cfg, model


def pacofr_step(name, preset, images, incubation, dtype="fp32"):
    cfg, model = _model(name, preset, len(images), dtype)
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
    from pacofr.testing.torch_paco import PacoReference
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
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.base_lr(), betas=cfg.betas)
    enc = [(n, p) for n, p in ref.named_parameters()
           if not n.startswith(("decoder", "mask_token", "codebook", "belief"))]
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
    from pacofr.testing.torch_ref import MAE, decay_groups
    from pacofr import masking
    from pacofr.train import make_config
    cfg = make_config("mae", model=name, batch_size=len(images))
    vit = get_config(name)
    model = MAE(vit)
    decay, no_decay = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
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
# the checked step-0 loss each pacofr worker's warm-up step must give: (preset, relative tolerance)
EXPECT = {"pacofr PaCo-FR": ("pacofr", 1e-5), "pacofr MAE": ("mae", 1e-5),
          "pacofr PaCo-FR bf16": ("pacofr", 5e-2), "pacofr MAE bf16": ("mae", 5e-2)}


BASELINE = " (baseline)"


def check_against_torch(rep, name, images):
    """pacofr's step-0 PaCo-FR loss terms and MAE loss against PyTorch on the same weights, batch
    and masks (those pacofr's step draws). -> {preset: pacofr's loss}."""
    import torch
    from pacofr.paco import PacoFR
    from pacofr.testing.torch_paco import PacoReference
    from pacofr.testing.torch_ref import MAE, from_numpy_state
    losses = {}
    for preset in ("pacofr", "mae"):
        cfg, model = _model(name, preset, len(images))
        paco = PacoFR(model, cfg, 0)
        masks = paco.sample(np.arange(len(images)), 0)
        out = paco.forward_masked(images, step=0, **masks)   # (initialises the codebook from the batch)
        state, ids_keep = model.state_dict(), torch.from_numpy(masks["ids_keep"])
        with torch.no_grad():
            if preset == "mae":
                ref = MAE(get_config(name))
                from_numpy_state(ref, state)
                rep.check(f"{name} MAE loss", out["loss"], ref(torch.from_numpy(images), ids_keep).item(), rtol=2e-5)
            else:
                ref = PacoReference(name, num_codes=cfg.codebook_size, belief_hidden=cfg.belief_hidden)
                ref.from_numpy(state)
                subst = np.take_along_axis(masks["ids_keep"], masks["pos"], 1)
                want = ref.loss(images, ids_keep, subst, ref.encoder_state(), k=cfg.topk, tau=cfg.tau, hard=cfg.hard,
                                beta=cfg.beta, lambda_inc=cfg.lambda_inc, lambda_sc=cfg.lambda_sc,
                                lambda_s=cfg.lambda_s, sc_mode=cfg.sc_mode, sc_center=cfg.sc_center,
                                regions=torch.from_numpy(np.ascontiguousarray(masks["regions"])))
                for term, key in (("rec", "rec"), ("align", "align"), ("total", "loss")):
                    rep.check(f"{name} PaCo-FR {term}", out[key], want[term].item(), rtol=2e-5, atol=1e-6)
                rep.check(f"{name} PaCo-FR belief accuracy", out["belief_acc"], want["acc"].item(), atol=1e-6)
        losses[preset] = out["loss"]
    return losses


def worker(conn, variant, name, batch, threads, baseline):
    """Build one variant, then answer 'step' (seconds), 'times' (phase seconds) and 'loss'
    (the warm-up step's loss)."""
    held = {"times": None, "losses": []}

    def build():
        v = variant
        if v.endswith(BASELINE):
            _use_pacofr_from(baseline)
            v = v[:-len(BASELINE)]
        pacofr.set_num_threads(threads)
        if "torch" in v:
            import torch
            torch.set_num_threads(threads)
        step, held["times"] = VARIANTS[v](name, make_batch(name, batch))

        def recorded():
            held["losses"].append(float(step()))
        return recorded
    step = ready_or_error(conn, build)
    if step is None:
        return
    times = held["times"]
    if times is not None:
        times.clear()    # the warm-up's phases
    serve(conn, step, {"times": lambda: dict(times) if times is not None else None,
                       "loss": lambda: held["losses"][0]})


def check_workers(rep, pool, want):
    """Every worker's warm-up loss is finite; pacofr's (this checkout) equal the checked step-0 losses."""
    for v in pool.variants:
        loss = pool.ask(v, "loss")
        if loss is None:
            continue
        rep.require(f"{v} warm-up loss finite", bool(np.isfinite(loss)), f"{loss:.6g}")
        if v in EXPECT:
            preset, rtol = EXPECT[v]
            rep.check(f"{v} warm-up loss = checked {preset} loss", loss, want[preset], rtol=rtol, atol=1e-6)


def _print_tables(rep, med, phases, args):
    """The speed table (median s/step, ratio against each variant's peer) and each variant's
    time per phase."""
    cells = []
    for v in med:
        peer = {"pacofr PaCo-FR": "torch PaCo-FR eager fp32", "pacofr MAE": "torch MAE eager fp32",
                "pacofr PaCo-FR" + BASELINE: "pacofr PaCo-FR", "pacofr MAE" + BASELINE: "pacofr MAE"}.get(v)
        ratio = f"{med[peer] / med[v]:.2f}x over {peer}" if peer in med else "-"
        if v.endswith(BASELINE) and peer in med:   # the checkout under test against this baseline
            ratio = f"{peer} is {med[v] / med[peer]:.3f}x as fast as this baseline"
        cells.append([v, f"{med[v]:.3f}", f"{args.batch / med[v]:.1f}", ratio])
    rep.print("")
    rep.table(["variant", "s/step", "images/s", "speed-up of pacofr"], cells)
    for v, ph in phases.items():
        if not ph:
            continue
        total = sum(ph.values())
        rep.print(f"\n{v}: time per phase, % of the step ({args.steps} steps)\n")
        order = sorted(ph.items(), key=lambda kv: -kv[1])
        rep.table(["phase", "%"], [[k, f"{100 * sec / total:.1f}"] for k, sec in order])


def _variants(p, args):
    variants = list(VARIANTS)
    if args.baseline:
        variants += [v + BASELINE for v in VARIANTS if v.startswith("pacofr")]
    if args.variants:
        unknown = set(args.variants) - set(variants)
        if unknown:
            p.error(f"unknown variants {sorted(unknown)}; choose from {variants}")
        variants = [v for v in variants if v in args.variants]
    return variants


def main(argv=None):
    p = bench.parser(__doc__)
    p.add_argument("--model", default="pacofr_vit_tiny_p8_112")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--pause", type=float, default=0.5, help="seconds between two workers' steps")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="run only these variants (names as in the table)")
    p.add_argument("--baseline", help="another pacofr checkout (built in place): its pacofr variants run "
                                      "in the same rounds, as '(baseline)' rows")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a worker may take to answer")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batch, args.steps, args.pause = "pacofr_test_tiny", 8, 1, 0.1
    variants = _variants(p, args)
    import torch
    torch.set_num_threads(args.threads)
    rep = bench.Report("bench_pretrain", args, dtype="fp32-bf16",
                       note=f"torch {torch.__version__}, {args.model}, batch {args.batch}, "
                            f"median of {args.steps} steps")
    want = check_against_torch(rep, args.model, make_batch(args.model, args.batch))
    pool = Workers(worker, variants, args.model, args.batch, args.threads, args.baseline, timeout=args.timeout)
    check_workers(rep, pool, want)
    times = {v: [] for v in pool.variants}
    for _ in range(args.steps):
        for v in pool.variants:
            time.sleep(args.pause)  # let the previous worker's OpenMP threads stop spinning first
            t = pool.ask(v, "step")
            if t is not None:
                times[v].append(t)
    phases = {v: pool.ask(v, "times") for v in pool.variants}
    pool.close()
    med = {v: bench.median(t) for v, t in times.items() if t and v in phases}
    _print_tables(rep, med, {v: ph for v, ph in phases.items() if v in med}, args)
    for v in med:
        rep.row(model=args.model, batch=args.batch, variant=v, seconds=med[v], all=times[v],
                images_per_s=args.batch / med[v], phases=phases.get(v))
    for v, why in pool.notes.items():
        rep.print(f"\n{v}: not run ({why})")
        rep.row(model=args.model, batch=args.batch, variant=v, error=why)
    rep.finish()


if __name__ == "__main__":
    main()
