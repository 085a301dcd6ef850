"""Reductions shared by the pixel-wise losses (CE, focal)."""

from __future__ import annotations

import torch


def reduce_pixels(loss: torch.Tensor, reduction: str, valid: torch.Tensor | None, denom: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce an element-wise loss. Ignored elements (``valid`` False) are zero in ``loss`` and not counted.

    ``denom`` overrides the count used by ``"mean"`` (e.g. the sum of class weights, as in torch's CE).
    An all-ignored batch gives a mean of 0 (not NaN), with a gradient of 0.
    """
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if denom is None:
        denom = loss.new_tensor(float(loss.numel())) if valid is None else valid.sum().to(loss.dtype) * (loss.numel() // valid.numel())
    return total / denom.clamp_min(torch.finfo(loss.dtype).tiny)
