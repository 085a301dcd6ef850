"""The one pipeline every statistics-based loss call runs through, alone or as part of a sum.

    check logits -> [fused: one kernel call for all terms -> each term's head]
                 -> [reference: prepare the target once -> each term's reference code]

A :class:`Term` is a loss as the pipeline sees it: what statistics it needs from a fused kernel
(:meth:`Term.request`, a :class:`~seglab.kernels.plan.StatsRequest`, or None when its options have no fused
kernel), its head on the kernel's statistics (:meth:`Term.from_fused`) and its reference code on a prepared
target (:meth:`Term.reference`). Options reach the terms already checked (each loss checks its options in one
function, called by its module's constructor and by its plain function). The input checks here run whichever
path computes the loss; with validation on, the target is checked before any kernel runs.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from seglab import _checks
from seglab.kernels.dispatch import fused_stats
from seglab.kernels.plan import FusedStats, NotFusable, StatsRequest, merge
from seglab.targets import Target, compute_dtype, prepare_target

Options = dict[str, Any]


class Term:
    """One loss's part in the pipeline; subclasses implement :meth:`reference` and, if fusable, the other two."""

    weight_options: tuple[str, ...] = ()  # per-channel (C,) options whose length must equal C

    def request(self, o: Options) -> StatsRequest | None:
        return None

    def from_fused(self, fs: FusedStats, o: Options) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        raise NotImplementedError


def run_terms(terms: Sequence[tuple[Term, Options]], logits: torch.Tensor, target: torch.Tensor, *,
              validate: bool | None) -> list[torch.Tensor]:
    """Compute the losses ``terms`` (sharing ``mode`` and ``ignore_index``) on one logits/target pair."""
    mode = terms[0][1]["mode"]
    ignore_index = terms[0][1].get("ignore_index")
    v = _checks.resolve(validate)
    _checks.check_logits(logits, mode, validate=v)
    c = logits.shape[1]
    for term, o in terms:
        for name in term.weight_options:
            w = o.get(name)
            if w is not None and w.ndim != 0:  # 0-dim (sigmoid focal alpha): one value for all channels
                _checks.check_weight_shape(w, name, c)
    tgt = prepare_target(logits, target, mode, ignore_index=ignore_index, validate=True) if v else None
    requests = [term.request(o) for term, o in terms]
    if all(r is not None for r in requests):
        try:
            req = merge(requests)  # type: ignore[arg-type]
        except NotFusable:
            req = None
        fs = None if req is None else fused_stats(req, logits, target)
        if fs is not None:
            return [term.from_fused(fs, o) for term, o in terms]
    if tgt is None:
        tgt = prepare_target(logits, target, mode, ignore_index=ignore_index, validate=False)
    x = logits.to(compute_dtype(logits.dtype))
    return [term.reference(x, tgt, o) for term, o in terms]
