"""Hard-prediction metrics: per-class Dice and IoU, per sample and aggregated.

**Empty-class policy.** A class absent from both the prediction and the target has no defined Dice/IoU
(0/0). It gets the value ``empty`` (default NaN), and NaN entries are left out of the averages — the class
is neither rewarded nor punished where it cannot be judged (MONAI's ``ignore_empty=True``). Pass ``empty=1.0``
to count a correct "nothing here" as perfect. A class absent from the target but predicted scores 0.

Counts are int-exact float64 sums, so they can be all-reduced across processes and turned into the Dice of
the whole dataset (``dice_from_counts``), rather than averaging per-process Dice values.
"""

from __future__ import annotations

import math

import torch

from seglab._checks import check_mode


def confusion_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    num_classes: int,
    ignore_index: int | None = None,
    per_sample: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class true positives, false positives, false negatives as float64.

    ``multiclass``: ``pred`` and ``target`` are class maps ``(N, *spatial)`` (target may be ``(N, 1, *spatial)``).
    ``multilabel``/``binary``: ``pred`` and ``target`` are masks ``(N, C, *spatial)``; float targets are
    binarised at 0.5. Returns tensors of shape ``(C,)``, or ``(N, C)`` with ``per_sample=True``.
    """
    check_mode(mode)
    if mode == "multiclass":
        if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
            target = target[:, 0]
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be class maps of the same shape")
        if target.is_floating_point():
            raise TypeError("multiclass metrics need an integer class-map target; convert soft targets with argmax(1)")
        n = pred.shape[0]
        s = math.prod(pred.shape[1:])  # explicit: reshape(n, -1) fails for an empty batch
        p = pred.reshape(n, s).long()
        t = target.reshape(n, s).long()
        valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
        if bool(((t < 0) | (t >= num_classes))[valid].any()) or bool(((p < 0) | (p >= num_classes)).any()):
            raise ValueError(f"class indices must lie in [0, {num_classes})" + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
        sample = torch.arange(n, device=p.device).unsqueeze(1).expand_as(p)
        key = (sample * num_classes + t.clamp(0, num_classes - 1)) * num_classes + p
        cm = torch.bincount(key[valid], minlength=n * num_classes * num_classes)
        cm = cm.view(n, num_classes, num_classes).double()  # [n, true, pred]
        tp = cm.diagonal(dim1=1, dim2=2)
        fn = cm.sum(2) - tp
        fp = cm.sum(1) - tp
    else:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape (N, C, *spatial)")
        n, c = pred.shape[:2]
        s = math.prod(pred.shape[2:])
        p = pred.reshape(n, c, s).bool()
        tf = target.reshape(n, c, s)
        valid = None if ignore_index is None else tf != ignore_index
        t = tf >= 0.5 if tf.is_floating_point() else tf.bool()
        if valid is not None:
            p, t = p & valid, t & valid
        tp = (p & t).sum(-1).double()
        fp = (p & ~t).sum(-1).double()
        fn = (~p & t).sum(-1).double()
    if not per_sample:
        tp, fp, fn = tp.sum(0), fp.sum(0), fn.sum(0)
    return tp, fp, fn


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """``2 TP / (2 TP + FP + FN)``; ``empty`` where the class is absent from prediction and target."""
    den = 2 * tp + fp + fn
    return torch.where(den > 0, 2 * tp / den.clamp_min(1), torch.full_like(den, empty))


def iou_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """``TP / (TP + FP + FN)``; ``empty`` where the class is absent from prediction and target."""
    den = tp + fp + fn
    return torch.where(den > 0, tp / den.clamp_min(1), torch.full_like(den, empty))


def _score(fn_counts, pred, target, *, mode, num_classes, ignore_index, per_sample, aggregate, empty):
    tp, fp, fn = confusion_counts(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                                  per_sample=per_sample or aggregate == "mean_samples")
    s = fn_counts(tp, fp, fn, empty)
    if aggregate == "none":
        return s
    if aggregate == "mean_samples":  # per-sample scores, averaged over samples ignoring NaN
        return torch.nanmean(s, dim=0)
    raise ValueError(f"aggregate must be 'none' or 'mean_samples', got {aggregate!r}")


def dice_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int, ignore_index: int | None = None,
               per_sample: bool = False, aggregate: str = "none", empty: float = float("nan")) -> torch.Tensor:
    """Per-class Dice of hard predictions (see :func:`seglab.predict`).

    Default: one Dice per class over the whole batch ``(C,)`` (counts pooled). ``per_sample=True``: ``(N, C)``.
    ``aggregate="mean_samples"``: per-sample Dice averaged over samples (NaN — empty — entries skipped) ``(C,)``.
    """
    return _score(dice_from_counts, pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                  per_sample=per_sample, aggregate=aggregate, empty=empty)


def iou_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int, ignore_index: int | None = None,
              per_sample: bool = False, aggregate: str = "none", empty: float = float("nan")) -> torch.Tensor:
    """Per-class IoU of hard predictions; conventions as :func:`dice_score`."""
    return _score(iou_from_counts, pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                  per_sample=per_sample, aggregate=aggregate, empty=empty)


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> float:
    """Fraction of (kept) pixels — or elements, for multilabel masks — where prediction equals target."""
    if target.is_floating_point():
        target = target >= 0.5
    if pred.dtype == torch.bool:
        target = target.bool()
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
        target = target[:, 0]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    n = int(valid.sum())
    return float(((pred == target) & valid).sum()) / n if n else float("nan")
