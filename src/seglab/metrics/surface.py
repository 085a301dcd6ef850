"""Boundary metrics: Hausdorff distance (HD, HD95), average symmetric surface distance, normalised surface Dice.

The boundary of a mask is its voxels with at least one face neighbour outside it (the mask minus its binary
erosion, outside the image counts as background) — MONAI's and DeepMind's ``surface-distance`` definition
without sub-voxel areas. ``d(A→B)`` are the Euclidean distances, in the units of ``spacing``, from each
boundary voxel of A to the nearest boundary voxel of B (scipy's exact distance transform, ``metrics`` extra).

**Empty-mask policy** (per image and class; Metrics Reloaded, Maier-Hein et al. 2024):

============================  ==========================  ================
case                          HD / HD95 / ASD             surface Dice
============================  ==========================  ================
both masks non-empty          the distance                the fraction
prediction and target empty   ``empty`` (NaN: skipped)    ``empty`` (NaN)
only one of them empty        ``inf`` + a RuntimeWarning  0
============================  ==========================  ================

NaN entries are left out of ``aggregate="mean"``; an ``inf`` is kept (the mean is then ``inf``): a missed or
hallucinated structure is the worst case, not a missing value. MONAI agrees except for HD95 with one mask
empty, which it returns as NaN (the percentile of infinities).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from seglab._checks import check_bool, check_number
from seglab._extras import require
from seglab.metrics.overlap import aggregate_scores, check_aggregate, check_empty, class_masks

SpacingArg = float | Sequence[float] | None
SURFACE_AGGREGATES = ("mean", "none")


def check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    """``spacing``: None (1 per axis), one positive number, or one positive number per spatial axis."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, torch.Tensor | np.ndarray):
        spacing = spacing.tolist()
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        return (check_number("spacing", spacing, low=0, low_open=True),) * ndim
    if not isinstance(spacing, Sequence) or isinstance(spacing, str) or len(spacing) != ndim:
        raise ValueError(f"spacing must be None, a positive number or {ndim} positive numbers (one per spatial axis), "
                         f"got {spacing!r}")
    return tuple(check_number("spacing", s, low=0, low_open=True) for s in spacing)


def check_percentile(percentile: Any) -> float | None:
    """``percentile``: None (the maximum: the Hausdorff distance) or a number in [0, 100] (95: HD95)."""
    return None if percentile is None else check_number("percentile", percentile, low=0, high=100)


def check_tolerance(tolerance: Any, num_classes: int) -> tuple[float, ...]:
    """``tolerance``: one non-negative number, or one per class."""
    if isinstance(tolerance, torch.Tensor | np.ndarray):
        tolerance = tolerance.tolist()
    if isinstance(tolerance, numbers.Real) and not isinstance(tolerance, bool):
        return (check_number("tolerance", tolerance, low=0),) * num_classes
    if not isinstance(tolerance, Sequence) or isinstance(tolerance, str) or len(tolerance) != num_classes:
        raise ValueError(f"tolerance must be a non-negative number or {num_classes} of them (one per class), "
                         f"got {tolerance!r}")
    return tuple(check_number("tolerance", t, low=0) for t in tolerance)


#: relative slack of the surface-Dice comparison ``d <= tolerance``: a distance that equals the tolerance up to
#: float64 rounding (``3 * 0.8 = 2.4000000000000004`` against a tolerance written as ``2.4``) is at the tolerance.
#: Distinct distances on a voxel grid differ by far more than this for any spacing in use.
TOLERANCE_RTOL = 1e-9


def at_tolerance(tolerance: float) -> float:
    """The largest distance counted as within ``tolerance``: ``tolerance · (1 + TOLERANCE_RTOL)``.

    >>> 3 * 0.8 <= at_tolerance(2.4)
    True
    """
    return tolerance * (1.0 + TOLERANCE_RTOL)


def _ndimage(feature: str) -> Any:
    return require("scipy.ndimage", feature)


def _boundary(mask: np.ndarray, ndimage: Any) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def boundary_distances(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float],
                       ndimage: Any | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(d(pred→target), d(target→pred))`` between the boundaries of two boolean masks ``(*spatial)``.

    None when both masks are empty; an empty array on the side whose mask is empty when only one is (the
    other side's distances are then ``inf``).
    """
    ndimage = ndimage if ndimage is not None else _ndimage("surface distances")
    union = pred | target
    if not union.any():
        return None
    box = []
    for ax in range(union.ndim):  # crop to the union's bounding box (+1 voxel): the boundaries are unchanged
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
        box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2))
    p, t = pred[tuple(box)], target[tuple(box)]
    bp, bt = _boundary(p, ndimage), _boundary(t, ndimage)
    if not bp.any() or not bt.any():
        inf = np.full(int(bt.sum() if not bp.any() else bp.sum()), np.inf)
        return (np.empty(0), inf) if not bp.any() else (inf, np.empty(0))
    d_pt = ndimage.distance_transform_edt(~bt, sampling=spacing)[bp]
    d_tp = ndimage.distance_transform_edt(~bp, sampling=spacing)[bt]
    return d_pt, d_tp


def per_image_values(kind: str, pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
               ignore_index: int | None, spacing: Any, empty: float, percentile: float | None = None,
               directed: bool = False, symmetric: bool = True,
               tolerance: tuple[float, ...] | None = None) -> torch.Tensor:
    """``(N, C)`` float64 values of one boundary metric (``kind``: "hd", "asd" or "nsd")."""
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    sp = check_spacing(spacing, pm.ndim - 2)
    ndimage = _ndimage({"hd": "hausdorff_distance", "asd": "average_surface_distance",
                        "nsd": "surface_dice"}[kind])
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    n, c = pn.shape[:2]
    out = np.empty((n, c), dtype=np.float64)
    one_empty: list[tuple[int, int]] = []
    for i in range(n):
        for k in range(c):
            d = boundary_distances(pn[i, k], tn[i, k], sp, ndimage)
            if d is None:
                out[i, k] = empty
                continue
            d_pt, d_tp = d
            if kind == "nsd":
                tol = at_tolerance(tolerance[k] if tolerance is not None else 0.0)
                out[i, k] = (np.count_nonzero(d_pt <= tol) + np.count_nonzero(d_tp <= tol)) / (d_pt.size + d_tp.size)
                continue
            if d_pt.size == 0 or d_tp.size == 0:
                one_empty.append((i, k))
                out[i, k] = math.inf
            elif kind == "hd":
                sides = (d_pt,) if directed else (d_pt, d_tp)
                out[i, k] = max(float(s.max()) if percentile is None else float(np.percentile(s, percentile))
                                for s in sides)
            else:
                out[i, k] = float(d_pt.mean()) if not symmetric else float(np.concatenate([d_pt, d_tp]).mean())
    if one_empty:
        classes = sorted({k for _, k in one_empty})
        warnings.warn(f"{len(one_empty)} image/class pair(s) (classes {classes}) have an empty prediction or an "
                      "empty target: their distance is inf (empty-mask policy, docs/metrics.md)",
                      RuntimeWarning, stacklevel=3)
    return torch.from_numpy(out).to(pred.device)


def hausdorff_distance(pred: torch.Tensor, target: torch.Tensor, percentile: float | None = 95,
                       spacing: SpacingArg = None, *, mode: str, num_classes: int, ignore_index: int | None = None,
                       directed: bool = False, aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class (percentile) Hausdorff distance between boundaries, in units of ``spacing``.

    ``HD_p = max(P_p(d(pred→target)), P_p(d(target→pred)))`` with ``P_p`` the ``percentile``-th percentile
    (linear interpolation); ``percentile=None`` takes the maximum (the Hausdorff distance), 95 gives HD95.
    ``directed=True`` keeps only ``d(pred→target)``. Inputs as :func:`seglab.metrics.dice_score`: class maps
    ``(N, *spatial)`` (multiclass) or masks ``(N, C, *spatial)``, 2D or 3D; ``spacing`` one number or one per
    axis. ``aggregate="mean"``: mean over images ``(C,)``; ``"none"``: ``(N, C)``. Empty masks: module docstring.
    Equals MONAI's ``compute_hausdorff_distance(..., include_background=True)``.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> p = torch.zeros(1, 8, 8, dtype=torch.long); p[0, 2:6, 2:7] = 1
    >>> hausdorff_distance(p, t, percentile=None, spacing=(1.0, 0.5), mode="multiclass", num_classes=2).tolist()
    [0.5, 0.5]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    v = per_image_values("hd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), percentile=check_percentile(percentile),
                   directed=check_bool("directed", directed))
    return aggregate_scores(v, aggregate)


def average_surface_distance(pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg = None, *, mode: str,
                             num_classes: int, ignore_index: int | None = None, symmetric: bool = True,
                             aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class average (symmetric) surface distance, in units of ``spacing``.

    ``ASSD = (Σ d(pred→target) + Σ d(target→pred)) / (|∂pred| + |∂target|)`` (``symmetric=True``, Metrics
    Reloaded's ASSD); ``symmetric=False`` averages ``d(pred→target)`` only (MONAI's default). Equals MONAI's
    ``compute_average_surface_distance(..., include_background=True, symmetric=symmetric)``. Inputs,
    ``aggregate`` and empty masks as :func:`hausdorff_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> average_surface_distance(t, t, mode="multiclass", num_classes=2).tolist()
    [0.0, 0.0]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    v = per_image_values("asd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), symmetric=check_bool("symmetric", symmetric))
    return aggregate_scores(v, aggregate)


def surface_dice(pred: torch.Tensor, target: torch.Tensor, tolerance: float | Sequence[float],
                 spacing: SpacingArg = None, *, mode: str, num_classes: int, ignore_index: int | None = None,
                 aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class normalised surface Dice (NSD, Nikolov et al. 2021) at ``tolerance`` (units of ``spacing``).

    ``NSD = (|{d(pred→target) ≤ τ}| + |{d(target→pred) ≤ τ}|) / (|∂pred| + |∂target|)``, boundaries counted
    in voxels; ``tolerance`` one number or one per class. Equals MONAI's ``compute_surface_dice(...,
    include_background=True, use_subvoxels=False)``. Inputs, ``aggregate`` and empty masks as
    :func:`hausdorff_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> p = torch.zeros(1, 8, 8, dtype=torch.long); p[0, 2:6, 2:7] = 1
    >>> surface_dice(p, t, 1.0, mode="multiclass", num_classes=2).tolist()
    [1.0, 1.0]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    tol = check_tolerance(tolerance, num_classes)
    v = per_image_values("nsd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), tolerance=tol)
    return aggregate_scores(v, aggregate)
