"""What a run returns: :class:`RunRecord`, the one thing the :class:`~seglab.results.ResultsStore` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from seglab.results import CLASS_METRICS, EVAL_METRICS

from .config import RunSpec

__all__ = ["CLASS_METRICS", "EVAL_METRICS", "RunRecord"]


@dataclass
class RunRecord:
    """One run's records: ``spec`` (the resolved :class:`~seglab.train.config.RunSpec`), ``steps`` (column name
    -> list, one entry per step), ``evals`` (one dict per validation) and ``summary`` (one JSON-serialisable row,
    :func:`~seglab.train.loop.summarize`).

    The summary carries what a report needs without the library: ``class_names``, ``loss_order`` (the monitors
    and the trained loss, in the order of the step columns), ``metric_names`` (the validation metrics),
    ``model_norm`` (the effective normalisation) and ``provenance``; the properties read them."""

    spec: RunSpec
    steps: dict[str, list] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.spec.run_id)

    @property
    def class_names(self) -> list[str]:
        return list(self.summary.get("class_names") or [])

    @property
    def loss_order(self) -> list[str]:
        return list(self.summary.get("loss_order") or [])

    @property
    def metric_names(self) -> list[str]:
        return list(self.summary.get("metric_names") or EVAL_METRICS)
