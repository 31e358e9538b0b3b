"""Issue 13's findings, one named regression test each: every bad input raises ValueError or
TypeError (or a subclass) naming the argument or the file, quickly, and nothing is left half
written. The data readers' findings are in test_bad_data.py."""
import json
import os
import time

import numpy as np
import pytest

import pacofr
from pacofr import _C
from pacofr import checkpoint as ck
from pacofr import regions
from pacofr.data.schemes import CANONICAL_68
from pacofr.train.log import Metrics


def fast(fn, *args, **kwargs):
    """Call fn and return its result, failing when it takes a second or more."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    assert time.perf_counter() - t < 1.0
    return out


# ---------------------------------------------------------------- 1. the rasteriser hang

def test_landmarks_far_outside_the_image_raise_instead_of_hanging():
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"landmarks must lie near the 112 px image .* magnitude 1.*e\+22"):
        regions.region_map_from_landmarks(CANONICAL_68[None] * 112 * 1e20, 112, 7)
    assert time.perf_counter() - t < 1.0


def test_rasteriser_clamps_far_vertices_before_any_integer_cast():
    """A polygon reaching 1e22 px (beyond int64 as an integer) paints only inside the image."""
    S, n = 16, 4
    poly = np.array([[-1e22, -1e22], [1e22, -1e22], [1e22, 1e22], [-1e22, 1e22]], np.float32)
    layers = np.concatenate([[1, -1, 200, 100, 50, 0, n], poly.ravel()]).astype(np.float32)
    params = np.zeros((1, 16), np.float32)
    params[0, 2:4] = 1.0
    img, labels = fast(_C.raster_faces, layers, np.array([0, layers.size], np.int64), params,
                       np.zeros((1, 6), np.float32), np.zeros(1, np.int64), S)
    assert (labels == 1).all()                                  # the whole image is inside the polygon
    off = np.concatenate([[1, -1, 200, 100, 50, 0, n], (poly + 3e22).ravel()]).astype(np.float32)
    _, labels = fast(_C.raster_faces, off, np.array([0, off.size], np.int64), params,
                     np.zeros((1, 6), np.float32), np.zeros(1, np.int64), S)
    assert (labels == 0).all()                                  # entirely off the image: nothing painted


# ---------------------------------------------------------------- 2. silent garbage

def test_matmul_alpha_beyond_float32_raises():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"alpha and beta must be finite, got alpha=1e\+39"):
        pacofr.ops.matmul(a, a, trans_b=True, alpha=1e39)
    with pytest.raises(ValueError, match="beta=-1e\\+39"):
        pacofr.ops.matmul(a, a, trans_b=True, out=np.zeros((2, 2), np.float32), beta=-1e39)


@pytest.fixture
def tiny():
    return pacofr.create_model("pacofr_test_tiny", seed=0)


def test_adamw_without_clipping_refuses_a_nan_gradient_and_keeps_the_weights(tiny):
    opt = pacofr.AdamW(tiny, lr=1e-3)
    before = tiny.flat_params.copy()
    tiny.flat_grads[5] = np.nan
    with pytest.raises(FloatingPointError, match="gradient norm is nan at optimizer step 1: .* left as they were"):
        opt.step()
    np.testing.assert_array_equal(tiny.flat_params, before)
    assert opt.step_count == 0
    tiny.zero_grad()
    with pytest.raises(ValueError, match="grad_scale must be a finite positive number, got nan"):
        opt.step(grad_scale=float("nan"))
    opt.lr = float("inf")
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got inf"):
        opt.step()
    np.testing.assert_array_equal(tiny.flat_params, before)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(eps=float("nan")), ValueError, "eps must be a finite number > 0, got nan"),
    (dict(eps=-1.0), ValueError, "eps must be a finite number > 0, got -1.0"),
    (dict(lr=float("inf")), ValueError, "lr must be a finite number >= 0, got inf"),
    (dict(lr="1e-3"), TypeError, "lr must be a number, got str"),
    (dict(weight_decay=float("nan")), ValueError, "weight_decay must be a finite number >= 0"),
    (dict(betas=(0.9,)), ValueError, "betas must be two numbers in"),
    (dict(clip_grad_norm=float("inf")), ValueError, "clip_grad_norm must be a finite positive number"),
])
def test_adamw_hyperparameters_are_checked(tiny, kwargs, error, message):
    with pytest.raises(error, match=message):
        pacofr.AdamW(tiny, **{"lr": 1e-3, **kwargs})


@pytest.mark.parametrize("override, error, message", [
    (dict(img_size=2 ** 35), ValueError, "img_size must be at most 8192, got 34359738368"),
    (dict(encoder_only="no"), TypeError, "encoder_only must be true or false, got 'no'"),
    (dict(learned_pos=1), TypeError, "learned_pos must be true or false, got 1"),
    (dict(mlp_ratio=float("inf")), ValueError, "mlp_ratio must be in \\(0, 64\\]"),
    (dict(mlp_ratio="4"), TypeError, "mlp_ratio must be a number"),
    (dict(img_size=4096, patch_size=8), ValueError, "gives 262144 patches, more than 65536"),
    (dict(embed_dim=16384, depth=1024, num_heads=16), ValueError, "parameters, more than"),
])
def test_model_config_rejects_overflowing_sizes_and_truthy_strings(override, error, message):
    with pytest.raises(error, match=message):
        fast(pacofr.get_config, "pacofr_test_tiny", **override)


def test_a_config_json_with_a_string_bool_or_an_absurd_size_names_the_file(tiny, tmp_path):
    ck.save_model(tiny, tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    for field, value, message in (("encoder_only", "false", "encoder_only must be true or false"),
                                  ("embed_dim", 2 ** 40, "embed_dim must be at most")):
        bad = dict(doc, config=dict(doc["config"], **{field: value}))
        (tmp_path / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=f"config.json: bad model config: {message}"):
            fast(pacofr.load_model, tmp_path)


# ---------------------------------------------------------------- 4. files: types and messages

def test_weights_that_are_a_folder_name_the_file(tiny, tmp_path):
    ck.save_model(tiny, tmp_path)
    os.remove(tmp_path / "model.safetensors")
    os.mkdir(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors: a folder, not a safetensors weights file"):
        pacofr.load_model(tmp_path)


def test_a_huge_sparse_weights_file_is_refused_from_its_header(tiny, tmp_path):
    """64 GiB declared (a sparse file): refused before a byte of data is read."""
    ck.save_model(tiny, tmp_path)
    header = json.dumps({"blocks.0.norm1.weight": {"dtype": "F32", "shape": [1 << 34],
                                                   "data_offsets": [0, 1 << 36]}}).encode()
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + (1 << 36))
    with pytest.raises(ValueError, match="model.safetensors: state dict does not match the model: missing"):
        fast(pacofr.load_model, tmp_path)
    with pytest.raises(ValueError, match="model.safetensors: not a safetensors file of its header's size"):
        with open(path, "r+b") as f:
            f.truncate(8 + len(header) + 100)   # now the file is shorter than its header says
        fast(ck.load_state, path)


def test_json_nested_a_thousand_deep_names_the_file(tiny, tmp_path):
    ck.save_model(tiny, tmp_path)
    (tmp_path / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="config.json: not valid JSON: RecursionError"):
        fast(pacofr.load_model, tmp_path)


def test_a_run_folder_skips_a_checkpoint_whose_model_cannot_be_built(tmp_path):
    """Absurd sizes in a checkpoint's config.json (a MemoryError before the size checks) are a
    ValueError naming the file, and the run-folder fallback uses the previous checkpoint."""
    out = tmp_path / "run"
    pacofr.pretrain("mae", out=str(out), model="pacofr_test_tiny", batch_size=8, synth_images=16, steps=2,
                    checkpoint_every=1, preview_every=0, progress=False)
    newest = ck.checkpoint_dirs(out)[-1]
    doc = json.loads((newest / "config.json").read_text())
    doc["config"]["embed_dim"] = 2 ** 40
    (newest / "config.json").write_text(json.dumps(doc))
    with pytest.warns(RuntimeWarning, match="step_0000002 is unusable"):
        model = pacofr.load_model(out)
    assert model.config.embed_dim == 64


# ---------------------------------------------------------------- 5. the metrics log

def test_metrics_log_is_rewritten_atomically_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')   # torn by a kill
    inode = os.stat(path).st_ino
    m = Metrics(tmp_path, resume_step=2)
    m.write({"step": 3, "loss": 1.0})
    m.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert os.stat(path).st_ino != inode                      # replaced, not rewritten in place
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("nearest", [False, True])
def test_warp_with_an_astronomic_matrix_gives_the_fill_without_an_integer_overflow(nearest):
    """Source positions of 1e300 px were cast to int64 (undefined; UBSan's float-cast-overflow
    in .ci/sanitize): now every pixel whose neighbours all lie outside is the fill, decided
    in float. In-range warps are unchanged (test_align, test_augment)."""
    src = np.full((1, 8, 8, 3), 200, np.uint8)
    M = np.array([[[1e300, 0, 0], [0, 1e300, 0]]], np.float64)
    out = fast(_C.warp, src, M, 4, 4, nearest, 7)
    assert (out[0, 1:, 1:] == 7).all() and out[0, 0, 0, 0] == 200   # (0, 0) maps to (0, 0)
