"""Every on-disk format of pacofr: model folders (``model.safetensors`` + ``config.json``, the
way timm and Hugging Face lay out a local model), pre-training run checkpoints, and converters
between pacofr, timm and MAE state dicts. Nothing is ever unpickled: arrays are safetensors only.

A run checkpoint, ``OUT/checkpoints/step_0000200/``, holds everything a pre-training run needs
to continue bit-identically: ``model.safetensors`` + ``config.json`` (the model, loadable by
``load_model``), ``optimizer.safetensors`` (AdamW moments), ``paco.safetensors`` (EMA teacher,
codebook EMA state, recent code choices as int64), ``state.json`` (step, data position,
optimizer scalars, run config) and ``manifest.json`` (SHA-256 and size of every file, checked
on load). It is written atomically (a folder built under a temporary name, checked, then
renamed), the last N are kept, and a corrupt newest one is skipped with a warning in favour of
the one before."""
import hashlib
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes, fsync_dir
from ._version import __version__
from .config import ViTConfig
from .model import Model

FORMAT_VERSION = 1
MAX_HEADER = 100 << 20   # bytes of a safetensors header (or a config file) beyond which a file is not ours
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MODEL_TYPE = "pacofr_mae_vit"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"

# timm VisionTransformer keys that an encoder may carry and pacofr has no use for.
TIMM_EXTRA_PREFIXES = ("head.", "fc_norm.", "head_drop.")
DECODER_PREFIXES = ("decoder_", "mask_token", "codebook.", "belief.")
CHECKPOINTS = "checkpoints"
PREFIX = "step_"


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError as exc:  # a hard dependency; this only helps a broken install
        raise ImportError("pacofr checkpoints need the 'safetensors' package: pip install safetensors") from exc
    return safetensors.numpy


def _stored(v):
    """Integer arrays are stored as int64, everything else as float32."""
    a = np.asarray(v)
    return np.ascontiguousarray(a, np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32)


def save_state(state, path, metadata=None):
    """name -> array into one safetensors file, atomically (integers as int64, the rest float32)."""
    st = _safetensors()
    arrays = {k: _stored(v) for k, v in state.items()}
    meta = {"format": "pt", "pacofr_format_version": str(FORMAT_VERSION)}
    meta.update(metadata or {})
    atomic_write_bytes(path, st.save(arrays, metadata=meta))


def _json(raw, path):
    """Parsed JSON, or ValueError naming the file (bad bytes, syntax, or absurd nesting)."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


def read_header(path):
    """A safetensors file's header, read without its data -> (name -> {dtype, shape, data_offsets},
    file size). ValueError naming the file when it is a folder, truncated, padded, not
    safetensors, or describes tensors its bytes cannot hold."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a safetensors weights file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little") if size >= 8 else 0
            raw = f.read(n) if 0 < n <= min(MAX_HEADER, size - 8) else b""
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such weights file") from None
    if size < 8:
        raise ValueError(f"{path}: not a safetensors file ({size} bytes, truncated or empty)")
    if not raw.startswith(b"{"):
        raise ValueError(f"{path}: not a safetensors file ({size} bytes; bad header: truncated, or another format)")
    header = _json(raw, path)
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    end = 0
    for name, info in header.items():
        shape, offsets = (info.get("shape"), info.get("data_offsets")) if isinstance(info, dict) else (None, None)
        ok = (isinstance(info, dict) and info.get("dtype") in ITEMSIZE and isinstance(shape, list)
              and all(isinstance(v, int) and v >= 0 for v in shape) and isinstance(offsets, list) and len(offsets) == 2
              and all(isinstance(v, int) for v in offsets) and 0 <= offsets[0] <= offsets[1])
        if not ok or offsets[1] - offsets[0] != int(np.prod(shape, dtype=object)) * ITEMSIZE[info["dtype"]]:
            raise ValueError(f"{path}: tensor {name!r} has a bad header entry {str(info)[:200]}")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise ValueError(f"{path}: not a safetensors file of its header's size: {size} bytes, the header describes "
                         f"{8 + n + end} (truncated or padded)")
    return header, size


def load_state(path, expect=None):
    """A safetensors file -> name -> array (int64 or float32). The header is read and checked
    first (and against ``expect``, name -> shape, when given), so no more than it declares is
    ever read. ValueError naming the file when it is missing, truncated, not safetensors, or
    holds other shapes than expected."""
    st = _safetensors()
    path = Path(path)
    header, _ = read_header(path)
    if expect is not None and set(header) != set(expect):
        missing = sorted(set(expect) - set(header))[:8]
        raise ValueError(f"{path}: state dict does not match the model: missing {missing}, "
                         f"unexpected {sorted(set(header) - set(expect))[:8]}")
    for name, shape in (expect or {}).items():
        if tuple(header[name]["shape"]) != tuple(shape):
            raise ValueError(f"{path}: {name}: expected shape {tuple(shape)}, got {tuple(header[name]['shape'])}")
    try:
        state = st.load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ValueError(f"{path}: corrupt safetensors file: {exc}") from None
    return {k: _stored(v) for k, v in state.items()}


def save_model(model, folder):
    """model.safetensors + config.json in folder (created if needed), each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_state(model.state_dict(), folder / WEIGHTS, {"model_type": MODEL_TYPE})
    config = {"format_version": FORMAT_VERSION, "model_type": MODEL_TYPE, "pacofr_version": __version__,
              "dtype": model.dtype, "config": model.config.to_dict()}
    atomic_write_bytes(folder / CONFIG, (json.dumps(config, indent=2) + "\n").encode())


def read_config(folder):
    path = Path(folder) / CONFIG
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a config file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no config.json (is {folder} a pacofr model folder?)") from None
    if len(raw) > MAX_HEADER:
        raise ValueError(f"{path}: {len(raw)} bytes, too large for a model config")
    doc = _json(raw, path)
    if not isinstance(doc, dict) or doc.get("model_type") != MODEL_TYPE:
        kind = doc.get('model_type') if isinstance(doc, dict) else None
        raise ValueError(f"{path}: not a pacofr model config (model_type {kind!r})")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {doc['format_version']} is newer than this pacofr "
                         f"({FORMAT_VERSION}); upgrade pacofr")
    try:
        return ViTConfig.from_dict(doc["config"]), doc.get("dtype", "fp32")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad model config: {exc}") from None


def load_model(folder, dtype=None):
    """The model saved in folder (config.json + model.safetensors), or, for a pre-training run
    folder (one with ``checkpoints/``), its latest usable checkpoint's model."""
    run_checkpoints = Path(folder) / CHECKPOINTS
    if not (Path(folder) / CONFIG).is_file() and run_checkpoints.is_dir():
        def just_the_model(f):
            verify(f)
            return load_model(f, dtype)
        found, model = latest_checkpoint(folder, just_the_model)
        if found is None:
            raise FileNotFoundError(f"{run_checkpoints}: the run has no checkpoint yet")
        return model
    config, saved_dtype = read_config(folder)
    read_header(Path(folder) / WEIGHTS)   # checked before the model's buffers are allocated
    model = Model(config, dtype=dtype or saved_dtype)
    state = load_state(Path(folder) / WEIGHTS, {t.name: t.shape for t in model.tensors})
    try:
        model.load_state_dict(state, strict=True)
    except ValueError as exc:
        raise ValueError(f"{Path(folder) / WEIGHTS}: {exc}") from None
    return model


# ---- run checkpoints


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
        arrays = {k: v for k, v in paco_state.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in paco_state.items() if not isinstance(v, np.ndarray)}
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
        manifest = _json((folder / "manifest.json").read_bytes(), folder / "manifest.json")
    except OSError as exc:
        raise ValueError(f"{folder}: no readable manifest.json ({exc})") from None
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) and {"bytes", "sha256"} <= set(v)
                                                 for v in manifest.values()):
        raise ValueError(f"{folder / 'manifest.json'}: not a checkpoint manifest (name -> bytes, sha256)")
    for name, info in manifest.items():
        f = folder / name
        if Path(name).name != name or not f.is_file():
            raise ValueError(f"{f}: missing (or not a file of the checkpoint folder)")
        if f.stat().st_size != info["bytes"] or _sha256(f) != info["sha256"]:
            raise ValueError(f"{f}: corrupt (size or SHA-256 differs from manifest.json)")


def load_checkpoint(folder):
    """-> (model, optimizer moments dict, paco arrays dict, state dict) of one checkpoint."""
    folder = Path(folder)
    verify(folder)
    model = load_model(folder)
    opt = load_state(folder / "optimizer.safetensors")
    paco = load_state(folder / "paco.safetensors")
    state = _json((folder / "state.json").read_bytes(), folder / "state.json")
    return model, opt, paco, state


def latest_checkpoint(out, loader=load_checkpoint):
    """The newest checkpoint of a run that loads; a corrupt one is skipped with a warning.
    -> (folder, loaded) or (None, None) when the run has none."""
    dirs = checkpoint_dirs(out)
    for folder in reversed(dirs):
        try:
            return folder, loader(folder)
        except (OSError, ValueError, KeyError, TypeError, MemoryError) as exc:
            warnings.warn(f"checkpoint {folder} is unusable ({exc}); falling back to the previous one",
                          RuntimeWarning, stacklevel=2)
    if dirs:
        raise ValueError(f"{Path(out) / CHECKPOINTS}: no usable checkpoint ({len(dirs)} corrupt)")
    return None, None


# ---- converters


def to_timm(state):
    """A pacofr (or MAE) state dict -> the encoder's weights under timm's VisionTransformer
    names (the same names: the decoder and mask token are dropped)."""
    return {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIXES)}


def from_timm(state):
    """A timm VisionTransformer state dict -> pacofr encoder names. Classifier heads and
    fc_norm are dropped; a layout pacofr cannot express (no class token, register tokens,
    layer scale, q/k norm) raises ValueError."""
    out = {}
    for k, v in state.items():
        if k.startswith(TIMM_EXTRA_PREFIXES):
            continue
        if k == "reg_token" or ".ls1." in k or ".ls2." in k or ".q_norm." in k or ".k_norm." in k:
            raise ValueError(f"timm weight {k!r}: this ViT variant is not the plain timm ViT pacofr implements")
        out[k] = np.asarray(v, np.float32)
    if "cls_token" not in out:
        raise ValueError("timm state dict has no cls_token: pacofr's encoder needs a class token")
    return out


def to_mae(state):
    """pacofr names are MAE's (models_mae.MaskedAutoencoderViT): a copy, as MAE's checkpoints
    wrap it: {'model': state}; PaCo-FR's codebook.* and belief.* have no MAE counterpart and
    are left out."""
    return {"model": {k: np.asarray(v, np.float32) for k, v in state.items()
                      if not k.startswith(("codebook.", "belief."))}}


def from_mae(checkpoint):
    """An MAE checkpoint ({'model': state} or the state itself) -> pacofr names."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError("an MAE checkpoint is a dict, or a dict under 'model'")
    return {k: np.asarray(v, np.float32) for k, v in state.items()}
