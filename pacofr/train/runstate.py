"""Run checkpoints: everything a pre-training run needs to continue bit-identically, written
atomically (a folder built under a temporary name, checked, then renamed), the last N kept,
and a corrupt newest checkpoint skipped with a warning in favour of the one before.

Layout of ``OUT/checkpoints/step_0000200/``: ``model.safetensors`` + ``config.json`` (the
model, loadable by ``pacofr.load_model``), ``optimizer.safetensors`` (AdamW moments),
``paco.safetensors`` (EMA teacher, codebook EMA state, recent code choices), ``state.json``
(step, data position, optimizer scalars, run config) and ``manifest.json`` (SHA-256 and size
of every file, checked on load)."""
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes, fsync_dir
from ..checkpoint import load_model, load_state, save_model, save_state

CHECKPOINTS = "checkpoints"
PREFIX = "step_"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def step_of(folder):
    """The step number of a checkpoint folder ``step_N``."""
    return int(Path(folder).name[len(PREFIX):])


def checkpoint_dirs(out):
    """A run's checkpoint folders, oldest first (by step number)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                   and p.name[len(PREFIX):].isdigit()), key=step_of)


def save_checkpoint(out, step, model, optimizer, paco_state, state, keep):
    """Write checkpoint ``step`` atomically; then drop all but the newest ``keep``."""
    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".tmp-{PREFIX}{step:07d}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_model(model, tmp)
        opt = optimizer.state_dict()
        save_state({"m": opt["m"], "v": opt["v"]}, tmp / "optimizer.safetensors")
        arrays = {k: np.asarray(v, np.float32) for k, v in paco_state.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in paco_state.items() if not isinstance(v, np.ndarray)}
        # int64 ring of code ids travels as float32 exactly (ids < 2^24)
        save_state(arrays, tmp / "paco.safetensors")
        full = {**state, "optimizer": {k: v for k, v in opt.items() if k not in ("m", "v")}, "paco": scalars}
        atomic_write_bytes(tmp / "state.json", (json.dumps(full, indent=1, default=_jsonable) + "\n").encode())
        manifest = {f.name: {"sha256": _sha256(f), "bytes": f.stat().st_size} for f in sorted(tmp.iterdir())}
        atomic_write_bytes(tmp / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stray in root.glob(".tmp-*"):
        shutil.rmtree(stray, ignore_errors=True)
    return final


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"cannot store {type(v).__name__} in state.json")


def verify(folder):
    """ValueError naming the file when a checkpoint folder is incomplete or corrupt."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder}: no readable manifest.json ({exc})") from None
    for name, info in manifest.items():
        f = folder / name
        if not f.is_file():
            raise ValueError(f"{f}: missing")
        if f.stat().st_size != info["bytes"] or _sha256(f) != info["sha256"]:
            raise ValueError(f"{f}: corrupt (size or SHA-256 differs from manifest.json)")


def load_checkpoint(folder):
    """-> (model, optimizer moments dict, paco arrays dict, state dict) of one checkpoint."""
    folder = Path(folder)
    verify(folder)
    model = load_model(folder)
    opt = load_state(folder / "optimizer.safetensors")
    paco = load_state(folder / "paco.safetensors")
    state = json.loads((folder / "state.json").read_text())
    return model, opt, paco, state


def latest_checkpoint(out, loader=load_checkpoint):
    """The newest checkpoint of a run that loads; a corrupt one is skipped with a warning.
    -> (folder, loaded) or (None, None) when the run has none."""
    dirs = checkpoint_dirs(out)
    for folder in reversed(dirs):
        try:
            return folder, loader(folder)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"checkpoint {folder} is unusable ({exc}); falling back to the previous one",
                          RuntimeWarning, stacklevel=2)
    if dirs:
        raise ValueError(f"{Path(out) / CHECKPOINTS}: no usable checkpoint ({len(dirs)} corrupt)")
    return None, None
