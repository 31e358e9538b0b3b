"""Model folders (``model.safetensors`` + ``config.json``, the way timm and Hugging Face lay
out a local model) and converters between pacofr, timm and MAE state dicts.

Nothing is ever unpickled: weights are safetensors only."""
import json
from pathlib import Path

import numpy as np

from ._io import atomic_write_bytes
from ._version import __version__
from .config import ViTConfig

FORMAT_VERSION = 1
MODEL_TYPE = "pacofr_mae_vit"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"

# timm VisionTransformer keys that an encoder may carry and pacofr has no use for.
TIMM_EXTRA_PREFIXES = ("head.", "fc_norm.", "head_drop.")
DECODER_PREFIXES = ("decoder_", "mask_token", "codebook.", "belief.")


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError as exc:  # a hard dependency; this only helps a broken install
        raise ImportError("pacofr checkpoints need the 'safetensors' package: pip install safetensors") from exc
    return safetensors.numpy


def save_state(state, path, metadata=None):
    """name -> array into one safetensors file, atomically."""
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    meta = {"format": "pt", "pacofr_format_version": str(FORMAT_VERSION)}
    meta.update(metadata or {})
    atomic_write_bytes(path, st.save(arrays, metadata=meta))


def load_state(path):
    """A safetensors file -> name -> float32 array. ValueError naming the file when it is
    missing, truncated, or not safetensors."""
    st = _safetensors()
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such weights file") from None
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file ({len(data)} bytes, truncated or empty)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data) or data[8:9] != b"{":
        raise ValueError(f"{path}: not a safetensors file (bad header: truncated, or another format)")
    try:
        state = st.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ValueError(f"{path}: corrupt safetensors file: {exc}") from None
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}


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
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no config.json (is {folder} a pacofr model folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path}: not a pacofr model config (model_type {doc.get('model_type') if isinstance(doc, dict) else None!r})")
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
    from .model import Model
    run_checkpoints = Path(folder) / "checkpoints"
    if not (Path(folder) / CONFIG).is_file() and run_checkpoints.is_dir():
        from .train.runstate import latest_checkpoint, verify

        def just_the_model(f):
            verify(f)
            return load_model(f, dtype)
        found, model = latest_checkpoint(folder, just_the_model)
        if found is None:
            raise FileNotFoundError(f"{run_checkpoints}: the run has no checkpoint yet")
        return model
    config, saved_dtype = read_config(folder)
    model = Model(config, dtype=dtype or saved_dtype)
    state = load_state(Path(folder) / WEIGHTS)
    try:
        model.load_state_dict(state, strict=True)
    except ValueError as exc:
        raise ValueError(f"{Path(folder) / WEIGHTS}: {exc}") from None
    return model


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
