"""Object-level (detection) metrics over connected components: how many structures were found, missed or invented.

For each image and class, the connected components of the prediction and of the target are labelled
(``connectivity=1``: face neighbours, scipy's default; ``ndim``: every neighbour). A target component and a
predicted component **match** when their IoU exceeds ``iou_threshold`` (≥ 0.5, so that each component has at
most one match and no assignment problem arises, as in the detection part of panoptic quality, Kirillov et al.
2019). Then ``TP`` = matched pairs, ``FN`` = unmatched target components, ``FP`` = unmatched predicted components,
and the detection F1 is ``2 TP / (2 TP + FP + FN)`` (NaN, or ``empty``, when neither has a component).

Needs scipy (the ``structure`` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seglab._checks import check_number
from seglab._extras import require
from seglab.metrics.overlap import aggregate_scores, check_aggregate, check_empty, class_masks


def check_iou_threshold(iou_threshold: Any) -> float:
    """``iou_threshold``: a number in [0.5, 1)."""
    t = check_number("iou_threshold", iou_threshold, low=0.5)
    if t >= 1:
        raise ValueError(f"iou_threshold must be in [0.5, 1), got {iou_threshold!r}")
    return t


def _component_counts(p: np.ndarray, t: np.ndarray, thr: float, structure: np.ndarray, ndimage: Any) -> tuple[int, int, int]:
    lp, n_p = ndimage.label(p, structure=structure)
    lt, n_t = ndimage.label(t, structure=structure)
    if n_p == 0 or n_t == 0:
        return 0, n_p, n_t
    both = (lp > 0) & (lt > 0)
    inter = np.bincount(lt[both] * (n_p + 1) + lp[both], minlength=(n_t + 1) * (n_p + 1)).reshape(n_t + 1, n_p + 1)
    size_t = np.bincount(lt.ravel(), minlength=n_t + 1)
    size_p = np.bincount(lp.ravel(), minlength=n_p + 1)
    iou = inter / (size_t[:, None] + size_p[None, :] - inter).clip(min=1)
    tp = int((iou[1:, 1:] > thr).sum())
    return tp, n_p - tp, n_t - tp


def detection_counts(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                     ignore_index: int | None = None, iou_threshold: float = 0.5,
                     connectivity: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and class ``(N, C)`` float64: matched components (TP), unmatched predicted (FP) and unmatched
    target components (FN). Inputs as :func:`seglab.metrics.dice_score`."""
    ndimage = require("scipy.ndimage", "detection metrics (connected components)")
    thr = check_iou_threshold(iou_threshold)
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    nd = pm.ndim - 2
    if connectivity not in range(1, nd + 1):
        raise ValueError(f"connectivity must be 1..{nd} for {nd}D images, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(nd, connectivity)
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    out = np.zeros((3, *pn.shape[:2]))
    for i in range(pn.shape[0]):
        for k in range(pn.shape[1]):
            out[:, i, k] = _component_counts(pn[i, k], tn[i, k], thr, structure, ndimage)
    tp, fp, fn = (torch.from_numpy(x).to(pred.device) for x in out)
    return tp, fp, fn


def f1_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """``2 TP / (2 TP + FP + FN)``; ``empty`` where there is no component at all."""
    den = 2 * tp + fp + fn
    return torch.where(den > 0, 2 * tp / den.clamp_min(1), torch.full_like(den, empty))


def detection_f1(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                 ignore_index: int | None = None, iou_threshold: float = 0.5, connectivity: int = 1,
                 aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class detection F1 over connected components (module docstring). ``aggregate``: ``"mean"`` over
    images (NaN skipped) ``(C,)``, ``"pooled"`` (component counts summed over images) ``(C,)``, ``"none"``
    ``(N, C)``.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 1:3, 1:3] = 1; t[0, 5:7, 5:7] = 1
    >>> p = torch.zeros(1, 8, 8, dtype=torch.long); p[0, 1:3, 1:3] = 1; p[0, 5, 1] = 1
    >>> detection_f1(p, t, mode="multiclass", num_classes=2)[1].item()  # TP 1, FP 1, FN 1
    0.5
    """
    aggregate = check_aggregate(aggregate)
    tp, fp, fn = detection_counts(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                                  iou_threshold=iou_threshold, connectivity=connectivity)
    if aggregate == "pooled":
        return f1_from_counts(tp.sum(0), fp.sum(0), fn.sum(0), check_empty(empty))
    return aggregate_scores(f1_from_counts(tp, fp, fn, check_empty(empty)), aggregate)


def _voronoi_components(t: np.ndarray, ndimage: Any) -> tuple[np.ndarray, int]:
    """Every voxel's nearest target component (full connectivity), as MONAI's ``compute_voronoi_regions_fast``."""
    structure = ndimage.generate_binary_structure(t.ndim, t.ndim)
    cc, n = ndimage.label(t, structure=structure)
    if n == 0:
        return cc, 0
    idx = ndimage.distance_transform_edt(cc == 0, return_distances=False, return_indices=True)
    return cc[tuple(idx)], n


def _cc_dice(p: np.ndarray, t: np.ndarray, empty: float, ndimage: Any) -> float:
    region, n = _voronoi_components(t, ndimage)
    if n == 0:
        return empty
    code = region.ravel().astype(np.int64) * 4 + t.ravel().astype(np.int64) * 2 + p.ravel().astype(np.int64)
    hist = np.bincount(code, minlength=(n + 1) * 4).reshape(-1, 4)[1:]
    fp, fn, tp = hist[:, 1], hist[:, 2], hist[:, 3]
    den = 2 * tp + fp + fn
    return float(np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0).mean())


def component_dice_values(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                          ignore_index: int | None = None, empty: float = float("nan")) -> torch.Tensor:
    """``(N, C)`` float64 per-component Dice of each image and class (:func:`component_dice`)."""
    ndimage = require("scipy.ndimage", "per-component Dice (connected components)")
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    out = np.array([[_cc_dice(pn[i, k], tn[i, k], check_empty(empty), ndimage) for k in range(pn.shape[1])]
                    for i in range(pn.shape[0])], dtype=np.float64).reshape(pn.shape[:2])
    return torch.from_numpy(out).to(pred.device)


def component_dice(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                   ignore_index: int | None = None, aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class **per-component Dice** (CC-Dice, Jaeger et al. 2024; MONAI's ``DiceMetric(per_component=True)``):
    the image is split into the Voronoi cells of the target's connected components (full connectivity), the Dice
    is taken in each cell (1 where a cell has neither prediction nor target), and the cells are averaged, so a
    small lesion counts as much as a large one. A class absent from the target gets ``empty`` (NaN: skipped).
    ``aggregate``: ``"mean"`` over images ``(C,)`` or ``"none"`` ``(N, C)``.

    >>> t = torch.zeros(1, 12, 12, dtype=torch.long); t[0, 1:3, 1:3] = 1; t[0, 6:12, 6:12] = 1
    >>> p = torch.zeros_like(t); p[0, 6:12, 6:12] = 1          # the large lesion found, the small one missed
    >>> component_dice(p, t, mode="multiclass", num_classes=2)[1].item()  # (0 + 1) / 2, where Dice gives 0.947
    0.5
    """
    aggregate = check_aggregate(aggregate, ("mean", "none"))
    return aggregate_scores(component_dice_values(pred, target, mode=mode, num_classes=num_classes,
                                                  ignore_index=ignore_index, empty=empty), aggregate)


def boundary_band(mask: np.ndarray, width: int, ndimage: Any) -> np.ndarray:
    """The mask's pixels within ``width`` pixels of its contour: ``mask`` minus its erosion by a full (3×3 / 3×3×3)
    structuring element ``width`` times, outside the image counting as background (Cheng et al. 2021's
    ``mask_to_boundary``)."""
    if width < 1 or not mask.any():
        return mask & False
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    inner = ndimage.binary_erosion(mask, structure=structure, iterations=width, border_value=0)
    return mask & ~inner


def boundary_iou(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                 ignore_index: int | None = None, dilation_ratio: float = 0.02, aggregate: str = "mean",
                 empty: float = float("nan")) -> torch.Tensor:
    """Per-class **Boundary IoU** (Cheng et al. 2021): the IoU of the two masks' boundary bands,
    ``|(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|``, where ``X_d ∩ X`` are the pixels of ``X`` within ``d``
    pixels of its contour and ``d = max(1, round(dilation_ratio · image diagonal))`` (the paper's 2 %). Sensitive to
    boundary quality at any object size, where IoU of large objects is not. ``empty`` where both bands are empty;
    ``aggregate`` ``"mean"`` over images ``(C,)`` or ``"none"`` ``(N, C)``.

    >>> t = torch.zeros(1, 20, 20, dtype=torch.long); t[0, 4:16, 4:16] = 1
    >>> round(boundary_iou(t, t, mode="multiclass", num_classes=2)[1].item(), 3)
    1.0
    """
    ndimage = require("scipy.ndimage", "boundary IoU")
    aggregate = check_aggregate(aggregate, ("mean", "none"))
    ratio = check_number("dilation_ratio", dilation_ratio, low=0, low_open=True)
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    width = max(1, int(round(ratio * float(np.sqrt(sum(s * s for s in pn.shape[2:]))))))
    out = np.empty(pn.shape[:2], dtype=np.float64)
    for i in range(pn.shape[0]):
        for k in range(pn.shape[1]):
            bp, bt = boundary_band(pn[i, k], width, ndimage), boundary_band(tn[i, k], width, ndimage)
            union = np.count_nonzero(bp | bt)
            out[i, k] = np.count_nonzero(bp & bt) / union if union else check_empty(empty)
    return aggregate_scores(torch.from_numpy(out).to(pred.device), aggregate)
