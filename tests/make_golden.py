"""Write tests/golden/mae_test_tiny.npz from PyTorch (run by hand when the reference changes):

    python tests/make_golden.py

pacofr_test_tiny with PyTorch-initialised weights and MAE's fixed sin-cos position embeddings,
one batch: the loss, every parameter gradient, and a 10-step AdamW loss trajectory. The suite
compares the C engine with these numbers, and with PyTorch itself where torch is installed.
"""
from pathlib import Path

import numpy as np
import torch

from pacofr.config import get_config
from pacofr.posembed import sincos_2d
from pacofr.testing.torch_ref import MAE, decay_groups, grads_numpy

HERE = Path(__file__).resolve().parent
STEPS, LR, WD, BETAS = 10, 1e-3, 0.05, (0.9, 0.95)


def golden_inputs(cfg, batch=4, keep=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, cfg.img_size, cfg.img_size)).astype(np.float32)
    ids_keep = np.stack([rng.permutation(cfg.num_patches)[:keep] for _ in range(batch)]).astype(np.int64)
    return images, ids_keep


def golden_model(cfg, seed=0):
    torch.manual_seed(seed)
    model = MAE(cfg)
    with torch.no_grad():
        model.pos_embed.copy_(torch.from_numpy(sincos_2d(cfg.embed_dim, cfg.grid_size))[None])
        model.decoder_pos_embed.copy_(torch.from_numpy(sincos_2d(cfg.decoder_embed_dim, cfg.grid_size))[None])
        model.cls_token.normal_(std=0.02)
        model.mask_token.normal_(std=0.02)
    return model


def main():
    cfg = get_config("pacofr_test_tiny")
    images, ids_keep = golden_inputs(cfg)
    model = golden_model(cfg)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    loss = model(torch.from_numpy(images), torch.from_numpy(ids_keep))
    loss.backward()
    grads = grads_numpy(model)

    decay, no_decay = decay_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=1e-8)
    trajectory = []
    for _ in range(STEPS):
        opt.zero_grad()
        step_loss = model(torch.from_numpy(images), torch.from_numpy(ids_keep))
        step_loss.backward()
        opt.step()
        trajectory.append(step_loss.item())

    out = {"images": images, "ids_keep": ids_keep, "loss": np.float64(loss.item()),
           "trajectory": np.array(trajectory), "lr": LR, "weight_decay": WD, "betas": np.array(BETAS)}
    out.update({f"param/{k}": v for k, v in state.items()})
    out.update({f"grad/{k}": v for k, v in grads.items()})
    (HERE / "golden").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "golden" / "mae_test_tiny.npz", **out)
    print(f"loss {loss.item():.6f}, trajectory {trajectory[0]:.4f} -> {trajectory[-1]:.4f}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
