"""Sweeps: grids of runs from lists, config files or presets; parallel, resumable, mergeable results.

Example::

    from seglab.sweep import get_preset, run_sweep
    run_sweep(get_preset("chlebus2018", quick=True), "results/quick", workers=2)
"""

from .grid import expand, load_config, parse_shard, select
from .presets import PRESETS, STUDY_STEPS, chlebus2018, get_preset
from .runner import SweepOutcome, plan, run_sweep
from seglab.results import ResultsStore, flatten_summary, merge

__all__ = [
    "expand", "load_config", "parse_shard", "select", "PRESETS", "STUDY_STEPS", "chlebus2018", "get_preset",
    "SweepOutcome", "plan", "run_sweep", "ResultsStore", "flatten_summary", "merge",
]
