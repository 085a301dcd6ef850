"""TopK cross-entropy (nnU-Net's ``TopKLoss``): the mean CE of the k percent hardest pixels of the batch."""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses.base import LOSSES, Loss
from seglab.losses.ce import _CrossEntropyTerm, check_ce_options
from seglab.targets import Target


def check_topk_ce_options(*, mode: str, k: Any = 10.0, class_weights: Any = None, pos_weight: Any = None,
                          ignore_index: Any = None, label_smoothing: Any = 0.0, reduction: Any = "mean",
                          copy: bool = False) -> Options:
    """TopK CE's options, checked: CE's (:func:`~seglab.losses.ce.check_ce_options`) and ``k`` in (0, 100]."""
    ce = check_ce_options(mode=mode, class_weights=class_weights, pos_weight=pos_weight, ignore_index=ignore_index,
                          label_smoothing=label_smoothing, reduction=reduction, copy=copy)
    o = {key: ce[key] for key in _CE_KEYS}  # CE's other options (if any) keep their defaults
    o["k"] = _checks.check_number("k", k, low=0.0, high=100.0, low_open=True)
    return o


_CE_KEYS = ("mode", "class_weights", "pos_weight", "ignore_index", "label_smoothing", "reduction")


def topk_count(numel: int, k: float) -> int:
    """How many elements the top k percent of ``numel`` is: nnU-Net's ``int(numel * k / 100)``, at least 1."""
    return max(1, int(numel * k / 100))


class _TopKTerm(_CrossEntropyTerm):
    """The CE term's per-pixel reference losses, then the top k percent of them."""

    def request(self, o: Options) -> None:
        return None

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        ce = {**check_ce_options(mode=o["mode"]), **o, "reduction": "none"}  # CE's defaults for its other options
        loss = super().reference(x, tgt, ce)  # per pixel, weighted; ignored pixels are 0
        if loss.numel() == 0:
            return loss if o["reduction"] == "none" else loss.sum()
        flat = loss.reshape(-1)
        values, idx = torch.topk(flat, topk_count(flat.numel(), o["k"]), sorted=False)
        if o["reduction"] == "none":
            return torch.zeros_like(flat).scatter(0, idx, values).reshape(loss.shape)
        return values.sum() if o["reduction"] == "sum" else values.mean()


TOPK_CE = _TopKTerm()


def topk_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    k: float = 10.0,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TopK cross-entropy from logits; see :class:`TopKCrossEntropyLoss`.

    Example:
        >>> topk_cross_entropy(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), mode="multiclass", k=10).shape
        torch.Size([])
    """
    o = check_topk_ce_options(mode=mode, k=k, class_weights=class_weights, pos_weight=pos_weight,
                              ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)
    return run_terms([(TOPK_CE, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("topk_ce")
class TopKCrossEntropyLoss(Loss):
    r"""TopK cross-entropy (Wu et al. 2016 "bootstrapped CE"; nnU-Net's ``TopKLoss``, default ``k=10``).

    The per-pixel cross-entropy ``l`` of :func:`seglab.losses.cross_entropy` (``reduction="none"``: softmax CE for
    ``multiclass``, BCE-with-logits per element for ``multilabel`` / ``binary``; class weights, ``pos_weight``,
    label smoothing as there) is pooled over the whole batch and only the ``K = int(P * k / 100)`` largest
    (at least 1) of its ``P`` entries are kept::

        L = mean of the K largest l_i          ("sum": their sum; "none": (N, *spatial) or (N, C, *spatial),
                                                the kept l_i in place and 0 elsewhere)

    As nnU-Net: ``k`` is in percent of the pixels of the batch, weighted losses are not renormalised, and
    ignored pixels (``ignore_index``) have loss 0 but still count in ``P``. nnU-Net defines it for softmax only;
    the sigmoid modes apply the same rule to the elements. ``k=100`` is the plain mean CE (unweighted mean).

    Example:
        >>> TopKCrossEntropyLoss("multiclass", k=10)(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "topk_ce"
    description = "TopK cross-entropy: mean CE of the k=10 percent hardest pixels of the batch (nnU-Net TopKLoss)"
    term = TOPK_CE
    fn = staticmethod(topk_cross_entropy)

    def __init__(self, mode: str, k: float = 10.0, class_weights: Sequence[float] | torch.Tensor | None = None,
                 pos_weight: Sequence[float] | torch.Tensor | None = None, ignore_index: int | None = None,
                 label_smoothing: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_topk_ce_options(mode=mode, k=k, class_weights=class_weights, pos_weight=pos_weight,
                                              ignore_index=ignore_index, label_smoothing=label_smoothing,
                                              reduction=reduction, copy=True))
