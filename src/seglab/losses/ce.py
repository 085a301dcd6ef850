"""Cross-entropy: softmax CE for single-label multi-class, BCE-with-logits for multi-label and binary."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from seglab.losses._reduce import reduce_pixels
from seglab.losses.base import Loss, prologue, to_device


def channel_view(w: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel 1-D weight ``(C,)`` to ``(C, 1, ..., 1)`` so it broadcasts over ``(N, C, *spatial)``."""
    return w.view(-1, *([1] * (ndim - 2)))


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    class_weights: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """Cross-entropy from logits ``(N, C, *spatial)``, in log space (no clipped probabilities).

    * ``multiclass``: ``l = -sum_c w_c * y_c * log_softmax(x)_c``; with an index target ``t``,
      ``l = -w_t * log_softmax(x)_t`` and ``"mean"`` divides by ``sum w_t`` over kept pixels — exactly
      ``torch.nn.functional.cross_entropy``. Soft/one-hot targets: ``"mean"`` divides by the number of kept pixels.
    * ``multilabel`` / ``binary``: ``l = -w_c [pos_weight_c * y log sigmoid(x) + (1 - y) log sigmoid(-x)]`` per
      element, ``"mean"`` over kept elements — ``binary_cross_entropy_with_logits`` with the weights reshaped to
      ``(C, 1, ..., 1)`` so they broadcast over every spatial dim.

    ``label_smoothing`` ε: multiclass as torch (``y <- (1 - ε) y + ε / C``); multilabel ``y <- (1 - ε) y + ε / 2``.
    Pixels (or, multilabel, elements) equal to ``ignore_index`` contribute nothing; if all are ignored the mean is 0.
    ``reduction="none"`` returns ``(N, *spatial)`` (multiclass) or ``(N, C, *spatial)``.
    """
    if pos_weight is not None and mode == "multiclass":
        raise ValueError("pos_weight applies to sigmoid outputs (mode='multilabel' or 'binary'); for softmax use class_weights")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    from seglab.kernels.dispatch import try_fused

    params = dict(mode=mode, class_weights=class_weights, pos_weight=pos_weight, ignore_index=ignore_index,
                  label_smoothing=label_smoothing, reduction=reduction)
    x, tgt, v = prologue(logits, target, mode, ignore_index=ignore_index, reduction=reduction, validate=validate,
                         weights={"class_weights": class_weights, "pos_weight": pos_weight})
    fused = try_fused([("ce", params)], logits, target)
    if fused is not None:
        return fused[0]
    cw = to_device(class_weights, x)
    if mode == "multiclass":
        if tgt.is_index:
            idx = tgt.index if tgt.valid is None else tgt.index.masked_fill(~tgt.valid, -100)
            loss = F.cross_entropy(x, idx, weight=cw, ignore_index=-100, reduction="none", label_smoothing=label_smoothing)
            if reduction != "mean":
                return reduce_pixels(loss, reduction, tgt.valid)
            w_t = torch.ones_like(loss) if cw is None else cw[tgt.index]
            if tgt.valid is not None:
                w_t = w_t * tgt.valid
            return reduce_pixels(loss, reduction, tgt.valid, denom=w_t.sum())
        loss = F.cross_entropy(x, tgt.dense, weight=cw, reduction="none", label_smoothing=label_smoothing)
        if tgt.valid is not None:
            loss = loss * tgt.valid
        return reduce_pixels(loss, reduction, tgt.valid)
    y = tgt.dense
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
    pw = to_device(pos_weight, x)
    loss = F.binary_cross_entropy_with_logits(
        x, y,
        weight=None if cw is None else channel_view(cw, x.ndim),
        pos_weight=None if pw is None else channel_view(pw, x.ndim),
        reduction="none",
    )
    if tgt.valid is not None:
        loss = loss * tgt.valid
    return reduce_pixels(loss, reduction, tgt.valid)


class CrossEntropyLoss(Loss):
    """Cross-entropy for segmentation: softmax CE (``multiclass``) or BCE-with-logits (``multilabel``/``binary``).

    Formula: see :func:`cross_entropy`. Shapes: logits ``(N, C, *spatial)`` (0–3 spatial dims); target an int
    class map ``(N, *spatial)`` or a float ``(N, C, *spatial)`` map (multiclass), float ``(N, C, *spatial)`` in
    [0, 1] (multilabel), ``(N, 1, *spatial)`` or ``(N, *spatial)`` (binary). ``class_weights`` and
    ``pos_weight`` are 1-D ``(C,)`` and broadcast over all spatial dims (stored as buffers).

    Example:
        >>> loss = CrossEntropyLoss("multilabel", pos_weight=torch.tensor([3.0, 20.0]))
        >>> loss(torch.randn(2, 2, 64, 64), torch.randint(0, 2, (2, 2, 64, 64)).float())
    """

    name = "ce"

    def __init__(
        self,
        mode: str,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        pos_weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, reduction)
        if pos_weight is not None and mode == "multiclass":
            raise ValueError("pos_weight applies to sigmoid outputs (mode='multilabel' or 'binary'); for softmax use class_weights")
        self._weight("class_weights", class_weights)
        self._weight("pos_weight", pos_weight)
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)

    def options(self) -> dict[str, Any]:
        return dict(mode=self.mode, class_weights=self.class_weights, pos_weight=self.pos_weight,
                    ignore_index=self.ignore_index, label_smoothing=self.label_smoothing, reduction=self.reduction)

    def fused_spec(self) -> tuple[str, dict[str, Any]]:
        return ("ce", self.options())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, **self.options())
