"""Pre-training configuration: every docs/method.md option as a field, the ``pacofr`` and ``mae``
presets, and loading from JSON / YAML files with command-line style overrides."""
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..config import check_fields
from ..masking import KINDS as MASKINGS   # the masking registry (pacofr/masking.py); the old name kept
BASE_LR = 4e-3                         # lr per 256 images of batch (MAE's convention; MAE's own is 1.5e-4)
# fields added after run folders were first written, with the value a run without them had
LEGACY_FIELDS = {"sc_center": False, "mask_region_ratio": 0.15, "diag_every": 250}
REGION_SOURCES = ("canonical", "landmarks", "parsing")
SC_MODES = ("token", "region")
CODEBOOK_INITS = ("random", "kmeans++")


@dataclass(frozen=True)
class PretrainConfig:
    """One pre-training run. Defaults are docs/method.md's ``pacofr`` preset on
    ``pacofr_vit_tiny_p8_112`` and built-in SynthFace faces."""
    preset: str = "pacofr"
    model: str = "pacofr_vit_tiny_p8_112"
    # data: "synthface" (built in) or a folder of face images (aligned crops, or any photos:
    # they are centre-cropped)
    data: str = "synthface"
    synth_images: int = 20000
    data_seed: int = 0                 # SynthFace's seed (0: split "pretrain"); ``seed`` sets weights, masks, order
    synth_identities: int = 0          # 0: synth_images // 10
    flip: bool = True                  # horizontal flip augmentation
    shuffle_buffer: int = 4096         # faces in the shuffle buffer of a shard folder (pacofr prepare)
    # optimisation
    steps: int = 2000
    batch_size: int = 32
    accum_steps: int = 1               # micro-batches per optimizer step
    lr: float = 0.0                    # 0: 4e-3 * batch_size * accum_steps / 256 (5e-4 at batch 32, synthface-v2's)
    min_lr: float = 0.0
    warmup_steps: int = -1             # -1: 5% of steps
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.95)
    clip_grad: float = 3.0             # 0: no clipping
    dtype: str = "auto"                # "fp32", "bf16", or "auto": bf16 where it is faster on this CPU
    seed: int = 0
    # masking (docs/method.md §1)
    masking: str = "random"            # "structured" masks hide whole components (docs/method.md §1)
    mask_ratio: float = 0.75
    mask_region_ratio: float = 0.15   # masking "facial": the share of removed patches taken as whole facial
                                      # components first (the rest random, so the face loses about mask_ratio)
    region_source: str = "canonical"
    # codebook and belief predictor (§2)
    codebook_size: int = 1024
    belief_hidden: int = 512
    topk: int = 4
    tau: float = 1.0
    hard: bool = False
    subst_ratio: float = 0.1           # share of the kept patches substituted (at least one); more hides detail
                                       # the encoder needs (docs/method.md, "Defaults and their evidence")
    incubation_steps: int = -1         # -1: one epoch of the data; 0: no incubation
    codebook_decay: float = 0.99
    codebook_eps: float = 1e-5
    codebook_init: str = "random"
    dead_code_fraction: float = 1.0 / 16   # dead: EMA usage below dead_code_fraction / K
    lambda_inc: float = 1.0
    beta: float = 0.25                 # alignment weight
    # reconstruction (§3)
    norm_pix: bool = True
    lambda_s: float = 1.0              # weight of substituted patches in L_rec
    # spatial consistency (§4)
    lambda_sc: float = 0.0             # off: the student meets L_sc by changing little, at a cost in landmark
                                       # accuracy (docs/method.md §4 and "Defaults and their evidence")
    sc_mode: str = "token"
    sc_center: bool = True             # token affinities of centred tokens (each image's mean token removed), so
                                       # that tokens all alike no longer agree for free (docs/method.md §4)
    teacher_momentum: float = 0.996
    teacher_dtype: str = "auto"        # the EMA teacher's forward: "model" (the student's dtype), "fp32",
                                       # "bf16", or "auto": bf16 where a calibration finds bf16 products
                                       # faster on this CPU; the targets barely move (docs/results.md)
    # logging and checkpoints
    out: str = "runs/pacofr"
    log_every: int = 10
    usage_window: int = 1000           # assignments over which code usage is measured
    preview_every: int = 500           # 0: none
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    eval_every: int = 0                # calls the eval hook every so many steps; 0: never
    diag_every: int = 250              # diagnostics (train/diagnostics.py) every so many steps; 0: never
    threads: int = 0                   # 0: keep pacofr's setting

    def __post_init__(self):
        def need(ok, msg):
            if not ok:
                raise ValueError(msg)
        for f in dataclasses.fields(self):  # types first: a string where a number belongs fails here
            v = getattr(self, f.name)
            if f.type is int:
                need(isinstance(v, int) and not isinstance(v, bool), f"{f.name} must be an int, got {v!r}")
            elif f.type is float:
                need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                     f"{f.name} must be a finite number, got {v!r}")
            elif f.type is bool:
                need(isinstance(v, bool), f"{f.name} must be true or false, got {v!r}")
            elif f.type is str:
                need(isinstance(v, str), f"{f.name} must be a string, got {v!r}")
        need(isinstance(self.betas, tuple) and len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for name in ("log_every", "checkpoint_every", "usage_window", "synth_images", "shuffle_buffer"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("preview_every", "eval_every", "diag_every", "data_seed", "threads", "seed", "synth_identities",
                     "belief_hidden"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.codebook_eps > 0, f"codebook_eps must be positive, got {self.codebook_eps}")
        need(self.warmup_steps >= -1 and self.incubation_steps >= -1,
             "warmup_steps and incubation_steps must be >= -1")
        need(self.preset in ("pacofr", "mae", "custom"),
             f"preset must be 'pacofr', 'mae' or 'custom', got {self.preset!r}")
        need(self.masking in MASKINGS, f"masking must be one of {MASKINGS}, got {self.masking!r}")
        need(self.region_source in REGION_SOURCES,
             f"region_source must be one of {REGION_SOURCES}, got {self.region_source!r}")
        need(self.sc_mode in SC_MODES, f"sc_mode must be one of {SC_MODES}, got {self.sc_mode!r}")
        need(not (self.sc_center and self.sc_mode != "token"),
             "sc_center applies to sc_mode 'token' only: set sc_center false with sc_mode 'region'")
        need(self.codebook_init in CODEBOOK_INITS,
             f"codebook_init must be one of {CODEBOOK_INITS}, got {self.codebook_init!r}")
        need(self.dtype in ("auto", "fp32", "bf16"), f"dtype must be 'auto', 'fp32' or 'bf16', got {self.dtype!r}")
        need(self.teacher_dtype in ("auto", "model", "fp32", "bf16"),
             f"teacher_dtype must be 'auto', 'model', 'fp32' or 'bf16', got {self.teacher_dtype!r}")
        need(0 <= self.mask_ratio < 1, f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        need(0 <= self.mask_region_ratio <= 1, f"mask_region_ratio must be in [0, 1], got {self.mask_region_ratio}")
        need(0 <= self.subst_ratio <= 1, f"subst_ratio must be in [0, 1], got {self.subst_ratio}")
        need(self.steps >= 1 and self.batch_size >= 1 and self.accum_steps >= 1,
             "steps, batch_size and accum_steps must be >= 1")
        need(self.codebook_size >= 0 and (self.subst_ratio == 0 or self.codebook_size >= 1),
             "a substitution ratio above 0 needs a codebook (codebook_size >= 1)")
        need(self.codebook_size == 0 or 1 <= self.topk <= min(64, self.codebook_size),
             f"topk must be in [1, min(64, codebook_size)], got {self.topk}")
        need(self.tau > 0, f"tau must be positive, got {self.tau}")
        need(0 < self.codebook_decay < 1 and 0 <= self.teacher_momentum <= 1, "decays must lie in (0, 1)")
        for name in ("lambda_inc", "beta", "lambda_s", "lambda_sc", "weight_decay", "lr", "min_lr", "clip_grad"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")

    # ---- derived
    @property
    def uses_codebook(self):
        return self.codebook_size > 0 and self.subst_ratio > 0

    def base_lr(self):
        return self.lr or BASE_LR * self.batch_size * self.accum_steps / 256

    def warmup(self):
        return self.warmup_steps if self.warmup_steps >= 0 else max(1, self.steps // 20)

    def incubation(self, batches_per_epoch):
        """Incubation steps: the field, or (-1) one epoch of optimizer steps."""
        if self.incubation_steps >= 0:
            return self.incubation_steps
        return -(-batches_per_epoch // self.accum_steps)

    # ---- conversion
    def to_dict(self):
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_saved(cls, d):
        """The config a run folder or checkpoint recorded: fields it lacks take the value its
        run had (LEGACY_FIELDS; data_seed: the run's seed, which chose its SynthFace faces)."""
        return cls.from_dict({**LEGACY_FIELDS, "data_seed": d.get("seed", 0), **d})

    @classmethod
    def from_dict(cls, d):
        check_fields(cls, d, "pre-training config")
        d = dict(d)
        if isinstance(d.get("betas"), (list, tuple)):
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


PRESETS = {
    "pacofr": {},
    "mae": {"masking": "random", "subst_ratio": 0.0, "lambda_sc": 0.0, "codebook_size": 0, "incubation_steps": 0,
            "out": "runs/mae"},
}


def make_config(preset="pacofr", config_file=None, **overrides):
    """The preset's defaults, then the file's fields, then ``overrides`` (None values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    fields = {"preset": preset, **PRESETS[preset]}
    if config_file is not None:
        fields.update(read_config_file(config_file))
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return PretrainConfig.from_dict(fields)


def read_config_file(path):
    """A JSON or YAML (needs PyYAML) mapping of PretrainConfig fields."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the config file ({exc})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: reading YAML needs PyYAML (pip install pyyaml), or use JSON") from None
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: the config file must hold a mapping of field names to values")
    return d
