"""The metrics ``seglab evaluate`` computes per case and class, by name, with explicit empty-mask conventions.

Names (``--metrics``): ``dice``, ``iou``, ``hd95``, ``hd``, ``assd``, ``nsd`` (at ``tolerance``, units of spacing),
``cldice``, or any other registered metric (:func:`seglab.metrics.list_metrics`) with its required options.
Each resolves to a registered metric and options, so a definition lives in one place: the registry.

**Empty-mask conventions** (``empty=``, per case and class). "Both empty": the class is in neither prediction
nor ground truth; "missed": only the prediction is empty; "hallucinated": only the ground truth is.

==========  ======================  ===============================  =========================================
convention  both empty              missed / hallucinated, distance  source
==========  ======================  ===============================  =========================================
``nan``     NaN (counted)           NaN (counted)                    the default; every summary counts each case
``inf``     NaN (counted)           ``inf`` (mean becomes inf)       seglab's metric functions
``diagonal``  NaN (counted)         the image's physical diagonal    a finite worst case per image
``brats``   overlap 1, distance 0   373.13                           BraTS (373.13 mm: the diagonal of 240×240×155 mm)
``metricsreloaded``  Dice, NSD, boundary IoU 1; distances 0; others NaN   NaN (counted)    MetricsReloaded (cb38dfc)
==========  ======================  ===============================  =========================================

Overlap metrics (Dice, IoU, NSD, clDice) are 0 for a missed or hallucinated class under every convention. A NaN
is left out of means and medians and counted (``n_both_empty``, ``n_missed``, ``n_hallucinated`` in the summary):
a missed structure is never scored 0 distance.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from seglab.metrics import metric_info
from seglab.metrics.surface import check_definition

EMPTY_CONVENTIONS = ("nan", "inf", "diagonal", "brats", "metricsreloaded")
#: MetricsReloaded (commit cb38dfc of Project-MONAI/MetricsReloaded, pairwise_measures.py): both empty -> these
#: values (IoU stays NaN there: "not defined"); one empty -> distances NaN, "to be set to the worst case in aggregation"
METRICSRELOADED_BOTH_EMPTY = {"dice": 1.0, "surface_dice": 1.0, "boundary_iou": 1.0, "hausdorff": 0.0,
                              "surface_distance": 0.0}
BRATS_WORST = 373.13
#: evaluate's short names -> (registered metric, options)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "hd95": ("hausdorff", {"percentile": 95}),
    "hd": ("hausdorff", {"percentile": None}),
    "assd": ("surface_distance", {"symmetric": True}),
    "nsd": ("surface_dice", {}),
}
DEFAULT_METRICS = ("dice", "hd95", "nsd")
#: the registered metrics that take a named definition (seglab.metrics.surface.DEFINITIONS)
DEFINED = ("hausdorff", "surface_distance", "surface_dice")


@dataclass(frozen=True)
class MetricSpec:
    """One metric column: its name, the registered metric and the options it is called with."""

    name: str
    registered: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def distance(self) -> bool:
        """Lower is better (a distance): empty conventions replace its missed/hallucinated values."""
        return not metric_info(self.registered).higher_is_better


def resolve_metrics(names: list[str], tolerance: float = 1.0, definition: str = "monai") -> list[MetricSpec]:
    """Metric specs for ``names``; ``definition`` (``"monai"``, ``"pooled"`` = medpy's, ``"surface_weighted"`` =
    DeepMind's surface-distance; docs/metrics.md) for the distance metrics. ValueError naming an unknown one."""
    definition = check_definition(definition)
    out = []
    for n in names:
        reg, opts = ALIASES.get(n, (n, {}))
        info = metric_info(reg)  # raises for an unknown name
        opts = {**info.required, **opts}
        if reg == "surface_dice":
            opts["tolerance"] = tolerance
        if reg in DEFINED:
            opts["definition"] = definition
        if not info.per_class:
            raise ValueError(f"metric {n!r} gives one value for all classes; evaluate reports per-class metrics")
        out.append(MetricSpec(n, reg, opts))
    return out


def check_empty_convention(empty: str) -> str:
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty must be one of {', '.join(EMPTY_CONVENTIONS)}, got {empty!r}")
    return empty


def _takes_spacing(fn: Any) -> bool:
    return "spacing" in inspect.signature(fn).parameters


def case_values(spec: MetricSpec, pred: torch.Tensor, gt: torch.Tensor, *, num_classes: int,
                spacing: tuple[float, ...], empty: str) -> list[float]:
    """Per-class values ``[C]`` of one metric on one case (label maps ``(1, *spatial)``), under ``empty``."""
    info = metric_info(spec.registered)
    kw = dict(spec.options)
    if _takes_spacing(info.function):
        kw["spacing"] = spacing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one-sided empty: counted below, not warned per case
        v = info.function(pred, gt, mode="multiclass", num_classes=num_classes, aggregate="none", **kw)[0]
    vals = [float(x) for x in v.tolist()]
    p_has = torch.bincount(pred.reshape(-1), minlength=num_classes)[:num_classes] > 0
    g_has = torch.bincount(gt.reshape(-1), minlength=num_classes)[:num_classes] > 0
    diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(gt.shape[1:], spacing, strict=True)))
    for k in range(num_classes):
        both, one = not p_has[k] and not g_has[k], bool(p_has[k]) != bool(g_has[k])
        if both:
            vals[k] = (0.0 if spec.distance else 1.0) if empty == "brats" else \
                METRICSRELOADED_BOTH_EMPTY.get(spec.registered, math.nan) if empty == "metricsreloaded" else math.nan
        elif one and spec.distance:
            vals[k] = {"nan": math.nan, "inf": math.inf, "diagonal": diag, "brats": BRATS_WORST,
                       "metricsreloaded": math.nan}[empty]
    return vals


def empty_kind(pred_has: bool, gt_has: bool) -> str:
    """``"both_empty"``, ``"missed"``, ``"hallucinated"`` or ``""`` (both present)."""
    if pred_has and gt_has:
        return ""
    if not pred_has and not gt_has:
        return "both_empty"
    return "missed" if gt_has else "hallucinated"
