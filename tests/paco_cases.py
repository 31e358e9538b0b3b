"""Test cases of one whole PaCo-FR step on pacofr_test_tiny (K = 16 codes, H = 32): inputs
built from a seed, the C engine's result (pacofr.paco.PacoFR.forward_masked and backward) and PyTorch's
(pacofr/testing/torch_paco.py). tests/make_paco_golden.py stores PyTorch's numbers for machines without
torch."""
import numpy as np

import pacofr
from pacofr.paco import PacoFR
from pacofr.train import PretrainConfig

K, H = 16, 32
CASES = {
    "soft_token": dict(incubation=False, hard=False, sc_mode="token"),
    "hard_region": dict(incubation=False, hard=True, sc_mode="region"),
    "incubation_token": dict(incubation=True, hard=False, sc_mode="token"),
    "soft_token_centered": dict(incubation=False, hard=False, sc_mode="token", sc_center=True),
}
TERMS = ("total", "rec", "inc", "align", "sc", "acc")


def sample_positions(name, size, count=64):
    """Fixed flat positions of one gradient that the golden file stores."""
    rng = np.random.default_rng([sum(map(ord, name)), size])
    return np.sort(rng.choice(size, min(count, size), replace=False))


def make_config(case):
    c = CASES[case]
    return PretrainConfig(model="pacofr_test_tiny", codebook_size=K, belief_hidden=H, topk=4, tau=0.8,
                          hard=c["hard"], sc_mode=c["sc_mode"], sc_center=c.get("sc_center", False), subst_ratio=0.5,
                          mask_ratio=0.5, lambda_s=0.7,
                          beta=0.25, lambda_inc=1.0, lambda_sc=1.0, batch_size=4)


def inputs(case, seed=0):
    """images (4, 3, 32, 32), mask, ids_keep, pos, regions, the model state and the teacher."""
    rng = np.random.default_rng([seed, len(case)])
    cfg = make_config(case)
    model = pacofr.create_model("pacofr_test_tiny", seed=seed, codebook_size=K, belief_hidden=H)
    state = model.state_dict()
    state["codebook.weight"] = rng.standard_normal((K, 192)).astype(np.float32)
    for name in ("belief.fc1.bias", "belief.fc2.bias", "decoder_pred.bias", "norm.bias"):
        state[name] = (0.1 * rng.standard_normal(state[name].shape)).astype(np.float32)
    teacher = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) if k != "pos_embed" else v
               for k, v in state.items() if not k.startswith(("decoder", "mask_token", "codebook", "belief"))}
    B, N, n = 4, 16, 8
    images = rng.standard_normal((B, 3, 32, 32)).astype(np.float32)
    ids_keep = np.stack([np.sort(rng.permutation(N)[:n]) for _ in range(B)]).astype(np.int64)
    mask = np.ones((B, N), np.uint8)
    np.put_along_axis(mask, ids_keep, 0, 1)
    pos = np.stack([np.sort(rng.permutation(n)[:4]) for _ in range(B)]).astype(np.int64)
    regions = rng.integers(0, 13, (B, N)).astype(np.int64)
    return cfg, state, teacher, images, mask, ids_keep, pos, regions


def run_c(case, seed=0):
    cfg, state, teacher, images, mask, ids_keep, pos, regions = inputs(case, seed)
    model = pacofr.create_model("pacofr_test_tiny", seed=seed, codebook_size=K, belief_hidden=H)
    model.load_state_dict(state)
    paco = PacoFR(model, cfg, incubation_steps=1 if CASES[case]["incubation"] else 0)
    paco.codebook_ready = True
    paco.teacher.load_state_dict(teacher)
    model.zero_grad()
    out = paco.forward_masked(images, mask, ids_keep, pos, 0, regions)
    paco.backward()
    terms = {"total": out["loss"], "rec": out["rec"], "inc": out.get("inc", 0.0), "align": out["align"],
             "sc": out["sc"], "acc": out["belief_acc"]}
    return terms, model.grads()


def run_torch(case, seed=0):
    import torch
    from pacofr.testing.torch_paco import PacoReference
    cfg, state, teacher, images, mask, ids_keep, pos, regions = inputs(case, seed)
    c = CASES[case]
    ref = PacoReference("pacofr_test_tiny", num_codes=K, belief_hidden=H)
    ref.from_numpy(state)
    subst = np.take_along_axis(ids_keep, pos, 1)
    out = ref.loss(images, ids_keep, subst, teacher, k=cfg.topk, tau=cfg.tau, hard=c["hard"],
                   incubation=c["incubation"], beta=cfg.beta, lambda_inc=cfg.lambda_inc, lambda_sc=cfg.lambda_sc,
                   lambda_s=cfg.lambda_s, sc_mode=c["sc_mode"], regions=torch.from_numpy(regions),
                   sc_center=cfg.sc_center)
    out["total"].backward()
    terms = {k: float(out[k].detach()) for k in TERMS}
    return terms, ref.grads_numpy()
