"""What the structure-aware losses (boundary, hausdorff, cldice, skeleton_recall, mcc) share: probabilities,
a dense view of the target, the check of a precomputed target map, and their place in the pipeline.

They run through :func:`~seglab.losses._pipeline.run_terms` like every loss (one input check, one prepared
target) but have no fused kernel: their :class:`StructureTerm` only has reference code. A map computed in the
``DataLoader`` (:mod:`seglab.transforms`) reaches the term in its per-call options (``o["distance_map"]``,
``o["skeleton"]``); without one the term computes it from the target.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, Term
from seglab.targets import Target


def probabilities(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Softmax over the channels (multiclass) or a sigmoid per channel (binary / multilabel)."""
    return torch.softmax(x, dim=1) if mode == "multiclass" else torch.sigmoid(x)


def dense_target(tgt: Target, like: torch.Tensor) -> torch.Tensor:
    """The target as a float ``(N, C, *spatial)`` tensor (index maps one-hot, by scatter: traceable)."""
    if tgt.is_index:
        return torch.zeros_like(like).scatter_(1, tgt.labels.unsqueeze(1), 1.0)
    return tgt.y


def check_include_background(mode: str, include_background: Any) -> bool:
    value = _checks.check_bool("include_background", include_background)
    if not value and mode == "binary":
        raise ValueError("include_background=False would drop the only channel of binary mode; keep it True")
    return value


def no_ignored_pixels(tgt: Target, loss: str) -> None:
    if tgt.valid is not None:
        raise ValueError(f"the {loss} loss does not support ignored pixels (its maps are defined on whole images)")


def check_spatial(x: torch.Tensor, loss: str, dims: tuple[int, ...]) -> None:
    d = x.ndim - 2
    if d not in dims:
        allowed = " or ".join(str(v) for v in dims)
        raise ValueError(f"the {loss} loss needs {allowed} spatial dims, got logits of shape {tuple(x.shape)} ({d})")


def check_map(name: str, value: Any, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
    """A precomputed per-pixel map given to a loss call: None, or a tensor of ``shape`` on ``like``'s device."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (that of the logits' (N, C, *spatial)), "
                         f"got {tuple(value.shape)}")
    if value.device != like.device:
        raise ValueError(f"{name} is on {value.device} but logits are on {like.device}; move them to the same device")
    return value


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """``"none"``: as is; ``"sum"``; ``"mean"`` (0, not NaN, for an empty batch)."""
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.numel() == 0:
        return loss.sum()
    return loss.mean()


class StructureTerm(Term):
    """A structure loss in the pipeline: reference code only (``compute(x, target, options)``)."""

    def __init__(self, compute: Callable[[torch.Tensor, Target, Options], torch.Tensor]) -> None:
        self.compute = compute

    def request(self, o: Options) -> None:
        return None

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        return self.compute(x, tgt, o)


def forward_with_target_map(loss: Any, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                            **target_map: torch.Tensor | None) -> torch.Tensor:
    """The ``forward`` of a structure loss that takes one optional precomputed target map (``distance_map=`` or
    ``skeleton=``): a mask goes to :meth:`Loss.forward`, which refuses it naming the loss (no ignored pixels);
    without a map :meth:`Loss.forward` computes it on the fly; with one the loss's function takes it."""
    from seglab.losses.base import Loss

    ((_, value),) = target_map.items()
    if mask is not None:
        return Loss.forward(loss, logits, target, mask=mask)
    if value is None:
        return Loss.forward(loss, logits, target)
    return type(loss).fn(logits, target, **loss.options(), **target_map)
