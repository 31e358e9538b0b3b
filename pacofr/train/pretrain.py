"""The pre-training driver behind ``pacofr.pretrain`` and ``pacofr pretrain`` (as MAE's
``main_pretrain``): configuration, data, model, optimizer and PaCo-FR state, resume, the loop
over ``engine.train_one_step``, previews, the eval hook and checkpoints with exact resume."""
import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import checkpoint, distributed, runtime
from .._io import atomic_write_bytes
from ..data import SynthFace
from ..data.augment import AugmentConfig
from ..data.datasets import ImageFolder, LandmarkFaces, open_landmark_faces
from ..data.loader import Loader
from ..data.shards import ShardSet, is_shard_folder
from ..data.synth import Downscaled, synthface_at
from ..masking import num_kept
from ..config import get_config
from ..model import create_model
from ..optim import AdamW
from ..paco import PacoFR
from . import diagnostics, log
from .config import PretrainConfig, make_config
from .engine import Position, batches, train_one_step
from .preview import save_preview

# fields that may change when a run is resumed (the rest must match the checkpoint's)
RESUMABLE_CHANGES = {"steps", "log_every", "preview_every", "checkpoint_every", "keep_checkpoints", "eval_every",
                     "diag_every", "threads", "out", "dtype", "teacher_dtype"}
DIAG_IMAGES = 32   # images of the logged batch the diagnostics look at



@dataclass
class PretrainResult:
    out: Path
    model: object
    step: int
    metrics: dict   # the last logged line


@dataclass
class _Run:
    """Everything one call of ``pretrain`` works on."""
    cfg: PretrainConfig
    out: Path
    model: object
    loader: Loader
    optimizer: AdamW
    paco: PacoFR
    incubation: int
    pos: Position
    last: dict = None   # the last logged metrics line


def _resolve(config, overrides):
    if config is None or isinstance(config, str):
        return make_config(config or "pacofr", **overrides)
    if isinstance(config, PretrainConfig):
        return config.replace(**{k: v for k, v in overrides.items() if v is not None})
    raise TypeError(f"config must be a PretrainConfig, a preset name or None, got {type(config).__name__}")


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
        return synthface_at(size, seed=cfg.data_seed, num_images=cfg.synth_images,
                            num_identities=cfg.synth_identities or None)
    path = Path(cfg.data)
    if is_shard_folder(path):           # pacofr prepare's (or synthface --shards') tar shards, streamed
        return ShardSet(path, size, buffer=cfg.shuffle_buffer)
    faces = open_landmark_faces(path, size)
    if faces is not None:
        return faces
    if not path.is_dir():
        raise ValueError(f"data must be 'synthface', a shard folder (pacofr prepare), a folder of face images, "
                         f"a COCO keypoint .json or an HRNet .csv; {path} is none of these")
    return ImageFolder(path, size)


def _augment(cfg):
    return AugmentConfig(flip=0.5 if cfg.flip else 0.0, rotate=0.0, scale=0.0, translate=0.0, brightness=0.0,
                         contrast=0.0, saturation=0.0, grayscale=0.0, blur=0.0)


def _encoder_shape(cfg):
    """The MLP's first product as the encoder runs it (kept tokens of a batch): the shape
    that runtime.choose_dtype times."""
    vit = cfg.model if not isinstance(cfg.model, str) else get_config(cfg.model)
    tokens = 1 + max(1, num_kept(cfg.mask_ratio, vit.num_patches))
    return dict(width=vit.embed_dim, hidden=int(vit.embed_dim * vit.mlp_ratio), rows=cfg.batch_size * tokens)


def _dtype(cfg, out):
    """cfg.dtype resolved ("auto": calibrated on this CPU, or the dtype this run folder's
    runtime.json recorded, so a resumed run keeps its dtype); the choice and its reason go
    to stderr and, with build_info(), to out/runtime.json."""
    recorded = out / "runtime.json"
    if cfg.dtype == "auto" and recorded.exists():
        try:
            dtype = json.loads(recorded.read_text())["dtype"]
        except (ValueError, KeyError, OSError):
            dtype = None
        if dtype in ("fp32", "bf16"):
            print(f"pacofr pretrain: {dtype}: kept from this run's start ({recorded})", file=sys.stderr)
            return dtype
    dtype, why = runtime.choose_dtype(cfg.dtype, **_encoder_shape(cfg))
    print(f"pacofr pretrain: {why}", file=sys.stderr)
    info = {"dtype": dtype, "dtype_reason": why, "build_info": runtime.build_info()}
    atomic_write_bytes(recorded, json.dumps(info, indent=1).encode())
    return dtype


def _teacher_dtype(cfg, dtype, out):
    """cfg.teacher_dtype resolved against the student's dtype: "auto" is bf16 where the
    calibration of runtime.choose_dtype, at the teacher's shape (the encoder's kept tokens),
    finds bf16 products faster on this CPU (a bf16 teacher's affinity targets stay within
    1e-3 of fp32's), else the student's dtype. The choice is kept in out/runtime.json and a
    resumed run keeps it, so a run never changes its teacher halfway."""
    if cfg.teacher_dtype in ("fp32", "bf16"):
        return cfg.teacher_dtype
    if cfg.teacher_dtype == "model" or dtype == "bf16" or cfg.lambda_sc == 0:
        return dtype
    recorded = out / "runtime.json"
    info = json.loads(recorded.read_text()) if recorded.exists() else {}
    if info.get("teacher_dtype") in ("fp32", "bf16"):
        return info["teacher_dtype"]
    fast, why = runtime.choose_dtype("auto", **_encoder_shape(cfg))
    print(f"pacofr pretrain: the EMA teacher in {fast} (teacher_dtype auto: {why})", file=sys.stderr)
    info.update(teacher_dtype=fast, teacher_dtype_reason=why)
    atomic_write_bytes(recorded, json.dumps(info, indent=1).encode())
    return fast


def _dtypes(cfg, out, world):
    """(dtype, teacher dtype) resolved by rank 0 (its calibration, its runtime.json) for all."""
    dtypes = None
    if world.is_root:
        out.mkdir(parents=True, exist_ok=True)
        dtype = _dtype(cfg, out)
        dtypes = (dtype, _teacher_dtype(cfg, dtype, out))
    return world.bcast(dtypes)


def _setup(cfg, world):
    """Model, data, optimizer and PaCo-FR state of a fresh run (this rank's part of it)."""
    out = Path(cfg.out)
    dtype, teacher_dtype = _dtypes(cfg, out, world)
    cfg = cfg.replace(teacher_dtype=teacher_dtype)
    model = create_model(cfg.model, seed=cfg.seed, dtype=dtype, norm_pix_loss=cfg.norm_pix,
                         codebook_size=cfg.codebook_size if cfg.uses_codebook else 0,
                         belief_hidden=cfg.belief_hidden)
    dataset = make_dataset(cfg, model.config.img_size)
    if cfg.batch_size % world.size:
        raise ValueError(f"batch_size {cfg.batch_size} must divide among the {world.size} ranks")
    loader = Loader(dataset, cfg.batch_size, seed=cfg.seed, augment=_augment(cfg), prefetch=2,
                    part=(world.rank, world.size))
    if len(loader) < 1:
        raise ValueError(f"the data set has {len(dataset)} images, fewer than one batch of {cfg.batch_size}")
    _check_data_gives_regions(cfg, dataset)
    incubation = cfg.incubation(len(loader)) if cfg.uses_codebook else 0
    optimizer = AdamW(model, lr=cfg.base_lr(), weight_decay=cfg.weight_decay, betas=cfg.betas,
                      clip_grad_norm=cfg.clip_grad or None)
    return _Run(cfg, out, model, loader, optimizer, PacoFR(model, cfg, incubation, world), incubation, Position())


def _resume(run):
    """Load the latest usable checkpoint of ``run.out`` into the run (when it has one)."""
    world = run.paco.world
    folder, loaded = checkpoint.latest_checkpoint(run.out) if world.is_root else (None, None)
    chosen = world.bcast(None if folder is None else str(folder))   # every rank resumes from rank 0's pick
    if chosen is None:
        return
    if not world.is_root:
        folder, loaded = Path(chosen), checkpoint.load_checkpoint(chosen)
    saved_model, opt, paco, state = loaded
    now = json.loads(json.dumps(run.cfg.to_dict()))
    then = json.loads(json.dumps(PretrainConfig.from_saved(state["config"]).to_dict()))
    diff = sorted(k for k in now if then.get(k) != now[k] and k not in RESUMABLE_CHANGES)
    if diff:
        raise ValueError(f"{folder}: the run was started with another config (differs in {diff})")
    run.model.load_state_dict(saved_model.state_dict())
    run.optimizer.load_state_dict({"m": opt["m"], "v": opt["v"], **state["optimizer"]})
    run.paco.load_state_dict({**paco, **state["paco"]})
    run.pos = Position(state["step"], state["epoch"], state["batch_in_epoch"])
    world.agree("checkpoint", {"folder": chosen, "step": run.pos.step,
                               "weights": hashlib.sha256(run.model.flat_params.tobytes()).hexdigest()})


def _save(run):
    if not run.paco.world.is_root:     # one writer: rank 0 (every rank holds the same state)
        return
    pos, cfg = run.pos, run.cfg
    state = {"step": pos.step, "epoch": pos.epoch, "batch_in_epoch": pos.batch_in_epoch, "config": cfg.to_dict(),
             "incubation_steps": run.incubation}
    checkpoint.save_checkpoint(run.out, pos.step, run.model, run.optimizer, run.paco.state_dict(), state,
                               cfg.keep_checkpoints)


def _save_unless_saved(run):
    dirs = checkpoint.checkpoint_dirs(run.out)
    if run.pos.step and not (dirs and checkpoint.step_of(dirs[-1]) == run.pos.step):
        _save(run)


def _after_step(run, metrics, throughput, bar, batch, eval_hook, result):
    """Logging, preview, eval hook and checkpoint after step ``run.pos.step``."""
    cfg, step = run.cfg, run.pos.step
    terms, lr, gnorm = result
    if step % cfg.log_every == 0 or step == cfg.steps:
        row = log.step_row(step, run.pos.epoch, lr, terms, throughput.rate(), gnorm)
        metrics.write(row)
        log.show(bar, row)
        run.last = row
    if cfg.preview_every and step % cfg.preview_every == 0 and run.paco.world.is_root:  # before the hook
        save_preview(run.paco, batch, step, run.out / "previews" / f"step_{step:07d}.png")
    if cfg.diag_every and step % cfg.diag_every == 0 and run.paco.world.is_root:
        metrics.write({"step": step, **diagnostics.diagnose(run.paco, batch["images"][:DIAG_IMAGES])})
    if eval_hook is not None and cfg.eval_every and step % cfg.eval_every == 0:
        metrics.write({"step": step, **{f"eval/{k}": v for k, v in eval_hook(run.model, step).items()}})
    if step % cfg.checkpoint_every == 0 or step == cfg.steps:
        _save(run)
    if bar is not None:
        bar.update(1)


def _one_blas_thread():
    """NumPy's BLAS held to one thread while the loop runs (entered; exit it after). The
    loader's NumPy products (SynthFace geometry, alignment) otherwise wake OpenBLAS's pool,
    whose spinning threads take cores from the step's OpenMP team: the loop measured 0.89 of
    its isolated step's speed with the pool, 0.94 without (benchmarks/speed/bench_loop.py)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # an install without it: the loop runs, a little slower
        return contextlib.nullcontext()


def _loop(run, eval_hook, progress, stop_after):
    """Steps until ``cfg.steps`` (or ``stop_after`` of them); a Ctrl-C inside a step rolls its
    partial effects back and leaves a checkpoint of the last finished step."""
    cfg, pos = run.cfg, run.pos
    root = run.paco.world.is_root
    metrics, throughput = log.Metrics(run.out, pos.step) if root else log.NoMetrics(), log.Throughput()
    bar = log.progress_bar(progress and root, cfg.steps, pos.step, cfg.preset)
    it, done_here, snap, run.last = batches(run.loader, pos), 0, None, {}
    blas = _one_blas_thread()
    try:
        while pos.step < cfg.steps and (stop_after is None or done_here < stop_after):
            snap = (pos.step, pos.epoch, pos.batch_in_epoch, run.paco.snapshot())  # what a Ctrl-C mid-step undoes
            terms, seen, batch, lr, gnorm = train_one_step(run.paco, run.optimizer, it, pos, cfg)
            snap, done_here = None, done_here + 1
            throughput.add(seen)
            _after_step(run, metrics, throughput, bar, batch, eval_hook, (terms, lr, gnorm))
        if pos.step < cfg.steps:
            _save_unless_saved(run)  # stop_after: the run stays resumable from here
    except KeyboardInterrupt:
        if snap is not None and snap[0] == pos.step:  # inside a step, before its update: undo it
            pos.epoch, pos.batch_in_epoch = snap[1], snap[2]
            run.paco.restore(snap[3])
        _save_unless_saved(run)  # a consistent checkpoint of the last finished step
        raise
    finally:
        blas.__exit__(None, None, None)
        it.close()
        if bar is not None:
            bar.close()
        metrics.close()


def pretrain(config=None, eval_hook=None, progress=True, stop_after=None, **overrides):
    """Run (or resume) PaCo-FR / MAE pre-training. ``config``: a PretrainConfig, a preset name
    ("pacofr", "mae") or None (pacofr); ``overrides``: config fields (``resume=True`` continues
    the run in ``out`` from its latest checkpoint). ``eval_hook(model, step) -> dict`` is called
    every ``eval_every`` steps and its numbers are logged. ``stop_after``: return after this
    many steps of this call (the run stays resumable). Returns a PretrainResult."""
    resume = bool(overrides.pop("resume", False))
    cfg = _resolve(config, overrides)
    if cfg.threads:
        runtime.set_num_threads(cfg.threads)
    world = distributed.world()
    try:
        return _pretrain(cfg, world, resume, eval_hook, progress, stop_after)
    except BaseException as exc:
        if world.size > 1:              # never leave the other ranks waiting in a collective
            world.abort(exc)
        raise


def _pretrain(cfg, world, resume, eval_hook, progress, stop_after):
    from .._version import __version__
    world.agree("config or pacofr version", {"config": cfg.to_dict(), "version": __version__})
    run = _setup(cfg, world)
    if not resume and checkpoint.checkpoint_dirs(run.out):
        raise ValueError(f"{run.out} already holds a run (checkpoints/): pass resume=True (--resume) to continue "
                         f"it, or choose another out folder")
    if resume:
        _resume(run)
    if world.is_root:
        atomic_write_bytes(run.out / "pretrain_config.json", json.dumps(cfg.to_dict(), indent=1).encode())
    _loop(run, eval_hook, progress, stop_after)
    return PretrainResult(out=run.out, model=run.model, step=run.pos.step, metrics=run.last)
