"""The statistics contract between the losses and the kernels: what is asked (:class:`StatsRequest`) and what
comes back (:class:`FusedStats`). Every backend computes exactly these quantities; the losses apply their heads.

For probabilities ``p`` (softmax over channels for ``multiclass``, sigmoid per channel otherwise), a target
``y`` and the kept pixels (``ignore_index`` removed), per sample ``n`` and channel ``c``:

* ``tp = sum p*y``, ``ps = sum p`` (``sum p^2`` when ``squared``), ``ys = sum y``, ``absdiff = sum |p - y|``
  (dense targets only; the semimetric Dice of soft labels needs it);
* ``ce_sum`` — the cross-entropy summed over kept pixels (multiclass: ``-w_t log p_t``, label smoothing included;
  sigmoid: BCE-with-logits with ``weight`` and ``pos_weight``) and ``ce_norm`` its ``"mean"`` denominator
  (``sum w_t`` for an index target, as ``F.cross_entropy``; the number of kept pixels/elements otherwise);
* ``focal_sum`` — ``sum -alpha_t (1 - p_t)^gamma log p_t``, and ``count`` — kept pixels (multiclass) or kept
  elements (sigmoid): the focal ``"mean"`` denominator.

This module imports nothing from :mod:`seglab.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Sequence

import torch


class NotFusable(Exception):
    """The requested combination has no fused kernel (the caller runs the reference code)."""


@dataclass(frozen=True)
class StatsRequest:
    """What one fused call must compute: the union of what its loss terms need.

    ``ce_weight``/``pos_weight``/``focal_alpha`` are ``(C,)`` tensors or None (= ones); for sigmoid focal,
    negatives are weighted by ``1 - alpha``.
    """

    mode: str
    ignore_index: int | None = None
    region: bool = False
    squared: bool = False
    ce: bool = False
    ce_weight: torch.Tensor | None = field(default=None, compare=False)
    pos_weight: torch.Tensor | None = field(default=None, compare=False)
    label_smoothing: float = 0.0
    focal: bool = False
    gamma: float = 2.0
    focal_alpha: torch.Tensor | None = field(default=None, compare=False)


def merge(requests: Sequence[StatsRequest]) -> StatsRequest:
    """One request for several terms sharing logits and target (e.g. Dice + CE); NotFusable on conflicts
    (two CE or two focal terms, Dice terms disagreeing on ``squared``, different modes or ignore_index)."""
    out = requests[0]
    if len(requests) == 2 and not (out.ce or out.focal) and not requests[1].region:  # the common region + pixel pair
        r = requests[1]
        if (r.mode, r.ignore_index) != (out.mode, out.ignore_index):
            raise NotFusable
        return StatsRequest(mode=out.mode, ignore_index=out.ignore_index, region=out.region, squared=out.squared,
                            ce=r.ce, ce_weight=r.ce_weight, pos_weight=r.pos_weight, label_smoothing=r.label_smoothing,
                            focal=r.focal, gamma=r.gamma, focal_alpha=r.focal_alpha)
    for r in requests[1:]:
        if (r.mode, r.ignore_index) != (out.mode, out.ignore_index):
            raise NotFusable
        if (r.ce and out.ce) or (r.focal and out.focal) or (r.region and out.region and r.squared != out.squared):
            raise NotFusable
        out = replace(out, region=out.region or r.region, squared=out.squared if out.region else r.squared)
        if r.ce:
            out = replace(out, ce=True, ce_weight=r.ce_weight, pos_weight=r.pos_weight, label_smoothing=r.label_smoothing)
        if r.focal:
            out = replace(out, focal=True, gamma=r.gamma, focal_alpha=r.focal_alpha)
    return out


@dataclass(frozen=True)
class KernelCall:
    """One call of the fused-statistics kernels, typed: what :func:`seglab.kernels.dispatch.fused_stats` decides from
    a :class:`StatsRequest` and what the op ``torch.ops.seglab.fused_stats`` computes. Its fields are the op's
    arguments in the op's order; :func:`seglab.kernels.ops.op_args` is the one place it becomes them.

    ``x`` logits ``(N, C, ...)``; ``target``: ``(N, S)`` int64 labels (``kind="mc"``) or a dense ``(N, C, S...)``
    target in the compute dtype (``"mcd"``, ``"ml"``); ``valid``: ``(N, S)`` kept pixels of a dense multiclass
    target (``"mcd"`` with ``ignore_index``), else None; ``weight``/``pos_weight``/``alpha``/``alpha_neg``: ``(C,)``
    float64 (ones when unused); ``backend``: ``"cpu"``, ``"triton"`` or ``"eager"``; ``ignore_index``: the label
    ignored in an index target (None for dense targets); ``label_smoothing``, ``focal`` and ``gamma`` (0 when not
    focal) as in :class:`StatsRequest`.
    """

    x: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor | None
    weight: torch.Tensor
    pos_weight: torch.Tensor
    alpha: torch.Tensor
    alpha_neg: torch.Tensor
    kind: str
    backend: str
    ignore_index: int | None
    squared: bool
    label_smoothing: float
    focal: bool
    gamma: float

    @property
    def stat_rows(self) -> int:
        """K of the ``(N, K, C)`` statistics: 3 for ``mc`` (tp, ps, ys), 4 otherwise (+ sum |p - y|)."""
        return 3 if self.kind == "mc" else 4


@dataclass
class FusedStats:
    """The statistics of one fused call, in the compute dtype of the logits (see the module docstring).

    ``kind``: ``"index"`` (multiclass, integer target), ``"dense"`` (multiclass, one-hot/soft target) or
    ``"sigmoid"`` (multilabel/binary). Per-(n, c) tensors are ``(N, C)``; the sums are 0-dim tensors.
    """

    kind: str
    tp: torch.Tensor
    ps: torch.Tensor
    ys: torch.Tensor
    absdiff: torch.Tensor | None
    ce_sum: torch.Tensor
    ce_norm: torch.Tensor
    focal_sum: torch.Tensor
    count: torch.Tensor
