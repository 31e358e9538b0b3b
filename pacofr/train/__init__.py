"""PaCo-FR / MAE pre-training: configuration (``config``), one training step (``step``), the
driver (``trainer``), run checkpoints (``runstate``) and reconstruction previews (``preview``).
``pacofr.pretrain`` is ``trainer.pretrain``."""
from .config import PRESETS, PretrainConfig, make_config, read_config_file
from .step import NonFiniteLoss, PacoStep
from .trainer import PretrainResult, pretrain

__all__ = ["PRESETS", "PretrainConfig", "make_config", "read_config_file", "NonFiniteLoss", "PacoStep",
           "PretrainResult", "pretrain"]
