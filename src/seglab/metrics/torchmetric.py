"""Any registered seglab metric as a torchmetrics ``Metric``: logs with Lightning's ``self.log`` and joins a
``MetricCollection`` (torchmetrics comes with the ``metrics`` extra).

``torchmetric(name, **options)`` wraps the object :func:`seglab.metrics.get_metric` builds, so the definition
stays the registered one. Its states are torchmetrics states, synchronised by torchmetrics across processes:

* overlap metrics keep their ``(5, C)`` float64 sums (``dist_reduce_fx="sum"``: an O(C) state, exact under DDP);
* boundary metrics keep their per-image values (``dist_reduce_fx="cat"``).

``class_reduction="mean"`` returns the mean over classes (NaN classes skipped): a scalar, which ``self.log``
needs. ``"none"`` (default) returns the per-class values, as the seglab metric does.

Why an adapter and not torchmetrics base classes: the core install is torch + numpy, and seglab's own
:class:`~seglab.metrics.stateful.Metric` keeps working without torchmetrics.

>>> m = torchmetric("dice", mode="multiclass", num_classes=2, class_reduction="mean")
>>> m.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]])); round(float(m.compute()), 4)
0.6667
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from seglab._checks import check_choice
from seglab._extras import require
from seglab.metrics.registry import get_metric

CLASS_REDUCTIONS = ("none", "mean")


@functools.lru_cache(maxsize=1)
def adapter_class() -> type:
    """The torchmetrics ``Metric`` subclass that carries a seglab metric (built on first use)."""
    base = require("torchmetrics", "seglab metrics as torchmetrics Metrics").Metric

    class SeglabMetric(base):  # type: ignore[misc, valid-type]
        full_state_update = False
        is_differentiable = False

        def __init__(self, inner: Any, class_reduction: str) -> None:
            super().__init__()
            self.inner = inner
            self.class_reduction = class_reduction
            if inner.state_kind == "sums":
                self.add_state("state", default=torch.zeros_like(inner.batch_state(*_empty_batch(inner))),
                               dist_reduce_fx="sum")
            else:
                self.add_state("state", default=[], dist_reduce_fx="cat")

        def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
            part = self.inner.batch_state(pred, target)
            if self.inner.state_kind == "sums":
                self.state += part.to(self.state.device)
            else:
                self.state.append(part.to(pred.device))

        def compute(self) -> torch.Tensor:
            st = self.state
            if isinstance(st, list):
                st = torch.cat(st) if st else torch.zeros(0, self.inner.num_classes, dtype=torch.float64)
            out = self.inner.compute_from(st)
            if self.class_reduction == "mean" and out.ndim:
                ok = ~torch.isnan(out)
                out = out[ok].mean() if bool(ok.any()) else out.new_tensor(float("nan"))
            return out

    return SeglabMetric


def _empty_batch(inner: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of no image, for the shape of the sums."""
    if inner.mode == "multiclass":
        x = torch.zeros(0, 1, dtype=torch.long)
    else:
        x = torch.zeros(0, inner.num_classes, 1, dtype=torch.long)
    return x, x


def torchmetric(name: str, /, *, class_reduction: str = "none", **options: Any) -> Any:
    """A torchmetrics ``Metric`` computing the registered seglab metric ``name`` with ``options``."""
    check_choice("class_reduction", class_reduction, CLASS_REDUCTIONS)
    inner = get_metric(name, sync=False, **options)  # torchmetrics synchronises the states
    return adapter_class()(inner, class_reduction)
