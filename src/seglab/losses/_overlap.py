"""Shared module plumbing for the statistics-based losses (Dice, Tversky, Jaccard, generalized Dice)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from seglab.losses._stats import check_process_group
from seglab.losses.base import Loss


class OverlapLoss(Loss):
    """A loss computed from per-class overlap statistics; subclasses set ``name``, ``fn`` and their extra options."""

    fn: Callable[..., torch.Tensor]

    def __init__(self, mode: str, *, include_background: bool, batch: bool, smooth: float, ignore_index: int | None,
                 soft_targets: str, process_group, reduction: str, class_weights=None) -> None:
        super().__init__(mode, reduction)
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        check_process_group(process_group, batch)
        if not include_background and mode == "binary":
            raise ValueError("include_background=False would drop the only channel of binary mode; keep it True")
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.smooth = float(smooth)
        self.ignore_index = ignore_index
        self.soft_targets = soft_targets
        self.process_group = process_group
        self._weight("class_weights", class_weights)

    def _extra(self) -> dict[str, Any]:
        return {}

    def options(self) -> dict[str, Any]:
        opts = dict(mode=self.mode, include_background=self.include_background, batch=self.batch, smooth=self.smooth,
                    ignore_index=self.ignore_index, soft_targets=self.soft_targets, process_group=self.process_group,
                    reduction=self.reduction)
        if self.uses_class_weights:
            opts["class_weights"] = self.class_weights
        opts.update(self._extra())
        return opts

    uses_class_weights = True

    def fused_spec(self) -> tuple[str, dict[str, Any]]:
        return (self.name, self.options())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return type(self).fn(logits, target, **self.options())
