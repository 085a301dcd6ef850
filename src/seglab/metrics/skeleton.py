"""Centreline Dice (clDice, Shit et al., CVPR 2021): the topology metric of tubular structures.

``Tprec = |S(pred) ∩ target| / |S(pred)|`` (how much of the predicted centreline lies in the target),
``Tsens = |S(target) ∩ pred| / |S(target)|`` (how much of the target's centreline is covered), and
``clDice = 2 Tprec Tsens / (Tprec + Tsens)``, with ``S`` the skeleton (``skimage.morphology.skeletonize``,
2D or 3D; the ``structure`` extra). A non-empty mask whose skeleton vanishes (thinning can erase small
even-sized blocks in 3D) is its own skeleton. Empty masks: both empty -> ``empty`` (NaN, skipped by the
mean); one empty -> 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from seglab._extras import require
from seglab.metrics.overlap import aggregate_scores, check_aggregate, check_empty, class_masks
from seglab.metrics.surface import SURFACE_AGGREGATES


def _skeleton(mask: np.ndarray, morphology: Any) -> np.ndarray:
    s = morphology.skeletonize(mask).astype(bool)
    return s if s.any() else mask


def cldice_values(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                  ignore_index: int | None = None, empty: float = float("nan")) -> torch.Tensor:
    """``(N, C)`` float64 clDice of each image and class (formula in the module docstring)."""
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    morphology = require("skimage.morphology", "cldice_score")
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    out = np.empty(pn.shape[:2], dtype=np.float64)
    for i in range(pn.shape[0]):
        for k in range(pn.shape[1]):
            p, t = pn[i, k], tn[i, k]
            if not p.any() or not t.any():
                out[i, k] = empty if not p.any() and not t.any() else 0.0
                continue
            sp, st = _skeleton(p, morphology), _skeleton(t, morphology)
            prec = np.count_nonzero(sp & t) / np.count_nonzero(sp)
            sens = np.count_nonzero(st & p) / np.count_nonzero(st)
            out[i, k] = 2 * prec * sens / (prec + sens) if prec + sens > 0 else 0.0
    return torch.from_numpy(out).to(pred.device)


def cldice_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                 ignore_index: int | None = None, aggregate: str = "mean", empty: float = float("nan")) -> torch.Tensor:
    """Per-class centreline Dice of hard predictions; ``aggregate="mean"`` ``(C,)`` or ``"none"`` ``(N, C)``.

    Inputs as :func:`seglab.metrics.dice_score`. Formula and empty masks: module docstring.

    >>> t = torch.zeros(1, 9, 9, dtype=torch.long); t[0, 4, 1:8] = 1          # a line
    >>> p = t.clone(); p[0, 4, 4] = 0                                          # broken in the middle
    >>> cldice_score(p, t, mode="multiclass", num_classes=2)[1].item()         # Tprec 1, Tsens 6/7
    0.923076923076923
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    v = cldice_values(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                      empty=check_empty(empty))
    return aggregate_scores(v, aggregate)
