"""Generalized Dice loss (Sudre et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch

from seglab.losses._overlap import OverlapLoss
from seglab.losses._region import region_loss
from seglab.losses._stats import Stats

WEIGHTINGS = ("square", "simple", "uniform")


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
    process_group=None,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """Generalized Dice loss from logits; see :class:`GeneralizedDiceLoss`."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    params = dict(mode=mode, weighting=weighting, include_background=include_background, batch=batch, smooth=smooth,
                  ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group, reduction=reduction)
    return region_loss("gdice", params, logits, target,
                       lambda st, w: generalized_dice_head(st, weighting=weighting, smooth=smooth, reduction=reduction),
                       validate=validate)


def generalized_dice_head(st: Stats, *, weighting: str, smooth: float, reduction: str) -> torch.Tensor:
    """Generalized Dice loss from per-class statistics (shared by the reference and the fused kernels)."""
    ys = st.ys.detach()
    if weighting == "square":
        w = 1.0 / (ys * ys)
    elif weighting == "simple":
        w = 1.0 / ys
    else:
        w = torch.ones_like(ys)
    # classes absent from the target have infinite weight: replace by the largest finite weight (MONAI's policy)
    inf = torch.isinf(w)
    w = w.masked_fill(inf, 0.0)
    w = w + inf * w.amax(dim=-1, keepdim=True)
    num = 2.0 * (w * st.tp).sum(-1) + smooth
    den = (w * (st.ps + st.ys)).sum(-1) + smooth
    tiny = torch.finfo(den.dtype).tiny
    loss = 1.0 - torch.where(den > 0, num / den.clamp_min(tiny), torch.ones_like(num))
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


class GeneralizedDiceLoss(OverlapLoss):
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
    fn = staticmethod(generalized_dice_loss)
    uses_class_weights = False

    def __init__(self, mode: str, weighting: str = "square", include_background: bool = True, batch: bool = False,
                 smooth: float = 1e-5, ignore_index: int | None = None, soft_targets: str = "semimetric",
                 process_group=None, reduction: str = "mean") -> None:
        super().__init__(mode, include_background=include_background, batch=batch, smooth=smooth, ignore_index=ignore_index,
                         soft_targets=soft_targets, process_group=process_group, reduction=reduction)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    def _extra(self) -> dict[str, Any]:
        return dict(weighting=self.weighting)
