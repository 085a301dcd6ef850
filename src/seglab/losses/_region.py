"""What the statistics-based losses (Dice, Jaccard, Tversky, generalized Dice) share: their option checks and
their path through the pipeline.

per-sample statistics (fused kernel or :func:`~seglab.losses._stats.overlap_stats`) -> sum over the batch
(``batch=True``) -> all-reduce across processes (with a ``process_group``) -> drop the background -> the loss's
head (a function of the statistics, written once in the loss's own file).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import torch

from seglab import _checks
from seglab.kernels.plan import FusedStats, StatsRequest
from seglab.losses._pipeline import Options, Term
from seglab.losses._stats import (
    SOFT_TARGETS,
    Stats,
    check_process_group,
    drop_background,
    overlap_stats,
    reduce_across,
    stats_from_fused,
)
from seglab.targets import Target

Head = Callable[[Stats, "torch.Tensor | None", Options], torch.Tensor]


def check_region_options(*, mode: str, include_background: Any, batch: Any, smooth: Any, ignore_index: Any,
                         soft_targets: Any, process_group: Any, reduction: Any, class_weights: Any = None,
                         uses_class_weights: bool = True, copy: bool = False) -> Options:
    """The checked options shared by the region losses (one place; constructors and functions call it)."""
    mode = _checks.check_mode(mode)
    o: Options = dict(
        mode=mode,
        include_background=_checks.check_bool("include_background", include_background),
        batch=_checks.check_bool("batch", batch),
        smooth=_checks.check_number("smooth", smooth, low=0.0),
        ignore_index=_checks.check_ignore_index(ignore_index),
        soft_targets=_checks.check_choice("soft_targets", soft_targets, SOFT_TARGETS),
        process_group=process_group,
        reduction=_checks.check_reduction(reduction),
    )
    check_process_group(process_group, o["batch"])
    if not o["include_background"] and mode == "binary":
        raise ValueError("include_background=False would drop the only channel of binary mode; keep it True")
    if uses_class_weights:
        w = _checks.as_weight(class_weights, "class_weights", copy=copy)
        if w is not None and not torch.compiler.is_compiling():
            used = w if o["include_background"] else w[1:]
            if used.numel() and float(used.sum()) <= 0:
                raise ValueError(f"class_weights must not all be zero on the classes used, got {w.tolist()}")
        o["class_weights"] = w
    return o


class RegionTerm(Term):
    """A region loss in the pipeline; ``head(stats, class_weights, options)`` is its formula."""

    weight_options = ("class_weights",)

    def __init__(self, head: Head) -> None:
        self.head = head

    def request(self, o: Options) -> StatsRequest | None:
        return StatsRequest(mode=o["mode"], ignore_index=o["ignore_index"], region=True,
                            squared=bool(o.get("squared", False)))

    def from_fused(self, fs: FusedStats, o: Options) -> torch.Tensor:
        st = stats_from_fused(fs, squared=bool(o.get("squared", False)), soft_targets=o["soft_targets"])
        return self.finish(st, o)

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        st = overlap_stats(x, tgt, o["mode"], squared=bool(o.get("squared", False)), soft_targets=o["soft_targets"])
        return self.finish(st, o)

    def finish(self, st: Stats, o: Options) -> torch.Tensor:
        if o["batch"]:
            st = Stats(st.tp.sum(0), st.ps.sum(0), st.ys.sum(0))
        if o["process_group"] is not None:
            st = reduce_across(st, o["process_group"])
        cw = o.get("class_weights")
        cw = None if cw is None else cw.to(device=st.tp.device, dtype=st.tp.dtype)
        st, w = drop_background(st, cw, o["include_background"])
        return self.head(st, w, o)
