"""The metric registry: every metric registers where its stateful class is defined, with one decorator.

``@register_metric(name, function=..., ...)`` on a :class:`~seglab.metrics.stateful.Metric` subclass records a
:class:`MetricInfo`: the functional form, the stateful class, whether a higher value is better, the extra it
needs and, for overlap metrics, ``from_counts`` — the per-class value from summed confusion counts
``(TP, FP, FN)``, which is how training's evaluation computes it (counts summed over the validation set and
across processes; docs/metrics.md). A registered metric with ``from_counts`` reaches the trainer's validation
output (``<name>``, ``mean_<name>``, ``fg_<name>``), and every registered metric runs through the metric contract
test (``tests/metrics/test_metric_contract.py``: functional == stateful, merge == one pass, empty masks, dtypes).

>>> from seglab.metrics import list_metrics, get_metric
>>> "dice" in list_metrics()
True
>>> m = get_metric("dice", mode="multiclass", num_classes=2)
>>> m.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]])); m.compute().tolist()
[0.6666666666666666, 0.6666666666666666]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar
from collections.abc import Callable

import torch  # noqa: F401  (the docstring example)

from seglab._registry import Registry, check_kwargs

CountsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class MetricInfo:
    """What the registry knows of one metric. Calling it builds the stateful metric (``info(mode=..., ...)``)."""

    name: str
    stateful: type
    function: Callable[..., torch.Tensor]
    higher_is_better: bool
    description: str
    from_counts: CountsFn | None = None
    extra: str | None = None  # the optional-dependency extra it needs (None: core)
    per_class: bool = True  # compute() gives one value per class (False: one scalar)
    #: options the metric cannot do without (e.g. surface Dice's tolerance), used by generic callers and tests
    required: dict[str, Any] = field(default_factory=dict)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.stateful(*args, **{**self.required, **kwargs})


METRICS: Registry[MetricInfo] = Registry("metric")


def register_metric(name: str, *, function: Callable[..., torch.Tensor], higher_is_better: bool,
                    from_counts: CountsFn | None = None, extra: str | None = None, per_class: bool = True,
                    required: dict[str, Any] | None = None) -> Callable[[C], C]:
    """Class decorator: register the stateful metric class it decorates under ``name`` (its docstring's first
    line is the description)."""

    def decorator(cls: C) -> C:
        doc = (cls.__doc__ or name).strip().splitlines()[0]
        METRICS.register(name)(MetricInfo(name=name, stateful=cls, function=function, higher_is_better=higher_is_better,
                                          description=doc, from_counts=from_counts, extra=extra, per_class=per_class,
                                          required=dict(required or {})))
        return cls

    return decorator


def list_metrics() -> list[str]:
    """The names of every registered metric, sorted."""
    return METRICS.names()


def metric_info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of ``name`` (ValueError with a did-you-mean for an unknown name)."""
    return METRICS.get_factory(name)


def get_metric(name: str, /, **options: Any) -> Any:
    """A new stateful metric ``name`` built with ``options`` (unknown options: ValueError naming them)."""
    info = metric_info(name)
    check_kwargs("metric", name, info.stateful, options)
    return info(**options)


def count_metrics() -> list[MetricInfo]:
    """The registered metrics computable from summed confusion counts (what training's evaluation reports)."""
    return [METRICS[n] for n in METRICS.names() if METRICS[n].from_counts is not None]
