"""One PaCo-FR (or MAE) training micro-step: masking, belief predictor and codebook
substitution, reconstruction, incubation, alignment and spatial consistency, forward and
backward. Every array operation runs in the C core; this file only wires them (METHOD.md).

Shapes: B images, N = G*G patches, n kept, s substituted per image, R = B*s rows, d = p*p*3,
K codes, H belief width, C encoder width."""
import math
import time
from collections import defaultdict

import numpy as np

from .. import _C
from .. import masking as M
from ..model import Model


class NonFiniteLoss(FloatingPointError):
    """A loss term became NaN or Inf; the message names the step and the term."""


def _gather_rows(a, idx):
    """a (B, N, ...) and idx (B, s) -> (B, s, ...)."""
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


class _Clock:
    """Seconds spent per phase of the step (``PacoStep.times``), for the benchmark's breakdown."""

    def __init__(self, times):
        self.times, self.t = times, time.perf_counter()

    def lap(self, phase):
        now = time.perf_counter()
        self.times[phase] += now - self.t
        self.t = now


class PacoStep:
    """Holds the student ``model`` (with ``codebook.*`` and ``belief.*`` when the config uses a
    codebook), the EMA ``teacher`` encoder and the codebook's EMA k-means state, and runs
    micro-steps that accumulate gradients into ``model``'s gradient buffer.

    ``run(images, indices, step, micro=0, landmarks=None, parsing=None)`` -> dict of floats
    (loss terms and codebook statistics)."""

    def __init__(self, model, cfg, incubation_steps):
        self.model, self.cfg, self.incubation_steps = model, cfg, int(incubation_steps)
        c = model.config
        self.G, self.N, self.d, self.p = c.grid_size, c.num_patches, c.patch_dim, c.patch_size
        self.n_mask = int(round(cfg.mask_ratio * self.N))
        self.n_keep = self.N - self.n_mask
        self.n_subst = int(round(cfg.subst_ratio * self.n_keep)) if cfg.uses_codebook else 0
        if self.n_keep < 1:
            raise ValueError(f"mask_ratio {cfg.mask_ratio} removes all {self.N} patches of {c.name}: nothing is kept")
        if cfg.uses_codebook and self.n_subst < 1:
            raise ValueError(f"subst_ratio {cfg.subst_ratio} of {self.n_keep} kept patches rounds to no substitution; "
                             f"raise it or set it to 0 (no codebook)")
        if cfg.uses_codebook and c.codebook_size != cfg.codebook_size:
            raise ValueError(f"the model has {c.codebook_size} codes, the config asks for {cfg.codebook_size}")
        self.teacher = None
        if cfg.lambda_sc > 0:
            self.teacher = Model(c.replace(encoder_only=True, codebook_size=0), dtype=model.dtype)
            n = self.teacher.flat_params.size
            for t in self.teacher.tensors:  # the encoder is the student's flat prefix
                s = model._info(t.name)
                if (s.offset, s.shape) != (t.offset, t.shape):
                    raise RuntimeError(f"teacher layout differs from the student's at {t.name}")
            self.teacher.flat_params[...] = model.flat_params[:n]
            self._n_enc = n
        K = c.codebook_size
        self.ema_count = np.zeros(K, np.float32)
        self.ema_sum = np.zeros((K, self.d), np.float32)
        self.codebook_ready = False
        self.recent = np.full(max(1, cfg.usage_window), -1, np.int64)  # ring of top-1 codes
        self.recent_at = 0
        self.canonical = M.region_map(self.G)
        self.times = defaultdict(float)  # phase -> seconds, accumulated over calls

    # ---- helpers
    def grad(self, name):
        t = self.model._info(name)
        return self.model.flat_grads[t.offset:t.offset + t.numel].reshape(t.shape)

    def _regions(self, B, landmarks, parsing):
        src = self.cfg.region_source
        if src != "canonical" and (landmarks if src == "landmarks" else parsing) is None:
            raise ValueError(f"region_source={src!r}, but the data gives no {src}: use 'canonical', or data "
                             f"with {src} (SynthFace has both)")
        if src == "landmarks" and landmarks is not None:
            if landmarks.shape[1] != 68:
                raise ValueError(f"region_source='landmarks' needs 68-point landmarks, the data has {landmarks.shape[1]}")
            return M.region_map_from_landmarks(landmarks, self.model.config.img_size, self.G)
        if src == "parsing" and parsing is not None:
            return M.region_map_from_parsing(parsing, self.G)
        return np.broadcast_to(self.canonical, (B, self.N))

    def _subst_positions(self, indices, step):
        """(B, s) positions within each row of ids_keep, ascending: a pure function of
        (seed, step, sample index)."""
        out = np.empty((len(indices), self.n_subst), np.int64)
        for b, i in enumerate(indices):
            rng = np.random.default_rng([self.cfg.seed, 0x5B57, int(step), int(i)])
            out[b] = np.sort(rng.choice(self.n_keep, self.n_subst, replace=False))
        return out

    def init_codebook(self, patches_n, step):
        """Codebook from the first batch's normalised patches (R, d): random rows or k-means++."""
        C = self.model.param("codebook.weight")
        _C.codebook_init(C, patches_n, self.cfg.codebook_init == "kmeans++", self._key(step, 0xC0DE))
        self.ema_sum[...] = 0
        self.ema_count[...] = 0
        self.codebook_ready = True

    def _key(self, step, salt):
        return int((self.cfg.seed * 0x9E3779B97F4A7C15 + int(step) * 0x100000001B3 + salt) & 0x7FFFFFFFFFFFFFFF)

    def usage(self):
        """(fraction of the K codes among the last usage_window top-1 choices, their perplexity)."""
        seen = self.recent[self.recent >= 0]
        if seen.size == 0:
            return 0.0, 0.0
        counts = np.bincount(seen, minlength=self.model.config.codebook_size)
        p = counts[counts > 0] / seen.size
        return float((counts > 0).sum() / counts.size), float(np.exp(-(p * np.log(p)).sum()))

    # ---- the step
    def run(self, images, indices, step, micro=0, landmarks=None, parsing=None):
        cfg = self.cfg
        B = images.shape[0]
        clock = _Clock(self.times)
        key_step = int(step) * cfg.accum_steps + int(micro)
        regions = self._regions(B, landmarks, parsing)
        kind_regions = regions if cfg.masking == "structured" else None
        mask, ids_keep, _ = M.make_masks(cfg.masking, B, self.G, cfg.mask_ratio, cfg.seed, key_step,
                                         regions=kind_regions, indices=indices)
        pos = self._subst_positions(indices, key_step) if self.n_subst else None
        clock.lap("masking")
        return self.compute(images, mask, ids_keep, pos, step, regions)

    def compute(self, images, mask, ids_keep, pos, step, regions=None):
        """Forward and backward for given masks: mask (B, N) uint8, ids_keep (B, n) int64,
        pos (B, s) positions within ids_keep of the substituted patches (or None); regions
        (B, N) component ids for the region consistency mode."""
        cfg, model = self.cfg, self.model
        B = images.shape[0]
        incubating = step < self.incubation_steps
        if regions is None:
            regions = np.broadcast_to(self.canonical, (B, self.N))
        clock = _Clock(self.times)
        out = {}
        self.last = {"mask": mask, "ids_keep": ids_keep}
        s = self.n_subst
        if s:
            P = _C.patchify(images, self.p)                                    # (B, N, d)
            Pn, mu, sigma = _C.patch_stats(P.reshape(-1, self.d))
            Pn, mu, sigma = Pn.reshape(B, self.N, self.d), mu.reshape(B, self.N), sigma.reshape(B, self.N)
            if not self.codebook_ready:
                self.init_codebook(Pn.reshape(-1, self.d), step)
            subst = np.take_along_axis(ids_keep, pos, 1)                      # grid ids
            xS = np.ascontiguousarray(_gather_rows(Pn, subst).reshape(B * s, self.d))
            muS = np.ascontiguousarray(np.take_along_axis(mu, subst, 1))
            sdS = np.ascontiguousarray(np.take_along_axis(sigma, subst, 1))
            w1, b1 = model.param("belief.fc1.weight"), model.param("belief.fc1.bias")
            w2, b2 = model.param("belief.fc2.weight"), model.param("belief.fc2.bias")
            C = model.param("codebook.weight")
            h_pre = _C.linear_forward(xS, w1, b1, "fp32")
            h = _C.gelu_forward(h_pre)
            logits = _C.linear_forward(h, w2, b2, "fp32")                      # (R, K)
            t, idx, w = _C.topk_mixture_forward(logits, C, cfg.topk, cfg.tau, cfg.hard)
            x_in = images.copy()
            _C.substitute(x_in, t.reshape(B, s, self.d), muS, sdS, subst, self.p)
            self.last["x_in"] = x_in
            weights = mask.astype(np.float32)
            np.put_along_axis(weights, subst, np.float32(cfg.lambda_s), 1)
            clock.lap("codebook")
            rec = _C.vit_forward(model._h, x_in, ids_keep, None, P, weights)
            clock.lap("vit forward")
            target, _ = _C.codebook_nearest(xS, C)                            # incubation targets
            out["belief_acc"] = float((logits.argmax(1) == target).mean())
            align = _C.mse_forward(t, xS)
            out["align"] = align
            if incubating:
                inc, probs = _C.cross_entropy_forward(logits, target)
                out["inc"] = inc
            top1 = idx[:, 0]
            n = min(top1.size, self.recent.size)
            at = (self.recent_at + np.arange(n)) % self.recent.size
            self.recent[at] = top1[-n:]
            self.recent_at = (self.recent_at + n) % self.recent.size
            clock.lap("codebook")
        else:
            rec = _C.vit_forward(model._h, images, ids_keep)
            clock.lap("vit forward")
        out["rec"] = rec
        sc_parts = None
        if self.teacher is not None:
            latent = _C.vit_latent(model._h)                                   # (B, 1+n, C)
            tlat = _C.vit_encode_ids(self.teacher._h, images, ids_keep)
            clock.lap("teacher forward")
            if cfg.sc_mode == "region":
                kept_regions = np.ascontiguousarray(np.take_along_axis(np.asarray(regions), ids_keep, 1))
                G = len(M.COMPONENTS)
                ys, count = _C.region_pool_forward(np.ascontiguousarray(latent[:, 1:]), kept_regions, G)
                yt, _ = _C.region_pool_forward(np.ascontiguousarray(tlat[:, 1:]), kept_regions, G)
                valid = (count > 0).astype(np.uint8)
            else:
                ys, yt, valid = np.ascontiguousarray(latent[:, 1:]), np.ascontiguousarray(tlat[:, 1:]), None
                kept_regions = count = None
            sc, diff, zs, norms = _C.affinity_loss_forward(ys, yt, valid)
            out["sc"] = sc
            sc_parts = (diff, zs, norms, valid, kept_regions, count, ys.shape)
            clock.lap("consistency")
        total = rec + cfg.beta * out.get("align", 0.0) + cfg.lambda_sc * out.get("sc", 0.0)
        if incubating and s:
            total += cfg.lambda_inc * out["inc"]
        out["loss"] = total
        for name in ("rec", "inc", "align", "sc", "loss"):
            if name in out and not math.isfinite(out[name]):
                raise NonFiniteLoss(f"step {step + 1}: loss term {name!r} is {out[name]} (not finite); stopping")

        # ---- backward (all gradients accumulate; the optimizer divides by accum_steps)
        dlatent = None
        if sc_parts is not None and cfg.lambda_sc > 0:
            diff, zs, norms, valid, kept_regions, count, shape = sc_parts
            dys = np.zeros(shape, np.float32)
            _C.affinity_loss_backward(dys, diff, zs, norms, valid, cfg.lambda_sc)
            dlatent = np.zeros((B, 1 + self.n_keep, model.config.embed_dim), np.float32)
            if cfg.sc_mode == "region":
                dtok = np.zeros((B, self.n_keep, model.config.embed_dim), np.float32)
                _C.region_pool_backward(dtok, dys, count, kept_regions)
                dlatent[:, 1:] = dtok
            else:
                dlatent[:, 1:] = dys
            clock.lap("consistency")
        learn_codes = s and not incubating
        dcols = np.zeros((B, self.n_keep, self.d), np.float32) if learn_codes else None
        _C.vit_backward(model._h, dlatent, dcols)
        clock.lap("vit backward")
        if s:
            dlogits = np.zeros_like(logits)
            if incubating:
                _C.cross_entropy_backward(probs, target, cfg.lambda_inc, dlogits)
            else:
                dt = np.zeros((B, s, self.d), np.float32)
                _C.substitute_backward(dt, dcols, sdS, pos, self.p)
                dt = dt.reshape(B * s, self.d)
                if cfg.beta:
                    _C.mse_backward(t, xS, cfg.beta, dt)
                _C.topk_mixture_backward(dlogits, self.grad("codebook.weight"), dt, idx, w, C, cfg.tau)
            dh = np.zeros_like(h)
            _C.linear_backward(dlogits, h, w2, dh, self.grad("belief.fc2.weight"), self.grad("belief.fc2.bias"), "fp32")
            dh_pre = np.zeros_like(h_pre)
            _C.gelu_backward(h_pre, dh, dh_pre)
            _C.linear_backward(dh_pre, xS, w1, None, self.grad("belief.fc1.weight"), self.grad("belief.fc1.bias"), "fp32")
            clock.lap("codebook backward")
            if incubating:  # EMA k-means toward every patch of the batch, then dead codes
                flat = Pn.reshape(-1, self.d)
                assign, _ = _C.codebook_nearest(flat, C)
                _C.codebook_ema(C, self.ema_count, self.ema_sum, flat, assign, cfg.codebook_decay, cfg.codebook_eps)
                out["reseeded"] = _C.codebook_reseed(C, self.ema_count, self.ema_sum, flat,
                                                     cfg.dead_code_fraction / C.shape[0], self._key(step, 0xDEAD))
                clock.lap("k-means")
            out["usage"], out["perplexity"] = self.usage()
        out["incubating"] = bool(incubating and s)
        return out

    def update_teacher(self):
        """After each optimizer step: teacher = m * teacher + (1 - m) * student encoder."""
        if self.teacher is not None:
            clock = _Clock(self.times)
            _C.ema_update(self.teacher.flat_params, self.model.flat_params[:self._n_enc], self.cfg.teacher_momentum)
            clock.lap("teacher EMA")

    # ---- state: a cheap snapshot (rolled back to when a step is interrupted) and checkpoints
    def snapshot(self):
        d = {"codebook_ready": self.codebook_ready, "recent": self.recent.copy(), "recent_at": self.recent_at,
             "ema_count": self.ema_count.copy(), "ema_sum": self.ema_sum.copy()}
        if self.model.config.codebook_size:
            d["codebook"] = self.model.param("codebook.weight").copy()
        return d

    def restore(self, d):
        self.codebook_ready, self.recent_at = d["codebook_ready"], d["recent_at"]
        self.recent[...], self.ema_count[...], self.ema_sum[...] = d["recent"], d["ema_count"], d["ema_sum"]
        if "codebook" in d:
            self.model.param("codebook.weight")[...] = d["codebook"]

    def state_dict(self):
        d = {"codebook_ready": self.codebook_ready, "recent": self.recent.copy(), "recent_at": self.recent_at,
             "ema_count": self.ema_count.copy(), "ema_sum": self.ema_sum.copy()}
        if self.teacher is not None:
            d["teacher"] = self.teacher.flat_params.copy()
        return d

    def load_state_dict(self, d):
        self.codebook_ready = bool(d["codebook_ready"])
        self.recent[...] = d["recent"]
        self.recent_at = int(d["recent_at"])
        self.ema_count[...] = d["ema_count"]
        self.ema_sum[...] = d["ema_sum"]
        if self.teacher is not None:
            self.teacher.flat_params[...] = d["teacher"]
