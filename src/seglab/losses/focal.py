"""Focal loss (Lin et al. 2017): cross-entropy down-weighted on well-classified pixels."""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from seglab.losses._reduce import reduce_pixels
from seglab.losses.base import Loss, prologue, to_device
from seglab.losses.ce import channel_view


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    gamma: float = 2.0,
    alpha: torch.Tensor | float | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """Focal loss from logits, in log space.

    * ``multiclass``: ``l = -sum_c alpha_c * y_c * (1 - p_c)^gamma * log p_c`` with ``p = softmax(x)``; for an
      index target this is ``-alpha_t (1 - p_t)^gamma log p_t`` (a gather, no one-hot). ``alpha``: per-class
      weights ``(C,)`` (or None = 1).
    * ``multilabel`` / ``binary``: per element (torchvision's ``sigmoid_focal_loss``):
      ``l = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t = p y + (1 - p)(1 - y)`` and
      ``alpha_t = alpha_c y + (1 - alpha_c)(1 - y)``; ``alpha`` a scalar or per-channel ``(C,)`` in [0, 1].
    ``"mean"`` averages over kept pixels/elements (alpha does not renormalise). ``gamma = 0`` and no alpha
    give cross-entropy.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    from seglab.kernels.dispatch import try_fused

    alpha_t = None
    if alpha is not None:
        alpha_t = torch.as_tensor(alpha, dtype=logits.dtype if logits.is_floating_point() else None)
    params = dict(mode=mode, gamma=gamma, alpha=alpha_t, ignore_index=ignore_index, reduction=reduction)
    x, tgt, v = prologue(logits, target, mode, ignore_index=ignore_index, reduction=reduction, validate=validate)
    if alpha_t is not None:
        if alpha_t.ndim == 0:
            if mode == "multiclass":
                raise ValueError("multiclass focal alpha must be per-class weights of shape (C,), got a scalar")
            alpha_t = alpha_t.expand(x.shape[1])
        if alpha_t.ndim != 1 or alpha_t.shape[0] != x.shape[1]:
            raise ValueError(f"alpha must be a scalar or have shape (C,) = ({x.shape[1]},), got shape {tuple(alpha_t.shape)}")
        if mode != "multiclass" and bool(((alpha_t < 0) | (alpha_t > 1)).any()):
            raise ValueError(f"sigmoid focal alpha must lie in [0, 1], got {alpha_t.tolist()}")
        params["alpha"] = alpha_t
    fused = try_fused([("focal", params)], logits, target)
    if fused is not None:
        return fused[0]
    a = to_device(alpha_t, x)
    if mode == "multiclass":
        logp = F.log_softmax(x, dim=1)
        if tgt.is_index:
            logp_t = logp.gather(1, tgt.index.unsqueeze(1)).squeeze(1)
            loss = -((-torch.expm1(logp_t)).clamp_min(0) ** gamma) * logp_t
            if a is not None:
                loss = loss * a[tgt.index]
        else:
            mod = (-torch.expm1(logp)).clamp_min(0) ** gamma
            term = tgt.dense * mod * logp
            if a is not None:
                term = term * channel_view(a, x.ndim)
            loss = -term.sum(dim=1)
    else:
        y = tgt.dense
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        # 1 - p_t = p (1 - y) + (1 - p) y, computed from logits
        p = torch.sigmoid(x)
        one_minus_pt = p + y - 2 * p * y
        loss = ce * one_minus_pt.clamp_min(0) ** gamma
        if a is not None:
            av = channel_view(a, x.ndim)
            loss = loss * (av * y + (1 - av) * (1 - y))
    if tgt.valid is not None:
        loss = loss * tgt.valid
    return reduce_pixels(loss, reduction, tgt.valid)


class FocalLoss(Loss):
    """Focal loss (Lin et al. 2017) for ``multiclass`` (softmax) or ``multilabel``/``binary`` (sigmoid).

    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` per pixel (see :func:`focal_loss`). Shapes as
    :class:`~seglab.CrossEntropyLoss`. ``alpha``: per-class weights ``(C,)``; for sigmoid modes also a scalar
    (weight of positives, negatives get ``1 - alpha``).

    Example:
        >>> FocalLoss("multiclass", gamma=2.0)(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "focal"

    def __init__(
        self,
        mode: str,
        gamma: float = 2.0,
        alpha: Sequence[float] | torch.Tensor | float | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, reduction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.get_default_dtype()).clone())
        self.ignore_index = ignore_index

    def options(self) -> dict[str, Any]:
        return dict(mode=self.mode, gamma=self.gamma, alpha=self.alpha, ignore_index=self.ignore_index, reduction=self.reduction)

    def fused_spec(self) -> tuple[str, dict[str, Any]]:
        return ("focal", self.options())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, **self.options())
