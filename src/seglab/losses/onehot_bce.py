"""Per-channel sigmoid BCE on the one-hot masks of a multiclass task (seed 001's setup, Keras
``binary_crossentropy`` on one-hot targets): each class channel is its own binary problem."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._structure import StructureTerm
from seglab.losses.base import LOSSES, Loss
from seglab.targets import Target


def check_onehot_bce_options(*, mode: str, ignore_index: Any = None, reduction: Any = "mean") -> Options:
    """The options of :class:`OneHotBCELoss` (multiclass only), checked."""
    mode = _checks.check_mode(mode)
    if mode != "multiclass":
        raise ValueError(f"onehot_bce applies to multiclass tasks (one-hot masks of exclusive classes), got mode={mode!r}; "
                         "use 'bce' (or 'ce') for binary/multilabel tasks")
    return dict(mode=mode, ignore_index=_checks.check_ignore_index(ignore_index),
                reduction=_checks.check_reduction(reduction))


def _onehot_bce(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    c = x.shape[1]
    y = F.one_hot(tgt.labels, c).movedim(-1, 1).to(x.dtype) if tgt.is_index else tgt.y.to(x.dtype)
    el = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # (N, C, *)
    if tgt.valid is not None:
        keep = tgt.valid.unsqueeze(1) if tgt.valid.ndim == x.ndim - 1 else tgt.valid
        keep = keep.expand_as(el)
        el = el * keep
        kept = keep.sum()
    else:
        kept = torch.tensor(float(el.numel()), dtype=el.dtype, device=el.device)
    if o["reduction"] == "none":
        return el
    if o["reduction"] == "sum":
        return el.sum()
    return el.sum() / kept.clamp_min(1)


ONEHOT_BCE = StructureTerm(_onehot_bce)


def onehot_bce_loss(logits: torch.Tensor, target: torch.Tensor, *, mode: str = "multiclass",
                    ignore_index: int | None = None, reduction: str = "mean", validate: bool | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel BCE-with-logits against the one-hot target; see :class:`OneHotBCELoss`.

    Example:
        >>> onehot_bce_loss(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)).item()  # log 2
        0.6931471824645996
    """
    o = check_onehot_bce_options(mode=mode, ignore_index=ignore_index, reduction=reduction)
    return run_terms([(ONEHOT_BCE, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("onehot_bce")
class OneHotBCELoss(Loss):
    r"""Binary cross-entropy with one sigmoid per channel on a multiclass task's one-hot masks.

    With ``y = one_hot(target)`` of shape ``(N, C, *)`` and logits ``z``::

        L = mean over n, c, pixels of  -[ y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)) ]

    — Keras ``binary_crossentropy`` on one-hot masks, as in seed 001 ("BCE learns better than CCE"). The
    channels do not compete: nothing makes them sum to one, so the prediction is ``argmax`` of the logits
    (equal to the argmax of the sigmoids). ``ignore_index`` leaves pixels out; ``reduction="none"`` returns the
    elementwise ``(N, C, *)`` map (ignored pixels 0). For exclusive classes softmax CE (``ce``) is the matched
    loss; this one exists to test seed 001's claim (docs/experiments.md).

    Example:
        >>> OneHotBCELoss()(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))).shape
        torch.Size([])
    """

    name = "onehot_bce"
    description = "per-channel sigmoid BCE on a multiclass task's one-hot masks (Keras binary_crossentropy; seed 001)"
    modes = ("multiclass",)  # the only mode it applies to (its options check says why for the others)
    term = ONEHOT_BCE
    fn = staticmethod(onehot_bce_loss)

    def __init__(self, mode: str = "multiclass", ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_onehot_bce_options(mode=mode, ignore_index=ignore_index, reduction=reduction))
