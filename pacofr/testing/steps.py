"""The MAE training step (masks given, forward, backward, AdamW) of pacofr and of the same model
in PyTorch (``torch_ref.MAE``) on one batch: what the step benchmarks time and profile."""
import numpy as np

from ..config import get_config
from ..masking import num_kept

# images per step of each preset in the step benchmarks
BATCH = {"pacofr_vit_tiny_p8_112": 64, "pacofr_vit_small_p16_224": 32, "pacofr_test_tiny": 8}
MASK_RATIO = 0.75  # MAE's default: keep 49 of 196 patches


def keep(cfg, mask_ratio=MASK_RATIO):
    """Kept patches per image: ``masking.num_kept`` at MAE's ratio."""
    return num_kept(mask_ratio, cfg.num_patches)


def step_flops(cfg, B, n):
    """Matrix-product FLOPs of forward + backward (3x forward) of the MAE step: B images, n kept."""
    def stack(T, C, H, depth):
        per_token = 2 * (3 * C * C + C * C + 2 * C * H)
        attn = 2 * 2 * T * C  # QK^T and AV per token
        return depth * B * T * (per_token + attn)
    C, Cd, N = cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_patches
    fwd = stack(1 + n, C, int(C * cfg.mlp_ratio), cfg.depth)
    fwd += stack(1 + N, Cd, int(Cd * cfg.mlp_ratio), cfg.decoder_depth)
    fwd += 2 * B * n * cfg.patch_dim * C + 2 * B * (1 + n) * C * Cd + 2 * B * (1 + N) * Cd * cfg.patch_dim
    return 3 * fwd


def batch(cfg, B, n, seed=0):
    """(images (B, 3, S, S) float32 standard normal, ids_keep (B, n) int64 random patches)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((B, 3, cfg.img_size, cfg.img_size)).astype(np.float32)
    ids = np.stack([rng.permutation(cfg.num_patches)[:n] for _ in range(B)]).astype(np.int64)
    return images, ids


def pacofr_step(name, dtype, images, ids, lr=1e-4):
    """-> step() running one pacofr MAE step of preset ``name`` in ``dtype``; returns the loss."""
    from ..model import create_model
    from ..optim import AdamW
    model = create_model(name, dtype=dtype)
    opt = AdamW(model, lr=lr, weight_decay=0.05)

    def step():
        model.zero_grad()
        loss = model.forward(images, ids)
        model.backward()
        opt.step()
        return loss
    step.model = model
    return step


def torch_step(name, mode, images, ids, lr=1e-4, best=False):
    """-> step() running the PyTorch MAE step: mode "eager" (fp32), "autocast" (bf16 autocast)
    or "compile" (torch.compile, fp32); returns the loss. best: PyTorch's fastest path where it
    has one, fused attention (``scaled_dot_product_attention``) and ``AdamW(fused=True)``."""
    import torch
    from .torch_ref import MAE, decay_groups, use_sdpa
    model = use_sdpa(MAE(get_config(name)), best)
    decay, no_decay = decay_groups(model)
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), **({"fused": True} if best else {}))
    except (RuntimeError, TypeError, ValueError):      # no fused AdamW for this device or build
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    x, i = torch.from_numpy(images), torch.from_numpy(ids)
    fwd = torch.compile(model) if mode == "compile" else model

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            loss = fwd(x, i)
        loss.backward()
        opt.step()
        return loss.item()
    step.model = model
    return step


def check_mae_against_torch(rep, name, B, seed=1):
    """On ``rep`` (a ``bench.Report``): pacofr's fp32 MAE loss and every gradient against PyTorch
    autograd (``torch_ref.MAE``) on the same weights and batch. -> (the fp32 model, images, ids,
    PyTorch's loss) for further checks."""
    import torch
    from ..model import create_model
    from .torch_ref import MAE, from_numpy_state
    cfg = get_config(name)
    images, ids = batch(cfg, B, keep(cfg), seed=seed)
    model = create_model(name, dtype="fp32")
    ref = from_numpy_state(MAE(cfg), model.state_dict())
    want = ref(torch.from_numpy(images), torch.from_numpy(ids))
    want.backward()
    rep.check(f"{name} fp32 loss", model.forward(images, ids), want.item(), rtol=1e-4)
    model.backward()
    grads = model.grads()
    expect = {k: q.grad.numpy() for k, q in ref.named_parameters() if q.grad is not None}
    rep.require(f"{name} gradient names", set(grads) == set(expect), f"{len(grads)} of {len(expect)}")
    for key, g in expect.items():
        rep.check(f"{name} grad {key}", grads[key], g, rtol=0.0, atol=1e-3 * float(np.abs(g).max()) + 1e-7)
    return model, images, ids, want.item()
