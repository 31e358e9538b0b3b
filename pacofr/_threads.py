"""How many threads this process may use: affinity mask and cgroup CPU quota."""
import math
import os


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
