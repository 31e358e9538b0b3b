"""The pre-training driver behind ``pacofr.pretrain`` and ``pacofr pretrain``: data, schedule,
gradient accumulation, the EMA teacher, logging (tqdm, metrics.jsonl, TensorBoard when
tensorboardX is installed, reconstruction previews) and checkpoints with exact resume."""
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import runtime
from ..data import SynthFace
from ..data.synth import Downscaled, synthface_at
from ..data.augment import AugmentConfig
from ..data.datasets import ImageFolder, LandmarkFaces, open_landmark_faces
from ..data.loader import Loader
from ..model import create_model
from ..optim import AdamW, cosine_lr
from . import runstate
from .config import PretrainConfig, make_config
from .step import PacoStep


# fields that may change when a run is resumed (the rest must match the checkpoint's)
RESUMABLE_CHANGES = {"steps", "log_every", "preview_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "threads", "out"}


class _DeferInterrupt:
    """Hold Ctrl-C (SIGINT) during an optimizer update, so an interrupt never falls between
    the weights changing and the step counter moving; it is raised right after."""

    def __enter__(self):
        import signal
        import threading
        self.pending, self.old = False, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda *a: setattr(self, "pending", True))
        return self

    def __exit__(self, *exc):
        import signal
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending:
            raise KeyboardInterrupt
        return False


@dataclass
class PretrainResult:
    out: Path
    model: object
    step: int
    metrics: dict   # the last logged line


def _has_checkpoint(out, step):
    dirs = runstate.checkpoint_dirs(out)
    return bool(dirs) and runstate.step_of(dirs[-1]) == step


def _check_data_gives_regions(cfg, dataset):
    """Fail before training when region maps must come from data that lacks them."""
    src = cfg.region_source
    if src == "canonical" or isinstance(dataset, (SynthFace, Downscaled)):
        return
    if src == "parsing" or not isinstance(dataset, LandmarkFaces):
        raise ValueError(f"region_source={src!r}, but {cfg.data} gives no {src}: use 'canonical', or data with "
                         f"{src} (SynthFace has both; landmark data sets give landmarks)")


def make_dataset(cfg, size):
    if cfg.data == "synthface":
        return synthface_at(size, seed=cfg.seed, num_images=cfg.synth_images,
                            num_identities=cfg.synth_identities or None)
    path = Path(cfg.data)
    faces = open_landmark_faces(path, size)
    if faces is not None:
        return faces
    if not path.is_dir():
        raise ValueError(f"data must be 'synthface', a folder of face images, a COCO keypoint .json or an "
                         f"HRNet .csv; {path} is none of these")
    return ImageFolder(path, size)


def _augment(cfg):
    return AugmentConfig(flip=0.5 if cfg.flip else 0.0, rotate=0.0, scale=0.0, translate=0.0, brightness=0.0,
                         contrast=0.0, saturation=0.0, grayscale=0.0, blur=0.0)


class _Metrics:
    """metrics.jsonl (one JSON object per logged step) and TensorBoard events if available."""

    def __init__(self, out, resume_step):
        self.path = Path(out) / "metrics.jsonl"
        if self.path.exists():  # drop lines past the step we resume from (they will be redone)
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a killed run
            self.path.write_text("".join(k + "\n" for k in keep))
        self.f = open(self.path, "a")
        self.tb = None
        try:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(Path(out) / "tb"))
        except ImportError:
            pass

    def write(self, row):
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    def close(self):
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def pretrain(config=None, eval_hook=None, progress=True, stop_after=None, **overrides):
    """Run (or resume) PaCo-FR / MAE pre-training. ``config``: a PretrainConfig, a preset name
    ("pacofr", "mae") or None (pacofr); ``overrides``: config fields (``resume=True`` continues
    the run in ``out`` from its latest checkpoint). ``eval_hook(model, step) -> dict`` is called
    every ``eval_every`` steps and its numbers are logged. ``stop_after``: return after this
    many steps of this call (the run stays resumable). Returns a PretrainResult."""
    resume = bool(overrides.pop("resume", False))
    if config is None or isinstance(config, str):
        cfg = make_config(config or "pacofr", **overrides)
    elif isinstance(config, PretrainConfig):
        cfg = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    else:
        raise TypeError(f"config must be a PretrainConfig, a preset name or None, got {type(config).__name__}")
    if cfg.threads:
        runtime.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    model = create_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype, norm_pix_loss=cfg.norm_pix,
                         codebook_size=cfg.codebook_size if cfg.uses_codebook else 0,
                         belief_hidden=cfg.belief_hidden)
    dataset = make_dataset(cfg, model.config.img_size)
    loader = Loader(dataset, cfg.batch_size, seed=cfg.seed, augment=_augment(cfg), prefetch=2)
    if len(loader) < 1:
        raise ValueError(f"the data set has {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
    _check_data_gives_regions(cfg, dataset)
    incubation = cfg.incubation(len(loader)) if cfg.uses_codebook else 0
    optimizer = AdamW(model, lr=cfg.base_lr(), weight_decay=cfg.weight_decay, betas=cfg.betas,
                      clip_grad_norm=cfg.clip_grad or None)
    stepper = PacoStep(model, cfg, incubation)
    step, epoch, batch_in_epoch = 0, 0, 0
    if not resume and runstate.checkpoint_dirs(out):
        raise ValueError(f"{out} already holds a run (checkpoints/): pass resume=True (--resume) to continue it, "
                         f"or choose another out folder")
    if resume:
        folder, loaded = runstate.latest_checkpoint(out)
        if folder is not None:
            saved_model, opt, paco, state = loaded
            now = json.loads(json.dumps(cfg.to_dict()))
            diff = sorted(k for k in now if state["config"].get(k) != now[k] and k not in RESUMABLE_CHANGES)
            if diff:
                raise ValueError(f"{folder}: the run was started with another config (differs in {diff})")
            model.load_state_dict(saved_model.state_dict())
            optimizer.load_state_dict({"m": opt["m"], "v": opt["v"], **state["optimizer"]})
            stepper.load_state_dict({**paco, **state["paco"], "recent": paco["recent"].astype(np.int64)})
            step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
    with open(out / "pretrain_config.json", "w") as f:
        json.dump(cfg.to_dict(), f, indent=1)

    metrics = _Metrics(out, step)
    last = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {cfg.preset}", unit="step", dynamic_ncols=True)

    def checkpoint():
        state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "config": cfg.to_dict(),
                 "incubation_steps": incubation}
        runstate.save_checkpoint(out, step, model, optimizer, stepper.state_dict(), state, cfg.keep_checkpoints)

    def batches():
        nonlocal epoch, batch_in_epoch
        while True:
            for b in loader.iterate(epoch, batch_in_epoch):
                batch_in_epoch += 1
                yield b
            epoch, batch_in_epoch = epoch + 1, 0

    it = batches()
    done_here, snap = 0, None
    t_last, imgs = time.perf_counter(), 0
    try:
        while step < cfg.steps and (stop_after is None or done_here < stop_after):
            lr = cosine_lr(step, cfg.base_lr(), cfg.steps, cfg.warmup(), cfg.min_lr)
            optimizer.lr = lr
            model.zero_grad()
            sums = {}
            snap = (epoch, batch_in_epoch, stepper.snapshot())  # what a Ctrl-C mid-step rolls back to
            for micro in range(cfg.accum_steps):
                b = next(it)
                r = stepper.run(b["images"], b["indices"], step, micro, b.get("landmarks"), b.get("parsing"))
                for k, v in r.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / cfg.accum_steps
                imgs += len(b["indices"])
            with _DeferInterrupt():
                gnorm = optimizer.step(grad_scale=1.0 / cfg.accum_steps)
                stepper.update_teacher()
                step += 1
                snap = None
            done_here += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                row = {"step": step, "epoch": epoch, "lr": lr, **{k: v for k, v in sums.items() if k != "incubating"},
                       "incubating": bool(sums.get("incubating", 0)), "images_per_s": imgs / max(now - t_last, 1e-9)}
                if gnorm is not None:
                    row["grad_norm"] = gnorm
                t_last, imgs = now, 0
                metrics.write(row)
                last = row
                if bar is not None:
                    bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss", "rec", "sc", "usage", "images_per_s") if k in row})
            if cfg.preview_every and step % cfg.preview_every == 0:  # before the hook: it may run the model
                from .preview import save_preview
                save_preview(stepper, b, step, out / "previews" / f"step_{step:07d}.png")
            if eval_hook is not None and cfg.eval_every and step % cfg.eval_every == 0:
                row = {"step": step, **{f"eval/{k}": v for k, v in eval_hook(model, step).items()}}
                metrics.write(row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint()
            if bar is not None:
                bar.update(1)
        if step < cfg.steps and step and not _has_checkpoint(out, step):
            checkpoint()  # stop_after: the run stays resumable from here
    except KeyboardInterrupt:
        if snap is not None:  # interrupted inside a step: undo its partial effects first
            epoch, batch_in_epoch = snap[0], snap[1]
            stepper.restore(snap[2])
        if step and not _has_checkpoint(out, step):
            checkpoint()  # an interrupt leaves a consistent checkpoint of the last finished step
        raise
    finally:
        it.close()
        if bar is not None:
            bar.close()
        metrics.close()
    return PretrainResult(out=out, model=model, step=step, metrics=last)
