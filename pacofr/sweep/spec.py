"""A sweep file: arms x seeds of pre-training at equal compute, each scored by one protocol.

JSON or YAML (PyYAML), a mapping::

    {"name": "masking",                        # optional, for the table's title
     "seconds": 600,                           # pre-training compute per arm and seed
     "seeds": [0, 1, 2],
     "base": {"model": "pacofr_vit_tiny_p8_112", "batch_size": 32, "lr": 5e-4},
     "per_step": {"warmup_steps": 0.05, "incubation_steps": 0.2},
     "arms": {"scratch": {"pretrain": false},
              "mae": {"preset": "mae"},
              "pacofr": {},
              "pacofr random masking": {"masking": "random"}},
     "protocol": {"split": "val", "labels": [0.01]}}

``base`` and each arm hold ``pacofr.train.PretrainConfig`` fields (an arm's ``preset`` picks
the preset its fields start from; ``"pretrain": false`` scores the randomly initialised
encoder). Each arm's step count is ``seconds`` divided by its step time, measured on this
machine once for the sweep (``steps`` in an arm fixes it instead). ``per_step`` sets fields
to a fraction of each arm's step count (at least 1 step; 0 stays 0). ``protocol``:
``pacofr.eval.protocol.Protocol`` fields."""
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field

from ..eval.protocol import Protocol
from ..train.config import PRESETS, make_config, read_config_file

__all__ = ["Arm", "Sweep", "load_sweep", "parse_seeds", "slug"]

NOT_IN_ARMS = {"seed", "out", "steps"}    # the sweep sets these (an arm may fix "steps")
PER_STEP_FIELDS = {"warmup_steps", "incubation_steps", "checkpoint_every", "preview_every", "diag_every",
                   "log_every"}


@dataclass(frozen=True)
class Arm:
    name: str
    preset: str = "pacofr"
    fields: dict = field(default_factory=dict)
    pretrain: bool = True
    steps: int = 0                 # 0: from the sweep's seconds and the measured step time


@dataclass(frozen=True)
class Sweep:
    name: str
    seconds: float
    seeds: tuple
    base: dict
    per_step: dict
    arms: tuple
    protocol: Protocol

    def config(self, arm, seed, steps, out):
        """The PretrainConfig of one (arm, seed) run with ``steps`` optimizer steps."""
        fields = {**self.base, **arm.fields}
        for name, frac in self.per_step.items():
            if name not in arm.fields:
                fields[name] = 0 if frac == 0 else max(1, int(round(frac * steps)))
        return make_config(arm.preset, None, **fields, steps=int(steps), seed=int(seed), out=str(out))


def slug(name):
    """A folder name for an arm."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
    return s or "arm"


def parse_seeds(text):
    """'3-10' or '0,2,5' (or both, '0,3-5') -> the sorted seeds; ValueError on anything else."""
    seeds = set()
    for part in str(text).split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (hi.isdigit() and int(hi) < int(lo)):
            raise ValueError(f"seeds must read like '3-10' or '0,2,5', got {text!r}")
        seeds.update(range(int(lo), int(hi or lo) + 1))
    return sorted(seeds)


def _need(ok, where, msg):
    if not ok:
        raise ValueError(f"{where}: {msg}")


def _arm(name, d, where):
    d = {} if d is None else d
    _need(isinstance(d, dict), where, f"arm {name!r} must be a mapping of config fields, got {type(d).__name__}")
    d = dict(d)
    preset = d.pop("preset", "pacofr")
    _need(preset in PRESETS, where, f"arm {name!r}: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    pretrain = d.pop("pretrain", True)
    _need(isinstance(pretrain, bool), where, f"arm {name!r}: pretrain must be true or false")
    steps = d.pop("steps", 0)
    _need(isinstance(steps, int) and steps >= 0, where, f"arm {name!r}: steps must be an int >= 0")
    bad = sorted(set(d) & NOT_IN_ARMS)
    _need(not bad, where, f"arm {name!r}: {bad} are set by the sweep (seeds, folders)")
    return Arm(name=str(name), preset=preset, fields=d, pretrain=pretrain, steps=steps)


def parse_sweep(d, where="sweep"):
    """A Sweep from the mapping of a sweep file, every field checked (configs included)."""
    _need(isinstance(d, dict), where, "a sweep file must hold a mapping")
    known = {"name", "seconds", "seeds", "base", "per_step", "arms", "protocol"}
    _need(not set(d) - known, where, f"unknown fields {sorted(set(d) - known)}; known: {sorted(known)}")
    seconds = d.get("seconds", 600)
    _need(isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds)
          and seconds > 0, where, f"seconds must be a positive number, got {seconds!r}")
    seeds = d.get("seeds", [0])
    _need(isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
          and len(set(seeds)) == len(seeds), where, f"seeds must be a list of distinct ints >= 0, got {seeds!r}")
    base = d.get("base", {})
    _need(isinstance(base, dict) and not set(base) & NOT_IN_ARMS, where,
          f"base must be a mapping of config fields without {sorted(NOT_IN_ARMS)}")
    per_step = d.get("per_step", {})
    _need(isinstance(per_step, dict) and set(per_step) <= PER_STEP_FIELDS, where,
          f"per_step may set {sorted(PER_STEP_FIELDS)}, got "
          f"{sorted(per_step) if isinstance(per_step, dict) else per_step}")
    _need(all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in per_step.values()), where,
          "per_step values are fractions of the step count, in [0, 1]")
    arms = d.get("arms")
    _need(isinstance(arms, dict) and arms, where, "arms must be a non-empty mapping of arm name to config fields")
    arms = tuple(_arm(k, v, where) for k, v in arms.items())
    _need(len({slug(a.name) for a in arms}) == len(arms), where, "two arm names give the same folder name")
    try:
        protocol = Protocol.from_dict(d.get("protocol", {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: protocol: {exc}") from None
    sweep = Sweep(name=str(d.get("name", "sweep")), seconds=float(seconds), seeds=tuple(seeds), base=dict(base),
                  per_step=dict(per_step), arms=arms, protocol=protocol)
    for arm in arms:                       # every config must be valid before hours are spent
        try:
            sweep.config(arm, seeds[0], arm.steps or 100, "unused")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: arm {arm.name!r}: {exc}") from None
    return sweep


def load_sweep(path):
    """A Sweep from a JSON or YAML file."""
    return parse_sweep(read_config_file(path), str(path))


def resolved(sweep):
    """Each arm's whole PretrainConfig, every default filled in (per-step fields at 1,000
    steps; the seed, steps and folder of a run left out), plus its ``pretrain`` and ``steps``:
    what an arm runs, which its fields alone do not say once pacofr's defaults change. An arm
    without pre-training is its model's name alone (its random weights depend on nothing else)."""
    arms = {}
    for arm in sweep.arms:
        cfg = dataclasses.asdict(sweep.config(arm, 0, 1000, "unused"))
        if not arm.pretrain:
            cfg = {"model": cfg["model"]}
        arms[arm.name] = {"pretrain": arm.pretrain, "steps": arm.steps,
                          **{k: v for k, v in cfg.items() if k not in NOT_IN_ARMS}}
    return json.loads(json.dumps(arms))


def sweep_dict(sweep):
    """The sweep as written to OUT/sweep.json (what a resumed sweep must match): the file's
    fields and, under ``resolved``, each arm's whole configuration."""
    return json.loads(json.dumps({
        "name": sweep.name, "seconds": sweep.seconds, "seeds": list(sweep.seeds), "base": sweep.base,
        "per_step": sweep.per_step, "protocol": sweep.protocol.to_dict(),
        "arms": {a.name: {"preset": a.preset, "pretrain": a.pretrain, "steps": a.steps, **a.fields}
                 for a in sweep.arms},
        "resolved": resolved(sweep)}))
