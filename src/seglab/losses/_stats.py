"""Per-class overlap statistics shared by the Dice family (Dice, Jaccard, Tversky, generalized Dice).

For probabilities ``p`` (softmax or sigmoid of the logits) and target ``y`` over the kept pixels:

* ``tp = sum p*y`` — for an index target this is a ``gather`` of ``p`` at the target class followed by a
  ``scatter_add`` into ``(N, C)``: no one-hot tensor is built.
* ``ps = sum p`` (``sum p^2`` if squared), ``ys = sum y`` (``sum y^2`` if squared).
* Soft (float) targets with ``soft_targets="semimetric"`` (Wang & Blaschko 2023): ``tp = (ps + ys - sum|p - y|) / 2``.
  On hard labels this equals ``sum p*y``; on soft labels it makes the loss 0 exactly when ``p == y``, which
  the product form does not (``2 sum p*y < sum p + sum y`` for any ``0 < p = y < 1``).

Sums run over the spatial dims per sample, giving ``(N, C)``, or additionally over the batch (``batch=True``),
giving ``(C,)``; with a ``process_group`` the batch sums are all-reduced across processes (see
:func:`reduce_across`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from seglab.kernels.plan import FusedStats
from seglab.targets import Target

SOFT_TARGETS = ("semimetric", "product")


@dataclass
class Stats:
    tp: torch.Tensor
    ps: torch.Tensor
    ys: torch.Tensor

    @property
    def fp(self) -> torch.Tensor:
        return self.ps - self.tp

    @property
    def fn(self) -> torch.Tensor:
        return self.ys - self.tp


def overlap_stats(
    x: torch.Tensor,
    tgt: Target,
    mode: str,
    *,
    squared: bool = False,
    soft_targets: str = "semimetric",
    batch: bool = False,
) -> Stats:
    """Per-class statistics from logits ``x`` ``(N, C, *spatial)`` (compute dtype) and a prepared target."""
    p = torch.softmax(x, dim=1) if mode == "multiclass" else torch.sigmoid(x)
    return overlap_stats_from_probs(p, tgt, squared=squared, soft_targets=soft_targets, batch=batch)


def overlap_stats_from_probs(p: torch.Tensor, tgt: Target, *, squared: bool = False, soft_targets: str = "semimetric",
                             batch: bool = False) -> Stats:
    """:func:`overlap_stats` from probabilities ``p`` already computed (one softmax shared by several losses)."""
    x = p
    n, c = x.shape[:2]
    S = math.prod(x.shape[2:])  # explicit: reshape(n, c, -1) fails for an empty batch
    if tgt.valid is not None:
        vmask = tgt.valid.unsqueeze(1) if tgt.valid.ndim == x.ndim - 1 else tgt.valid
        p = p * vmask
    pf = p.reshape(n, c, S)
    ps = (pf * pf).sum(-1) if squared else pf.sum(-1)
    if tgt.is_index:
        idx = tgt.labels.reshape(n, 1, S)
        p_t = pf.gather(1, idx).squeeze(1)  # probability of the target class, (N, P)
        flat = idx.squeeze(1)
        zeros = pf.new_zeros(n, c)
        tp = zeros.scatter_add(1, flat, p_t)
        ones = pf.new_ones(()).expand_as(p_t) if tgt.valid is None else tgt.valid.reshape(n, S).to(pf.dtype)
        ys = zeros.scatter_add(1, flat, ones)
    else:
        yf = tgt.y.reshape(n, c, S)
        ys = (yf * yf).sum(-1) if squared else yf.sum(-1)
        # semimetric: |p - y| of ignored entries is 0 since both were zeroed
        tp = 0.5 * (ps + ys - (pf - yf).abs().sum(-1)) if soft_targets == "semimetric" and not squared else (
            (pf * yf).sum(-1))
    if batch:
        tp, ps, ys = tp.sum(0), ps.sum(0), ys.sum(0)
    return Stats(tp, ps, ys)


def stats_from_fused(fs: FusedStats, *, squared: bool, soft_targets: str) -> Stats:
    """Per-sample :class:`Stats` ``(N, C)`` from a fused kernel's statistics (same meaning as :func:`overlap_stats`)."""
    tp = fs.tp
    if fs.absdiff is not None and soft_targets == "semimetric" and not squared:
        tp = 0.5 * (fs.ps + fs.ys - fs.absdiff)
    return Stats(tp, fs.ps, fs.ys)


def reduce_across(stats: Stats, process_group) -> Stats:
    """Sum batch statistics over the processes of ``process_group`` ("world" or a ProcessGroup).

    The all-reduce is differentiated by autograd (``torch.distributed._functional_collectives.all_reduce``): its
    backward all-reduces the incoming gradients. Every rank computes the same loss from the same global
    statistics, so each rank's input gradient is P times its slice of the single-process gradient; after DDP
    averages parameter gradients over the P ranks they equal the single-process ones (nnU-Net's convention).
    """
    import torch.distributed as dist
    from torch.distributed._functional_collectives import all_reduce

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "process_group was given but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group (torchrun does the environment for it) or pass process_group=None"
        )
    group = dist.group.WORLD if process_group == "world" else process_group
    packed = torch.stack([stats.tp, stats.ps, stats.ys])
    assert group is not None  # initialised above
    packed = all_reduce(packed, "sum", group)  # waited for on first use (the indexing below)
    return Stats(packed[0], packed[1], packed[2])


def check_process_group(process_group, batch: bool) -> None:
    if process_group is None:
        return
    if not batch:
        raise ValueError(
            "process_group only applies to batch=True (statistics summed over the batch); per-sample losses "
            "(batch=False) are already averaged correctly by DDP"
        )
    if not (process_group == "world" or not isinstance(process_group, str)):
        raise ValueError(f"process_group must be None, 'world' or a torch.distributed ProcessGroup, got {process_group!r}")


def drop_background(stats: Stats, weights: torch.Tensor | None, include_background: bool):
    """Drop channel 0 when ``include_background`` is False (multiclass background; multilabel channel 0).

    Binary mode with ``include_background=False`` is refused when the options are checked
    (:func:`seglab.losses._region.check_region_options`)."""
    if include_background:
        return stats, weights
    sl = (Ellipsis, slice(1, None))
    stats = Stats(stats.tp[sl], stats.ps[sl], stats.ys[sl])
    return stats, (None if weights is None else weights[1:])


def reduce_classes(loss: torch.Tensor, weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Reduce a per-class loss ``(N, C')`` or ``(C',)``: mean = class-weighted mean over classes, then over samples."""
    if weights is not None:
        w = weights.to(loss)  # not all zero on the classes used: checked with the options (check_region_options)
        loss_w = loss * w
        if reduction == "none":
            return loss_w
        if reduction == "sum":
            return loss_w.sum()
        return _mean_or_zero(loss_w.sum(-1) / w.sum())
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else _mean_or_zero(loss)


def _mean_or_zero(loss: torch.Tensor) -> torch.Tensor:
    """Mean, with 0 (not NaN) for an empty batch (N = 0), as an all-ignored batch gives 0 for CE."""
    return loss.sum() if loss.numel() == 0 else loss.mean()


def safe_ratio(num: torch.Tensor, den: torch.Tensor, *, den_positive: bool = False) -> torch.Tensor:
    """``num / den`` with 1 where ``den == 0`` (a class absent from target and prediction, with smooth = 0).

    Only an empty denominator (``den <= 0``: a sum of non-negative terms that is 0, or rounds just below) takes
    the empty value 1; a NaN denominator stays NaN (``NaN <= 0`` is False and the quotient is NaN), so NaN logits
    give a NaN loss whatever the validation setting (issue 24: ``den > 0`` made NaN a ratio of 1, a loss of 0).
    The callers' numerators only hold terms their denominators hold too, so a NaN numerator comes with a NaN
    denominator.

    ``den_positive``: the caller knows ``den > 0`` everywhere (e.g. ``sum p + sum y + smooth`` with smooth > 0),
    so the plain quotient is returned (the same values, four fewer ops forward and backward).
    """
    if den_positive:
        return num / den
    tiny = _TINY.get(den.dtype)
    if tiny is None:
        tiny = _TINY[den.dtype] = torch.finfo(den.dtype).tiny
    return torch.where(den <= 0, 1.0, num / den.clamp_min(tiny))  # (a scalar 1: no ones_like per call)


_TINY: dict[torch.dtype, float] = {}  # torch.finfo(dtype).tiny, looked up once per dtype
