"""``pacofr prepare SRC OUT``: raw photos -> detected, aligned face crops in tar shards.

SRC is a folder (walked recursively, in sorted order) or a text file listing photo paths (one
per line, relative to the file's folder unless absolute). The run first makes a plan
(``OUT/plan.json``): every file with its SHA-256, exact duplicates dropped (the first in
sorted order is kept), the rest cut into jobs of consecutive photos. Each job, in a worker
process, reads its photos (upright by their EXIF orientation), detects faces
(``pacofr.data.detect``), keeps the largest face or all of them, aligns each to the canonical
crop and writes ``OUT/shard-NNNNNN.tar`` atomically, with ``OUT/logs/shard-NNNNNN.jsonl``
listing every photo or face it skipped and why. A shard on disk means its job is done: an
interrupted run (even ``kill -9``) resumes with the jobs that have none, so no face is written
twice or lost. When every job is done, ``manifest.json`` (what ``ShardSet`` reads) and
``skipped.jsonl`` (all the skips) are written."""
import hashlib
import json
import math
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .._io import atomic_write_bytes
from . import formats, shards

PLAN = "plan.json"


@dataclass(frozen=True)
class PrepareOptions:
    size: int = 112            # crop side in pixels
    faces: str = "largest"     # "largest": the largest face of each photo; "all": every face
    min_size: float = 40.0     # smallest face box side kept, in photo pixels
    min_score: float = -0.5    # faces scoring >= 0 (dlib's threshold) are taken; a photo with none is searched
                               # again down to min_score (turned faces); faces below min_score are dropped
    margin: float = 0.0        # > 0 zooms out about the crop centre (the face fills 1 / (1 + margin))
    quality: int = 95          # JPEG quality of the crops
    shard_photos: int = 1000   # photos per job (and shard) at most

    def check(self):
        formats.check_int(self.size, "size", 8)
        formats.check_int(self.quality, "quality", 1, 100)
        formats.check_int(self.shard_photos, "shard_photos", 1)
        if self.faces not in ("largest", "all"):
            raise ValueError(f"faces must be 'largest' or 'all', got {self.faces!r}")
        for name in ("min_size", "min_score", "margin"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.margin < 0 or self.min_size < 0:
            raise ValueError(f"margin and min_size must be >= 0, got {self.margin} and {self.min_size}")
        return self


def list_sources(src):
    """SRC (a folder or a list file) -> (root, sorted relative names of every file). A list
    file's entries must exist (FileNotFoundError naming the line otherwise)."""
    src = Path(src)
    if src.is_dir():
        names = []
        for root, dirs, files in os.walk(src):
            dirs.sort()
            names += [str((Path(root) / f).relative_to(src)) for f in sorted(files)]
        return src, names
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such folder or list file")
    names = []
    for lineno, line in enumerate(formats._lines(src), 1):
        name = line.strip()
        if name and not name.startswith("#"):
            if not (src.parent / name).is_file():
                raise FileNotFoundError(f"{src}:{lineno}: no such file {name!r}")
            names.append(name)
    return src.parent, names


def _sha256(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fp:
            for block in iter(lambda: fp.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    return h.hexdigest(), None


def make_plan(root, names, opts, workers, pool=None):
    """The run's plan: photos to process (name, sha256) cut into jobs, and the files skipped
    before any decoding (not an image by name, unreadable, exact duplicates)."""
    skipped, candidates = [], []
    for name in names:
        if name.lower().endswith(formats.IMAGE_SUFFIXES):
            candidates.append(name)
        else:
            skipped.append({"source": name, "reason": f"not an image file ({Path(name).suffix or 'no suffix'})"})
    paths = [str(root / n) for n in candidates]
    hashes = list(pool.map(_sha256, paths, chunksize=64)) if pool is not None else [_sha256(p) for p in paths]
    first, photos = {}, []
    for name, (sha, error) in zip(candidates, hashes):
        if error:
            skipped.append({"source": name, "reason": error})
        elif sha in first:
            skipped.append({"source": name, "reason": f"exact duplicate of {first[sha]}"})
        else:
            first[sha] = name
            photos.append([name, sha])
    per_job = max(1, min(opts.shard_photos, math.ceil(len(photos) / max(1, 4 * workers))))
    jobs = [[a, min(a + per_job, len(photos))] for a in range(0, len(photos), per_job)]
    return {"root": str(root), "options": asdict(opts), "photos": photos, "jobs": jobs, "skipped": skipped}


def load_or_make_plan(src, out, opts, workers, pool):
    """OUT's plan when it has one (a resumed run: same SRC and options, else ValueError), else
    a new one, written atomically."""
    path = out / PLAN
    if path.exists():
        plan = json.loads(path.read_text())
        if plan["src"] != str(Path(src).resolve()) or plan["options"] != asdict(opts):
            raise ValueError(f"{out} holds a run of other sources or options ({plan['src']}, {plan['options']}); "
                             f"resume with the same ones or choose a new OUT")
        return plan
    root, names = list_sources(src)
    plan = {"src": str(Path(src).resolve()), **make_plan(root, names, opts, workers, pool)}
    atomic_write_bytes(path, json.dumps(plan).encode())
    return plan


def _photo_faces(image, name, sha, opts):
    """The crops of one photo -> (list of (jpeg, metadata), list of skip reasons)."""
    from .detect import align_detected, detect_faces
    found = detect_faces(image, fallback=min(opts.min_score, 0.0))   # confident faces, else a retry down to min_score
    if not found:
        return [], ["no face found"]
    kept, reasons = [], []
    for k, f in enumerate(sorted(found, key=lambda f: -f.size)):
        if f.score < opts.min_score:
            reasons.append(f"face {k}: detector score {f.score:.2f} < min score {opts.min_score:g}")
        elif f.size < opts.min_size:
            reasons.append(f"face {k}: {f.size:.0f} px < min size {opts.min_size:g}")
        else:
            kept.append((k, f))
    if opts.faces == "largest":
        reasons += [f"face {k}: not the largest (faces=largest)" for k, _ in kept[1:]]
        kept = kept[:1]
    out = []
    for k, f in kept:
        crop = align_detected(image, f, opts.size, opts.margin)
        meta = {"source": name, "sha256": sha, "face": k, "faces_in_photo": len(found), **f.to_dict(),
                "transform": [[round(float(v), 6) for v in row] for row in crop["matrix"]], "size": opts.size,
                "photo_size": [int(image.shape[1]), int(image.shape[0])]}
        out.append((shards.encode_jpeg(crop["image"], opts.quality), meta))
    return out, reasons


def run_job(args):
    """One job in a worker: its photos -> OUT/logs/<shard>.jsonl, then OUT/<shard> (both
    atomic; the shard last, as the job's done mark) -> (job, faces, photos, skips). Each
    photo done is reported on the worker's tick queue (``_TICKS``) for the progress bar."""
    job, photos, root, out, opts = args
    ticks = _TICKS
    from .. import runtime
    runtime.set_num_threads(1)          # one photo at a time per process: the processes are the parallelism
    opts = PrepareOptions(**opts)
    faces, log = [], []
    for name, sha in photos:
        try:                            # whatever one photo does, the job goes on: it is logged
            image = formats.read_photo(Path(root) / name)
            crops, reasons = _photo_faces(image, name, sha, opts)
        except Exception as exc:        # noqa: BLE001 (a per-photo boundary: decoders and dlib raise many kinds)
            reason = str(exc).replace(str(Path(root) / name) + ": ", "")
            log.append({"source": name, "reason": reason if isinstance(exc, (ValueError, OSError))
                        else f"{type(exc).__name__}: {reason}"})
            continue
        finally:
            if ticks is not None:
                ticks.put(1)
        faces += crops
        log += [{"source": name, "reason": r} for r in reasons]
    name = shards.shard_name(job)
    atomic_write_bytes(Path(out) / "logs" / (name[:-4] + ".jsonl"), "".join(json.dumps(e) + "\n" for e in log).encode())
    n = shards.write_shard(Path(out) / name, faces)
    return job, n, len(photos), len(log)


_TICKS = None   # in a worker: the queue its jobs report each photo on


def _worker_init(ticks, parent):
    """A worker's start: its tick queue, and death with its parent (Linux's PR_SET_PDEATHSIG),
    so a `kill -9` of `pacofr prepare` leaves no worker behind."""
    global _TICKS
    _TICKS = ticks
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: workers end when their queue closes
        pass
    if os.getppid() != parent:          # the parent died before the line above
        os._exit(1)


def _drain(ticks):
    """How many ticks wait on the queue (taking them)."""
    import queue
    n = 0
    while True:
        try:
            n += ticks.get_nowait()
        except queue.Empty:
            return n


def _finish(out, plan, opts):
    """manifest.json and skipped.jsonl from the jobs' shards and logs."""
    import tarfile
    counts, skipped = [], list(plan["skipped"])
    for job in range(len(plan["jobs"])):
        name = shards.shard_name(job)
        with tarfile.open(out / name) as tar:
            counts.append((name, sum(m.name.endswith(".jpg") for m in tar)))
        skipped += [json.loads(line) for line in (out / "logs" / (name[:-4] + ".jsonl")).read_text().splitlines()]
    atomic_write_bytes(out / "skipped.jsonl", "".join(json.dumps(e) + "\n" for e in skipped).encode())
    shards.write_manifest(out, counts, opts.size, source=plan["root"], photos=len(plan["photos"]),
                          skipped=len(skipped), options=plan["options"], made_by="pacofr prepare")
    return {"out": str(out), "faces": sum(c for _, c in counts), "shards": len(counts),
            "photos": len(plan["photos"]), "skipped": len(skipped)}


def prepare(src, out, options=None, workers=2, progress=True):
    """Detect, align and shard the photos of SRC into OUT (see the module docstring); resumes
    a run OUT already holds. -> summary dict (faces, shards, photos, skipped)."""
    opts = (options or PrepareOptions()).check()
    from .detect import backend
    backend()                           # a missing [detect] extra fails here, before any work
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        for stale in list(out.glob(".*.tmp")) + list((out / "logs").glob(".*.tmp")):
            stale.unlink()              # a killed run's half-written shard or log
        plan = _run_jobs(src, out, opts, max(1, int(workers)), progress)
        return _finish(out, plan, opts)


def _exclusive(out):
    """Hold OUT/.lock for the run: a second `pacofr prepare` on the same OUT is refused."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def held():
        with open(out / ".lock", "w") as fp:
            try:
                fcntl.flock(fp, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(f"{out}: another pacofr prepare is writing here") from None
            yield
    return held()


def _run_jobs(src, out, opts, workers, progress):
    """The plan, then every job without a shard, in spawn-started processes (no fork of a
    process that may run OpenMP threads). A worker that dies (out of memory, a crash in a
    decoder) ends the run with BrokenProcessPool: run it again and it resumes."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from tqdm import tqdm
    ctx = multiprocessing.get_context("spawn")
    ticks = ctx.Queue()                 # one tick per photo from the workers: the bar moves per photo
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(ticks, os.getpid())) as pool:
        plan = load_or_make_plan(src, out, opts, workers, pool)
        todo = [j for j in range(len(plan["jobs"])) if not (out / shards.shard_name(j)).exists()]
        args = [(j, plan["photos"][slice(*plan["jobs"][j])], plan["root"], str(out), asdict(opts)) for j in todo]
        bar = tqdm(total=len(plan["photos"]), disable=not progress, unit="photo", desc="pacofr prepare")
        bar.update(len(plan["photos"]) - sum(len(a[1]) for a in args))
        pending = {pool.submit(run_job, a) for a in args}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()         # a job's error (or a dead worker) ends the run here
            bar.update(_drain(ticks))
        bar.update(_drain(ticks))
        bar.close()
    return plan
