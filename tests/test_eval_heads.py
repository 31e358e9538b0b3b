"""Downstream heads and their training loop: every head's forward and backward against PyTorch
autograd, layer-wise learning-rate decay, linear probe vs fine-tuning, and bad input."""
import numpy as np
import pytest

import pacofr
from pacofr import heads as H
from pacofr.eval.finetune import FitConfig, encode, encoder_of, fit
from pacofr.optim import layer_decay_scales
from conftest import assert_close


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_linear(torch, fc):
    w = torch.tensor(fc.weight, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(fc.bias, dtype=torch.float64, requires_grad=True)
    return w, b


def check_linear_grads(fc, w, b):
    assert_close(fc.grads[0], w.grad.numpy(), 1e-4, 1e-6, what="dweight")
    assert_close(fc.grads[1], b.grad.numpy(), 1e-4, 1e-6, what="dbias")


@pytest.mark.parametrize("kind", ["heatmap", "regression"])
def test_landmark_heads_against_torch(rng, torch, kind):
    B, G, p, C, L = 2, 3, 4, 16, 5
    S = G * p
    tok = rand(rng, B, 1 + G * G, C)
    target = (rng.random((B, L, 2)) * S).astype(np.float32)
    weight = (rng.random((B, L)) > 0.3).astype(np.float32)
    head = H.HeatmapHead(C, p, L, S, seed=1) if kind == "heatmap" else H.RegressionHead(C, L, S, seed=1)
    head.fc.bias[...] = rand(rng, *head.fc.bias.shape) * 0.1
    xy = head.forward(tok)
    loss, d = head.loss(target, weight)
    head.zero_grad()
    dtok = head.backward(d)

    tt = torch.tensor(tok, dtype=torch.float64, requires_grad=True)
    w, b = torch_linear(torch, head.fc)
    if kind == "heatmap":
        z = (tt[:, 1:] @ w.T + b).reshape(B, G, G, p, p, L).permute(0, 5, 1, 3, 2, 4).reshape(B, L, S * S)
        prob = torch.softmax(z, -1)
        ys, xs = np.divmod(np.arange(S * S), S)
        coords = torch.stack([prob @ torch.tensor(xs, dtype=torch.float64),
                              prob @ torch.tensor(ys, dtype=torch.float64)], -1)
    else:
        coords = S * (0.5 + (tt[:, 1:].mean(1) @ w.T + b).reshape(B, L, 2))
    wt = torch.tensor(weight, dtype=torch.float64)
    lt = ((coords - torch.tensor(target, dtype=torch.float64)).abs().mean(-1) * wt).sum() / wt.sum() / S
    lt.backward()
    assert_close(xy, coords.detach().numpy(), 1e-5, 1e-4, what="coords")
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    assert_close(dtok, tt.grad.numpy(), 1e-4, 1e-7, what="dtokens")
    check_linear_grads(head.fc, w, b)
    assert np.all(dtok[:, 0] == 0)   # the cls token feeds neither landmark head


def test_parsing_and_identity_heads_against_torch(rng, torch):
    B, G, p, C, K = 2, 3, 4, 16, 6
    S = G * p
    tok = rand(rng, B, 1 + G * G, C)
    labels = rng.integers(0, K, (B, S, S))
    head = H.ParsingHead(C, p, K, seed=2)
    head.forward(tok)
    loss, d = head.loss(labels)
    dtok = head.backward(d)
    tt = torch.tensor(tok, dtype=torch.float64, requires_grad=True)
    w, b = torch_linear(torch, head.fc)
    z = (tt[:, 1:] @ w.T + b).reshape(B, G, G, p, p, K).permute(0, 5, 1, 3, 2, 4).reshape(B, K, S, S)
    lt = torch.nn.functional.cross_entropy(z, torch.tensor(labels))
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    assert_close(dtok, tt.grad.numpy(), 1e-4, 1e-7, what="dtokens")
    check_linear_grads(head.fc, w, b)
    assert_close(head.probabilities(), torch.softmax(z, 1).detach().numpy(), 1e-5, 1e-7)

    for pool in ("cls", "mean"):
        emb = H.embeddings(tok, pool)
        ids = rng.integers(0, 4, B)
        clf = H.ClassifierHead(C, 4, seed=3)
        clf.forward(emb)
        loss, d = clf.loss(ids)
        demb = clf.backward(d, need_dx=True)
        et = torch.tensor(emb, dtype=torch.float64, requires_grad=True)
        w, b = torch_linear(torch, clf.fc)
        lt = torch.nn.functional.cross_entropy(et @ w.T + b, torch.tensor(ids))
        lt.backward()
        assert loss == pytest.approx(lt.item(), rel=1e-5)
        assert_close(demb, et.grad.numpy(), 1e-4, 1e-7)
        check_linear_grads(clf.fc, w, b)


def test_layer_decay_scales():
    m = pacofr.create_model("pacofr_test_tiny", encoder_only=True)     # depth 2
    s = dict(zip([t.name for t in m.tensors], layer_decay_scales(m, 0.5)))
    assert s["cls_token"] == s["patch_embed.proj.weight"] == pytest.approx(0.125)
    assert s["blocks.0.attn.qkv.weight"] == pytest.approx(0.25)
    assert s["blocks.1.mlp.fc2.bias"] == pytest.approx(0.5)
    assert s["norm.weight"] == 1.0
    assert np.all(layer_decay_scales(m, 1.0) == 1)
    with pytest.raises(ValueError, match="layer decay"):
        layer_decay_scales(m, 0.0)


@pytest.fixture(scope="module")
def tiny_data():
    from pacofr.eval import tasks
    d = tasks.synthface_split("train", 16, size=32)
    return d


def test_linear_probe_freezes_finetune_trains_and_caller_model_is_untouched(tiny_data):
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    before = model.flat_params.copy()
    x, y = tiny_data["images"], tiny_data["landmarks"]
    lin = fit(model, x, y, FitConfig(task="alignment", head="heatmap", mode="linear", steps=40, batch_size=8, lr=1e-2))
    ft = fit(model, x, y, FitConfig(task="alignment", head="heatmap", mode="finetune", steps=40, batch_size=8, lr=3e-3))
    np.testing.assert_array_equal(model.flat_params, before)
    enc0 = encoder_of(model).state_dict()
    for name, v in lin.encoder.state_dict().items():
        np.testing.assert_array_equal(v, enc0[name])
    moved = [n for n, v in ft.encoder.state_dict().items() if n != "pos_embed" and not np.array_equal(v, enc0[n])]
    assert len(moved) == len(enc0) - 1          # every trainable encoder tensor was updated
    for f in (lin, ft):
        assert f.history[-1]["loss"] < 0.7 * f.history[0]["loss"], f.history
    # precomputed tokens give the same linear probe as encoding on the fly
    tok = encode(encoder_of(model), x)
    lin2 = fit(model, x, y, FitConfig(task="alignment", head="heatmap", mode="linear", steps=40, batch_size=8, lr=1e-2),
               tokens=tok)
    assert_close(lin2.predict(tokens=tok), lin.predict(x), 1e-5, 1e-4)


def test_parsing_and_identity_fit_reduce_their_loss(tiny_data):
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    x = tiny_data["images"]
    par = fit(model, x, tiny_data["parsing"], FitConfig(task="parsing", head="linear", steps=30, batch_size=8, lr=1e-2),
              num_outputs=11)
    assert par.history[-1]["loss"] < 0.7 * par.history[0]["loss"]
    probs = par.predict(x[:3])
    assert probs.shape == (3, 11, 32, 32)
    ids = np.arange(16) % 4
    for mode in ("linear", "finetune"):
        clf = fit(model, x, ids, FitConfig(task="identity", head="mean", mode=mode, steps=40, batch_size=8, lr=1e-2))
        assert clf.history[-1]["loss"] < 0.7 * clf.history[0]["loss"]
        assert clf.predict(x).shape == (16, 4)


def test_fit_rejects_bad_input(tiny_data):
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    x, y = tiny_data["images"], tiny_data["landmarks"]
    with pytest.raises(ValueError, match="task"):
        FitConfig(task="pose")
    with pytest.raises(ValueError, match="head for parsing"):
        FitConfig(task="parsing", head="heatmap")
    with pytest.raises(ValueError, match="mode"):
        FitConfig(mode="frozen")
    with pytest.raises(ValueError, match="float32"):
        fit(model, x.astype(np.float64), y, FitConfig())
    with pytest.raises(ValueError, match="one target per image"):
        fit(model, x, y[:5], FitConfig())
    with pytest.raises(ValueError, match="32 px"):
        fit(model, np.zeros((4, 3, 64, 64), np.float32), np.zeros((4, 68, 2), np.float32), FitConfig())
    with pytest.raises(ValueError, match="linear probes only"):
        fit(model, x, y, FitConfig(mode="finetune"), tokens=np.zeros((16, 17, 64), np.float32))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(model, bad, y, FitConfig(steps=2, batch_size=16))
    with pytest.raises(TypeError, match="Model"):
        encoder_of("not a model")


def test_lp_ft_starts_from_the_probe_with_its_standardisation_folded(tiny_data, rng):
    model = pacofr.create_model("pacofr_test_tiny", seed=0)
    x, y = tiny_data["images"], tiny_data["landmarks"]
    probe = fit(model, x, y, FitConfig(task="alignment", mode="linear", steps=20, batch_size=8, lr=1e-2))
    # folding the standardisation into the layer leaves the predictions unchanged
    lin = H.Linear(8, 3, seed=1)
    feats = rand(rng, 5, 8) * 3 + 1
    mean, std = feats.mean(0), feats.std(0) + 0.5
    want = lin.forward((feats - mean) / std)
    lin.fold_standardization(mean, std)
    assert_close(lin.forward(feats), want, 1e-5, 1e-5)
    # LP-FT with no fine-tuning movement (lr 0) predicts what the probe predicts
    cfg = FitConfig(task="alignment", mode="finetune", steps=1, batch_size=8, lr=1e-12, probe_steps=20, probe_lr=1e-2)
    ft = fit(model, x, y, cfg)
    assert_close(ft.predict(x), probe.predict(x), 1e-3, 1e-2)
    assert ft.feature_norm is None


def test_upsampling_parsing_head_against_torch(rng, torch):
    B, G, p, C, K, u = 2, 3, 4, 16, 5, 2
    S, q = G * p, p // u
    tok = rand(rng, B, 1 + G * G, C)
    labels = rng.integers(0, K, (B, S, S))
    head = H.ParsingHead(C, p, K, seed=2, upsample=u)
    assert head.fc.weight.shape == (q * q * K, C)
    head.forward(tok)
    loss, d = head.loss(labels)
    dtok = head.backward(d)
    tt = torch.tensor(tok, dtype=torch.float64, requires_grad=True)
    w, b = torch_linear(torch, head.fc)
    zc = (tt[:, 1:] @ w.T + b).reshape(B, G, G, q, q, K).permute(0, 5, 1, 3, 2, 4).reshape(B, K, G * q, G * q)
    z = torch.nn.functional.interpolate(zc, scale_factor=u, mode="bilinear", align_corners=False)
    lt = torch.nn.functional.cross_entropy(z, torch.tensor(labels))
    lt.backward()
    assert loss == pytest.approx(lt.item(), rel=1e-5)
    assert_close(dtok, tt.grad.numpy(), 1e-4, 1e-7, what="dtokens")
    check_linear_grads(head.fc, w, b)
    with pytest.raises(ValueError, match="divide"):
        H.ParsingHead(C, p, K, upsample=3)
