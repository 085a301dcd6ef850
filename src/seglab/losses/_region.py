"""The pipeline shared by the statistics-based losses (Dice, Jaccard, Tversky, generalized Dice).

validate -> fused kernel if one applies -> per-class statistics -> all-reduce across processes (batch=True
with a process group) -> drop the background -> the loss's head (a function of the statistics).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from seglab.losses._stats import Stats, check_process_group, drop_background, overlap_stats, reduce_across
from seglab.losses.base import prologue, to_device

Head = Callable[[Stats, "torch.Tensor | None"], torch.Tensor]


def region_loss(name: str, params: dict[str, Any], logits: torch.Tensor, target: torch.Tensor, head: Head,
                *, validate: bool | None) -> torch.Tensor:
    """Run the loss ``name`` configured by ``params`` (the plain function's keyword arguments) through
    the shared pipeline; ``head(stats, class_weights)`` turns the statistics into the loss."""
    from seglab.kernels.dispatch import try_fused

    smooth = params.get("smooth", 0.0)
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    check_process_group(params["process_group"], params["batch"])
    cw = params.get("class_weights")
    x, tgt, _ = prologue(logits, target, params["mode"], ignore_index=params["ignore_index"],
                         reduction=params["reduction"], validate=validate, weights={"class_weights": cw})
    fused = try_fused([(name, params)], logits, target)
    if fused is not None:
        return fused[0]
    st = overlap_stats(x, tgt, params["mode"], squared=params.get("squared", False),
                       soft_targets=params["soft_targets"], batch=params["batch"])
    if params["process_group"] is not None:
        st = reduce_across(st, params["process_group"])
    st, w = drop_background(st, to_device(cw, x), params["include_background"], params["mode"])
    return head(st, w)
