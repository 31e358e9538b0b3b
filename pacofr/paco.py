"""PaCo-FR (docs/method.md), the model as MAE's ``models_mae.py`` is MAE's: the student ViT (with
``codebook.*`` and ``belief.*`` when the config substitutes patches), the EMA teacher encoder,
the codebook's EMA k-means state and the ring of recent code choices, and the loss.

One micro-step is ``forward`` (sampling, substitution, reconstruction, codebook terms, spatial
consistency -> loss terms) then ``backward`` (consistency, engine, codebook and belief
gradients, accumulated into the student's gradient buffer; EMA k-means while incubating).
After each optimizer step, ``update_teacher``. With ``subst_ratio = 0`` and ``lambda_sc = 0``
(the ``mae`` preset) the same code path is MAE. Every array operation runs in the C core.

Shapes (csrc/README.md's letters): B images, N = G*G patches, n kept, s substituted per image
(B*s rows of substituted patches), d = p*p*3, K codes, H belief width, C encoder width."""
import math
import time
from collections import defaultdict

import numpy as np

from . import _C
from . import masking, regions
from .distributed import World
from .model import Model

__all__ = ["NonFiniteLoss", "PacoFR"]

INIT_SALT, RESEED_SALT = 0xC0DE, 0xDEAD   # codebook init and re-seeding keys (masking salts live in C)


class NonFiniteLoss(FloatingPointError):
    """A loss term became NaN or Inf; the message names the step and the term."""


def _gather_rows(a, idx):
    """a (B, N, ...) and idx (B, s) -> (B, s, ...)."""
    return np.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


class _Clock:
    """Seconds spent per phase (``PacoFR.times``), for the benchmark's breakdown."""

    def __init__(self, times):
        self.times, self.t = times, time.perf_counter()

    def lap(self, phase):
        now = time.perf_counter()
        self.times[phase] += now - self.t
        self.t = now


class PacoFR:
    """PaCo-FR around a student ``model`` (a ``pacofr.Model``, with a codebook when ``cfg`` uses
    one), configured by ``cfg`` (a ``pacofr.train.PretrainConfig`` or any object with its
    fields). ``incubation_steps``: optimizer steps of the incubation stage (docs/method.md §2).
    ``world``: a ``pacofr.distributed.World`` when each rank holds a slice of every batch; the
    statistics that depend on the whole batch (codebook initialisation, EMA k-means and
    re-seeding, the ring of code choices, belief accuracy) then see every rank's patches, in
    rank order, as one process with the whole batch would."""

    def __init__(self, model, cfg, incubation_steps, world=None):
        self.model, self.cfg, self.incubation_steps = model, cfg, int(incubation_steps)
        self.world = world or World()
        c = model.config
        self.G, self.N, self.d, self.p = c.grid_size, c.num_patches, c.patch_dim, c.patch_size
        self.n_keep = masking.num_kept(cfg.mask_ratio, self.N)
        # at least one substituted patch when the codebook is on (a ratio above 0 asks for it)
        self.n_subst = max(1, int(round(cfg.subst_ratio * self.n_keep))) if cfg.uses_codebook else 0
        if self.n_keep < 1:
            raise ValueError(f"mask_ratio {cfg.mask_ratio} removes all {self.N} patches of {c.name}: nothing is kept")
        if cfg.uses_codebook and c.codebook_size != cfg.codebook_size:
            raise ValueError(f"the model has {c.codebook_size} codes, the config asks for {cfg.codebook_size}")
        self.teacher = self._make_teacher() if cfg.lambda_sc > 0 else None
        K = c.codebook_size
        self.ema_count = np.zeros(K, np.float32)
        self.ema_sum = np.zeros((K, self.d), np.float32)
        self.codebook_ready = False
        self.recent = np.full(max(1, cfg.usage_window), -1, np.int64)  # ring of top-1 codes
        self.recent_at = 0
        self.canonical = regions.region_map(self.G)
        self.times = defaultdict(float)  # phase -> seconds, accumulated over calls
        self.last = {}                   # the last forward's mask, ids_keep and substituted input
        self._ctx = None                 # what backward needs from the last forward

    def _make_teacher(self):
        """The EMA teacher: an encoder-only copy of the student's encoder (its flat prefix), in
        ``cfg.teacher_dtype`` ("fp32" / "bf16"; "model" and an unresolved "auto" take the
        student's: ``pacofr.pretrain`` resolves "auto" on the CPU it runs on)."""
        model = self.model
        dtype = self.cfg.teacher_dtype if self.cfg.teacher_dtype in ("fp32", "bf16") else model.dtype
        teacher = Model(model.config.replace(encoder_only=True, codebook_size=0), dtype=dtype)
        student = {t.name: (t.offset, t.shape) for t in model.tensors}
        for t in teacher.tensors:
            if student.get(t.name) != (t.offset, t.shape):
                raise RuntimeError(f"teacher layout differs from the student's at {t.name}")
        self._n_enc = teacher.flat_params.size
        teacher.flat_params[...] = model.flat_params[:self._n_enc]
        return teacher

    # ---- sampling: region maps, masks and substitution positions (docs/method.md §1, §2)
    def region_maps(self, B, landmarks=None, parsing=None):
        """(B, N) component ids of each patch, from ``cfg.region_source``."""
        src = self.cfg.region_source
        if src != "canonical" and (landmarks if src == "landmarks" else parsing) is None:
            raise ValueError(f"region_source={src!r}, but the data gives no {src}: use 'canonical', or data "
                             f"with {src} (SynthFace has both)")
        if src == "landmarks":
            if landmarks.shape[1] != 68:
                raise ValueError("region_source='landmarks' needs 68-point landmarks, the data has "
                                 f"{landmarks.shape[1]}")
            return regions.region_map_from_landmarks(landmarks, self.model.config.img_size, self.G)
        if src == "parsing":
            return regions.region_map_from_parsing(parsing, self.G)
        return np.broadcast_to(self.canonical, (B, self.N))

    def sample(self, indices, step, micro=0, landmarks=None, parsing=None):
        """Masks and substitution positions for one micro-batch, each row a pure function of
        (seed, step, micro, sample index) -> dict of mask (B, N) uint8, ids_keep (B, n),
        ids_restore (B, N), pos (B, s) positions within ids_keep (or None), regions (B, N)."""
        cfg, B = self.cfg, len(indices)
        key_step = int(step) * cfg.accum_steps + int(micro)
        maps = self.region_maps(B, landmarks, parsing)
        mask, ids_keep, ids_restore = masking.make_masks(
            cfg.masking, B, self.G, cfg.mask_ratio, cfg.seed, key_step,
            regions=maps if masking.needs_regions(cfg.masking) else None, indices=indices,
            region_ratio=cfg.mask_region_ratio)
        pos = None
        if self.n_subst:
            pos = masking.subst_positions(cfg.seed, key_step, indices, self.n_keep, self.n_subst)
        return {"mask": mask, "ids_keep": ids_keep, "ids_restore": ids_restore, "pos": pos, "regions": maps}

    # ---- forward
    def forward(self, images, indices, step, micro=0, landmarks=None, parsing=None):
        """Loss terms of one micro-batch: images (B, 3, S, S) float32, indices (B,) global
        sample indices, step the optimizer step. -> dict of floats (``loss`` the total)."""
        clock = _Clock(self.times)
        masks = self.sample(indices, step, micro, landmarks, parsing)
        clock.lap("masking")
        return self.forward_masked(images, step=step, **masks)

    def forward_masked(self, images, mask, ids_keep, pos, step, regions=None, ids_restore=None):
        """``forward`` for given masks: mask (B, N) uint8, ids_keep (B, n) int64, pos (B, s)
        positions within ids_keep of the substituted patches (or None), regions (B, N)
        component ids (None: the canonical map), ids_restore (B, N) (None: from ids_keep)."""
        B = images.shape[0]
        ctx = {"step": step, "incubating": step < self.incubation_steps, "images": images,
               "regions": np.broadcast_to(self.canonical, (B, self.N)) if regions is None else regions}
        self._ctx, self.last = ctx, {"mask": mask, "ids_keep": ids_keep, "regions": ctx["regions"]}
        out = {}
        clock = _Clock(self.times)
        if self.n_subst:
            x_in, target, weights = self._substitute(ctx, images, mask, ids_keep, pos)
            self.last["x_in"] = x_in
            clock.lap("codebook")
            rec = self.model.forward(x_in, ids_keep, ids_restore, target, weights)
            clock.lap("vit forward")
            self._codebook_terms(ctx, out)
            clock.lap("codebook")
        else:
            rec = self.model.forward(images, ids_keep, ids_restore)
            clock.lap("vit forward")
        out["rec"] = rec
        if self.teacher is not None:
            out["sc"] = self._consistency_forward(ctx, images, ids_keep, clock)
            clock.lap("consistency")
        self._total(ctx, out)
        return out

    def _substitute(self, ctx, images, mask, ids_keep, pos):
        """Replace the kept patches at pos by codebook tokens P^ = mu + sigma * t (docs/method.md §2),
        t the belief predictor's top-k mixture. -> (encoder input, (B, N, d) clean targets,
        (B, N) loss weights: 1 on removed patches, lambda_s on substituted ones)."""
        cfg, B, s, d = self.cfg, images.shape[0], self.n_subst, self.d
        P = _C.patchify(images, self.p)                                        # (B, N, d)
        Pn, mu, sigma = _C.patch_stats(P.reshape(-1, d))
        Pn, mu, sigma = Pn.reshape(B, self.N, d), mu.reshape(B, self.N), sigma.reshape(B, self.N)
        if not self.codebook_ready:
            self.init_codebook(self.world.allgather(Pn.reshape(-1, d)), ctx["step"])
        subst = np.take_along_axis(ids_keep, pos, 1)                           # grid ids
        xS = np.ascontiguousarray(_gather_rows(Pn, subst).reshape(B * s, d))
        sdS = np.ascontiguousarray(np.take_along_axis(sigma, subst, 1))
        logits = self._belief_forward(ctx, xS)                                 # (B*s, K)
        codebook = self.model.param("codebook.weight")                        # (K, d)
        t, idx, w = _C.topk_mixture_forward(logits, codebook, cfg.topk, cfg.tau, cfg.hard)
        x_in = images.copy()
        _C.substitute(x_in, t.reshape(B, s, d), np.ascontiguousarray(np.take_along_axis(mu, subst, 1)), sdS,
                      subst, self.p)
        weights = mask.astype(np.float32)
        np.put_along_axis(weights, subst, np.float32(cfg.lambda_s), 1)
        ctx.update(Pn=Pn, xS=xS, sdS=sdS, pos=pos, t=t, idx=idx, w=w, logits=logits)
        return x_in, P, weights

    def _belief_forward(self, ctx, xS):
        """The belief MLP (d -> H -> GELU -> K) on the normalised patches xS (B*s, d) -> logits."""
        m = self.model
        h_pre = _C.linear_forward(xS, m.param("belief.fc1.weight"), m.param("belief.fc1.bias"), "fp32")
        h = _C.gelu_forward(h_pre)
        ctx.update(h_pre=h_pre, h=h)
        return _C.linear_forward(h, m.param("belief.fc2.weight"), m.param("belief.fc2.bias"), "fp32")

    def _codebook_terms(self, ctx, out):
        """Belief accuracy against the nearest codes, L_align, L_inc while incubating, and the
        ring of recent top-1 codes."""
        codebook, xS, logits = self.model.param("codebook.weight"), ctx["xS"], ctx["logits"]
        target, _ = _C.codebook_nearest(xS, codebook)                         # incubation targets
        out["belief_acc"] = self.world.mean(float((logits.argmax(1) == target).mean()))
        out["align"] = _C.mse_forward(ctx["t"], xS)
        if ctx["incubating"]:
            out["inc"], ctx["probs"] = _C.cross_entropy_forward(logits, target)
            ctx["target"] = target
        top1 = self.world.allgather(ctx["idx"][:, 0])
        n = min(top1.size, self.recent.size)
        at = (self.recent_at + np.arange(n)) % self.recent.size
        self.recent[at] = top1[-n:]
        self.recent_at = (self.recent_at + n) % self.recent.size

    def _consistency_forward(self, ctx, images, ids_keep, clock):
        """L_sc (docs/method.md §4): the student's token affinities against the EMA teacher's on the
        kept clean patches, per token or pooled per facial region (``sc_mode``)."""
        latent = self.model.latent()                                          # (B, 1+n, C)
        tlat = self.teacher.encode(images, ids_keep)
        clock.lap("teacher forward")
        ys, yt = np.ascontiguousarray(latent[:, 1:]), np.ascontiguousarray(tlat[:, 1:])
        if self.cfg.sc_center:    # correlations, not cosines: collapse earns nothing
            ys = np.ascontiguousarray(ys - ys.mean(1, keepdims=True), np.float32)
            yt = np.ascontiguousarray(yt - yt.mean(1, keepdims=True), np.float32)
        valid = kept_regions = count = None
        if self.cfg.sc_mode == "region":
            kept_regions = np.ascontiguousarray(np.take_along_axis(np.asarray(ctx["regions"]), ids_keep, 1))
            ys, count = _C.region_pool_forward(ys, kept_regions, len(regions.COMPONENTS))
            yt, _ = _C.region_pool_forward(yt, kept_regions, len(regions.COMPONENTS))
            valid = (count > 0).astype(np.uint8)
        sc, diff, zs, norms = _C.affinity_loss_forward(ys, yt, valid)
        ctx["sc"] = (diff, zs, norms, valid, kept_regions, count, ys.shape)
        return sc

    def _total(self, ctx, out):
        cfg = self.cfg
        total = out["rec"] + cfg.beta * out.get("align", 0.0) + cfg.lambda_sc * out.get("sc", 0.0)
        if ctx["incubating"] and self.n_subst:
            total += cfg.lambda_inc * out["inc"]
        out["loss"] = total
        for name in ("rec", "inc", "align", "sc", "loss"):
            if name in out and not math.isfinite(out[name]):
                raise NonFiniteLoss(f"step {ctx['step'] + 1}: loss term {name!r} is {out[name]} (not finite); stopping")

    # ---- backward (every gradient accumulates; the optimizer divides by accum_steps)
    def backward(self):
        """Gradients of the last ``forward``'s loss into the student's gradient buffer; while
        incubating, then the EMA k-means update of the codebook. -> dict of statistics:
        ``reseeded`` (dead codes re-seeded, while incubating), code ``usage`` and ``perplexity``
        (with a codebook), ``incubating``."""
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError("PacoFR.backward() needs a forward() first")
        self._ctx = None
        clock = _Clock(self.times)
        dlatent = None
        if "sc" in ctx:
            dlatent = self._consistency_backward(ctx)
            clock.lap("consistency")
        learn_codes = self.n_subst and not ctx["incubating"]
        dcols = np.zeros((ctx["images"].shape[0], self.n_keep, self.d), np.float32) if learn_codes else None
        self.model.backward(dlatent, dcols)
        clock.lap("vit backward")
        stats = {}
        if self.n_subst:
            self._codebook_backward(ctx, dcols)
            clock.lap("codebook backward")
            if ctx["incubating"]:
                stats["reseeded"] = self._kmeans(ctx)
                clock.lap("k-means")
            stats["usage"], stats["perplexity"] = self.usage()
        stats["incubating"] = bool(ctx["incubating"] and self.n_subst)
        return stats

    def _consistency_backward(self, ctx):
        """-> dlatent (B, 1+n, C): lambda_sc times the gradient of L_sc on the student's tokens."""
        diff, zs, norms, valid, kept_regions, count, shape = ctx["sc"]
        dys = np.zeros(shape, np.float32)
        _C.affinity_loss_backward(dys, diff, zs, norms, valid, self.cfg.lambda_sc)
        B, C = shape[0], self.model.config.embed_dim
        dlatent = np.zeros((B, 1 + self.n_keep, C), np.float32)
        if kept_regions is not None:
            dtok = np.zeros((B, self.n_keep, C), np.float32)
            _C.region_pool_backward(dtok, dys, count, kept_regions)
            dlatent[:, 1:] = dtok
        elif self.cfg.sc_center:   # through the centring: minus the mean over tokens
            dlatent[:, 1:] = dys - dys.mean(1, keepdims=True)
        else:
            dlatent[:, 1:] = dys
        return dlatent

    def _codebook_backward(self, ctx, dcols):
        """Codebook and belief gradients: through L_inc while incubating, else through the
        substituted pixels (dcols, from the engine) and L_align."""
        cfg, m = self.cfg, self.model
        dlogits = np.zeros_like(ctx["logits"])
        if ctx["incubating"]:
            _C.cross_entropy_backward(ctx["probs"], ctx["target"], cfg.lambda_inc, dlogits)
        else:
            B = ctx["images"].shape[0]
            dt = np.zeros((B, self.n_subst, self.d), np.float32)
            _C.substitute_backward(dt, dcols, ctx["sdS"], ctx["pos"], self.p)
            dt = dt.reshape(B * self.n_subst, self.d)
            if cfg.beta:
                _C.mse_backward(ctx["t"], ctx["xS"], cfg.beta, dt)
            _C.topk_mixture_backward(dlogits, m.grad("codebook.weight"), dt, ctx["idx"], ctx["w"],
                                     m.param("codebook.weight"), cfg.tau)
        h, h_pre = ctx["h"], ctx["h_pre"]
        dh = np.zeros_like(h)
        _C.linear_backward(dlogits, h, m.param("belief.fc2.weight"), dh, m.grad("belief.fc2.weight"),
                           m.grad("belief.fc2.bias"), "fp32")
        dh_pre = np.zeros_like(h_pre)
        _C.gelu_backward(h_pre, dh, dh_pre)
        _C.linear_backward(dh_pre, ctx["xS"], m.param("belief.fc1.weight"), None, m.grad("belief.fc1.weight"),
                           m.grad("belief.fc1.bias"), "fp32")

    def _kmeans(self, ctx):
        """EMA k-means toward every patch of the batch, then dead-code re-seeding -> how many."""
        cfg, codebook = self.cfg, self.model.param("codebook.weight")
        flat = self.world.allgather(ctx["Pn"].reshape(-1, self.d))
        assign, _ = _C.codebook_nearest(flat, codebook)
        _C.codebook_ema(codebook, self.ema_count, self.ema_sum, flat, assign, cfg.codebook_decay, cfg.codebook_eps)
        K = codebook.shape[0]
        return _C.codebook_reseed(codebook, self.ema_count, self.ema_sum, flat, cfg.dead_code_fraction / K,
                                  self._key(ctx["step"], RESEED_SALT))

    def update_teacher(self):
        """After each optimizer step: teacher = m * teacher + (1 - m) * student encoder."""
        if self.teacher is not None:
            clock = _Clock(self.times)
            _C.ema_update(self.teacher.flat_params, self.model.flat_params[:self._n_enc], self.cfg.teacher_momentum)
            clock.lap("teacher EMA")

    # ---- the codebook
    def init_codebook(self, patches_n, step):
        """Codebook from the first batch's normalised patches (B*N, d): random rows or k-means++."""
        codebook = self.model.param("codebook.weight")
        _C.codebook_init(codebook, patches_n, self.cfg.codebook_init == "kmeans++", self._key(step, INIT_SALT))
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

    # ---- state: a cheap snapshot (rolled back to when a step is interrupted) and checkpoints
    def _codebook_state(self):
        return {"codebook_ready": self.codebook_ready, "recent": self.recent.copy(), "recent_at": self.recent_at,
                "ema_count": self.ema_count.copy(), "ema_sum": self.ema_sum.copy()}

    def snapshot(self):
        """What a micro-step changes outside the gradients (codebook, k-means state, ring)."""
        d = self._codebook_state()
        if self.model.config.codebook_size:
            d["codebook"] = self.model.param("codebook.weight").copy()
        return d

    def restore(self, d):
        """Undo the micro-steps since ``snapshot()`` returned d."""
        self.codebook_ready, self.recent_at = d["codebook_ready"], d["recent_at"]
        self.recent[...], self.ema_count[...], self.ema_sum[...] = d["recent"], d["ema_count"], d["ema_sum"]
        if "codebook" in d:
            self.model.param("codebook.weight")[...] = d["codebook"]
        self._ctx = None

    def state_dict(self):
        """Arrays and scalars beside the student's weights: k-means state, ring, teacher."""
        d = self._codebook_state()
        if self.teacher is not None:
            d["teacher"] = self.teacher.flat_params.copy()
        return d

    def load_state_dict(self, d):
        self.codebook_ready = bool(d["codebook_ready"])
        self.recent[...] = np.asarray(d["recent"]).astype(np.int64)  # float32 in older checkpoints
        self.recent_at = int(d["recent_at"])
        self.ema_count[...] = d["ema_count"]
        self.ema_sum[...] = d["ema_sum"]
        if self.teacher is not None:
            self.teacher.flat_params[...] = d["teacher"]
