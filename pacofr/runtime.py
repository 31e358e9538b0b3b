"""Build facts and process-wide settings of the C core: threads and the GEMM back end."""
import platform

from . import _C, _threads
from ._version import __version__


def build_info():
    """What this build of pacofr runs on.

    Keys: ``version``; ``onednn`` (oneDNN version, or None for a portable-only build);
    ``isa`` (the ISA oneDNN dispatches to, e.g. ``avx512_core_amx``); ``matmul_impl_fp32`` /
    ``matmul_impl_bf16`` (oneDNN's kernel for each, e.g. ``brg:avx512_core_amx_bf16``);
    ``bf16_gemm`` (which back end runs bf16 products under the current setting);
    ``portable_kernel`` / ``portable_kernels``; ``attention_bf16`` ("bf16 products" where a
    bf16 model's attention runs its products in vdpbf16ps, AVX512-BF16, else "fp32");
    ``omp_wait`` (the OpenMP wait setting pacofr's threads run with, e.g. ``GOMP_SPINCOUNT=1000``);
    ``num_threads``; ``gemm_backend``; ``compiler``; ``openmp``; ``cpu`` (``cpu_name()``).
    """
    info = {"version": __version__, "cpu": cpu_name()}
    info.update(_C.build_info())
    info["num_threads"] = _C.get_num_threads()
    info["gemm_backend"] = _C.get_gemm_backend()
    info["attention_bf16"] = "bf16 products" if _C.attention_bf16_products() else "fp32"
    info["omp_wait"] = _threads.wait_setting
    impl = info["matmul_impl_bf16"] or "unavailable"
    if info["gemm_backend"] == "dnnl" and not impl.startswith(("ref", "unavailable")):
        info["bf16_gemm"] = "dnnl " + impl
    else:
        info["bf16_gemm"] = "portable " + info["portable_kernel"] + " (bf16-rounded inputs, fp32 FMA)"
    return info


def cpu_name():
    """The processor's model name with its family and model numbers (a cloud CPU's name alone,
    e.g. "Intel(R) Xeon(R) Processor", says little), from /proc/cpuinfo; elsewhere
    ``platform.processor()``."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break                     # the first processor's block is enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def set_num_threads(n):
    """Threads used by every C op and by oneDNN, process-wide (all Python threads)."""
    _C.set_num_threads(n)


def get_num_threads():
    return _C.get_num_threads()


def set_gemm_backend(name):
    """``"dnnl"`` (oneDNN; the default when built with it) or ``"portable"``."""
    _C.set_gemm_backend(name)


def get_gemm_backend():
    return _C.get_gemm_backend()


_DTYPE_CHOICES = {}


def _median_time(fn, reps):
    import time
    fn()  # warm-up: builds and caches the oneDNN primitive
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def choose_dtype(requested="auto", width=192, hidden=768, rows=3200, reps=5, margin=1.15):
    """The dtype to train in and why, as ``(dtype, reason)``.

    ``"fp32"`` and ``"bf16"`` are returned as asked. ``"auto"`` times this CPU: the MLP's
    first product (``rows`` x ``width`` @ ``width`` x ``hidden``, as the model runs it, with
    bf16 weights converted beforehand) in fp32 and in bf16, interleaved, median of ``reps``;
    bf16 is chosen when it is at least ``margin`` times faster. A CPU without bf16
    instructions (oneDNN falls back to rounding and fp32 arithmetic) gets fp32 without
    timing. The answer is kept for the process (per shape and thread count).
    """
    if requested in ("fp32", "bf16"):
        return requested, f"{requested} as requested"
    if requested != "auto":
        raise ValueError(f"dtype must be 'auto', 'fp32' or 'bf16', got {requested!r}")
    import numpy as np
    key = (width, hidden, rows, _C.get_num_threads(), _C.get_gemm_backend())
    if key in _DTYPE_CHOICES:
        return _DTYPE_CHOICES[key]
    info = build_info()
    impl = info["matmul_impl_bf16"] or "unavailable"
    if info["gemm_backend"] != "dnnl" or impl.startswith(("ref", "unavailable")):
        choice = ("fp32", f"fp32: no bf16 matrix kernel on this CPU (oneDNN isa {info['isa']}, bf16 matmul "
                          f"'{impl}'); bf16 would only round the inputs and compute in fp32")
    else:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, width)).astype(np.float32)
        w = rng.standard_normal((hidden, width)).astype(np.float32)
        w16 = (w.view(np.uint32) >> 16).astype(np.uint16)
        out = np.empty((rows, hidden), np.float32)
        t32 = _median_time(lambda: _C.gemm(x, w, out, trans_b=True), reps)
        t16 = _median_time(lambda: _C.gemm(x, w16, out, trans_b=True, dtype="bf16"), reps)
        speedup = t32 / t16
        dtype = "bf16" if speedup >= margin else "fp32"
        choice = (dtype, f"{dtype}: bf16 matrix products run {speedup:.2f}x the fp32 speed on this CPU "
                         f"({impl}, {_C.get_num_threads()} threads; bf16 is used from {margin:.2f}x)")
    _DTYPE_CHOICES[key] = choice
    return choice
