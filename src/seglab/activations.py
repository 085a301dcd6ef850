"""Final activations and predictions, done right for each task mode.

* ``multiclass`` (single-label): softmax over the channel dim; prediction = argmax.
* ``multilabel`` / ``binary``: an independent sigmoid per channel; prediction = logit > logit(threshold),
  which needs no sigmoid at all.
"""

from __future__ import annotations

import math

import torch

from seglab._checks import check_mode


def activate(logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Probabilities from raw logits ``(N, C, *spatial)``: softmax over dim 1 for ``multiclass``, sigmoid otherwise.

    Example:
        >>> p = activate(torch.zeros(1, 3, 4, 4), "multiclass")   # every pixel: [1/3, 1/3, 1/3]
    """
    check_mode(mode)
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (N, C, *spatial), got {tuple(logits.shape)}")
    return torch.softmax(logits, dim=1) if mode == "multiclass" else torch.sigmoid(logits)


def predict(logits: torch.Tensor, mode: str, threshold: float = 0.5) -> torch.Tensor:
    """Hard prediction from logits.

    ``multiclass``: int64 class map ``(N, *spatial)`` (argmax over channels; ``threshold`` unused).
    ``multilabel`` / ``binary``: bool mask ``(N, C, *spatial)``, True where sigmoid(logit) > threshold,
    computed as ``logit > log(threshold / (1 - threshold))`` so no sigmoid is evaluated.
    """
    check_mode(mode)
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (N, C, *spatial), got {tuple(logits.shape)}")
    if mode == "multiclass":
        return logits.argmax(dim=1)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
    return logits > math.log(threshold / (1.0 - threshold))


def one_hot(target: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Float one-hot ``(N, C, *spatial)`` from an integer class map ``(N, *spatial)``.

    Pixels equal to ``ignore_index`` get an all-zero vector. Values outside ``[0, num_classes)`` (other than
    ``ignore_index``) raise ``ValueError``. The losses never call this: they work on the index map directly.
    """
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"one_hot expects an integer class map, got dtype {target.dtype}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    idx = target.masked_fill(~valid, 0)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_classes):
        bad = sorted(set(idx[(idx < 0) | (idx >= num_classes)].unique().tolist()))[:10]
        raise ValueError(f"class indices must lie in [0, {num_classes}), found {bad}")
    out = torch.zeros((target.shape[0], num_classes, *target.shape[1:]), dtype=torch.get_default_dtype(), device=target.device)
    out.scatter_(1, idx.unsqueeze(1), valid.unsqueeze(1).to(out.dtype))
    return out
