"""The harness every speed benchmark (benchmarks/speed/) runs on; docs/performance.md states the rules.

A benchmark makes one ``Report``: the machine header (CPU, oneDNN version and ISA, threads,
commit) comes first, every result is checked against a reference (``Report.check``) before
anything is timed, ``alternate`` times variants A B C ... A B C ... and keeps every sample, and
``Report.finish`` writes what was printed and the rows: ``--json PATH`` to one file, ``--save
[DIR]`` to ``DIR/<bench>-<dtype>-<cpu>-<commit>.json`` and ``.md``. ``--quick`` asks the
benchmark for a run of seconds (fewer shapes and rounds), which CI runs for every benchmark.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..runtime import build_info, set_num_threads

RESULTS = Path("benchmarks") / "results" / "speed"


def commit():
    """The short commit of the checkout pacofr was imported from, "+dirty" when it has changes,
    or "unknown" outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def machine(threads):
    """What a figure was measured on: CPU, oneDNN and its ISA, threads, commit, versions, date."""
    info = build_info()
    out = {"cpu": info["cpu"], "isa": info["isa"], "onednn": info["onednn"], "threads": int(threads),
           "commit": commit(), "pacofr": info["version"], "python": sys.version.split()[0],
           "numpy": np.__version__, "omp_wait": info["omp_wait"], "bf16_gemm": info["bf16_gemm"],
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    return out


def cpu_tag(cpu):
    """A file-name tag for a CPU name: "Intel(R) Xeon(R) Processor (family 6 model 167)" ->
    "intel-xeon-f6m167"."""
    fam = re.search(r"family (\d+) model (\d+)", cpu)
    name = re.sub(r"\((r|tm)\)|\(.*?\)|processor|cpu|@.*|\d+-core", " ", cpu.lower())
    words = [w for w in re.split(r"[^a-z0-9]+", name) if w][:3]
    return "-".join(words + ([f"f{fam.group(1)}m{fam.group(2)}"] if fam else [])) or "cpu"


def parser(doc, threads=2):
    """The command line every speed benchmark shares: --quick, --threads, --json, --save."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a run of seconds: fewer shapes and rounds (CI runs this)")
    p.add_argument("--threads", type=int, default=threads, help="pacofr's (and the peer's) thread count")
    p.add_argument("--json", metavar="PATH", help="write the header, the checks and the rows to this file")
    p.add_argument("--save", nargs="?", const=str(RESULTS), metavar="DIR",
                   help=f"write DIR/<bench>-<dtype>-<cpu>-<commit>.json and .md (DIR default {RESULTS})")
    return p


class CheckFailed(AssertionError):
    """A variant's result is not the reference's: nothing of it is timed."""


class Report:
    """One benchmark run: header first, checks before timing, rows and printed text to files."""

    def __init__(self, bench, args, dtype="fp32", note=""):
        self.bench, self.args, self.dtype = bench, args, dtype
        set_num_threads(args.threads)
        self.machine = machine(args.threads)
        self.checks, self.rows, self.lines = [], [], []
        m = self.machine
        self.print(f"# {bench}: {m['cpu']}, oneDNN {m['onednn']} ({m['isa']}), {m['threads']} threads, "
                   f"commit {m['commit']}, {m['date']}" + (" (--quick)" if args.quick else ""))
        if note:
            self.print(note)

    def print(self, *parts):
        text = " ".join(str(p) for p in parts)
        self.lines.append(text)
        print(text, flush=True)

    def check(self, name, got, want, rtol=1e-4, atol=1e-5):
        """Fail with CheckFailed unless got matches want (arrays or numbers) within rtol, atol;
        records the worst error."""
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            raise CheckFailed(f"{self.bench}: {name}: shape {got.shape}, reference {want.shape}")
        err = np.abs(got - want)
        bound = atol + rtol * np.abs(want)
        with np.errstate(divide="ignore", invalid="ignore"):   # a zero bound asks for exact equality
            ratio = np.where(err == 0, 0.0, err / bound)
        worst = float(np.max(ratio)) if err.size else 0.0
        if not np.all(np.isfinite(got)) or not worst <= 1.0:
            raise CheckFailed(f"{self.bench}: {name}: max |error| {float(np.max(err)):.3g} exceeds "
                              f"{atol:g} + {rtol:g} |reference| (worst ratio {worst:.3g})")
        self.checks.append({"name": name, "max_abs_error": float(np.max(err)) if err.size else 0.0,
                            "rtol": rtol, "atol": atol})

    def require(self, name, ok, detail=""):
        """A check that is a condition (a count, a status) rather than a numeric match."""
        if not ok:
            raise CheckFailed(f"{self.bench}: {name} failed" + (f": {detail}" if detail else ""))
        self.checks.append({"name": name, "detail": detail})

    def alternate(self, calls, rounds, warmup=1, reps=None, pause=0.0, settle=None):
        """Time calls ({variant: function}) in alternation after a warm-up: each round runs every
        variant once for reps calls (None: as many as fill ~50 ms, from the warm-up), pausing
        settle.get(variant, pause) seconds after it. -> {variant: [seconds per call, per round]}."""
        if not self.checks:
            raise RuntimeError(f"{self.bench}: nothing was checked before timing (Report.check first)")
        settle = settle or {}
        n = {}
        for v, fn in calls.items():
            t = time.perf_counter()
            for _ in range(max(1, warmup)):
                fn()
            once = (time.perf_counter() - t) / max(1, warmup)
            n[v] = reps or max(1, min(1000, int(0.05 / max(once, 1e-7))))
        times = {v: [] for v in calls}
        for _ in range(rounds):
            for v, fn in calls.items():
                t = time.perf_counter()
                for _ in range(n[v]):
                    fn()
                times[v].append((time.perf_counter() - t) / n[v])
                wait = settle.get(v, pause)
                if wait:
                    time.sleep(wait)
        return times

    def row(self, **fields):
        self.rows.append(fields)
        return fields

    def table(self, header, rows):
        """Print a markdown table: header a list of column names, rows lists of cells."""
        self.print("| " + " | ".join(header) + " |")
        self.print("|" + "---|" * len(header))
        for r in rows:
            self.print("| " + " | ".join(str(c) for c in r) + " |")

    def stem(self):
        m = self.machine
        return f"{self.bench}-{self.dtype}-{cpu_tag(m['cpu'])}-{m['commit'].replace('+', '-')}"

    def finish(self):
        """Write --json / --save files (atomically). -> the JSON document."""
        doc = {"bench": self.bench, "dtype": self.dtype, "machine": self.machine, "quick": bool(self.args.quick),
               "args": {k: v for k, v in vars(self.args).items() if k not in ("json", "save")},
               "checks": self.checks, "rows": self.rows}
        if self.args.json:
            _write(Path(self.args.json), json.dumps(doc, indent=1, default=_plain) + "\n")
        if self.args.save:
            out = Path(self.args.save)
            _write(out / (self.stem() + ".json"), json.dumps(doc, indent=1, default=_plain) + "\n")
            _write(out / (self.stem() + ".md"), "\n".join(self.lines) + "\n")
        return doc


def median(samples):
    return float(statistics.median(samples))


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON: {type(x).__name__}")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def numpy_threads(n):
    """A context limiting NumPy's BLAS to n threads (threadpoolctl), or a no-op without it."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(n)
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


def peak_rss_mib():
    """This process's own peak RSS in MiB: VmHWM, which starts afresh at exec (ru_maxrss would
    carry the parent's high-water mark over from the fork)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
