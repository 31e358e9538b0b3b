"""Model folders: exact round trips, atomic writes, clear errors; timm and MAE converters."""
import json
import os

import numpy as np
import pytest

import pacofr
from pacofr import checkpoint as ck
from pacofr.model import create_model

# timm's VisionTransformer names for a depth-2 encoder, in timm's order (head included,
# as timm writes it for a classifier).
TIMM_KEYS = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"] + [
    f"blocks.{i}.{k}" for i in range(2) for k in (
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias")] + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


@pytest.fixture
def model():
    return create_model("pacofr_test_tiny", seed=7)


def test_save_load_round_trip(model, tmp_path):
    ck.save_model(model, tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "model.safetensors"]
    loaded = pacofr.load_model(tmp_path / "m")
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    doc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert doc["format_version"] == 1 and doc["model_type"] == "pacofr_mae_vit"
    # written files follow the umask like any other file
    mode = os.stat(tmp_path / "m" / "model.safetensors").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_weights_load_in_pytorch(model, tmp_path, torch):
    """The file is plain safetensors that PyTorch reads."""
    import safetensors.torch as safetensors_torch
    ck.save_model(model, tmp_path)
    state = safetensors_torch.load_file(str(tmp_path / "model.safetensors"))
    np.testing.assert_array_equal(state["blocks.1.mlp.fc2.weight"].numpy(), model.param("blocks.1.mlp.fc2.weight"))


def test_overwrite_is_atomic(model, tmp_path):
    ck.save_model(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    other = create_model("pacofr_test_tiny", seed=8)
    ck.save_model(other, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() != before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_truncated_corrupt_and_foreign_files(model, tmp_path):
    ck.save_model(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors: (corrupt|not a safetensors)"):
        pacofr.load_model(tmp_path)
    weights.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)  # the start of a pickle
    with pytest.raises(ValueError, match="not a safetensors file"):
        pacofr.load_model(tmp_path)
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="0 bytes, truncated or empty"):
        pacofr.load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        pacofr.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        pacofr.load_model(tmp_path / "nowhere")


def test_mismatched_weights(model, tmp_path):
    ck.save_model(model, tmp_path)
    state = ck.load_state(tmp_path / "model.safetensors")
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"][:10]
    ck.save_state(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"blocks.0.attn.qkv.weight: expected shape \(192, 64\), got \(10, 64\)"):
        pacofr.load_model(tmp_path)
    del state["blocks.0.attn.qkv.weight"]
    ck.save_state(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing \\['blocks.0.attn.qkv.weight'\\]"):
        pacofr.load_model(tmp_path)


def test_timm_names_and_round_trip(model):
    timm_state = ck.to_timm(model.state_dict())
    assert list(timm_state) == [k for k in TIMM_KEYS if not k.startswith("head.")]
    with_head = dict(timm_state, **{"head.weight": np.zeros((10, 64), np.float32),
                                   "head.bias": np.zeros(10, np.float32)})
    assert list(with_head) == TIMM_KEYS
    enc = create_model("pacofr_test_tiny", encoder_only=True, seed=99)
    enc.load_state_dict(ck.from_timm(with_head))
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(enc.encode(images), model.encode(images))
    back = ck.to_timm(enc.state_dict())
    for k in back:
        np.testing.assert_array_equal(back[k], timm_state[k])
    with pytest.raises(ValueError, match="layer scale|not the plain timm ViT"):
        ck.from_timm(dict(timm_state, **{"blocks.0.ls1.gamma": np.ones(64, np.float32)}))
    with pytest.raises(ValueError, match="no cls_token"):
        ck.from_timm({k: v for k, v in timm_state.items() if k != "cls_token"})


def test_mae_round_trip(model):
    mae = ck.to_mae(model.state_dict())
    assert set(mae) == {"model"} and "decoder_pred.weight" in mae["model"]
    other = create_model("pacofr_test_tiny", seed=1)
    other.load_state_dict(ck.from_mae(mae))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    other.load_state_dict(ck.from_mae(mae["model"]))


def test_encoder_loads_into_pytorch_vit(model, torch):
    """The timm-named encoder drives a PyTorch ViT built with timm's layout to the same tokens."""
    from pacofr.testing.torch_ref import MAE
    cfg = model.config.replace(encoder_only=True)
    tm = MAE(cfg)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ck.to_timm(model.state_dict()).items()}, strict=True)
    images = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = tm.forward_encoder(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(model.encode(images), want, rtol=1e-4, atol=1e-5)


def test_encoder_matches_real_timm():
    """tests/make_timm_golden.py loaded to_timm(golden weights) into timm's VisionTransformer
    with strict=True and stored its forward_features: pacofr's encoder gives the same tokens,
    and timm's own key order is pacofr's."""
    here = os.path.dirname(os.path.abspath(__file__))
    timm_golden = np.load(os.path.join(here, "golden", "timm_encoder.npz"))
    golden = np.load(os.path.join(here, "golden", "mae_test_tiny.npz"))
    state = {k[6:]: golden[k] for k in golden.files if k.startswith("param/")}
    enc = create_model("pacofr_test_tiny", encoder_only=True)
    enc.load_state_dict(ck.to_timm(state))
    assert list(ck.to_timm(state)) == [str(k) for k in timm_golden["keys"]]
    np.testing.assert_allclose(enc.encode(golden["images"]), timm_golden["features"], rtol=1e-4, atol=1e-5)
