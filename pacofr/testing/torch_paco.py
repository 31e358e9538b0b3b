"""A PyTorch reference of one PaCo-FR training loss (docs/method.md §2-§5), with autograd: the C
engine is checked against it (loss terms and every gradient) and the benchmark times it
(PyTorch eager, fp32).

Parameter names: the MAE's (timm encoder names, MAE decoder names, from torch_ref.MAE), plus
``codebook.weight`` (K, d) and ``belief.fc1.weight`` (H, d), ``belief.fc1.bias`` (H),
``belief.fc2.weight`` (K, H), ``belief.fc2.bias`` (K), d = p*p*3. The teacher (EMA encoder) is
given separately, as a state dict with the encoder's names; it never gets gradients.

    ref = PacoReference(get_config("pacofr_test_tiny"), num_codes=16, belief_hidden=32)
    ref.from_numpy(state)                      # every name, numpy arrays
    out = ref.loss(x, ids_keep, subst, teacher_state, k=4, incubation=False)
    out["total"].backward()
    grads = ref.grads_numpy()                  # every trainable parameter, zeros where none

``loss`` does not clear gradients: call ``ref.zero_grad()`` between backward passes.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .torch_ref import MAE, patchify

NUM_REGIONS = 13  # docs/method.md §1: the 13 facial components


def unpatchify(patches, p):
    """(B, N, p*p*3) in (p, q, c) order -> (B, 3, S, S); the exact inverse of patchify."""
    B, N, _ = patches.shape
    h = int(round(math.sqrt(N)))
    x = patches.reshape(B, h, h, p, p, 3)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, 3, h * p, h * p)


def patch_norm(P):
    """MAE's norm_pix: mu (.., 1), sigma (.., 1) = sqrt(unbiased var + 1e-6), (P - mu) / sigma."""
    mu = P.mean(dim=-1, keepdim=True)
    sigma = (P.var(dim=-1, keepdim=True, correction=1) + 1e-6).sqrt()
    return (P - mu) / sigma, mu, sigma


class Codebook(nn.Module):
    def __init__(self, num_codes, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_codes, dim))


class Belief(nn.Module):
    """The belief predictor: d -> H -> exact GELU -> K logits."""

    def __init__(self, dim, hidden, num_codes):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, num_codes)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def _cfg_from(cfg, overrides):
    if cfg is None or isinstance(cfg, str) or overrides:
        from ..config import ViTConfig, get_config
        if cfg is None:
            return ViTConfig(**overrides)
        if isinstance(cfg, str):
            return get_config(cfg, **overrides)
        return cfg.replace(**overrides)
    return cfg


class PacoReference(MAE):
    """torch_ref.MAE plus the codebook and the belief MLP; ``loss`` is one PaCo-FR step's loss.

    cfg: a pacofr ViTConfig (or anything with its fields and properties), or a preset name;
    keyword ``overrides`` replace ViTConfig fields. The model must have a decoder."""

    def __init__(self, cfg=None, num_codes=1024, belief_hidden=512, **overrides):
        cfg = _cfg_from(cfg, overrides)
        if cfg.encoder_only:
            raise ValueError("PaCo-FR needs the decoder: encoder_only must be False")
        super().__init__(cfg)
        d = cfg.patch_dim
        self.num_codes, self.belief_hidden = num_codes, belief_hidden
        self.codebook = Codebook(num_codes, d)
        self.belief = Belief(d, belief_hidden, num_codes)
        teacher_cfg = cfg.replace(encoder_only=True) if hasattr(cfg, "replace") else None
        self._teacher_cfg = teacher_cfg
        # built lazily and kept OFF the module tree (object.__setattr__): no teacher names in
        # state_dict / named_parameters, and .double() / .to() leave it to teacher()
        object.__setattr__(self, "_teacher", None)
        self._teacher_loaded = False

    # ---- state ------------------------------------------------------------------------------
    def from_numpy(self, state):
        """Load every parameter (timm/MAE names + codebook.* + belief.*) from numpy arrays."""
        self.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state.items()}, strict=True)
        return self

    def numpy_state(self):
        return {k: v.detach().cpu().numpy().copy() for k, v in self.state_dict().items()}

    def encoder_state(self):
        """The encoder's parameters (the names a teacher state dict has), as numpy."""
        keep = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
        return {k: v for k, v in self.numpy_state().items()
                if k.startswith(keep) and not k.startswith("decoder")}

    def grads_numpy(self):
        """Every trainable parameter's gradient as numpy (zeros where none arrived). Fixed
        sin-cos position embeddings are not trainable and are left out, as in torch_ref."""
        return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().numpy().copy()
                for n, p in self.named_parameters() if p.requires_grad}

    def set_teacher(self, teacher_state=None):
        """Load the teacher encoder (an encoder-only torch_ref.MAE, no gradients) from
        ``teacher_state`` (numpy or torch, the encoder's names); None: a copy of the student's
        current encoder. A state without ``pos_embed`` takes the student's (fixed unless
        learned_pos). Returns the teacher module."""
        if self._teacher is None:
            if self._teacher_cfg is None:
                raise ValueError("cfg has no replace(); cannot build the teacher")
            teacher = MAE(self._teacher_cfg)
            for p in teacher.parameters():
                p.requires_grad_(False)
            object.__setattr__(self, "_teacher", teacher)
        t = self._teacher
        t.to(dtype=self.pos_embed.dtype, device=self.pos_embed.device)
        if teacher_state is None:
            teacher_state = self.encoder_state()
        state = {k: (v.detach() if torch.is_tensor(v) else torch.as_tensor(np.array(v)))
                 for k, v in teacher_state.items()}
        if "pos_embed" not in state:
            if self.cfg.learned_pos:
                raise ValueError("teacher_state lacks pos_embed but the model has learned_pos")
            state["pos_embed"] = self.pos_embed.detach()
        want = set(t.state_dict())
        if set(state) != want:
            missing, extra = sorted(want - set(state)), sorted(set(state) - want)
            raise ValueError(f"teacher_state: missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for k, v in t.state_dict().items():
                v.copy_(state[k].to(dtype=v.dtype, device=v.device))
        self._teacher_loaded = True
        return t

    def teacher(self, teacher_state=None):
        """The teacher for a loss: loaded from ``teacher_state`` when given; otherwise the one
        set last (set_teacher or an earlier loss call), or, if none was ever set, a copy of the
        student's encoder taken now."""
        if teacher_state is not None or not self._teacher_loaded:
            return self.set_teacher(teacher_state)
        t = self._teacher
        if t.pos_embed.dtype != self.pos_embed.dtype or t.pos_embed.device != self.pos_embed.device:
            t.to(dtype=self.pos_embed.dtype, device=self.pos_embed.device)
        return t

    # ---- pieces -----------------------------------------------------------------------------
    def tokens(self, Pn_S, k, tau, hard):
        """Belief logits (R, K), top-k idx (R, k), weights w (R, k) and token t (R, d)."""
        C = self.codebook.weight
        logits = self.belief(Pn_S)
        top, idx = torch.topk(logits, k, dim=-1, largest=True, sorted=True)
        w = torch.softmax(top / tau, dim=-1)
        t = torch.einsum("rk,rkd->rd", w, C[idx])
        if hard:
            # forward exactly C[idx_0] (t_soft - t_soft.detach() is exactly 0), backward the
            # soft mixture: the same as t_soft + (C[idx_0] - t_soft).detach()
            t = C[idx[:, 0]].detach() + (t - t.detach())
        return logits, idx, w, t

    @staticmethod
    def nearest_codes(x, C):
        """argmin_k |x - C_k|^2 through |x|^2 - 2 x C^T + |C|^2 (ties: the lower index), no grad."""
        with torch.no_grad():
            dist = (x * x).sum(-1, keepdim=True) - 2.0 * x @ C.t() + (C * C).sum(-1)[None]
            return torch.argmin(dist, dim=-1)

    @staticmethod
    def affinity_loss(ys, yt):
        """Token mode: mean over (b, i, j) of (z z^T - zt zt^T)^2, z = l2-normalised rows."""
        z, zt = F.normalize(ys, dim=-1), F.normalize(yt, dim=-1)
        A, At = z @ z.transpose(1, 2), zt @ zt.transpose(1, 2)
        return ((A - At) ** 2).mean()

    @staticmethod
    def region_affinity_loss(ys, yt, comp, num_regions=NUM_REGIONS):
        """Region mode. ys, yt (B, n, C) kept tokens; comp (B, n) their component ids. Region
        embedding = mean of a component's tokens, then l2-normalised; per image the mean over
        present (c, c') pairs of (A - At)^2; then the mean over images."""
        G = max(num_regions, int(comp.max()) + 1)
        onehot = F.one_hot(comp, G).to(ys.dtype)                    # (B, n, G)
        count = onehot.sum(1)                                       # (B, G)
        present = (count > 0).to(ys.dtype)
        denom = count.clamp(min=1)[..., None]

        def embed(y):
            return F.normalize(onehot.transpose(1, 2) @ y / denom, dim=-1)  # absent rows: 0

        e, et = embed(ys), embed(yt)
        A, At = e @ e.transpose(1, 2), et @ et.transpose(1, 2)     # (B, G, G)
        pair = present[:, :, None] * present[:, None, :]
        per_image = (((A - At) ** 2) * pair).sum((1, 2)) / pair.sum((1, 2))
        return per_image.mean()

    # ---- the loss ---------------------------------------------------------------------------
    def loss(self, x, ids_keep, subst, teacher_state=None, *, k=4, tau=1.0, hard=False,
             incubation=False, beta=0.25, lambda_inc=1.0, lambda_sc=1.0, lambda_s=1.0,
             norm_pix=None, sc_mode="token", regions=None, num_regions=NUM_REGIONS, sc_center=False):
        """One PaCo-FR loss. x (B, 3, S, S) normalised images; ids_keep (B, n) kept grid
        indices; subst (B, s) grid indices, each row a subset of that row of ids_keep;
        teacher_state: the teacher encoder's parameters, loaded on this call (None: the teacher
        set last, see ``teacher``; set it once with ``set_teacher`` when timing);
        regions (B, N) component ids (sc_mode "region" only). norm_pix None: cfg.norm_pix_loss.
        sc_center: token affinities of the tokens minus each image's mean token.

        Returns tensors: total, rec, inc, align, sc, acc (scalars; inc is 0 outside incubation,
        acc is computed in both), latent (B, 1+n, C), teacher_latent, pred (B, N, d), t (B, s, d),
        logits (B, s, K), idx (B, s, k), w (B, s, k), y (B, s), x_sub (B, 3, S, S)."""
        x, ids_keep, subst = self._loss_inputs(x, ids_keep, subst, k, sc_mode)
        dtype, dev = x.dtype, x.device
        norm_pix = self.cfg.norm_pix_loss if norm_pix is None else norm_pix
        B, s, d = subst.shape[0], subst.shape[1], self.cfg.patch_dim

        # 1-3. patches, belief and top-k mixture, substitution
        P, Pn, Pn_S, (logits, idx, w, t), x_sub = self._substitute(x, subst, k, tau, hard, incubation)

        # 4. student encoder + decoder, L_rec over M (weight 1) and S (weight lambda_s)
        latent = self.forward_encoder(x_sub, ids_keep)
        pred, mask = self.forward_decoder(latent, ids_keep)
        target = Pn if norm_pix else P
        per_patch = ((pred - target) ** 2).mean(dim=-1)              # (B, N)
        lam = mask.clone()
        lam.scatter_(1, subst, float(lambda_s))
        rec = (per_patch * lam).sum() / lam.sum()

        # 5. incubation: cross-entropy toward the nearest code; top-1 belief accuracy
        y = self.nearest_codes(Pn_S, self.codebook.weight.detach())
        with torch.no_grad():
            acc = (logits.argmax(-1) == y).to(dtype).mean() if s else torch.zeros((), dtype=dtype)
        zero = torch.zeros((), dtype=dtype, device=dev)
        inc = F.cross_entropy(logits, y) if (incubation and s) else zero

        # 6. alignment (t after the hard / incubation treatment)
        align = ((Pn_S.detach() - t) ** 2).mean() if s else zero

        # 7. spatial consistency against the teacher on the original x
        sc, teacher_latent = self._consistency(latent, x, ids_keep, teacher_state, sc_center, sc_mode,
                                               regions, num_regions)

        # 8. total
        total = rec + beta * align + lambda_sc * sc
        if incubation:
            total = total + lambda_inc * inc
        return dict(total=total, rec=rec, inc=inc, align=align, sc=sc, acc=acc,
                    latent=latent, teacher_latent=teacher_latent, pred=pred,
                    t=t.reshape(B, s, d), logits=logits.reshape(B, s, self.num_codes),
                    idx=idx.reshape(B, s, k), w=w.reshape(B, s, k), y=y.reshape(B, s), x_sub=x_sub)

    def _loss_inputs(self, x, ids_keep, subst, k, sc_mode):
        """The loss's arrays as tensors of the model's dtype / int64 on its device, checked."""
        dtype = self.codebook.weight.dtype
        dev = self.codebook.weight.device
        x = torch.as_tensor(x).to(dtype=dtype, device=dev)
        ids_keep = torch.as_tensor(ids_keep).to(dtype=torch.int64, device=dev)
        subst = torch.as_tensor(subst).to(dtype=torch.int64, device=dev)
        if sc_mode not in ("token", "region"):
            raise ValueError(f"sc_mode must be 'token' or 'region', got {sc_mode!r}")
        if not 1 <= k <= self.num_codes:
            raise ValueError(f"k must be in [1, {self.num_codes}], got {k}")
        if subst.shape[1]:
            in_keep = (subst[:, :, None] == ids_keep[:, None, :]).any(-1)
            if not bool(in_keep.all()):
                raise ValueError("subst must be a subset of each row's ids_keep")
        return x, ids_keep, subst

    def _substitute(self, x, subst, k, tau, hard, incubation):
        """Steps 1-3 of the loss: patches P (B, N, d) and their normalised Pn, the substituted
        rows Pn_S (B*s, d), the belief's (logits, idx, w, t) and x_sub, x with patch subst[b, j]
        replaced by mu + sigma * t."""
        p, d = self.cfg.patch_size, self.cfg.patch_dim
        B, s = subst.shape
        with torch.no_grad():                                        # x needs no gradient
            P = patchify(x, p)                                       # (B, N, d)
            Pn, mu, sigma = patch_norm(P)
        gidx = subst[..., None].expand(-1, -1, d)
        Pn_S = torch.gather(Pn, 1, gidx).reshape(B * s, d)          # (R, d), (b, j) row-major
        mu_S = torch.gather(mu, 1, subst[..., None]).reshape(B * s, 1)
        sigma_S = torch.gather(sigma, 1, subst[..., None]).reshape(B * s, 1)
        logits, idx, w, t = self.tokens(Pn_S, k, tau, hard)
        if incubation:
            t = t.detach()
        P_hat = (mu_S + sigma_S * t).reshape(B, s, d)
        x_sub = unpatchify(P.scatter(1, gidx, P_hat), p)
        return P, Pn, Pn_S, (logits, idx, w, t), x_sub

    def _consistency(self, latent, x, ids_keep, teacher_state, sc_center, sc_mode, regions, num_regions):
        """Step 7: L_sc of the student's tokens against the teacher's on the original x
        -> (sc, teacher_latent)."""
        B, N = ids_keep.shape[0], self.cfg.num_patches
        teacher = self.teacher(teacher_state)
        with torch.no_grad():
            teacher_latent = teacher.forward_encoder(x, ids_keep)
        ys, yt = latent[:, 1:], teacher_latent[:, 1:]
        if sc_center:
            ys, yt = ys - ys.mean(1, keepdim=True), yt - yt.mean(1, keepdim=True)
        if sc_mode == "token":
            return self.affinity_loss(ys, yt), teacher_latent
        if regions is None:
            raise ValueError("sc_mode 'region' needs regions (B, N)")
        regions = torch.as_tensor(regions).to(dtype=torch.int64, device=x.device)
        if regions.shape != (B, N):
            raise ValueError(f"regions must be (B, N) = {(B, N)}, got {tuple(regions.shape)}")
        comp = torch.gather(regions, 1, ids_keep)
        return self.region_affinity_loss(ys, yt, comp, num_regions), teacher_latent


def ema_kmeans_reference(C, ema_count, ema_sum, x, decay, eps):
    """The VQ-VAE EMA k-means update in float64. C (K, d), ema_count (K), ema_sum (K, d),
    x (R, d). Returns (C_new, ema_count, ema_sum, assignments (R,) int64); nearest code by the
    exact squared distance, ties to the lower index."""
    C = np.asarray(C, np.float64)
    ema_count = np.asarray(ema_count, np.float64)
    ema_sum = np.asarray(ema_sum, np.float64)
    x = np.asarray(x, np.float64)
    K = C.shape[0]
    R = x.shape[0]
    assign = np.zeros(R, np.int64)
    step = max(1, (1 << 22) // max(1, K * C.shape[1]))  # rows per block: bounded memory
    for r0 in range(0, R, step):
        dist = ((x[r0:r0 + step, None, :] - C[None, :, :]) ** 2).sum(-1)
        assign[r0:r0 + step] = dist.argmin(axis=1)
    counts = np.bincount(assign, minlength=K).astype(np.float64)
    onehot = np.zeros((R, K))
    onehot[np.arange(R), assign] = 1.0
    ema_count = decay * ema_count + (1.0 - decay) * counts
    ema_sum = decay * ema_sum + (1.0 - decay) * (onehot.T @ x)
    n = ema_count.sum()
    smoothed = (ema_count + eps) / (n + K * eps) * n
    return ema_sum / smoothed[:, None], ema_count, ema_sum, assign
