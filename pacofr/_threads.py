"""How many threads this process may use (affinity mask and cgroup CPU quota), and how long
they spin at a barrier before sleeping."""
import contextlib
import math
import os

# libgomp's threads spin ~300,000 iterations at a barrier before they sleep. When another
# process holds a core, a thread whose partner is descheduled spins away its own time slice
# at every barrier, and a step runs 2.3-2.7x slower (docs/results.md, "A step beside one
# competing single-thread process"). 3,000 spins keep the idle machine's speed within noise of
# the default and the slow-down under 2x; 1,000 cost 10-25% on the idle machine.
SPIN_COUNT = "3000"
wait_setting = None  # what omp_wait_env chose when the C core loaded


@contextlib.contextmanager
def omp_wait_env(environ=os.environ):
    """While pacofr's C core loads (libgomp reads its settings then): GOMP_SPINCOUNT=SPIN_COUNT
    unless the user chose a wait policy (GOMP_SPINCOUNT or OMP_WAIT_POLICY). The variable is
    removed again afterwards, so other OpenMP runtimes loaded later (PyTorch's) and child
    processes keep their own defaults. Records the setting in effect in ``wait_setting``."""
    global wait_setting
    ours = "GOMP_SPINCOUNT" not in environ and "OMP_WAIT_POLICY" not in environ
    if ours:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    wait_setting = " ".join(f"{k}={environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ)
    try:
        yield
    finally:
        if ours:
            environ.pop("GOMP_SPINCOUNT", None)


def _cgroup_quota(root="/sys/fs/cgroup", proc_cgroup="/proc/self/cgroup"):
    """CPUs granted by the cgroup CPU quota (v2 ``cpu.max`` or v1 CFS files), or None."""
    paths = [root]
    try:
        with open(proc_cgroup) as f:
            for line in f:
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and parts[2] not in ("", "/"):
                    paths.insert(0, os.path.join(root, parts[2].lstrip("/")))
                    paths.insert(1, os.path.join(root, "cpu", parts[2].lstrip("/")))
    except OSError:
        pass
    for base in paths:
        try:
            with open(os.path.join(base, "cpu.max")) as f:
                quota, period = f.read().split()[:2]
            if quota != "max" and int(period) > 0:
                return int(quota) / int(period)
            return None
        except (OSError, ValueError):
            pass
        for v1 in (base, os.path.join(base, "cpu"), os.path.join(base, "cpu,cpuacct")):
            try:
                with open(os.path.join(v1, "cpu.cfs_quota_us")) as f:
                    quota = int(f.read())
                with open(os.path.join(v1, "cpu.cfs_period_us")) as f:
                    period = int(f.read())
                if quota > 0 and period > 0:
                    return quota / period
                return None
            except (OSError, ValueError):
                pass
    return None


def _env_threads():
    for var in ("PACOFR_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return None


def default_num_threads():
    """PACOFR_NUM_THREADS or OMP_NUM_THREADS when set; otherwise the CPUs in this process's
    affinity mask, capped by the cgroup CPU quota (rounded up, at least 1)."""
    n = _env_threads()
    if n is not None:
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)
