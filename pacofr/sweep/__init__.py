"""Sweeps: arms x seeds of pre-training at equal compute, scored by protocol ``synthface-v2``,
resumable, with rows and an aggregated table (``pacofr sweep FILE``)."""
from .aggregate import ci95, summarize
from .runner import run_sweep, step_counts
from .spec import Arm, Sweep, load_sweep, parse_sweep

__all__ = ["Arm", "Sweep", "ci95", "load_sweep", "parse_sweep", "run_sweep", "step_counts", "summarize"]
