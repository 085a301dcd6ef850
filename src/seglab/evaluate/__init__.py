"""``seglab.evaluate``: score prediction folders against ground truth with named metrics and explicit empty-mask
conventions (:mod:`seglab.evaluate.metrics`), write per-case and summary files and an HTML page, and compare two
prediction folders case by case (:mod:`seglab.evaluate.paired`).

>>> from seglab.evaluate import EvalOptions, evaluate_folders, resolve_metrics
>>> opts = EvalOptions(metrics=tuple(resolve_metrics(["dice"])))   # evaluate_folders(pred, gt, out, opts)
"""

from seglab.evaluate.cases import CasePair, pair_cases, read_pair
from seglab.evaluate.core import EvalOptions, evaluate_folders, read_per_case, summarize
from seglab.evaluate.metrics import DEFAULT_METRICS, EMPTY_CONVENTIONS, MetricSpec, resolve_metrics
from seglab.evaluate.paired import compare_rows

__all__ = ["CasePair", "pair_cases", "read_pair", "EvalOptions", "evaluate_folders", "read_per_case", "summarize",
           "DEFAULT_METRICS", "EMPTY_CONVENTIONS", "MetricSpec", "resolve_metrics", "compare_rows"]
