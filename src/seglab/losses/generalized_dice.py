"""Generalized Dice loss (Sudre et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch

from seglab import _checks
from seglab.metrics.overlap import volume_weights
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._region import RegionTerm, check_region_options
from seglab.losses._stats import Stats, _mean_or_zero, safe_ratio
from seglab.losses.base import LOSSES, Loss

WEIGHTINGS = ("square", "simple", "uniform")


def check_generalized_dice_options(*, mode: str, weighting: Any = "square", include_background: Any = True,
                                   batch: Any = False, smooth: Any = 1e-5, ignore_index: Any = None,
                                   soft_targets: Any = "semimetric", process_group: Any = None, reduction: Any = "mean",
                                   copy: bool = False) -> Options:
    """Generalized Dice's options, checked (called by :class:`GeneralizedDiceLoss` and the function)."""
    o = check_region_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                             ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group,
                             reduction=reduction, uses_class_weights=False, copy=copy)
    o["weighting"] = _checks.check_choice("weighting", weighting, WEIGHTINGS)
    return o


def generalized_dice_head(st: Stats, *, weighting: str, smooth: float, reduction: str) -> torch.Tensor:
    """Generalized Dice loss from per-class statistics (shared by the reference and the fused kernels)."""
    w = volume_weights(st.ys.detach(), weighting, all_absent=0.0)  # MONAI's GeneralizedDiceLoss
    num = 2.0 * (w * st.tp).sum(-1) + smooth
    den = (w * (st.ps + st.ys)).sum(-1) + smooth
    loss = 1.0 - safe_ratio(num, den)  # 1 where den == 0 (every class absent, smooth = 0); NaN stays NaN
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else _mean_or_zero(loss)


GENERALIZED_DICE = RegionTerm(lambda st, w, o: generalized_dice_head(st, weighting=o["weighting"], smooth=o["smooth"],
                                                                    reduction=o["reduction"]))


def generalized_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    weighting: str = "square",
    include_background: bool = True,
    batch: bool = False,
    smooth: float = 1e-5,
    ignore_index: int | None = None,
    soft_targets: str = "semimetric",
    process_group: Any = None,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized Dice loss from logits; see :class:`GeneralizedDiceLoss`."""
    o = check_generalized_dice_options(mode=mode, weighting=weighting, include_background=include_background,
                                       batch=batch, smooth=smooth, ignore_index=ignore_index, soft_targets=soft_targets,
                                       process_group=process_group, reduction=reduction)
    return run_terms([(GENERALIZED_DICE, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("gdice")
class GeneralizedDiceLoss(Loss):
    r"""Generalized Dice loss (Sudre et al. 2017): one Dice over all classes, each weighted by its inverse volume.

    With ``w_c = 1 / (sum y_c)^2`` (``weighting="square"``; ``"simple"``: ``1 / sum y_c``; ``"uniform"``: 1)::

        GDL = 1 - (2 * sum_c w_c * sum(p_c * y_c) + smooth) / (sum_c w_c * (sum p_c + sum y_c) + smooth)

    A class absent from the target (infinite weight) gets the largest finite weight of the others (MONAI's
    policy); an all-empty sample gives ``smooth / smooth``: loss 0. ``batch=False``: one GDL per sample, averaged;
    ``batch=True``: sums over the batch. The weights are constants (no gradient). Soft targets and
    ``process_group`` as :class:`~seglab.DiceLoss`; ``reduction="none"`` returns ``(N,)`` or a scalar.

    Example:
        >>> GeneralizedDiceLoss("multiclass")(torch.randn(2, 4, 32, 32), torch.randint(0, 4, (2, 32, 32)))
    """

    name = "gdice"
    description = "generalized Dice (Sudre 2017), square weighting"
    term = GENERALIZED_DICE
    fn = staticmethod(generalized_dice_loss)

    def __init__(self, mode: str, weighting: str = "square", include_background: bool = True, batch: bool = False,
                 smooth: float = 1e-5, ignore_index: int | None = None, soft_targets: str = "semimetric",
                 process_group=None, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_generalized_dice_options(
            mode=mode, weighting=weighting, include_background=include_background, batch=batch, smooth=smooth,
            ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group, reduction=reduction,
            copy=True))
