"""Soft Dice loss (Milletari 2016 squared variant, Wang & Blaschko 2023 semimetric form for soft labels)."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._region import RegionTerm, check_region_options
from seglab.losses._stats import Stats, reduce_classes, safe_ratio
from seglab.losses.base import LOSSES, Loss


def check_dice_options(*, mode: str, include_background: Any = True, squared: Any = False, batch: Any = False,
                       smooth: Any = 1e-5, log: Any = False, class_weights: Any = None, ignore_index: Any = None,
                       soft_targets: Any = "semimetric", process_group: Any = None, reduction: Any = "mean",
                       copy: bool = False) -> Options:
    """Dice's options, checked (the one place: :class:`DiceLoss` and :func:`dice_loss` both call it)."""
    o = check_region_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                             ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group,
                             reduction=reduction, class_weights=class_weights, copy=copy)
    o.update(squared=_checks.check_bool("squared", squared), log=_checks.check_bool("log", log))
    return o


def dice_head(st: Stats, w: torch.Tensor | None, *, smooth: float, log: bool, reduction: str) -> torch.Tensor:
    """Dice loss from per-class statistics: ``1 - (2 tp + smooth) / (ps + ys + smooth)`` (or ``-log`` of the ratio)."""
    dice = safe_ratio(2 * st.tp + smooth, st.ps + st.ys + smooth, den_positive=smooth > 0)  # ps, ys >= 0
    loss = -torch.log(dice.clamp_min(torch.finfo(dice.dtype).tiny)) if log else 1 - dice
    return reduce_classes(loss, w, reduction)


DICE = RegionTerm(lambda st, w, o: dice_head(st, w, smooth=o["smooth"], log=o["log"], reduction=o["reduction"]))


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    include_background: bool = True,
    squared: bool = False,
    batch: bool = False,
    smooth: float = 1e-5,
    log: bool = False,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int | None = None,
    soft_targets: str = "semimetric",
    process_group: Any = None,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft Dice loss from logits; see :class:`DiceLoss` for the formula and conventions.

    Example:
        >>> dice_loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)), mode="multiclass").shape
        torch.Size([])
    """
    o = check_dice_options(mode=mode, include_background=include_background, squared=squared, batch=batch,
                           smooth=smooth, log=log, class_weights=class_weights, ignore_index=ignore_index,
                           soft_targets=soft_targets, process_group=process_group, reduction=reduction)
    return run_terms([(DICE, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("dice")
class DiceLoss(Loss):
    r"""Soft Dice loss for ``binary``, ``multiclass`` (softmax) and ``multilabel`` (sigmoid) segmentation.

    Per class ``c``, with ``p`` the probabilities and ``y`` the target over the kept pixels::

        D_c = (2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)      # squared=True: sum(p^2) + sum(y^2)
        L_c = 1 - D_c                                                     # log=True: -log(D_c)

    * ``batch=False`` (default, as MONAI's ``DiceLoss``): sums run over the spatial dims of each sample; the loss
      is the (class-weighted) mean over classes, then the mean over samples.
      ``batch=True`` (as nnU-Net's batch Dice, smp's ``DiceLoss`` and the Chlebus 2018 study): sums run over batch and spatial
      dims — one Dice per class for the whole mini-batch — then the mean over classes.
    * ``include_background=False`` drops channel 0 (the background of a multiclass task).
    * ``class_weights`` ``(C,)``: weighted mean over classes ``sum_c w_c L_c / sum_c w_c``.
    * ``ignore_index``: pixels with that target value are left out of every sum.
    * Soft targets: float targets use the Dice semimetric form (Wang & Blaschko 2023),
      ``2 sum(p*y) -> sum(p) + sum(y) - sum|p - y|``, identical on hard labels and minimal (0) exactly when
      ``p == y`` on soft labels. ``soft_targets="product"`` gives the plain soft Dice instead.
      (``squared=True`` is already minimal at ``p == y`` and always uses the product.)
    * ``process_group`` (``batch=True`` only): ``"world"`` or a ProcessGroup; the per-class sums are all-reduced
      across processes, so P processes holding shards of a batch get the Dice of the whole batch. Gradient
      convention (nnU-Net's): each rank's input gradient is P times its slice of the single-process gradient,
      so that DDP's averaging of parameter gradients over the P ranks gives the single-process gradient.

    **Empty classes.** A class absent from both target and prediction has ``D_c = smooth / smooth = 1`` and
    contributes a loss of 0 that still counts in the average over classes. With ``smooth=0`` an exact 0/0 is
    defined as ``D_c = 1`` too (the 0/0 itself is never NaN; a NaN logit still gives a NaN loss), but any vanishing predicted mass then gives ``D_c = 0``: keep
    ``smooth > 0`` when batches can miss classes. A class absent from the target but predicted has ``D_c ≈ 0``: a
    loss near 1, the false-positive penalty that makes per-sample Dice harsh on rare classes.

    Shapes: logits ``(N, C, *spatial)`` with 0–3 spatial dims; targets as :class:`~seglab.CrossEntropyLoss`.
    ``reduction="none"`` returns the per-class losses ``(N, C')`` (``batch=False``) or ``(C',)``, weighted.

    Example:
        >>> loss = DiceLoss("multiclass", include_background=False, batch=True)
        >>> loss(torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64)))
    """

    name = "dice"
    description = "soft Dice, per sample (sums over each sample's spatial axes), smooth=1e-5 (MONAI/smp convention)"
    term = DICE
    fn = staticmethod(dice_loss)

    def __init__(
        self,
        mode: str,
        include_background: bool = True,
        squared: bool = False,
        batch: bool = False,
        smooth: float = 1e-5,
        log: bool = False,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        soft_targets: str = "semimetric",
        process_group=None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, reduction)
        self._configure(check_dice_options(
            mode=mode, include_background=include_background, squared=squared, batch=batch, smooth=smooth, log=log,
            class_weights=class_weights, ignore_index=ignore_index, soft_targets=soft_targets,
            process_group=process_group, reduction=reduction, copy=True))
