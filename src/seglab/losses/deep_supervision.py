"""Deep supervision: one loss over the outputs of a deeply supervised network (nnU-Net, MONAI DynUNet).

A deeply supervised network returns one logits tensor per decoder level, highest resolution first. The loss is

    L = sum_k w_k * loss(logits_k, target_k)

where ``target_k`` is either given (a list, as nnU-Net's data loader provides) or the full-resolution target
downsampled to the spatial size of ``logits_k`` with nearest-neighbour interpolation (``"nearest-exact"``, as
MONAI's ``DeepSupervisionLoss``; labels are never averaged). Default weights are nnU-Net's: ``w_k = 1 / 2^k``,
the lowest resolution weighted 0, then normalised to sum 1 (one output: weight 1).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab import _checks
from seglab.targets import plain


def nnunet_weights(levels: int) -> list[float]:
    """nnU-Net's deep-supervision weights for ``levels`` outputs: ``1/2^k``, the last (lowest resolution) 0,
    normalised to sum 1. One output gets weight 1.

    Example:
        >>> nnunet_weights(4)  # [1, 0.5, 0.25, 0] / 1.75
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285, 0.0]
    """
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    if levels == 1:
        return [1.0]
    w = [1.0 / 2**k for k in range(levels)]
    w[-1] = 0.0
    total = sum(w)
    return [v / total for v in w]


def downsample_target(target: torch.Tensor, size: Sequence[int], logits_ndim: int) -> torch.Tensor:
    """``target`` resized to the spatial ``size`` by nearest-neighbour interpolation (``"nearest-exact"``).

    ``target``: ``(N, C', *spatial)`` (``logits_ndim`` dims: label map ``(N, 1, ...)``, one-hot/soft, multi-hot) or
    ``(N, *spatial)`` (class indices, binary). Dtype kept: integer and bool targets are interpolated through a float
    copy (float64 for 32/64-bit integers, exact), so every output value is one of the input values. A tensor
    already at ``size`` is returned as is.
    """
    size = tuple(int(s) for s in size)
    spatial_dims = logits_ndim - 2
    lead = target.ndim - spatial_dims
    if lead not in (1, 2):
        raise ValueError(f"target must have shape (N, C, *spatial) or (N, *spatial) with {spatial_dims} spatial dims, "
                         f"got {tuple(target.shape)}")
    if tuple(target.shape[lead:]) == size:
        return target
    t = target.unsqueeze(1) if lead == 1 else target
    work = t if t.is_floating_point() else t.to(torch.float64 if t.dtype in (torch.int32, torch.int64) else torch.float32)
    out = F.interpolate(work, size=size, mode="nearest-exact")
    out = out if out.dtype == t.dtype else out.to(t.dtype)
    return out.squeeze(1) if lead == 1 else out


def _check_weights(weights: Any) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().flatten().tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) == 0:
        raise TypeError(f"weights must be None or a non-empty sequence of numbers (one per output), got {weights!r}")
    w = tuple(_checks.check_number(f"weights[{k}]", v, low=0.0) for k, v in enumerate(weights))
    if sum(w) <= 0:
        raise ValueError(f"weights must not all be zero, got {list(w)}")
    return w


class DeepSupervisionLoss(nn.Module):
    """A loss applied to every output of a deeply supervised network, weighted and summed.

    ``L = sum_k w_k * loss(logits[k], target_k)``; levels with ``w_k = 0`` are not computed (as nnU-Net).

    Args:
        loss: the loss of one output, e.g. ``seglab.get_loss("dice+ce", mode="multiclass")`` (any module or
            callable ``(logits, target) -> tensor``; with ``mask=`` it must accept ``mask`` as seglab losses do).
        weights: one non-negative weight per output, highest resolution first, used as given (not normalised).
            None (default): nnU-Net's, :func:`nnunet_weights` — ``1/2^k``, lowest resolution 0, normalised to 1.

    Call ``loss(logits, target, mask=None)``:

    * ``logits``: a list/tuple of ``(N, C, *spatial_k)`` tensors, highest resolution first (spatial sizes must not
      grow), all with the same ``N`` and ``C``; a single tensor is one level.
    * ``target``: one full-resolution target (the shape ``loss`` takes for ``logits[0]``), downsampled to each
      level by :func:`downsample_target` (nearest, as MONAI's ``DeepSupervisionLoss``), or a list/tuple with one
      target per level (as nnU-Net's loader gives).
    * ``mask`` (optional): one full-resolution spatial mask (downsampled the same way) or one per level.

    Returns the weighted sum (the inner loss's ``reduction`` decides its shape; with ``"none"`` every level must
    give the same shape, e.g. a per-sample composite). ``last_levels`` holds each level's (detached, unweighted)
    value after a call, None for skipped levels.

    Under DDP a zero weight leaves the parameters that only feed that output without a gradient, which DDP refuses
    unless ``find_unused_parameters=True``; nnU-Net gives the lowest output a weight of 1e-6 there instead
    (``examples/nnunet_trainer.py`` does the same).

    Example:
        >>> ds = DeepSupervisionLoss(seglab.get_loss("dice+ce", mode="multiclass"))
        >>> outs = [torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)]
        >>> ds(outs, torch.randint(0, 3, (2, 1, 32, 32)))  # weights 0.667, 0.333, 0
    """

    def __init__(self, loss: nn.Module | Callable[..., torch.Tensor], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss must be a loss module or callable (logits, target) -> tensor, got {type(loss).__name__}")
        self.loss = loss
        self.weights = _check_weights(weights)
        self.last_levels: list[torch.Tensor | None] = []

    def level_weights(self, levels: int) -> list[float]:
        """The weights used for ``levels`` outputs (the given ones, checked against ``levels``, or nnU-Net's)."""
        if self.weights is None:
            return nnunet_weights(levels)
        if len(self.weights) != levels:
            raise ValueError(f"weights has {len(self.weights)} entries but the network gave {levels} outputs; "
                             "give one weight per output, highest resolution first")
        return list(self.weights)

    def forward(self, logits: Any, target: Any, mask: Any = None) -> torch.Tensor:
        outs = [logits] if isinstance(logits, torch.Tensor) else logits
        if not isinstance(outs, (list, tuple)) or not outs:
            raise TypeError(f"logits must be a non-empty list/tuple of tensors (one per output, highest resolution "
                            f"first) or one tensor, got {type(logits).__name__}")
        outs = [plain(o) for o in outs]
        for k, o in enumerate(outs):
            if not isinstance(o, torch.Tensor) or o.ndim < 2:
                raise TypeError(f"logits[{k}] must be a (N, C, *spatial) tensor, got "
                                f"{type(o).__name__ if not isinstance(o, torch.Tensor) else tuple(o.shape)}")
        first = outs[0]
        for k, o in enumerate(outs[1:], 1):
            if o.ndim != first.ndim or o.shape[:2] != first.shape[:2]:
                raise ValueError(f"logits[{k}] has shape {tuple(o.shape)} but logits[0] has {tuple(first.shape)}: "
                                 "every output needs the same N, C and number of spatial dims")
            prev = outs[k - 1]
            if any(a > b for a, b in zip(o.shape[2:], prev.shape[2:], strict=True)):
                raise ValueError(f"logits must come highest resolution first: logits[{k}] {tuple(o.shape)} is larger "
                                 f"than logits[{k - 1}] {tuple(prev.shape)}")
        weights = self.level_weights(len(outs))
        targets = self._per_level("target", target, outs)
        masks = None if mask is None else self._per_level("mask", mask, outs)
        total: torch.Tensor | None = None
        levels: list[torch.Tensor | None] = []
        for k, (w, o) in enumerate(zip(weights, outs, strict=True)):
            if w == 0.0:
                levels.append(None)
                continue
            try:
                v = self.loss(o, targets[k]) if masks is None else self.loss(o, targets[k], mask=masks[k])
            except (ValueError, TypeError) as e:
                if type(e) not in (ValueError, TypeError):
                    raise
                raise type(e)(f"deep supervision level {k} (logits {tuple(o.shape)}): {e}") from e
            levels.append(v.detach())
            wv = v if w == 1.0 else w * v
            if total is not None and wv.shape != total.shape:
                raise ValueError(f"level {k} gives a loss of shape {tuple(wv.shape)} but earlier levels "
                                 f"{tuple(total.shape)}; with reduction='none' use a loss whose unreduced shape does "
                                 "not depend on the resolution (e.g. a per-sample composite, or region losses)")
            total = wv if total is None else total + wv
        self.last_levels = levels
        assert total is not None  # weights are not all zero (checked)
        return total

    @staticmethod
    def _per_level(what: str, value: Any, outs: list[torch.Tensor]) -> list[Any]:
        if isinstance(value, (list, tuple)):
            if len(value) != len(outs):
                raise ValueError(f"{what} is a list of {len(value)} but there are {len(outs)} outputs; give one "
                                 f"{what} per output (highest resolution first) or one full-resolution {what}")
            return [plain(v) for v in value]
        value = plain(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what} must be a tensor or a list of tensors (one per output), got {type(value).__name__}")
        out = [value]
        for o in outs[1:]:
            if value.ndim not in (o.ndim - 1, o.ndim):
                out.append(value)  # the loss words the shape error
            else:
                out.append(downsample_target(value, o.shape[2:], o.ndim))
        return out

    def extra_repr(self) -> str:
        return "weights=nnU-Net (1/2^k, lowest 0, normalised)" if self.weights is None else f"weights={list(self.weights)}"
