"""Tversky loss (Salehi 2017) and focal Tversky (Abraham 2019)."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._region import RegionTerm, check_region_options
from seglab.losses._stats import Stats, reduce_classes, safe_ratio
from seglab.losses.base import LOSSES, Loss


def check_tversky_options(*, mode: str, alpha: Any = 0.5, beta: Any = 0.5, gamma: Any = 1.0,
                          include_background: Any = True, batch: Any = False, smooth: Any = 1e-5,
                          class_weights: Any = None, ignore_index: Any = None, soft_targets: Any = "semimetric",
                          process_group: Any = None, reduction: Any = "mean", copy: bool = False) -> Options:
    """Tversky's options, checked (called by :class:`TverskyLoss` and :func:`tversky_loss`)."""
    o = check_region_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                             ignore_index=ignore_index, soft_targets=soft_targets, process_group=process_group,
                             reduction=reduction, class_weights=class_weights, copy=copy)
    o.update(alpha=_checks.check_number("alpha", alpha, low=0.0), beta=_checks.check_number("beta", beta, low=0.0),
             gamma=_checks.check_number("gamma", gamma, low=0.0, low_open=True))
    return o


def tversky_head(st: Stats, w: torch.Tensor | None, *, alpha: float, beta: float, gamma: float, smooth: float,
                 reduction: str) -> torch.Tensor:
    """(Focal) Tversky loss from per-class statistics (shared by the reference and the fused kernels)."""
    ti = safe_ratio(st.tp + smooth, st.tp + alpha * st.fp + beta * st.fn + smooth)
    loss = (1 - ti).clamp_min(0)
    if gamma != 1.0:
        # (1 - TI)^gamma has an infinite slope at TI = 1 for gamma < 1: clamp so a perfect class gets a
        # zero gradient instead of NaN (inf * 0)
        loss = loss.clamp_min(torch.finfo(loss.dtype).eps) ** gamma
    return reduce_classes(loss, w, reduction)


TVERSKY = RegionTerm(lambda st, w, o: tversky_head(st, w, alpha=o["alpha"], beta=o["beta"], gamma=o["gamma"],
                                                   smooth=o["smooth"], reduction=o["reduction"]))


def tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
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
    """Tversky loss from logits; see :class:`TverskyLoss`."""
    o = check_tversky_options(mode=mode, alpha=alpha, beta=beta, gamma=gamma, include_background=include_background,
                              batch=batch, smooth=smooth, class_weights=class_weights, ignore_index=ignore_index,
                              soft_targets=soft_targets, process_group=process_group, reduction=reduction)
    return run_terms([(TVERSKY, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("tversky")
class TverskyLoss(Loss):
    r"""Tversky loss; ``gamma != 1`` gives the focal Tversky loss (Abraham & Khan 2019).

    Per class, with ``TP = sum p*y``, ``FP = sum p*(1-y)``, ``FN = sum (1-p)*y`` over the kept pixels::

        TI_c = (TP + smooth) / (TP + alpha*FP + beta*FN + smooth)
        L_c  = (1 - TI_c) ** gamma

    ``alpha`` weighs false positives, ``beta`` false negatives (``beta > alpha`` favours recall of rare
    classes); ``alpha = beta = 0.5`` is Dice, ``alpha = beta = 1`` is Jaccard. The exponent is applied per class
    before averaging (Abraham's formulation; smp applies it to the class mean — identical for ``gamma = 1``).
    Reductions, ``batch``, ``include_background``, ``class_weights``, soft targets (semimetric ``TP``),
    ``process_group`` and the empty-class policy (``TI = 1``, loss 0) are those of :class:`~seglab.DiceLoss`.

    Example:
        >>> TverskyLoss("multiclass", alpha=0.3, beta=0.7, gamma=0.75)(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "tversky"
    description = "Tversky loss, alpha=beta=0.5 (= Dice)"
    term = TVERSKY
    fn = staticmethod(tversky_loss)

    def __init__(self, mode: str, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, include_background: bool = True,
                 batch: bool = False, smooth: float = 1e-5, class_weights: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int | None = None, soft_targets: str = "semimetric", process_group=None,
                 reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_tversky_options(
            mode=mode, alpha=alpha, beta=beta, gamma=gamma, include_background=include_background, batch=batch,
            smooth=smooth, class_weights=class_weights, ignore_index=ignore_index, soft_targets=soft_targets,
            process_group=process_group, reduction=reduction, copy=True))
