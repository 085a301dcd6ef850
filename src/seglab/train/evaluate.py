"""Validation metrics (pixel accuracy, and every registered count metric — Dice, IoU, ... — from summed confusion
counts) and convergence."""

from __future__ import annotations

import math
from typing import Any

import torch

from seglab.activations import predict
from seglab.metrics import confusion_counts, count_metrics

from .distributed import DistInfo, all_reduce_sum, shard_uneven


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, mode: str, num_classes: int,
             info: DistInfo | None = None, chunk: int = 64, ignore_index: int | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on the fixed validation set ``(x, y)``; target pixels equal to ``ignore_index`` (a void
    label, e.g. 255) count nowhere.

    Under data parallelism each rank evaluates its slice of the set and the *counts* (per-class
    tp/fp/fn, correct and total pixels) are summed across ranks before any ratio is taken, so the
    result equals a single-process evaluation of the whole set (Dice is not averaged across ranks).
    """
    info = info or DistInfo()
    sl = shard_uneven(x.shape[0], info)
    x, y = x[sl], y[sl]
    was_training = model.training
    model.eval()
    C = num_classes
    sums = torch.zeros(3 * C + 2 + C, dtype=torch.float64)  # tp, fp, fn, correct, total, per-class target pixels
    dev = next(model.parameters()).device
    for i in range(0, x.shape[0], chunk):
        xb, yb = x[i:i + chunk].to(dev), y[i:i + chunk].to(dev)
        sums += _batch_sums(predict(model(xb), mode), yb, mode=mode, num_classes=C, ignore_index=ignore_index)
    if was_training:
        model.train()
    packed = all_reduce_sum(sums, info)
    tp, fp, fn = packed[:C], packed[C:2 * C], packed[2 * C:3 * C]
    correct, total, per_class_count = packed[3 * C], packed[3 * C + 1], packed[3 * C + 2:]
    acc = float(correct / total) if total > 0 else math.nan
    if mode == "multiclass":
        majority = float(per_class_count.max() / per_class_count.sum()) if per_class_count.sum() > 0 else math.nan
    else:  # multilabel/binary: majority = mean over channels of max(p, 1-p)
        frac = per_class_count / (total / C) if total > 0 else per_class_count
        majority = float(torch.maximum(frac, 1 - frac).mean())
    return {"accuracy": acc, "majority": majority, **count_metric_values(tp, fp, fn, mode=mode)}


def _batch_sums(pred: torch.Tensor, y: torch.Tensor, *, mode: str, num_classes: int,
                ignore_index: int | None) -> torch.Tensor:
    """One batch's ``[tp (C), fp (C), fn (C), correct, total, target pixels per class (C)]``, ignored pixels left out."""
    C = num_classes
    tp, fp, fn = confusion_counts(pred, y, mode=mode, num_classes=C, ignore_index=ignore_index)
    if mode == "multiclass":
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        correct = ((pred == y) & keep).sum().double()
        total = keep.sum().double()
        per_class = torch.bincount(y[keep].reshape(-1).long(), minlength=C)[:C].double()
    else:
        yt = y > 0.5
        keep = torch.ones_like(yt) if ignore_index is None else y != ignore_index
        correct = ((pred.bool() == yt) & keep).sum().double()
        total = keep.sum().double()
        per_class = (yt & keep).transpose(0, 1).reshape(C, -1).sum(1).double()
    return torch.cat([tp, fp, fn, correct[None], total[None], per_class]).cpu()


def count_metric_values(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, *, mode: str) -> dict[str, Any]:
    """Every registered count metric (:func:`seglab.metrics.count_metrics`) from the summed counts ``(C,)``:
    ``<name>`` per class, ``mean_<name>`` over classes and ``fg_<name>`` over the foreground (multiclass: classes
    1..C-1; sigmoid modes: every channel), NaN classes (absent from prediction and target) left out.

    >>> t = torch.tensor([2.0, 1.0]); f = torch.tensor([0.0, 1.0])
    >>> count_metric_values(t, f, f, mode="multiclass")["fg_dice"]
    0.5
    """
    out: dict[str, Any] = {}
    for info in count_metrics():
        assert info.from_counts is not None
        v = info.from_counts(tp, fp, fn)
        fg = v[1:] if mode == "multiclass" and v.numel() > 1 else v
        out[info.name] = v.tolist()
        out[f"mean_{info.name}"] = _nanmean(v)
        out[f"fg_{info.name}"] = _nanmean(fg)
    return out


def _nanmean(t: torch.Tensor) -> float:
    ok = ~torch.isnan(t)
    return float(t[ok].mean()) if ok.any() else math.nan


def meets(metrics: dict[str, Any], converge: dict[str, Any]) -> bool:
    """Whether one validation result satisfies the convergence criterion (see :class:`RunSpec`)."""
    metric = converge.get("metric", "mean_dice")
    thr = float(converge.get("threshold", 0.9))
    if metric == "accuracy":
        maj = metrics["majority"]
        return metrics["accuracy"] >= maj + thr * (1.0 - maj)
    v = metrics[metric]
    return not math.isnan(v) and v >= thr


def convergence(evals: list[dict[str, Any]], converge: dict[str, Any]) -> tuple[bool, int | None]:
    """``(converged, step)``: converged when the *final* validation meets the criterion; ``step`` is the first
    validation step from which every later validation meets it (None when not converged)."""
    if not evals or not meets(evals[-1], converge):
        return False, None
    first = evals[-1]["step"]
    for e in reversed(evals):
        if meets(e, converge):
            first = e["step"]
        else:
            break
    return True, first
