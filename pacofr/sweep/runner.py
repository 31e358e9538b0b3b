"""Running a sweep: step times measured once, then every (seed, arm) pre-trained for its share
of equal compute and scored, one JSON line per run in OUT/rows.jsonl, the aggregated table
rewritten after each. Everything resumes: the step times and the sweep are kept in OUT, a
pre-training run continues from its last checkpoint, a scored run is not scored again.

OUT/
  sweep.json        the sweep as started (a resumed sweep must be the same)
  step_times.json   seconds per optimizer step of each arm, measured here, with the CPU
  runs/<arm>/seed_<k>/   pre-training runs (metrics.jsonl with diagnostics, checkpoints/)
  rows.jsonl        one line per scored (arm, seed): steps, metrics, validation curves, the CPU
  summary.json, table.md, curves.png   mean and 95% interval per arm (aggregate.py)"""
import contextlib
import fcntl
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from .. import checkpoint, runtime
from .._io import atomic_write_bytes
from ..eval import protocol as proto
from ..model import create_model
from ..train import pretrain
from . import aggregate
from .spec import slug, sweep_dict

__all__ = ["run_sweep", "step_counts", "measure_step_seconds"]

WARM_STEPS, TIMED_STEPS, ROUNDS = 3, 6, 2


def _say(log, msg):
    if log is not None:
        log(f"{time.strftime('%H:%M:%S')} {msg}")


def measure_step_seconds(sweep, arm, steps=TIMED_STEPS, warm=WARM_STEPS):
    """Median seconds per optimizer step of an arm (its config, this machine), from a
    throw-away run: ``warm`` steps, then ``steps`` timed ones."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = sweep.config(arm, sweep.seeds[0], 10000, tmp).replace(
            log_every=1, checkpoint_every=10 ** 6, preview_every=0, diag_every=0)
        pretrain(cfg, progress=False, stop_after=warm + steps)
        rows = [json.loads(line) for line in open(Path(tmp) / "metrics.jsonl")]
    rates = [r["images_per_s"] for r in rows if "images_per_s" in r][warm:]
    return cfg.batch_size * cfg.accum_steps / statistics.median(rates)


def _measure(sweep, arms, log):
    """{arm name: [seconds per step, one per round]} of arms, in ROUNDS interleaved rounds."""
    seen = {a.name: [] for a in arms}
    for r in range(ROUNDS):
        for arm in arms:
            seen[arm.name].append(measure_step_seconds(sweep, arm))
            _say(log, f"step time {arm.name} (round {r + 1}): {seen[arm.name][-1]:.3f} s")
    return seen


def _step_times(sweep, out, log):
    """{arm: seconds per step}, kept in OUT/step_times.json: measured in ROUNDS interleaved
    rounds (a drifting machine touches every arm alike), the median per arm. Arms added to a
    sweep later are measured beside one arm timed before (the reference), and their times
    scaled by the reference's then / now, so that a machine faster or slower today does not
    change their share of compute."""
    path = out / "step_times.json"
    timed = [a for a in sweep.arms if a.pretrain and not a.steps]
    kept = json.loads(path.read_text()) if path.exists() else {"seconds_per_step": {}, "measured": {}}
    times = kept["seconds_per_step"]
    missing = [a for a in timed if a.name not in times]
    if not missing:
        return times
    ref = next((a for a in sweep.arms if a.name in times and a.pretrain and not a.steps), None)
    seen = _measure(sweep, missing + ([ref] if ref else []), log)
    scale = 1.0
    if ref is not None:
        scale = times[ref.name] / statistics.median(seen.pop(ref.name))
        _say(log, f"added arms timed beside {ref.name!r}: scaled by {scale:.3f} (its time then / now)")
    for name, v in seen.items():
        times[name] = scale * statistics.median(v)
        kept.setdefault("measured", {})[name] = v
    info = runtime.build_info()
    kept.update(seconds_per_step=times, cpu=info.get("cpu"), isa=info.get("isa"), threads=runtime.get_num_threads())
    if ref is not None:
        kept.setdefault("scaled", {}).update(dict.fromkeys(seen, scale))
    atomic_write_bytes(path, json.dumps(kept, indent=1).encode())
    return times


def step_counts(sweep, times):
    """{arm: optimizer steps}: the sweep's seconds over the arm's step time (an arm's own
    ``steps`` when it fixes them; 0 for an arm that is not pre-trained)."""
    counts = {}
    for arm in sweep.arms:
        if not arm.pretrain:
            counts[arm.name] = 0
        else:
            counts[arm.name] = arm.steps or max(1, int(sweep.seconds / times[arm.name]))
    return counts


def _changed_arms(then, now):
    """Arms of ``then`` whose resolved configuration (spec.resolved) differs ``now``, each
    with the fields that differ."""
    diff = []
    for arm, old in then.items():
        new = now.get(arm, old)
        fields = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
                  if old.get(k) != new.get(k)]
        if fields:
            diff.append(f"arm {arm!r} ({'; '.join(fields)})")
    return diff


def _with_defaults(protocol):
    """A protocol as written to sweep.json, with the fields added to Protocol since at their
    defaults (as the sweep ran); one that no longer parses is kept as it is, to be reported."""
    try:
        return json.loads(json.dumps(proto.Protocol.from_dict(protocol).to_dict()))
    except (TypeError, ValueError):
        return protocol


def _check_same_sweep(sweep, out):
    """The sweep in OUT must be this one; arms (and seeds) may be added, never changed. An arm
    is compared by the configuration it resolves to, so a change of pacofr's defaults under an
    arm that relies on them is refused, and an arm's file may pin a field to the value it ran with."""
    path, now = out / "sweep.json", sweep_dict(sweep)
    if path.exists():
        then = json.loads(path.read_text())
        then["protocol"] = _with_defaults(then.get("protocol"))
        diff = sorted(k for k in set(then) | set(now)
                      if k not in ("arms", "seeds", "resolved") and then.get(k) != now.get(k))
        if "resolved" in then:
            diff += _changed_arms(then["resolved"], now["resolved"])
        else:                       # a sweep.json older than resolved configurations
            diff += [f"arm {a!r}" for a, d in then["arms"].items() if now["arms"].get(a, d) != d]
        if diff:
            raise ValueError(f"{out} holds another sweep (differs in {diff}): choose another --out, or restore the "
                             f"sweep file it was started with (arms and seeds may be added; where pacofr's "
                             f"defaults changed since, set the arm's field to the value it ran with)")
    atomic_write_bytes(path, json.dumps(now, indent=1).encode())


@contextlib.contextmanager
def _lock(out):
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"{out} is in use by another pacofr sweep") from None
    try:
        yield
    finally:
        os.close(fd)


def read_rows(out):
    """The rows of OUT/rows.jsonl (a torn last line, from a killed run, is ignored)."""
    path = Path(out) / "rows.jsonl"
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def _append_row(out, row):
    path = Path(out) / "rows.jsonl"
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        atomic_write_bytes(path, b"".join(json.dumps(r).encode() + b"\n" for r in read_rows(out)))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(row) + "\n").encode())
    finally:
        os.close(fd)


def _last_diagnostics(run):
    rows = [json.loads(line) for line in open(Path(run) / "metrics.jsonl") if line.strip()]
    diag = [r for r in rows if any(k.startswith("diag/") for k in r)]
    steps = [r for r in rows if "loss" in r]
    out = dict(diag[-1]) if diag else {}
    if steps:
        out.update({k: steps[-1][k] for k in ("loss", "rec", "sc", "usage", "belief_acc") if k in steps[-1]})
    return out


def _pretrained(sweep, arm, seed, steps, out, progress, log):
    """The (arm, seed) model after its pre-training (continued from a checkpoint when one is
    there); a randomly initialised one for an arm that is not pre-trained."""
    if not arm.pretrain:
        cfg = sweep.config(arm, seed, 1, out / "unused")
        return create_model(cfg.model, seed=seed), {}
    run = out / "runs" / slug(arm.name) / f"seed_{seed}"
    cfg = sweep.config(arm, seed, steps, run)
    have = checkpoint.checkpoint_dirs(run)
    if not (have and checkpoint.step_of(have[-1]) == steps):
        _say(log, f"{arm.name} seed {seed}: pre-training {steps} steps in {run}")
        pretrain(cfg, progress=progress, resume=bool(have))
    return checkpoint.load_model(run), _last_diagnostics(run)


def _chosen(sweep, arms, seeds):
    """The (seed, arm) pairs to run, seed-major, restricted to ``arms`` (names) and ``seeds``
    when given (None: all); a name or seed the sweep does not have is an error."""
    names = [a.name for a in sweep.arms]
    for name in arms or ():
        if name not in names:
            raise ValueError(f"the sweep has no arm {name!r}; its arms: {', '.join(names)}")
    for seed in seeds or ():
        if seed not in sweep.seeds:
            raise ValueError(f"the sweep has no seed {seed}; its seeds: {', '.join(map(str, sweep.seeds))}")
    return [(seed, arm) for seed in sweep.seeds if seeds is None or seed in seeds
            for arm in sweep.arms if arms is None or arm.name in arms]


def run_sweep(sweep, out, progress=True, log=print, tables_only=False, arms=None, seeds=None):
    """Run (or resume) ``sweep`` in folder ``out`` -> the aggregated summary (a dict) of every
    row so far. ``arms`` (names) and ``seeds`` run only those rows now (e.g. the cheap rows of
    an arm without pre-training at the end of a session); the others stay to do."""
    out, todo = Path(out), _chosen(sweep, arms, seeds)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        _check_same_sweep(sweep, out)
        if tables_only:
            return aggregate.write(out, sweep, read_rows(out))
        times = _step_times(sweep, out, log)
        steps = step_counts(sweep, times)
        _say(log, "equal compute: " + ", ".join(f"{a}: {s} steps" for a, s in steps.items()))
        done = {(r["arm"], r["seed"]) for r in read_rows(out)}
        info = runtime.build_info()
        for seed, arm in todo:
            if (arm.name, seed) in done:
                continue
            model, diag = _pretrained(sweep, arm, seed, steps[arm.name], out, progress, log)
            t0 = time.perf_counter()
            res = proto.evaluate(model, sweep.protocol)
            row = {"arm": arm.name, "seed": seed, "steps": steps[arm.name],
                   "step_seconds": times.get(arm.name), "eval_seconds": time.perf_counter() - t0,
                   "metrics": res["metrics"], "curves": res["curves"], "diagnostics": diag,
                   "cpu": info["cpu"], "isa": info["isa"]}      # a sweep may be resumed on another CPU
            _append_row(out, aggregate.finite(row))
            _say(log, f"{arm.name} seed {seed}: " + aggregate.headline(res["metrics"]))
            aggregate.write(out, sweep, read_rows(out))
        return aggregate.write(out, sweep, read_rows(out))
