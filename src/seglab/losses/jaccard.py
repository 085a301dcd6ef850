"""Soft Jaccard (IoU) loss."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import torch

from seglab.losses._pipeline import Options, run_terms
from seglab.losses._region import RegionTerm, check_region_options
from seglab.losses._stats import Stats, reduce_classes, safe_ratio
from seglab.losses.base import LOSSES, Loss


def check_jaccard_options(*, mode: str, include_background: Any = True, batch: Any = False, smooth: Any = 1e-5,
                          class_weights: Any = None, ignore_index: Any = None, soft_targets: Any = "semimetric",
                          process_group: Any = None, reduction: Any = "mean", copy: bool = False) -> Options:
    """Jaccard's options, checked (called by :class:`JaccardLoss` and :func:`jaccard_loss`)."""
    return check_region_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                                ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group,
                                reduction=reduction, class_weights=class_weights, copy=copy)


def jaccard_head(st: Stats, w: torch.Tensor | None, *, smooth: float, reduction: str) -> torch.Tensor:
    """Jaccard loss from per-class statistics: ``1 - (tp + smooth) / (ps + ys - tp + smooth)``."""
    # ps + ys - tp >= (ps + ys) / 2 >= 0 (tp <= min(ps, ys), also in the semimetric form)
    iou = safe_ratio(st.tp + smooth, st.ps + st.ys - st.tp + smooth, den_positive=smooth > 0)
    return reduce_classes(1 - iou, w, reduction)


JACCARD = RegionTerm(lambda st, w, o: jaccard_head(st, w, smooth=o["smooth"], reduction=o["reduction"]))


def jaccard_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    include_background: bool = True,
    batch: bool = False,
    smooth: float = 1e-5,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int | None = None,
    soft_targets: str = "semimetric",
    process_group: Any = None,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Jaccard loss from logits; see :class:`JaccardLoss`."""
    o = check_jaccard_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                              class_weights=class_weights, ignore_index=ignore_index, soft_targets=soft_targets,
                              process_group=process_group, reduction=reduction)
    return run_terms([(JACCARD, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("jaccard")
class JaccardLoss(Loss):
    r"""Soft Jaccard / IoU loss.

    Per class over the kept pixels::

        J_c = (sum(p*y) + smooth) / (sum(p) + sum(y) - sum(p*y) + smooth),    L_c = 1 - J_c

    With soft targets the semimetric form (Wang & Blaschko 2023) replaces ``sum(p*y)`` by
    ``(sum p + sum y - sum|p - y|) / 2``, giving ``J = (|p|+|y|-|p-y|) / (|p|+|y|+|p-y|)``, minimal at ``p == y``.
    Everything else (``batch``, ``include_background``, ``class_weights``, ``process_group``, empty classes:
    ``J = 1``) as :class:`~seglab.DiceLoss`.

    Example:
        >>> JaccardLoss("multilabel")(torch.randn(2, 2, 32, 32), torch.randint(0, 2, (2, 2, 32, 32)).float())
    """

    name = "jaccard"
    description = "soft Jaccard (IoU) loss"
    term = JACCARD
    fn = staticmethod(jaccard_loss)

    def __init__(self, mode: str, include_background: bool = True, batch: bool = False, smooth: float = 1e-5,
                 class_weights: Sequence[float] | torch.Tensor | None = None, ignore_index: int | None = None,
                 soft_targets: str = "semimetric", process_group=None, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_jaccard_options(
            mode=mode, include_background=include_background, batch=batch, smooth=smooth, class_weights=class_weights,
            ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group, reduction=reduction,
            copy=True))
