"""The PyTorch reference of the PaCo-FR loss (pacofr/testing/torch_paco.py) checked on its own, before the
C engine is checked against it: every loss term finite and summed with its weight, gradients
where they belong (none into the codebook during incubation, the belief's exactly L_inc's),
tokens and substituted images as docs/method.md defines them, the teacher off the module tree, the
vectorised region loss against a loop, no substitution giving torch_ref.MAE's loss, EMA
k-means, and float64 gradcheck of the whole loss."""
import numpy as np
import pytest

from pacofr.config import get_config

K, H, TOP_K = 16, 32, 4
BELIEF = ("belief.fc1.weight", "belief.fc1.bias", "belief.fc2.weight", "belief.fc2.bias")
BODY = ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight", "mask_token", "decoder_pred.weight")


@pytest.fixture(scope="module")
def case():
    """A random-weight reference (biases, tokens and position embeddings random too), a
    perturbed teacher and one batch: dict of everything the tests use."""
    torch = pytest.importorskip("torch")
    from pacofr.testing import torch_paco as tp
    cfg = get_config("pacofr_test_tiny")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ref = tp.PacoReference(cfg, num_codes=K, belief_hidden=H)
    with torch.no_grad():
        for name, prm in ref.named_parameters():
            if name.endswith("bias") or "token" in name or "pos_embed" in name:
                prm.normal_(0.0, 0.05)
    teacher = {n: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32) for n, v in ref.encoder_state().items()}
    B, N = 4, cfg.num_patches
    n, s = N // 4, 2
    x = torch.from_numpy(rng.standard_normal((B, 3, cfg.img_size, cfg.img_size)).astype(np.float32))
    ids_keep = torch.from_numpy(np.stack([rng.permutation(N)[:n] for _ in range(B)]))
    subst = torch.from_numpy(np.stack([rng.permutation(row)[:s] for row in ids_keep.numpy()]))
    regions = torch.from_numpy(rng.integers(0, tp.NUM_REGIONS, (B, N)))
    return dict(torch=torch, tp=tp, cfg=cfg, ref=ref, state=ref.numpy_state(), teacher=teacher, x=x,
                ids_keep=ids_keep, subst=subst, regions=regions)


def _loss(c, **kw):
    args = dict(k=TOP_K, hard=False, incubation=False, sc_mode="token", regions=c["regions"])
    args.update(kw)
    return c["ref"].loss(c["x"], c["ids_keep"], c["subst"], c["teacher"], **args)


def test_state_roundtrip_and_frozen_position_embeddings(case):
    ref2 = case["tp"].PacoReference(case["cfg"], num_codes=K, belief_hidden=H).from_numpy(case["state"])
    got = ref2.numpy_state()
    assert set(got) == set(case["state"])
    assert all(np.array_equal(v, case["state"][n]) for n, v in got.items())
    trainable = {name for name, prm in case["ref"].named_parameters() if prm.requires_grad}
    assert "pos_embed" not in trainable and "decoder_pos_embed" not in trainable and "codebook.weight" in trainable


@pytest.mark.parametrize("sc_mode", ["token", "region"])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("incubation", [True, False])
def test_loss_terms_and_where_gradients_go(case, incubation, hard, sc_mode):
    ref = case["ref"]
    ref.zero_grad()
    out = _loss(case, hard=hard, incubation=incubation, sc_mode=sc_mode)
    for key in ("total", "rec", "inc", "align", "sc", "acc"):
        assert out[key].ndim == 0 and bool(case["torch"].isfinite(out[key])), key
    assert out["sc"] > 0 and out["rec"] > 0 and out["align"] > 0
    assert (out["inc"] > 0) == incubation and 0.0 <= float(out["acc"]) <= 1.0
    want = out["rec"] + 0.25 * out["align"] + out["sc"] + (out["inc"] if incubation else 0)
    assert case["torch"].allclose(out["total"], want)
    out["total"].backward()
    g = ref.grads_numpy()
    assert set(g) == {name for name, prm in ref.named_parameters() if prm.requires_grad}
    assert all(np.isfinite(v).all() for v in g.values())
    codebook = np.abs(g["codebook.weight"]).max()
    assert codebook == 0.0 if incubation else codebook > 0.0
    for name in BELIEF + BODY:
        assert np.abs(g[name]).max() > 0, name


@pytest.mark.parametrize("hard", [False, True])
def test_tokens_and_substituted_image(case, hard):
    torch, tp, cfg = case["torch"], case["tp"], case["cfg"]
    out = _loss(case, hard=hard)
    t, C = out["t"].detach(), case["ref"].codebook.weight.detach()
    if hard:
        assert torch.equal(t, C[out["idx"][..., 0]])          # exactly the arg-max code
    else:
        assert torch.allclose(t, torch.einsum("bsk,bskd->bsd", out["w"], C[out["idx"]]), atol=1e-6)
    assert torch.equal(out["idx"][..., 0], out["logits"].argmax(-1))
    # x_sub: x outside S exactly; mu + sigma * t on S
    subst = case["subst"]
    P, Psub = tp.patchify(case["x"], cfg.patch_size), tp.patchify(out["x_sub"].detach(), cfg.patch_size)
    inS = torch.zeros(P.shape[:2], dtype=torch.bool)
    inS.scatter_(1, subst, True)
    assert torch.equal(P[~inS], Psub[~inS])
    _, mu, sigma = tp.patch_norm(P)
    got = ((torch.gather(Psub, 1, subst[..., None].expand(-1, -1, cfg.patch_dim))
            - torch.gather(mu, 1, subst[..., None])) / torch.gather(sigma, 1, subst[..., None]))
    assert torch.allclose(got, t, atol=1e-4)


@pytest.mark.parametrize("sc_mode", ["token", "region"])
def test_incubation_belief_gradient_is_exactly_inc(case, sc_mode):
    """During incubation nothing leaks into the belief from L_rec or the alignment term."""
    torch, ref = case["torch"], case["ref"]
    out = _loss(case, incubation=True, sc_mode=sc_mode)
    bel = [ref.belief.fc1.weight, ref.belief.fc2.bias]
    only = torch.autograd.grad(out["inc"], bel, retain_graph=True)
    total = torch.autograd.grad(out["total"], bel)
    for a, b in zip(only, total):
        assert torch.equal(a, b)
    assert any(a.abs().max() > 0 for a in only)


def test_teacher_stays_off_the_module_tree(case):
    ref = case["ref"]
    n = len(ref.state_dict())
    _loss(case)
    assert len(ref.state_dict()) == n and not any("teacher" in name for name, _ in ref.named_parameters())


def test_region_loss_matches_a_loop(case):
    torch, tp = case["torch"], case["tp"]
    g = torch.Generator().manual_seed(3)
    ys = torch.randn(3, 9, 8, dtype=torch.float64, generator=g)
    yt = torch.randn(3, 9, 8, dtype=torch.float64, generator=g)
    comp = torch.randint(0, 5, (3, 9), generator=g)
    per = []
    for b in range(3):
        cs = torch.unique(comp[b])
        e = torch.nn.functional.normalize(torch.stack([ys[b][comp[b] == c].mean(0) for c in cs]), dim=-1)
        et = torch.nn.functional.normalize(torch.stack([yt[b][comp[b] == c].mean(0) for c in cs]), dim=-1)
        per.append(((e @ e.t() - et @ et.t()) ** 2).mean())
    assert torch.allclose(tp.PacoReference.region_affinity_loss(ys, yt, comp), torch.stack(per).mean())


def test_no_substitution_is_mae_and_own_teacher_gives_zero_sc(case):
    torch, tp, ref = case["torch"], case["tp"], case["ref"]
    other = tp.PacoReference(case["cfg"], num_codes=K, belief_hidden=H).from_numpy(case["state"])
    other.set_teacher(None)                                    # the teacher is the student's encoder
    out = other.loss(case["x"], case["ids_keep"], case["subst"][:, :0], None, k=TOP_K)
    assert out["sc"].item() < 1e-10 and out["align"].item() == 0.0 and out["t"].shape[1] == 0
    mae = tp.MAE(case["cfg"])
    mae.load_state_dict({n: v for n, v in ref.state_dict().items() if not n.startswith(("codebook.", "belief."))})
    want = mae(case["x"], case["ids_keep"])
    assert torch.allclose(out["rec"], want, rtol=1e-6, atol=0), (out["rec"], want)
    out = other.loss(case["x"], case["ids_keep"], case["subst"], case["teacher"], k=1, norm_pix=False, lambda_s=0.5)
    assert torch.isfinite(out["total"]) and out["sc"] > 0


def test_ema_kmeans_reference_with_no_decay_is_the_mean_of_each_codes_rows(case):
    rng = np.random.default_rng(1)
    codes, xs = rng.standard_normal((6, 5)), rng.standard_normal((40, 5))
    with np.errstate(invalid="ignore"):                        # unused codes: 0 / 0 with eps 0
        C_new, count, _, assign = case["tp"].ema_kmeans_reference(codes, np.zeros(6), np.zeros((6, 5)), xs, 0.0, 0.0)
    assert np.array_equal(assign, ((xs[:, None] - codes[None]) ** 2).sum(-1).argmin(1)) and count.sum() == 40
    for j in np.unique(assign):
        assert np.allclose(C_new[j], xs[assign == j].mean(0))


@pytest.mark.parametrize("names,sc_mode", [(["codebook.weight", "belief.fc2.weight"], "token"),
                                           (["codebook.weight", "belief.fc1.weight"], "token"),
                                           (["codebook.weight", "belief.fc1.weight"], "region")])
def test_gradcheck_float64(case, names, sc_mode):
    """Autograd's gradient of the whole loss (soft, not incubating) against finite differences,
    along random projections (gradcheck's fast mode)."""
    torch = case["torch"]
    ref = case["tp"].PacoReference(case["cfg"], num_codes=K, belief_hidden=H).from_numpy(case["state"]).double()
    ref.set_teacher(case["teacher"])
    x, kept, subst, regions = case["x"][:2].double(), case["ids_keep"][:2], case["subst"][:2], case["regions"][:2]
    owners = [(ref.get_submodule(nm.rpartition(".")[0]), nm.rpartition(".")[2]) for nm in names]

    def loss(*values):
        saved = [mod._parameters[attr] for mod, attr in owners]
        for (mod, attr), v in zip(owners, values):
            mod._parameters[attr] = v
        try:
            return ref.loss(x, kept, subst, None, k=TOP_K, sc_mode=sc_mode, regions=regions)["total"]
        finally:
            for (mod, attr), v in zip(owners, saved):
                mod._parameters[attr] = v
    leaves = tuple(ref.get_parameter(nm).detach().clone().requires_grad_(True) for nm in names)
    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_the_fused_attention_peer_computes_the_reference_step(torch):
    """The benchmarks' best PyTorch path (scaled_dot_product_attention, fused AdamW) is the same
    MAE step as the written-out reference: same loss and gradients on the same weights."""
    from pacofr.config import get_config
    from pacofr.testing.steps import batch, keep
    from pacofr.testing.torch_ref import MAE, grads_numpy, use_sdpa
    cfg = get_config("pacofr_test_tiny")
    images, ids = batch(cfg, 3, keep(cfg), seed=2)
    ref = MAE(cfg)
    fused = use_sdpa(MAE(cfg))
    fused.load_state_dict(ref.state_dict())
    x, i = torch.from_numpy(images), torch.from_numpy(ids)
    want, got = ref(x, i), fused(x, i)
    want.backward()
    got.backward()
    assert abs(got.item() - want.item()) < 1e-5 * abs(want.item())
    gw, gg = grads_numpy(ref), grads_numpy(fused)
    assert set(gw) == set(gg)
    for k in gw:
        np.testing.assert_allclose(gg[k], gw[k], rtol=1e-3, atol=1e-6 * float(np.abs(gw[k]).max()) + 1e-7)
    assert not use_sdpa(fused, False).blocks[0].attn.fused
