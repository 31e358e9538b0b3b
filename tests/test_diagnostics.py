"""Pre-training diagnostics (pacofr/train/diagnostics.py): each number against a brute-force
NumPy computation or a case whose answer is known, and their place in metrics.jsonl."""
import json

import numpy as np
import pytest

import pacofr
from pacofr import ops
from pacofr.eval.quality import effective_rank as eval_effective_rank
from pacofr.regions import COMPONENTS
from pacofr.train import diagnostics as D


def test_token_cosine_matches_brute_force():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 7, 5)).astype(np.float32)
    want = []
    for img in t:
        z = img / np.linalg.norm(img, axis=1, keepdims=True)
        s = z @ z.T
        want.append((s.sum() - np.trace(s)) / (7 * 6))
    assert D.token_cosine(t) == pytest.approx(np.mean(want), abs=1e-6)


def test_token_cosine_of_collapsed_and_orthogonal_tokens():
    same = np.tile(np.arange(1, 6, dtype=np.float32), (2, 9, 1))
    assert D.token_cosine(same) == pytest.approx(1.0, abs=1e-6)
    ortho = np.eye(6, dtype=np.float32)[None]
    assert D.token_cosine(ortho) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError):
        D.token_cosine(np.ones((2, 1, 4), np.float32))


def test_effective_rank_agrees_with_eval_definition():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 12)) @ np.diag(np.linspace(1, 0.05, 12))
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    p = s / s.sum()
    assert ops.effective_rank(x) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    assert ops.effective_rank(x) == pytest.approx(eval_effective_rank(x), rel=1e-12)
    assert ops.effective_rank(np.ones((10, 4))) == 1.0            # all rows alike: rank 1
    iso = rng.normal(size=(4000, 8))
    assert ops.effective_rank(iso) > 7.5                          # near full rank


def test_position_probe_finds_positions_only_where_tokens_carry_them():
    rng = np.random.default_rng(2)
    G, C, B = 4, 24, 6
    pos = rng.normal(size=(G * G, C))
    with_pos = pos[None] + 0.05 * rng.normal(size=(B, G * G, C))
    acc, err = D.position_probe(with_pos, G)
    assert acc == 1.0 and err == 0.0
    acc, err = D.position_probe(rng.normal(size=(B, G * G, C)), G)
    assert acc < 0.3 and err > 1.0
    with pytest.raises(ValueError):
        D.position_probe(with_pos[:1], G)


def test_region_errors_against_numpy():
    rng = np.random.default_rng(3)
    B, S, p = 2, 16, 4
    N, d = (S // p) ** 2, p * p * 3
    images = rng.normal(size=(B, 3, S, S)).astype(np.float32)
    pred = rng.normal(size=(B, N, d)).astype(np.float32)
    mask = (rng.random((B, N)) < 0.6).astype(np.uint8)
    regions = rng.integers(0, len(COMPONENTS), size=(B, N))
    got = D.region_errors(pred, images, mask, regions, p, norm_pix=False)
    P = images.reshape(B, 3, S // p, p, S // p, p).transpose(0, 2, 4, 3, 5, 1).reshape(B, N, d)  # (p, q, c)
    err = ((pred - P) ** 2).mean(-1)
    for c, name in enumerate(COMPONENTS):
        sel = (mask == 1) & (regions == c)
        if sel.any():
            assert got[name] == pytest.approx(err[sel].mean(), rel=1e-5)
        else:
            assert name not in got
    face = (mask == 1) & (regions != len(COMPONENTS) - 1)
    assert got["face"] == pytest.approx(err[face].mean(), rel=1e-5)
    assert got["all"] == pytest.approx(err[mask == 1].mean(), rel=1e-5)
    normed = D.region_errors(pred, images, mask, regions, p, norm_pix=True)
    mu, sd = P.mean(-1, keepdims=True), np.sqrt(P.var(-1, ddof=1, keepdims=True) + 1e-6)
    assert normed["all"] == pytest.approx((((pred - (P - mu) / sd) ** 2).mean(-1))[mask == 1].mean(), rel=1e-4)


def test_pretrain_logs_diagnostics(tmp_path):
    pacofr.pretrain(None, model="pacofr_test_tiny", steps=4, batch_size=8, synth_images=64, diag_every=2,
                    out=str(tmp_path / "run"), progress=False, dtype="fp32", teacher_dtype="fp32", preview_every=0)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    diag = [r for r in rows if "diag/token_cosine" in r]
    assert [r["step"] for r in diag] == [2, 4]
    for r in diag:
        assert -1 <= r["diag/token_cosine"] <= 1
        assert 1 <= r["diag/effective_rank"] <= 64
        assert 0 <= r["diag/position_acc"] <= 1
        assert r["diag/rec/all"] > 0 and "diag/rec/face" in r
