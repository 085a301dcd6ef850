"""Matthews correlation coefficient loss (Abhishek & Hamarneh 2021): all four soft confusion counts."""

from __future__ import annotations

from typing import Any

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._structure import StructureTerm, check_include_background, dense_target, probabilities, reduce_loss
from seglab.losses.base import LOSSES, Loss
from seglab.targets import Target


def check_mcc_options(*, mode: str, include_background: Any = True, batch: Any = False, smooth_nr: Any = 0.0,
                      smooth_dr: Any = 1e-5, ignore_index: Any = None, reduction: Any = "mean") -> Options:
    """MCC's options, checked (:class:`MCCLoss` and :func:`mcc_loss` both call it)."""
    mode = _checks.check_mode(mode)
    return dict(mode=mode, include_background=check_include_background(mode, include_background),
                batch=_checks.check_bool("batch", batch), smooth_nr=_checks.check_number("smooth_nr", smooth_nr, low=0.0),
                smooth_dr=_checks.check_number("smooth_dr", smooth_dr, low=0.0, low_open=True),
                ignore_index=_checks.check_ignore_index(ignore_index), reduction=_checks.check_reduction(reduction))


def mcc_head(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor, *, smooth_nr: float,
             smooth_dr: float) -> torch.Tensor:
    """``1 - MCC`` from soft confusion counts; 0 where ``fp = fn = 0`` (a perfect prediction, as MONAI)."""
    mcc = (tp * tn - fp * fn + smooth_nr) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) + smooth_dr)
    return torch.where((fp == 0) & (fn == 0), torch.zeros_like(mcc), 1.0 - mcc)


def _mcc(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    # the four counts summed directly (as MONAI): TN = count - sum p - sum y + TP cancels catastrophically in
    # float32 when TN is small beside the image size
    p = probabilities(x, o["mode"])
    y = dense_target(tgt, x)
    q, z = 1.0 - p, 1.0 - y
    if tgt.valid is not None:  # kept pixels (index / dense multiclass) or elements (multilabel, binary)
        v = (tgt.valid.unsqueeze(1) if tgt.valid.ndim == x.ndim - 1 else tgt.valid).to(x.dtype)
        p, q = p * v, q * v

    def total(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).flatten(2).sum(-1)  # (N, C)

    tp, fp, fn, tn = total(p, y), total(p, z), total(q, y), total(q, z)
    if o["batch"]:
        tp, fp, fn, tn = tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0)
    if not o["include_background"]:
        tp, fp, fn, tn = tp[..., 1:], fp[..., 1:], fn[..., 1:], tn[..., 1:]
    return reduce_loss(mcc_head(tp, fp, fn, tn, smooth_nr=o["smooth_nr"], smooth_dr=o["smooth_dr"]), o["reduction"])


MCC = StructureTerm(_mcc)


def mcc_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    include_background: bool = True,
    batch: bool = False,
    smooth_nr: float = 0.0,
    smooth_dr: float = 1e-5,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MCC loss from logits; see :class:`MCCLoss`.

    Example:
        >>> mcc_loss(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), mode="multiclass").shape
        torch.Size([])
    """
    o = check_mcc_options(mode=mode, include_background=include_background, batch=batch, smooth_nr=smooth_nr,
                          smooth_dr=smooth_dr, ignore_index=ignore_index, reduction=reduction)
    return run_terms([(MCC, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("mcc")
class MCCLoss(Loss):
    r"""Matthews correlation coefficient loss (Abhishek & Hamarneh 2021, ISBI), as MONAI's ``MCCLoss``.

    Per class, with the soft confusion counts over the kept pixels ``TP = sum p*y``, ``FP = sum p*(1-y)``,
    ``FN = sum (1-p)*y``, ``TN = sum (1-p)*(1-y)`` (``p``: softmax for ``multiclass``, sigmoid otherwise)::

        MCC_c = (TP*TN - FP*FN + smooth_nr) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN) + smooth_dr)
        L_c   = 1 - MCC_c          (0 where FP = FN = 0: a perfect prediction)

    then the mean over classes and samples; ``batch=True`` sums the counts over the batch first (one MCC per
    class). Unlike Dice it rewards true negatives, so a class absent from target and prediction of an image
    scores ``L = 0`` only through the perfect-prediction rule. ``L`` lies in ``[0, 2]``.
    ``include_background=False`` drops channel 0; ``ignore_index`` leaves pixels (elements) out of all four counts.
    The four counts are summed directly, as MONAI does (index targets are expanded to a one-hot: ``TN`` from
    ``count - sum p - sum y + TP`` would cancel catastrophically in float32 when ``TN`` is small beside the image).
    ``reduction="none"`` returns ``(N, C')`` (``batch=False``) or ``(C',)``.

    Example:
        >>> MCCLoss("binary")(torch.randn(2, 1, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float())
    """

    name = "mcc"
    description = "Matthews correlation coefficient loss (Abhishek 2021), per sample and class (MONAI MCCLoss)"
    term = MCC
    fn = staticmethod(mcc_loss)

    def __init__(self, mode: str, include_background: bool = True, batch: bool = False, smooth_nr: float = 0.0,
                 smooth_dr: float = 1e-5, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_mcc_options(mode=mode, include_background=include_background, batch=batch,
                                          smooth_nr=smooth_nr, smooth_dr=smooth_dr, ignore_index=ignore_index,
                                          reduction=reduction))
