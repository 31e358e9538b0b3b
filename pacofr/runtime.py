"""Build facts and process-wide settings of the C core: threads and the GEMM back end."""
from . import _C
from ._version import __version__


def build_info():
    """What this build of pacofr runs on.

    Keys: ``version``; ``onednn`` (oneDNN version, or None for a portable-only build);
    ``isa`` (the ISA oneDNN dispatches to, e.g. ``avx512_core_amx``); ``matmul_impl_fp32`` /
    ``matmul_impl_bf16`` (oneDNN's kernel for each, e.g. ``brg:avx512_core_amx_bf16``);
    ``bf16_gemm`` (which back end runs bf16 products under the current setting);
    ``portable_kernel`` / ``portable_kernels``; ``num_threads``; ``gemm_backend``;
    ``compiler``; ``openmp``.
    """
    info = {"version": __version__}
    info.update(_C.build_info())
    info["num_threads"] = _C.get_num_threads()
    info["gemm_backend"] = _C.get_gemm_backend()
    impl = info["matmul_impl_bf16"] or "unavailable"
    if info["gemm_backend"] == "dnnl" and not impl.startswith(("ref", "unavailable")):
        info["bf16_gemm"] = "dnnl " + impl
    else:
        info["bf16_gemm"] = "portable " + info["portable_kernel"] + " (bf16-rounded inputs, fp32 FMA)"
    return info


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
