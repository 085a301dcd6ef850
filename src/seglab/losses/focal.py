"""Focal loss (Lin et al. 2017): cross-entropy down-weighted on well-classified pixels."""

from __future__ import annotations

import numbers
from typing import Any
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from seglab import _checks
from seglab.kernels.plan import FusedStats, StatsRequest
from seglab.losses._pipeline import Options, Term, run_terms
from seglab.losses._reduce import reduce_pixels
from seglab.losses.base import LOSSES, Loss, to_device
from seglab.losses.ce import channel_view
from seglab.targets import Target


def check_focal_options(*, mode: str, gamma: Any = 2.0, alpha: Any = None, ignore_index: Any = None,
                        reduction: Any = "mean", copy: bool = False) -> Options:
    """Focal's options, checked (called by :class:`FocalLoss` and :func:`focal_loss`).

    ``alpha``: None, per-class weights ``(C,)`` (finite, >= 0; sigmoid modes: in [0, 1]) or, sigmoid modes only,
    one number in [0, 1] (the weight of positives; negatives get ``1 - alpha``).
    """
    mode = _checks.check_mode(mode)
    a = None
    if alpha is not None:
        if isinstance(alpha, numbers.Real) or (isinstance(alpha, torch.Tensor) and alpha.ndim == 0):
            if mode == "multiclass":
                raise ValueError("multiclass focal alpha must be per-class weights of shape (C,), got a scalar")
            a = torch.tensor(_checks.check_number("alpha", float(alpha), low=0.0, high=1.0))
        else:
            a = _checks.as_weight(alpha, "alpha", copy=copy)
            if mode != "multiclass" and a is not None and not torch.compiler.is_compiling() and bool((a > 1).any()):
                raise ValueError(f"sigmoid focal alpha must lie in [0, 1], got {a.tolist()}")
    return dict(mode=mode, gamma=_checks.check_number("gamma", gamma, low=0.0), alpha=a,
                ignore_index=_checks.check_ignore_index(ignore_index), reduction=_checks.check_reduction(reduction))


def focal_modulation(q: torch.Tensor, gamma: float) -> torch.Tensor:
    """``q ** gamma`` for ``q = 1 - p_t`` in [0, 1], with a finite gradient at ``q = 0`` for ``0 < gamma < 1``.

    ``d q^gamma / dq = gamma q^(gamma-1)`` is infinite at 0, and autograd multiplies it by ``dq = 0`` (NaN). The
    focal loss ``q^gamma * (-log p_t)`` behaves as ``q^(1+gamma)`` near ``q = 0``, so its gradient there is 0:
    where ``q == 0`` the modulation is the constant 0.
    """
    q = q.clamp_min(0)
    if gamma == 0:
        return torch.ones_like(q)
    pos = q > 0
    return torch.where(pos, torch.where(pos, q, torch.ones_like(q)) ** gamma, torch.zeros_like(q))


class _FocalTerm(Term):
    weight_options = ("alpha",)

    def request(self, o: Options) -> StatsRequest | None:
        if o["reduction"] == "none":
            return None
        return StatsRequest(mode=o["mode"], ignore_index=o["ignore_index"], focal=True, gamma=o["gamma"],
                            focal_alpha=o["alpha"])

    def from_fused(self, fs: FusedStats, o: Options) -> torch.Tensor:
        if o["reduction"] == "sum":
            return fs.focal_sum
        return fs.focal_sum / fs.count.clamp_min(torch.finfo(fs.focal_sum.dtype).tiny)

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        mode, gamma = o["mode"], o["gamma"]
        a = to_device(o["alpha"], x)
        c = x.shape[1]
        if a is not None and a.ndim == 0:
            a = a.expand(c)
        if mode == "multiclass":
            logp = F.log_softmax(x, dim=1)
            if tgt.is_index:
                logp_t = logp.gather(1, tgt.labels.unsqueeze(1)).squeeze(1)
                loss = -focal_modulation(-torch.expm1(logp_t), gamma) * logp_t
                if a is not None:
                    loss = loss * a[tgt.labels]
            else:
                term = tgt.y * focal_modulation(-torch.expm1(logp), gamma) * logp
                if a is not None:
                    term = term * channel_view(a, x.ndim)
                loss = -term.sum(dim=1)
        else:
            y = tgt.y
            ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
            # 1 - p_t = p (1 - y) + (1 - p) y, computed from logits
            p = torch.sigmoid(x)
            loss = ce * focal_modulation(p + y - 2 * p * y, gamma)
            if a is not None:
                av = channel_view(a, x.ndim)
                loss = loss * (av * y + (1 - av) * (1 - y))
        if tgt.valid is not None:
            loss = loss * tgt.valid
        return reduce_pixels(loss, o["reduction"], tgt.valid)


FOCAL = _FocalTerm()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    gamma: float = 2.0,
    alpha: torch.Tensor | Sequence[float] | float | None = None,
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss from logits, in log space.

    * ``multiclass``: ``l = -sum_c alpha_c * y_c * (1 - p_c)^gamma * log p_c`` with ``p = softmax(x)``; for an
      index target this is ``-alpha_t (1 - p_t)^gamma log p_t`` (a gather, no one-hot). ``alpha``: per-class
      weights ``(C,)`` (or None = 1).
    * ``multilabel`` / ``binary``: per element (torchvision's ``sigmoid_focal_loss``):
      ``l = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t = p y + (1 - p)(1 - y)`` and
      ``alpha_t = alpha_c y + (1 - alpha_c)(1 - y)``; ``alpha`` a scalar or per-channel ``(C,)`` in [0, 1].
    ``"mean"`` averages over kept pixels/elements (alpha does not renormalise). ``gamma = 0`` and no alpha
    give cross-entropy. Gradients are finite for every ``gamma >= 0``, also at ``p_t = 1``.

    Example:
        >>> float(focal_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), mode="binary", gamma=0.0))  # log 2
        0.6931471824645996
    """
    o = check_focal_options(mode=mode, gamma=gamma, alpha=alpha, ignore_index=ignore_index, reduction=reduction)
    return run_terms([(FOCAL, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("focal")
class FocalLoss(Loss):
    """Focal loss (Lin et al. 2017) for ``multiclass`` (softmax) or ``multilabel``/``binary`` (sigmoid).

    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` per pixel (see :func:`focal_loss`). Shapes as
    :class:`~seglab.CrossEntropyLoss`. ``alpha``: per-class weights ``(C,)``; for sigmoid modes also a scalar
    (weight of positives, negatives get ``1 - alpha``).

    Example:
        >>> FocalLoss("multiclass", gamma=2.0)(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "focal"
    description = "focal loss (Lin 2017), gamma=2"
    term = FOCAL
    fn = staticmethod(focal_loss)

    def __init__(
        self,
        mode: str,
        gamma: float = 2.0,
        alpha: Sequence[float] | torch.Tensor | float | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, reduction)
        self._configure(check_focal_options(mode=mode, gamma=gamma, alpha=alpha, ignore_index=ignore_index,
                                            reduction=reduction, copy=True))
