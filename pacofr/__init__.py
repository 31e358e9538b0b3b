"""pacofr: PaCo-FR facial representation pre-training and evaluation on CPUs.

A C core (OpenMP, oneDNN) under a thin NumPy API. See README.md.
"""
from ._version import __version__
from ._threads import default_num_threads, omp_wait_env

with omp_wait_env():  # libgomp reads its wait policy as the C core loads
    from . import _C
from .runtime import build_info, get_gemm_backend, get_num_threads, set_gemm_backend, set_num_threads
from . import ops
from .checkpoint import load_model, save_model
from .config import ViTConfig, get_config
from .model import Model, create_model
from .optim import AdamW, cosine_lr
from .paco import PacoFR
from .train import PretrainConfig, pretrain

_C.set_num_threads(default_num_threads())

__all__ = ["__version__", "build_info", "set_num_threads", "get_num_threads", "set_gemm_backend",
           "get_gemm_backend", "ops", "Model", "create_model", "load_model", "save_model", "ViTConfig", "get_config",
           "AdamW", "cosine_lr", "PacoFR", "PretrainConfig", "pretrain"]
