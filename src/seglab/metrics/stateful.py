"""Stateful metrics: ``update(pred, target)`` per batch, ``compute()`` at the end, ``reset()`` to start again.

Inputs as the functional forms (:mod:`seglab.metrics.overlap`, :mod:`seglab.metrics.surface`): options are
checked in the constructor, inputs in ``update``. ``compute()`` never changes the state, so it may be called
at any time.

**Several processes (DDP).** When ``torch.distributed`` is initialised (and ``sync=True``), ``compute()``
combines the states of all processes of ``process_group`` (default: the world) — every process must call it:

* overlap metrics (:class:`DiceScore`, :class:`IoU`, :class:`GeneralizedDiceScore`) keep sums — the counts
  ``TP, FP, FN`` per class, and the sum and number of the per-image scores — and ``all_reduce`` them: the result
  equals one process seeing all the data, never an average of per-process averages;
* boundary metrics (:class:`HausdorffDistance`, :class:`SurfaceDistance`, :class:`SurfaceDice`) and
  :class:`CLDiceScore` keep one value
  per image and class and gather them (``all_gather_object``) before averaging.

:meth:`Metric.merge` does the same with the states of other metric objects in one process.

>>> m = DiceScore(mode="multiclass", num_classes=2)
>>> m.update(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 1, 1, 0]]))
>>> m.update(torch.tensor([[0, 0, 0, 0]]), torch.tensor([[0, 0, 1, 1]]))
>>> m.compute().tolist()
[0.6666666666666666, 0.4]
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Sequence

import torch
import torch.distributed as dist

from seglab._checks import check_bool, check_choice, check_ignore_index, check_mode, check_number
from seglab.metrics.overlap import (
    aggregate_scores,
    check_aggregate,
    check_empty,
    check_num_classes,
    confusion_counts,
    dice_from_counts,
    dice_score,
    generalized_dice_from_counts,
    generalized_dice_score,
    iou_from_counts,
    iou_score,
    volume_difference,
    volume_difference_from_counts,
)
from seglab.metrics.components import (
    boundary_iou,
    check_iou_threshold,
    component_dice,
    component_dice_values,
    detection_counts,
    detection_f1,
    f1_from_counts,
)
from seglab.metrics.registry import register_metric
from seglab.metrics.skeleton import cldice_score, cldice_values
from seglab.metrics.surface import (
    SURFACE_AGGREGATES,
    SpacingArg,
    average_surface_distance,
    check_definition,
    check_percentile,
    check_spacing,
    check_tolerance,
    hausdorff_distance,
    per_image_values,
    surface_dice,
)


class Metric:
    """Base of the stateful metrics: ``update`` / ``compute`` / ``reset`` / ``merge`` and the DDP sync."""

    def __init__(self, *, process_group: Any = None, sync: bool = True) -> None:
        self.process_group = process_group
        self.sync = check_bool("sync", sync)
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        raise NotImplementedError

    def merge(self, *others: Metric) -> Metric:
        """Add the states of ``others`` (same class and options) to this one; returns ``self``."""
        for o in others:
            if type(o) is not type(self) or o._config() != self._config():
                raise ValueError(f"can only merge a {type(self).__name__} with the same options, got "
                                 f"{type(o).__name__} {o._config()} vs {self._config()}")
            self._merge(o)
        return self

    def _config(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _merge(self, other: Any) -> None:
        raise NotImplementedError

    def _group(self) -> tuple[bool, Any]:
        """(whether to synchronise, the group)."""
        if not self.sync or not dist.is_available() or not dist.is_initialized():
            return False, None
        return dist.get_world_size(self.process_group) > 1, self.process_group

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self._config()}"


class SumsMetric(Metric):
    """A metric whose whole state is one float64 tensor of sums ``(rows, width)``: reset to zeros, moved with
    :meth:`to`, all-reduced (summed) across processes by :meth:`_synced`, added by :meth:`merge`.
    Subclasses give :meth:`_shape`."""

    _sums: torch.Tensor

    def _shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def reset(self) -> None:
        device = self._sums.device if hasattr(self, "_sums") else None
        self._sums = torch.zeros(*self._shape(), dtype=torch.float64, device=device)

    def to(self, device: torch.device | str) -> Any:
        """Move the state (e.g. to the GPU before a NCCL sync on a process that saw no batch)."""
        self._sums = self._sums.to(device)
        return self

    def _follow(self, device: torch.device) -> None:
        """Move the state to the device of the incoming batch."""
        if self._sums.device != device:
            self._sums = self._sums.to(device)

    def _synced(self) -> torch.Tensor:
        do, group = self._group()
        if not do:
            return self._sums
        sums = self._sums.clone()
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
        return sums

    def _merge(self, other: Any) -> None:
        self._sums += other._sums.to(self._sums.device)

    #: what :meth:`batch_state` returns and :meth:`compute_from` takes: a tensor of sums, reduced by summing
    state_kind = "sums"

    def batch_state(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The sums one batch adds (this object's own state is left as it was): for external state keepers
        such as torchmetrics (:mod:`seglab.metrics.torchmetric`)."""
        saved = self._sums
        try:
            self.reset()
            self.update(pred, target)
            return self._sums
        finally:
            self._sums = saved

    def compute_from(self, sums: torch.Tensor) -> torch.Tensor:
        """:meth:`compute` on the given sums instead of this object's state (no synchronisation)."""
        saved, sync = self._sums, self.sync
        try:
            self._sums, self.sync = sums, False
            return self.compute()
        finally:
            self._sums, self.sync = saved, sync


class _OverlapMetric(SumsMetric):
    """State: one ``(5, C)`` float64 tensor of sums — TP, FP, FN, Σ per-image scores, number of per-image scores."""

    _aggregates: tuple[str, ...] = ("mean", "pooled")
    _sums: torch.Tensor

    def __init__(self, mode: str, num_classes: int, *, aggregate: str = "mean", ignore_index: int | None = None,
                 empty: float = float("nan"), include_background: bool = True, process_group: Any = None,
                 sync: bool = True) -> None:
        self.mode = check_mode(mode)
        self.num_classes = check_num_classes(num_classes)
        self.aggregate = check_aggregate(aggregate, self._aggregates)
        self.ignore_index = check_ignore_index(ignore_index)
        self.empty = check_empty(empty)
        self.include_background = check_bool("include_background", include_background)
        super().__init__(process_group=process_group, sync=sync)

    def _width(self) -> int:
        return self.num_classes

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _shape(self) -> tuple[int, int]:
        return (5, self.num_classes)

    def _counts(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image and class ``(N, C)``: the counts the score is made of (pixels; components for detection)."""
        return confusion_counts(pred, target, mode=self.mode, num_classes=self.num_classes,
                                ignore_index=self.ignore_index, per_sample=True)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        tp, fp, fn = self._counts(pred, target)
        s = self._scores(tp, fp, fn)
        ok = ~torch.isnan(s)
        self._follow(tp.device)
        w = self._width()
        self._sums[0] += tp.sum(0)
        self._sums[1] += fp.sum(0)
        self._sums[2] += fn.sum(0)
        self._sums[3, :w] += torch.where(ok, s, torch.zeros_like(s)).sum(0)
        self._sums[4, :w] += ok.sum(0).double()

    def compute(self) -> torch.Tensor:
        sums = self._synced()
        w = self._width()
        if self.aggregate == "pooled":
            out = self._scores(sums[0:1], sums[1:2], sums[2:3])[0]
        else:
            n = sums[4, :w]
            out = torch.where(n > 0, sums[3, :w] / n.clamp_min(1), torch.full_like(n, math.nan))
        return out if self.include_background or w == 1 else out[1:]

    def _config(self) -> tuple[Any, ...]:
        return (self.mode, self.num_classes, self.aggregate, self.ignore_index, self.empty, self.include_background)


@register_metric("dice", function=dice_score, from_counts=dice_from_counts, higher_is_better=True)
class DiceScore(_OverlapMetric):
    """Per-class Dice over all updates, ``(C,)``: ``aggregate="mean"`` (per image, then averaged; the default,
    as MONAI ``DiceMetric`` and torchmetrics ``DiceScore``) or ``"pooled"`` (counts summed; one Dice of all data).

    Formula, inputs and empty-class policy: :func:`seglab.metrics.dice_score`.

    >>> m = DiceScore(mode="multiclass", num_classes=2, aggregate="pooled")
    >>> m.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]))
    >>> m.compute().tolist()
    [0.6666666666666666, 0.6666666666666666]
    """

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return dice_from_counts(tp, fp, fn, self.empty)


@register_metric("iou", function=iou_score, from_counts=iou_from_counts, higher_is_better=True)
class IoU(_OverlapMetric):
    """Per-class IoU (Jaccard) over all updates, ``(C,)``; options as :class:`DiceScore`. mIoU: ``compute().nanmean()``.

    >>> m = IoU(mode="multiclass", num_classes=2)
    >>> m.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]))
    >>> m.compute().tolist()
    [0.5, 0.5]
    """

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return iou_from_counts(tp, fp, fn, self.empty)


@register_metric("volume_difference", function=volume_difference, from_counts=volume_difference_from_counts,
                 higher_is_better=False)
class VolumeDifference(_OverlapMetric):
    """Per-class absolute volume difference relative to the target, ``|V_pred − V_target| / V_target`` (medpy's
    ``|ravd|``), over all updates ``(C,)``; options as :class:`DiceScore`. See
    :func:`seglab.metrics.volume_difference`.

    >>> m = VolumeDifference(mode="multiclass", num_classes=2)
    >>> m.update(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 1, 1, 0]])); m.compute().tolist()
    [0.5, 0.5]
    """

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return volume_difference_from_counts(tp, fp, fn, self.empty)


@register_metric("detection_f1", function=detection_f1, higher_is_better=True, extra="structure")
class DetectionF1(_OverlapMetric):
    """Per-class detection F1 over connected components, ``(C,)``; see :func:`seglab.metrics.detection_f1`
    (``aggregate="mean"`` over images or ``"pooled"`` component counts).

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 1:3, 1:3] = 1
    >>> m = DetectionF1(mode="multiclass", num_classes=2); m.update(t, t); m.compute()[1].item()
    1.0
    """

    def __init__(self, mode: str, num_classes: int, *, iou_threshold: float = 0.5, connectivity: int = 1,
                 **kwargs: Any) -> None:
        self.iou_threshold = check_iou_threshold(iou_threshold)
        self.connectivity = connectivity
        super().__init__(mode, num_classes, **kwargs)

    def _counts(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return detection_counts(pred, target, mode=self.mode, num_classes=self.num_classes,
                                ignore_index=self.ignore_index, iou_threshold=self.iou_threshold,
                                connectivity=self.connectivity)

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return f1_from_counts(tp, fp, fn, self.empty)

    def _config(self) -> tuple[Any, ...]:
        return super()._config() + (self.iou_threshold, self.connectivity)


@register_metric("generalized_dice", function=generalized_dice_score, higher_is_better=True, per_class=False)
class GeneralizedDiceScore(_OverlapMetric):
    """Generalized Dice score over all updates, a scalar; ``aggregate`` as :class:`DiceScore`.

    Formula and options: :func:`seglab.metrics.generalized_dice_score`.

    >>> m = GeneralizedDiceScore(mode="multiclass", num_classes=2)
    >>> m.update(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 1, 1, 0]]))
    >>> round(m.compute().item(), 4)
    0.75
    """

    def __init__(self, mode: str, num_classes: int, *, include_background: bool = True, weight_type: str = "square",
                 aggregate: str = "mean", ignore_index: int | None = None, empty: float = float("nan"),
                 process_group: Any = None, sync: bool = True) -> None:
        self.weight_type = check_choice("weight_type", weight_type, ("square", "simple", "uniform"))
        super().__init__(mode, num_classes, aggregate=aggregate, ignore_index=ignore_index, empty=empty,
                         include_background=include_background, process_group=process_group, sync=sync)

    def _width(self) -> int:
        return 1

    def _scores(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        if not self.include_background:
            tp, fp, fn = tp[..., 1:], fp[..., 1:], fn[..., 1:]
        return generalized_dice_from_counts(tp, fp, fn, weight_type=self.weight_type, empty=self.empty).unsqueeze(-1)

    def compute(self) -> torch.Tensor:
        return super().compute()[0]

    def _config(self) -> tuple[Any, ...]:
        return super()._config() + (self.weight_type,)


class _BoundaryMetric(Metric):
    """State: the ``(n, C)`` float64 per-image values of each update (on the CPU), gathered across processes."""

    _kind = ""

    def __init__(self, mode: str, num_classes: int, *, spacing: SpacingArg = None, ignore_index: int | None = None,
                 aggregate: str = "mean", empty: float = float("nan"), process_group: Any = None,
                 sync: bool = True) -> None:
        self.mode = check_mode(mode)
        self.num_classes = check_num_classes(num_classes)
        if isinstance(spacing, torch.Tensor):
            spacing = spacing.tolist()
        if spacing is not None:  # its length is checked against the images in update
            check_spacing(spacing, len(spacing) if isinstance(spacing, Sequence) and not isinstance(spacing, str) else 1)
        self.spacing = spacing
        self.ignore_index = check_ignore_index(ignore_index)
        self.aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
        self.empty = check_empty(empty)
        super().__init__(process_group=process_group, sync=sync)

    def _options(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        self._values: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg = None) -> None:
        """Add a batch; ``spacing`` overrides the constructor's for this batch (volumes of different spacings)."""
        self._values.append(self._per_image(pred, target, self.spacing if spacing is None else spacing).cpu())

    def _per_image(self, pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg) -> torch.Tensor:
        return per_image_values(self._kind, pred, target, mode=self.mode, num_classes=self.num_classes,
                                ignore_index=self.ignore_index, spacing=spacing, empty=self.empty, **self._options())

    def values(self) -> torch.Tensor:
        """All per-image values ``(N, C)``, of every process when synchronised (in rank order)."""
        local = torch.cat(self._values) if self._values else torch.zeros(0, self.num_classes, dtype=torch.float64)
        do, group = self._group()
        if not do:
            return local
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        return torch.cat(gathered)

    def compute(self) -> torch.Tensor:
        """``aggregate="mean"``: per-class mean over images (NaN skipped) ``(C,)``; ``"none"``: ``(N, C)``."""
        return aggregate_scores(self.values(), self.aggregate)

    def _config(self) -> tuple[Any, ...]:
        sp = tuple(self.spacing) if isinstance(self.spacing, Sequence) else self.spacing
        return (self.mode, self.num_classes, sp, self.ignore_index, self.aggregate, self.empty,
                *self._options().values())

    def _merge(self, other: Any) -> None:
        self._values.extend(other._values)

    #: what :meth:`batch_state` returns and :meth:`compute_from` takes: per-image values, reduced by concatenating
    state_kind = "values"

    def batch_state(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The ``(n, C)`` per-image values of one batch (this object's own state is left as it was)."""
        return self._per_image(pred, target, self.spacing)

    def compute_from(self, values: torch.Tensor) -> torch.Tensor:
        """:meth:`compute` on the given per-image values ``(N, C)`` instead of this object's state."""
        saved, sync = self._values, self.sync
        try:
            self._values, self.sync = [values.cpu()], False
            return self.compute()
        finally:
            self._values, self.sync = saved, sync


@register_metric("hausdorff", function=hausdorff_distance, higher_is_better=False, extra="metrics")
class HausdorffDistance(_BoundaryMetric):
    """Per-class (percentile) Hausdorff distance, averaged over images; see :func:`seglab.metrics.hausdorff_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> m = HausdorffDistance(mode="multiclass", num_classes=2, percentile=None)
    >>> m.update(t, t); m.compute().tolist()
    [0.0, 0.0]
    """

    _kind = "hd"

    def __init__(self, mode: str, num_classes: int, *, percentile: float | None = 95, directed: bool = False,
                 definition: str = "monai", **kwargs: Any) -> None:
        self.percentile = check_percentile(percentile)
        self.directed = check_bool("directed", directed)
        self.definition = check_definition(definition)
        super().__init__(mode, num_classes, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "directed": self.directed, "definition": self.definition}


@register_metric("surface_distance", function=average_surface_distance, higher_is_better=False, extra="metrics")
class SurfaceDistance(_BoundaryMetric):
    """Per-class average (symmetric) surface distance, averaged over images; see
    :func:`seglab.metrics.average_surface_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> m = SurfaceDistance(mode="multiclass", num_classes=2)
    >>> m.update(t, t); m.compute().tolist()
    [0.0, 0.0]
    """

    _kind = "asd"

    def __init__(self, mode: str, num_classes: int, *, symmetric: bool = True, definition: str = "monai",
                 **kwargs: Any) -> None:
        self.symmetric = check_bool("symmetric", symmetric)
        self.definition = check_definition(definition)
        super().__init__(mode, num_classes, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {"symmetric": self.symmetric, "definition": self.definition}


@register_metric("surface_dice", function=surface_dice, higher_is_better=True, extra="metrics",
                 required={"tolerance": 1.0})
class SurfaceDice(_BoundaryMetric):
    """Per-class normalised surface Dice at ``tolerance``, averaged over images; see :func:`seglab.metrics.surface_dice`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> m = SurfaceDice(mode="multiclass", num_classes=2, tolerance=1.0)
    >>> m.update(t, t); m.compute().tolist()
    [1.0, 1.0]
    """

    _kind = "nsd"

    def __init__(self, mode: str, num_classes: int, *, tolerance: float | Sequence[float], definition: str = "monai",
                 **kwargs: Any) -> None:
        self.tolerance = check_tolerance(tolerance, check_num_classes(num_classes))
        self.definition = check_definition(definition)
        super().__init__(mode, num_classes, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "definition": self.definition}


@register_metric("component_dice", function=component_dice, higher_is_better=True, extra="structure")
class ComponentDice(_BoundaryMetric):
    """Per-class per-component Dice (CC-Dice), averaged over images; see :func:`seglab.metrics.component_dice`.

    ``spacing`` is accepted for a uniform interface and unused (the Voronoi cells are taken on the voxel grid,
    as MONAI does).

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 1:3, 1:3] = 1
    >>> m = ComponentDice(mode="multiclass", num_classes=2); m.update(t, t); m.compute().tolist()
    [1.0, 1.0]
    """

    def _per_image(self, pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg) -> torch.Tensor:
        return component_dice_values(pred, target, mode=self.mode, num_classes=self.num_classes,
                                     ignore_index=self.ignore_index, empty=self.empty)


@register_metric("boundary_iou", function=boundary_iou, higher_is_better=True, extra="structure")
class BoundaryIoU(_BoundaryMetric):
    """Per-class Boundary IoU (Cheng et al. 2021), averaged over images; see :func:`seglab.metrics.boundary_iou`.

    >>> t = torch.zeros(1, 20, 20, dtype=torch.long); t[0, 4:16, 4:16] = 1
    >>> m = BoundaryIoU(mode="multiclass", num_classes=2); m.update(t, t); m.compute().tolist()
    [1.0, 1.0]
    """

    def __init__(self, mode: str, num_classes: int, *, dilation_ratio: float = 0.02, **kwargs: Any) -> None:
        self.dilation_ratio = check_number("dilation_ratio", dilation_ratio, low=0, low_open=True)
        super().__init__(mode, num_classes, **kwargs)

    def _options(self) -> dict[str, Any]:
        return {"dilation_ratio": self.dilation_ratio}

    def _per_image(self, pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg) -> torch.Tensor:
        return boundary_iou(pred, target, mode=self.mode, num_classes=self.num_classes, ignore_index=self.ignore_index,
                            dilation_ratio=self.dilation_ratio, aggregate="none", empty=self.empty)


@register_metric("cldice", function=cldice_score, higher_is_better=True, extra="structure")
class CLDiceScore(_BoundaryMetric):
    """Per-class centreline Dice (clDice), averaged over images; see :func:`seglab.metrics.cldice_score`.

    Skeletons do not depend on ``spacing`` (accepted for a uniform interface, unused).

    >>> t = torch.zeros(1, 9, 9, dtype=torch.long); t[0, 4, 1:8] = 1
    >>> m = CLDiceScore(mode="multiclass", num_classes=2)
    >>> m.update(t, t); m.compute().tolist()
    [1.0, 1.0]
    """

    def _per_image(self, pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg) -> torch.Tensor:
        return cldice_values(pred, target, mode=self.mode, num_classes=self.num_classes,
                             ignore_index=self.ignore_index, empty=self.empty)
