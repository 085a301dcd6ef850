"""The one pipeline every statistics-based loss call runs through, alone or as part of a sum.

    check logits -> [fused: one kernel call for all terms -> each term's head]
                 -> [reference: prepare the target once -> each term's reference code]

A :class:`Term` is a loss as the pipeline sees it: what statistics it needs from a fused kernel
(:meth:`Term.request`, a :class:`~seglab.kernels.plan.StatsRequest`, or None when its options have no fused
kernel), its head on the kernel's statistics (:meth:`Term.from_fused`) and its reference code on a prepared
target (:meth:`Term.reference`). Options reach the terms already checked (each loss checks its options in one
function, called by its module's constructor and by its plain function). The input checks here run whichever
path computes the loss; with validation on, the target is checked before any kernel runs, except the labels of an
index target on the fused path: the kernel bounds-checks them itself (whatever the validation setting) and raises
the same error, so the separate ``aminmax`` pass is not run twice.

Targets reach the terms in one canonical form (:func:`~seglab.targets.canonical_target`): MONAI MetaTensors
unwrapped, float ``(N, 1, *spatial)`` label maps as int64 class maps, and a spatial ``mask`` written into the target
as ignored pixels (the loss's ``ignore_index``, or :data:`~seglab.targets.MASKED` which then becomes the
``ignore_index`` of every term's options for this call). A term therefore needs nothing to support ``mask``
beyond honouring ignored pixels (``Target.valid`` on the reference path, ``StatsRequest.ignore_index`` on the
fused one); a term whose options have no ``ignore_index`` refuses a mask.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Sequence

import torch

from seglab import _checks
from seglab.kernels.dispatch import fused_stats
from seglab.kernels.plan import FusedStats, NotFusable, StatsRequest, merge
from seglab.targets import Target, canonical_target, compute_dtype, plain, prepare_target

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


def mask_options(terms: Sequence[tuple[Term, Options]], names: Sequence[str], ignore_index: int | None,
                 ) -> list[tuple[Term, Options]]:
    """The terms with ``ignore_index`` set to the value a mask wrote into the target (see the module docstring);
    a term without an ``ignore_index`` option cannot leave pixels out: TypeError naming it."""
    out = []
    for (term, o), name in zip(terms, names, strict=True):
        if "ignore_index" not in o:
            raise TypeError(f"mask is not supported by the loss {name!r}: it has no ignore_index (ignored pixels)")
        out.append((term, o if o["ignore_index"] == ignore_index else {**o, "ignore_index": ignore_index}))
    return out


def run_terms(terms: Sequence[tuple[Term, Options]], logits: torch.Tensor, target: torch.Tensor, *,
              validate: bool | None, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Compute the losses ``terms`` (sharing ``mode`` and ``ignore_index``) on one logits/target pair.

    ``mask`` (``(N, 1, *spatial)`` or ``(N, *spatial)``, bool or 0/1): pixels where it is False/0 contribute to
    no statistic of any term, exactly as ignored pixels.
    """
    mode = terms[0][1]["mode"]
    ignore_index = terms[0][1].get("ignore_index")
    v = _checks.resolve(validate)
    logits = plain(logits)
    _checks.check_logits(logits, mode, validate=v)
    c = logits.shape[1]
    for term, o in terms:
        for name in term.weight_options:
            w = o.get(name)
            if w is not None and w.ndim != 0:  # 0-dim (sigmoid focal alpha): one value for all channels
                _checks.check_weight_shape(w, name, c)
    target, ign = canonical_target(logits, target, mode, ignore_index=ignore_index, mask=mask, validate=v)
    if mask is not None:
        terms = mask_options(terms, [type(t).__name__ for t, _ in terms], ign)
        ignore_index = ign
    requests = [term.request(o) for term, o in terms]
    fusable = all(r is not None for r in requests)
    # an index target on the fused path is bounds-checked by the kernel (the same error); everything else is
    # checked here before any kernel runs
    tgt = prepare_target(logits, target, mode, ignore_index=ignore_index, validate=True) if (
        v and not (fusable and _is_index(target, mode))) else None
    if fusable:
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


def _is_index(target: Any, mode: str) -> bool:
    """A multiclass integer class map (the kernels bounds-check its labels themselves)."""
    return (mode == "multiclass" and isinstance(target, torch.Tensor) and not target.is_floating_point()
            and target.dtype != torch.bool)
