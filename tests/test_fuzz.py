"""The bad-input contract, fuzzed (issue 13): hypothesis generates bad (and borderline) calls
for every public entry point; each runs in a child process with a per-case timeout, and must
either raise ValueError / TypeError (or a subclass; FileNotFoundError for a missing file,
FloatingPointError for a non-finite gradient) whose message names an argument or the file, or
return a finite result. A crash (the child dies), a hang (the timeout), a foreign exception, a
message naming nothing, or a NaN result fails the test with the case that did it.

Bounded for CI: the sum of the max_examples below is 2,400 cases (about a minute)."""
import functools
import multiprocessing as mp
import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

TIMEOUT = 20.0     # seconds for one case (a hang fails, it does not stall CI)
ALLOWED = ("ValueError", "TypeError", "FileNotFoundError", "FloatingPointError")
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- the child process

_STATE = {}


def _model():
    if "model" not in _STATE:
        import pacofr
        _STATE["model"] = pacofr.create_model("pacofr_test_tiny", seed=0)
    return _STATE["model"]


def _planted(entry):
    """Bugs planted on purpose, to show that the harness catches each kind."""
    import time
    if entry == "planted.crash":
        os.abort()
    if entry == "planted.hang":
        time.sleep(60)
    if entry == "planted.nan":
        return np.array([1.0, np.nan], np.float32)
    if entry == "planted.keyerror":
        raise KeyError("lr")
    raise ValueError("something is wrong")


def _call(entry, args, kwargs):
    """Runs in the child: one entry point -> what the parent needs to judge it."""
    if entry.startswith("planted."):
        return _planted(entry)
    import pacofr
    from pacofr import masking, ops, regions
    from pacofr.data import SynthFace, formats
    from pacofr.train import make_config
    m = _model() if entry.startswith("model.") or entry.startswith("adamw") else None
    if entry == "adamw":
        opt = pacofr.AdamW(m, **kwargs)
        opt.step(*args)
        return m.flat_params
    if entry == "adamw.step":
        m.zero_grad()
        m.flat_grads[...] = args[0]
        return pacofr.AdamW(m, lr=1e-3).step(*args[1:], **kwargs)
    fn = {"ops.matmul": ops.matmul, "model.forward": m.forward if m else None,
          "model.encode": m.encode if m else None, "model.backward": m.backward if m else None,
          "config": pacofr.get_config, "create_model": pacofr.create_model, "make_masks": masking.make_masks,
          "subst_positions": masking.subst_positions, "regions.landmarks": regions.region_map_from_landmarks,
          "regions.parsing": regions.region_map_from_parsing, "regions.flip": regions.flip_region_map,
          "load_model": pacofr.load_model, "make_config": make_config,
          "synthface": lambda *a, **k: SynthFace(*a, **k)[0]["image"],
          "synthface.render": lambda idx, **k: SynthFace(size=32, num_images=8).render_batch(idx, **k)["image"],
          **{f"formats.{n}": getattr(formats, n) for n in ("read_pts", "read_hrnet_csv", "read_coco_keypoints",
                                                          "read_wflw_txt", "read_lfw_pairs", "read_image",
                                                          "read_aflw_mat", "read_lapa")}}[entry]
    if entry == "model.backward":
        m.forward(np.zeros((2, 3, 32, 32), np.float32), np.array([[0, 1], [2, 3]]))
    return fn(*args, **kwargs)


def _finite(out):
    """Every float in a (nested) result is finite."""
    if isinstance(out, dict):
        return all(_finite(v) for v in out.values())
    if isinstance(out, (list, tuple)):
        return all(_finite(v) for v in out)
    if hasattr(out, "flat_params"):
        return bool(np.isfinite(out.flat_params).all())
    if isinstance(out, (float, np.floating)) or (isinstance(out, np.ndarray) and out.dtype.kind == "f"):
        return bool(np.isfinite(out).all())
    return True


def _child(conn):
    os.environ.setdefault("PACOFR_NUM_THREADS", "2")
    while True:
        try:
            entry, args, kwargs = conn.recv()
        except EOFError:
            return
        try:
            out = _call(entry, args, kwargs)
            conn.send(("ok", _finite(out), ""))
        except BaseException as exc:   # everything goes back to the parent to be judged
            names = [c.__name__ for c in type(exc).__mro__]
            conn.send(("raised", names, f"{type(exc).__name__}: {exc}"))


class Sandbox:
    """One child process running cases; restarted after a crash or a hang."""

    def __init__(self, timeout=TIMEOUT):
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.cases = 0
        self.timeout = timeout

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_child, args=(child,), daemon=True)
        self.proc.start()

    def run(self, entry, *args, **kwargs):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.cases += 1
        self.conn.send((entry, args, kwargs))
        if not self.conn.poll(self.timeout):
            self.proc.kill()
            self.proc = None
            pytest.fail(f"{entry}{args!r:.300}{kwargs!r:.300}: no answer in {self.timeout} s (a hang)")
        try:
            return self.conn.recv()
        except EOFError:
            code = self.proc.exitcode
            self.proc = None
            pytest.fail(f"{entry}{args!r:.300}{kwargs!r:.300}: the process died (exit code {code}): a crash")

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.close()
            self.proc.join(5)
            self.proc.kill()


@pytest.fixture(scope="module")
def box():
    b = Sandbox()
    yield b
    b.close()


def check(box, names, entry, *args, **kwargs):
    """Run one case and judge it: a finite result, or an allowed error naming one of names."""
    status, a, b = box.run(entry, *args, **kwargs)
    case = f"{entry}{args!r:.300}{kwargs!r:.300}"
    if status == "ok":
        assert a, f"{case}: returned NaN or Inf"
        return "ok"
    mro, message = a, b
    assert any(t in mro for t in ALLOWED), f"{case}: raised {message!r:.400} (not ValueError / TypeError)"
    named = [n for n in names if re.search(rf"(?<![\w]){re.escape(str(n))}", message)]
    assert named, f"{case}: the message {message!r:.400} names none of {names}"
    return "raised"


# ---------------------------------------------------------------- values

BAD_SCALARS = st.sampled_from([None, "1", "abc", True, 1.5, -1, 0, 2 ** 63, float("nan"), float("inf"),
                               -float("inf"), 1e39, [1], b"x", np.float32(2.0), np.int64(3)])
DTYPES = [np.float32, np.float64, np.int64, np.uint8, np.bool_]


@st.composite
def arrays(draw, shapes, good_dtype=np.float32, special=True):
    """An array that is often right and often wrong: dtype, shape, contiguity, NaN / Inf."""
    shape = draw(shapes)
    dtype = draw(st.sampled_from([good_dtype] * 3 + DTYPES))
    a = np.asarray(np.random.default_rng(draw(st.integers(0, 2 ** 16))).standard_normal(shape) * 3).astype(dtype)
    kind = draw(st.sampled_from(["plain"] * 4 + (["nan", "inf", "strided", "list"] if special else [])))
    if kind in ("nan", "inf") and a.dtype.kind == "f" and a.size:
        a.flat[draw(st.integers(0, a.size - 1))] = np.nan if kind == "nan" else np.inf
    if kind == "strided" and a.ndim >= 1 and a.shape[-1] > 1:
        a = a[..., ::2]
    if kind == "list":
        return a.tolist()
    return a


def dims(max_ndim=4, max_side=6):
    return st.lists(st.integers(0, max_side), min_size=0, max_size=max_ndim).map(tuple)


# ---------------------------------------------------------------- the entry points

@settings(max_examples=300, **SETTINGS)
@given(a=arrays(dims(3)), b=arrays(dims(3)), out=st.one_of(st.none(), arrays(dims(3))),
       ta=st.sampled_from([False, True, 2, "yes"]), alpha=st.one_of(st.floats(-4, 4), BAD_SCALARS),
       beta=st.one_of(st.just(0.0), BAD_SCALARS), dtype=st.sampled_from(["fp32", "bf16", "fp16", 3]))
def test_fuzz_matmul(box, a, b, out, ta, alpha, beta, dtype):
    check(box, ["a", "b", "out", "trans_a", "alpha", "beta", "dtype"], "ops.matmul", a, b, trans_a=ta, out=out,
          alpha=alpha, beta=beta, dtype=dtype)


IMAGES = st.sampled_from([(2, 3, 32, 32)] * 4 + [(2, 3, 32, 31), (2, 1, 32, 32), (0, 3, 32, 32), (2, 3, 16, 16),
                                                  (3, 32, 32), (2, 3, 32, 32, 1)])
IDS = st.one_of(st.just(np.array([[0, 1], [2, 3]])), arrays(dims(3, 5), np.int64),
                st.just(np.array([[0, 0], [1, 2]])), st.just(np.array([[0, 16], [1, 2]])),
                st.just(np.array([[-1, 1], [2, 3]])))


@settings(max_examples=250, **SETTINGS)
@given(images=arrays(IMAGES), ids=IDS, restore=st.one_of(st.none(), arrays(dims(2, 17), np.int64)),
       target=st.one_of(st.none(), arrays(st.sampled_from([(2, 16, 192), (2, 16, 191), (2, 192)]))),
       weights=st.one_of(st.none(), arrays(st.sampled_from([(2, 16), (2, 15), (16,)]))))
def test_fuzz_model_forward(box, images, ids, restore, target, weights):
    check(box, ["images", "ids_keep", "ids_restore", "target", "weights"], "model.forward", images, ids, restore,
          target, weights)


@settings(max_examples=150, **SETTINGS)
@given(images=arrays(IMAGES), ids=st.one_of(st.none(), IDS), dlatent=st.one_of(st.none(), arrays(
       st.sampled_from([(2, 3, 64), (2, 3, 63), (2, 4, 64)]))), dcols=st.one_of(st.none(), arrays(
       st.sampled_from([(2, 2, 192), (2, 2, 191), (2, 192)]))), which=st.sampled_from(["encode", "backward"]))
def test_fuzz_model_encode_and_backward(box, images, ids, dlatent, dcols, which):
    if which == "encode":
        check(box, ["images", "ids_keep", "ids"], "model.encode", images, ids)
    else:
        check(box, ["dlatent", "dcols"], "model.backward", dlatent, dcols)


@settings(max_examples=200, **SETTINGS)
@given(lr=st.one_of(st.floats(0, 1), BAD_SCALARS), eps=st.one_of(st.just(1e-8), BAD_SCALARS),
       wd=st.one_of(st.just(0.05), BAD_SCALARS), betas=st.one_of(st.just((0.9, 0.95)), st.tuples(BAD_SCALARS,
       BAD_SCALARS), BAD_SCALARS), clip=st.one_of(st.none(), st.just(1.0), BAD_SCALARS),
       scale=st.one_of(st.just(1.0), BAD_SCALARS), nan_grad=st.booleans())
def test_fuzz_adamw(box, lr, eps, wd, betas, clip, scale, nan_grad):
    names = ["lr", "eps", "weight_decay", "betas", "clip_grad_norm", "grad_scale", "gradient norm"]
    if nan_grad:
        grads = np.zeros(_num_params_tiny(), np.float32)
        grads[3] = np.nan
        check(box, names, "adamw.step", grads, 1.0)
    else:
        check(box, names, "adamw", scale, lr=lr, eps=eps, weight_decay=wd, betas=betas, clip_grad_norm=clip)


@functools.lru_cache(maxsize=None)
def _num_params_tiny():
    import pacofr
    return pacofr.create_model("pacofr_test_tiny").flat_params.size


CONFIG_FIELDS = ["img_size", "patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
                 "decoder_num_heads", "mlp_ratio", "learned_pos", "norm_pix_loss", "encoder_only", "codebook_size",
                 "belief_hidden", "name"]


@settings(max_examples=250, **SETTINGS)
@given(fields=st.dictionaries(st.sampled_from(CONFIG_FIELDS), st.one_of(BAD_SCALARS, st.integers(-5, 2 ** 40),
       st.sampled_from(["false", "no", 0.5])), min_size=1, max_size=3), create=st.booleans())
def test_fuzz_model_config(box, fields, create):
    check(box, CONFIG_FIELDS + ["unexpected keyword", "model"], "create_model" if create else "config",
          "pacofr_test_tiny", **fields)


@settings(max_examples=250, **SETTINGS)
@given(kind=st.sampled_from(["random", "block", "structured", "grid", 3]), B=st.one_of(st.integers(-1, 4), BAD_SCALARS),
       G=st.one_of(st.integers(-1, 9), BAD_SCALARS), ratio=st.one_of(st.floats(-0.5, 1.5), BAD_SCALARS),
       seed=st.one_of(st.integers(-2 ** 70, 2 ** 70), BAD_SCALARS), regions=st.one_of(st.none(), arrays(dims(2, 20),
       np.int64)), indices=st.one_of(st.none(), arrays(dims(2, 5), np.int64)))
def test_fuzz_make_masks(box, kind, B, G, ratio, seed, regions, indices):
    check(box, ["kind", "batch_size", "grid", "ratio", "seed", "step", "regions", "indices"], "make_masks", kind, B, G,
          ratio, seed, 3, regions=regions, indices=indices)


@settings(max_examples=100, **SETTINGS)
@given(seed=st.one_of(st.integers(0, 9), BAD_SCALARS), indices=arrays(dims(2, 5), np.int64),
       n_keep=st.one_of(st.integers(-2, 40), BAD_SCALARS), count=st.one_of(st.integers(-2, 40), BAD_SCALARS))
def test_fuzz_subst_positions(box, seed, indices, n_keep, count):
    check(box, ["seed", "step", "indices", "n_keep", "count", "s"], "subst_positions", seed, 1, indices, n_keep, count)


@settings(max_examples=200, **SETTINGS)
@given(lm=arrays(st.sampled_from([(2, 68, 2)] * 3 + [(2, 5, 2), (68, 2), (2, 68, 3)])), scale=st.sampled_from(
       [1.0, 112.0, 1e20, -1.0]), size=st.one_of(st.just(112), BAD_SCALARS), grid=st.one_of(st.integers(-1, 20),
       BAD_SCALARS), parsing=arrays(st.sampled_from([(2, 28, 28), (2, 28, 27), (28, 28)]), np.uint8),
       which=st.sampled_from(["landmarks", "parsing", "flip"]))
def test_fuzz_regions(box, lm, scale, size, grid, parsing, which):
    names = ["landmarks", "size", "grid", "parsing", "regions"]
    if which == "landmarks":
        lm = np.asarray(lm) * scale if not isinstance(lm, list) else lm
        check(box, names, "regions.landmarks", lm, size, grid)
    elif which == "parsing":
        check(box, names, "regions.parsing", parsing, grid)
    else:
        check(box, names, "regions.flip", parsing, grid)


@settings(max_examples=150, **SETTINGS)
@given(kwargs=st.dictionaries(st.sampled_from(["seed", "size", "num_images", "num_identities"]),
       st.one_of(BAD_SCALARS, st.integers(-3, 70)), max_size=3), idx=st.lists(st.one_of(st.integers(-2, 9),
       st.floats(0, 3)), max_size=3), render=st.booleans())
def test_fuzz_synthface(box, kwargs, idx, render):
    names = ["seed", "size", "num_images", "num_identities", "index", "indices", "i"]
    kwargs = {k: v for k, v in kwargs.items() if k != "size" or not isinstance(v, int) or v <= 64}
    if render:
        check(box, names, "synthface.render", idx)
    else:
        check(box, names, "synthface", **kwargs)


# ---------------------------------------------------------------- files

SAMPLES = {
    "read_pts": "version: 1\nn_points: 3\n{\n1.0 2.0\n3 4\n5 6\n}\n",
    "read_hrnet_csv": "image_name,scale,center_w,center_h,original_0_x,original_0_y\nx.png,1,2,3,4,5\n",
    "read_coco_keypoints": '{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], "annotations": '
                           '[{"image_id": 1, "keypoints": [1, 2, 2, 3, 4, 2], "num_keypoints": 2, '
                           '"bbox": [0, 0, 8, 8]}], "categories": [{"id": 1}]}',
    "read_wflw_txt": " ".join(["1.0"] * 196 + ["0"] * 4 + ["0"] * 6 + ["a.png"]) + "\n",
    "read_lfw_pairs": "1\t2\nAlice\t1\t2\nAlice\t1\tBob\t1\n",
    "read_image": None,   # bytes of a PNG, made below
}


def _png():
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def mutated(draw, data):
    """data (bytes) cut, flipped, spliced with junk, or with numbers made absurd."""
    how = draw(st.sampled_from(["cut", "flip", "junk", "number", "utf8", "deep", "empty", "same"]))
    if how == "cut" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if how == "junk":
        return data + draw(st.binary(max_size=40))
    if how == "number":
        number = draw(st.sampled_from([b"nan", b"1e400", b"-1e30", b"inf", b"99999999999999999999"]))
        return re.sub(rb"\d+(\.\d+)?", number, data, count=draw(st.integers(1, 3)))
    if how == "utf8":
        return data + b"\xff\xfe\x80"
    if how == "deep":
        return b"[" * 5000 + b"]" * 5000
    if how == "empty":
        return b""
    return data


@settings(max_examples=450, **SETTINGS)
@given(reader=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_fuzz_file_readers(box, reader, data):
    sample = _png() if SAMPLES[reader] is None else SAMPLES[reader].encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, {"read_pts": "a.pts", "read_hrnet_csv": "a.csv",
                                  "read_coco_keypoints": "a.json", "read_wflw_txt": "a.txt",
                                  "read_lfw_pairs": "pairs.txt", "read_image": "a.png"}[reader])
        with open(path, "wb") as f:
            f.write(data.draw(mutated(sample)))
        check(box, [os.path.basename(path), path], f"formats.{reader}", path)


@settings(max_examples=100, **SETTINGS)
@given(which=st.sampled_from(["config.json", "model.safetensors"]), data=st.data())
def test_fuzz_load_model(box, which, data):
    import pacofr
    from pacofr import checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save_model(pacofr.create_model("pacofr_test_tiny", seed=0), tmp)
        path = os.path.join(tmp, which)
        with open(path, "rb") as f:
            good = f.read()
        with open(path, "wb") as f:
            f.write(data.draw(mutated(good if which == "config.json" else good[:2000])))
        check(box, [which, "model config"], "load_model", tmp)


PRETRAIN_FIELDS = ["steps", "batch_size", "lr", "mask_ratio", "masking", "topk", "tau", "codebook_size", "dtype",
                   "betas", "subst_ratio", "warmup_steps", "seed", "sc_mode", "region_source", "typo"]


@settings(max_examples=50, **SETTINGS)
@given(fields=st.dictionaries(st.sampled_from(PRETRAIN_FIELDS), st.one_of(BAD_SCALARS, st.integers(-3, 2000),
       st.sampled_from(["grid", "bf16", "token", (0.9, 2.0)])), min_size=1, max_size=3))
def test_fuzz_pretrain_config(box, fields):
    check(box, PRETRAIN_FIELDS + ["unknown pre-training config fields", "decays", "accum_steps"], "make_config",
          "pacofr", **fields)


@pytest.mark.parametrize("entry, verdict", [("planted.crash", "the process died"), ("planted.hang", "a hang"),
                                            ("planted.nan", "returned NaN or Inf"),
                                            ("planted.keyerror", "not ValueError / TypeError"),
                                            ("planted.unnamed", "names none of")])
def test_the_harness_catches_each_kind_of_failure(entry, verdict):
    quick = Sandbox(timeout=3.0)
    try:
        with pytest.raises((AssertionError, pytest.fail.Exception), match=verdict):
            check(quick, ["lr"], entry)
        assert check(quick, ["x"], "config", "pacofr_test_tiny") == "ok"   # restarted, and working
    finally:
        quick.close()


def test_fuzz_case_count(box):
    """Runs last in this file: the cases above add up to the 2,000 the issue asks for."""
    if box.cases < 2000:
        pytest.skip(f"only {box.cases} fuzz cases ran (a subset was selected)")
    assert box.cases >= 2000
