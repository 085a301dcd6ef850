"""Sweeps: grids of runs from lists, config files or presets; parallel, resumable, mergeable results.

Example::

    from seglab.sweep import run_sweep
    run_sweep({"losses": ["ce", "dice+ce"], "seeds": [0, 1], "steps": 500}, "results/quick", workers=2)

Preset grids (``get_preset(name)``) come from :mod:`seglab.studies`.
"""

from .grid import expand, load_config, parse_shard, select
from .presets import PRESETS, get_preset
from .runner import SweepOutcome, plan, run_sweep
from seglab.results import ResultsStore, flatten_summary, merge

__all__ = [
    "expand", "load_config", "parse_shard", "select", "PRESETS", "get_preset",
    "SweepOutcome", "plan", "run_sweep", "ResultsStore", "flatten_summary", "merge",
]
