"""The PyTorch peer for the step benchmarks: the test suite's reference MAE (tests/torch_ref.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from torch_ref import MAE, decay_groups  # noqa: E402,F401
