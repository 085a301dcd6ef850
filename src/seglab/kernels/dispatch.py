"""Entry point from the losses into the fused kernels.

``try_fused(parts, logits, target)`` receives the resolved configuration of one or more loss terms that
share the same logits/target (e.g. Dice + CE), as ``[(name, params), ...]`` with ``name`` one of
``"ce", "focal", "dice", "gdice", "tversky", "jaccard"`` and ``params`` the term's keyword arguments
(``mode``, ``reduction``, weights, ...). It returns one loss tensor per part, in order, computed by a
fused kernel, or ``None`` when no fused kernel applies; the caller then runs the reference code.
"""

from __future__ import annotations

from typing import Any

import torch


def try_fused(parts: list[tuple[str, dict[str, Any]]], logits: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor] | None:
    return None
