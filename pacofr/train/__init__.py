"""PaCo-FR / MAE pre-training: configuration (``config``), the driver (``pretrain``), one
optimizer step (``engine``), metrics and progress (``log``) and reconstruction previews
(``preview``). The model and its loss are ``pacofr.paco.PacoFR``; run checkpoints are
``pacofr.checkpoint``'s. ``pacofr.pretrain`` is ``pretrain.pretrain``."""
from ..paco import NonFiniteLoss, PacoFR
from .config import PRESETS, PretrainConfig, make_config, read_config_file
from .pretrain import PretrainResult, pretrain

__all__ = ["PRESETS", "PretrainConfig", "make_config", "read_config_file", "NonFiniteLoss", "PacoFR",
           "PretrainResult", "pretrain"]
