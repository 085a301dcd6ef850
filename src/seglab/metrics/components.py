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
