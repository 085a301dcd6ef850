"""Overlap metrics of hard predictions: per-class Dice, IoU, generalized Dice, pixel accuracy.

**Averaging** (``aggregate``), the same words for every metric of :mod:`seglab.metrics`:

* ``"mean"`` (default) — the score of each image, then the mean over images, empty entries skipped. This is
  MONAI's ``DiceMetric(reduction="mean_batch")`` and torchmetrics' ``DiceScore(average="none")``.
* ``"pooled"`` — the counts of all images summed first, then one score per class: the Dice of the whole batch
  as if it were one image (seglab's ``dice_score`` default up to 0.1.0; what training validation reports).
* ``"none"`` — one score per image and class, ``(N, C)``.

**Empty-class policy.** A class absent from both the prediction and the target has no defined Dice/IoU
(0/0). It gets the value ``empty`` (default NaN), and NaN entries are left out of the averages — the class
is neither rewarded nor punished where it cannot be judged (MONAI's ``ignore_empty=True``). Pass ``empty=1.0``
to count a correct "nothing here" as perfect. A class absent from the target but predicted scores 0.

Counts are int-exact float64 sums, so they can be all-reduced across processes and turned into the Dice of
the whole dataset (``dice_from_counts``), rather than averaging per-process Dice values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from seglab._checks import check_bool, check_choice, check_ignore_index, check_mode

AGGREGATES = ("mean", "pooled", "none")
WEIGHT_TYPES = ("square", "simple", "uniform")

CountsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def check_num_classes(num_classes: object) -> int:
    """``num_classes``: a positive integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def check_aggregate(aggregate: object, choices: tuple[str, ...] = AGGREGATES) -> str:
    return check_choice("aggregate", aggregate, choices)


def check_empty(empty: object) -> float:
    """``empty``: the value of a class absent from prediction and target (NaN: left out of the averages)."""
    if isinstance(empty, bool) or not isinstance(empty, numbers.Real):
        raise TypeError(f"empty must be a real number or nan, got {empty!r} ({type(empty).__name__})")
    return float(empty)


def _check_tensors(pred: object, target: object) -> None:
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def class_masks(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    num_classes: int,
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean per-class masks ``(N, C, *spatial)`` of a prediction and a target, ignored pixels off in both.

    ``multiclass``: class maps ``(N, *spatial)`` (the target may be ``(N, 1, *spatial)``), one channel per class.
    ``multilabel``/``binary``: masks ``(N, C, *spatial)``; float targets are binarised at 0.5.
    """
    _check_tensors(pred, target)
    check_mode(mode)
    num_classes = check_num_classes(num_classes)
    ignore_index = check_ignore_index(ignore_index)
    if mode == "multiclass":
        p, t, valid = _class_maps(pred, target, num_classes, ignore_index)
        classes = torch.arange(num_classes, device=p.device).view(1, -1, *([1] * (p.ndim - 1)))
        pm = p.unsqueeze(1) == classes
        tm = t.unsqueeze(1) == classes
        if ignore_index is not None:
            pm, tm = pm & valid.unsqueeze(1), tm & valid.unsqueeze(1)
        return pm, tm
    pm, tm, vm = _masks(pred, target, num_classes, ignore_index)
    if vm is not None:
        pm, tm = pm & vm, tm & vm
    return pm, tm


def _class_maps(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
        target = target[:, 0]
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be class maps of the same "
                         "shape (N, *spatial)")
    if pred.is_floating_point():
        raise TypeError("pred: multiclass metrics need an integer class map; convert logits or probabilities with "
                        "seglab.predict(logits, 'multiclass') (argmax over channels)")
    # a float label map (N, [1,] *spatial), as the losses accept
    if target.is_floating_point() and not bool((torch.isfinite(target) & (target == target.round())).all()):
        raise TypeError("target: a float multiclass target must be a label map of whole numbers (class indices); "
                        "got fractional or non-finite values (soft labels are not hard masks)")
    p, t = pred.long(), target.long()
    valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    t_bad = (t < 0) | (t >= num_classes)
    if ignore_index is not None:
        t_bad &= valid
    if bool(t_bad.any()) or bool(((p < 0) | (p >= num_classes)).any()):
        raise ValueError(f"class indices must lie in [0, {num_classes})"
                         + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    return p, t, valid


def _masks(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
           ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape "
                         "(N, C, *spatial)")
    if pred.shape[1] != num_classes:
        raise ValueError(f"pred has C={pred.shape[1]} channels but num_classes={num_classes}")
    valid = None if ignore_index is None else target != ignore_index
    t = target >= 0.5 if target.is_floating_point() else target.bool()
    p = pred >= 0.5 if pred.is_floating_point() else pred.bool()
    return p, t, valid


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

    >>> tp, fp, fn = confusion_counts(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]), mode="multiclass",
    ...                               num_classes=2)
    >>> tp.tolist(), fp.tolist(), fn.tolist()
    ([1.0, 1.0], [0.0, 1.0], [1.0, 0.0])
    """
    _check_tensors(pred, target)
    check_mode(mode)
    num_classes = check_num_classes(num_classes)
    ignore_index = check_ignore_index(ignore_index)
    per_sample = check_bool("per_sample", per_sample)
    if mode == "multiclass":
        p, t, valid = _class_maps(pred, target, num_classes, ignore_index)
        n = p.shape[0]
        s = math.prod(p.shape[1:])  # explicit: reshape(n, -1) fails for an empty batch
        p, t, valid = p.reshape(n, s), t.reshape(n, s), valid.reshape(n, s)
        sample = torch.arange(n, device=p.device).unsqueeze(1).expand_as(p)
        key = (sample * num_classes + t.clamp(0, num_classes - 1)) * num_classes + p
        cm = torch.bincount(key[valid], minlength=n * num_classes * num_classes)
        cm = cm.view(n, num_classes, num_classes).double()  # [n, true, pred]
        tp = cm.diagonal(dim1=1, dim2=2)
        fn = cm.sum(2) - tp
        fp = cm.sum(1) - tp
    else:
        pm, tm, vm = _masks(pred, target, num_classes, ignore_index)
        n, c = pm.shape[:2]
        s = math.prod(pm.shape[2:])
        pb, tb = pm.reshape(n, c, s), tm.reshape(n, c, s)
        if vm is not None:
            v = vm.reshape(n, c, s)
            pb, tb = pb & v, tb & v
        tp = (pb & tb).sum(-1).double()
        fp = (pb & ~tb).sum(-1).double()
        fn = (~pb & tb).sum(-1).double()
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


def volume_difference_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor,
                                  empty: float = float("nan")) -> torch.Tensor:
    """Absolute volume difference relative to the target, ``|V_pred − V_target| / V_target = |FP − FN| / (TP + FN)``
    (medpy's ``|ravd|``; 0 is perfect, unbounded above); ``empty`` where the target is empty and nothing is
    predicted, ``inf`` where the target is empty but something is predicted."""
    den = tp + fn
    ratio = (fp - fn).abs() / den.clamp_min(1)
    return torch.where(den > 0, ratio, torch.where(fp > 0, torch.full_like(den, math.inf), torch.full_like(den, empty)))


def volume_difference(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                      ignore_index: int | None = None, aggregate: str = "mean", empty: float = float("nan"),
                      include_background: bool = True) -> torch.Tensor:
    """Per-class absolute volume difference relative to the target (:func:`volume_difference_from_counts`);
    ``aggregate``, ``empty`` and ``include_background`` as :func:`dice_score`.

    >>> volume_difference(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 1, 1, 0]]), mode="multiclass",
    ...                   num_classes=2).tolist()
    [0.5, 0.5]
    """
    return _score(volume_difference_from_counts, pred, target, mode=mode, num_classes=num_classes,
                  ignore_index=ignore_index, aggregate=aggregate, empty=empty, include_background=include_background)


def aggregate_scores(per_image: torch.Tensor, aggregate: str) -> torch.Tensor:
    """``"mean"``: mean over images (dim 0) skipping NaN; ``"none"``: unchanged."""
    if aggregate == "none":
        return per_image
    if per_image.shape[0] == 0:
        return torch.full(per_image.shape[1:], float("nan"), dtype=per_image.dtype, device=per_image.device)
    return torch.nanmean(per_image, dim=0)


def drop_background(scores: torch.Tensor, include_background: bool) -> torch.Tensor:
    """``scores[..., 1:]`` (class / channel 0 left out, as MONAI's ``include_background=False``) unless
    ``include_background``."""
    return scores if check_bool("include_background", include_background) else scores[..., 1:]


def _score(counts_fn: CountsFn, pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
           ignore_index: int | None, aggregate: str, empty: float, include_background: bool = True) -> torch.Tensor:
    aggregate = check_aggregate(aggregate)
    empty = check_empty(empty)
    tp, fp, fn = confusion_counts(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                                  per_sample=aggregate != "pooled")
    scores = drop_background(counts_fn(tp, fp, fn, empty), include_background)
    return aggregate_scores(scores, "none" if aggregate == "pooled" else aggregate)


def dice_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int, ignore_index: int | None = None,
               aggregate: str = "mean", empty: float = float("nan"), include_background: bool = True) -> torch.Tensor:
    """Per-class Dice ``2 TP / (2 TP + FP + FN)`` of hard predictions (see :func:`seglab.predict`).

    ``aggregate="mean"`` (default): the Dice of each image, averaged over images with the empty (NaN) entries
    skipped, ``(C,)`` — MONAI ``DiceMetric(reduction="mean_batch")``, torchmetrics ``DiceScore(average="none")``.
    ``"pooled"``: one Dice per class from the counts of the whole batch, ``(C,)``. ``"none"``: ``(N, C)``.
    ``include_background=False`` leaves class (channel) 0 out of the result (``C - 1`` columns).

    >>> pred = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0]])
    >>> target = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])
    >>> dice_score(pred, target, mode="multiclass", num_classes=2).tolist()  # (2/3 + 2/3) / 2, (4/5 + 0) / 2
    [0.6666666666666666, 0.4]
    >>> dice_score(pred, target, mode="multiclass", num_classes=2, aggregate="pooled").tolist()  # 6/9, 4/7
    [0.6666666666666666, 0.5714285714285714]
    """
    return _score(dice_from_counts, pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                  aggregate=aggregate, empty=empty, include_background=include_background)


def iou_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int, ignore_index: int | None = None,
              aggregate: str = "mean", empty: float = float("nan"), include_background: bool = True) -> torch.Tensor:
    """Per-class IoU ``TP / (TP + FP + FN)`` of hard predictions; ``aggregate``, ``empty`` and
    ``include_background`` as :func:`dice_score`.

    The mean IoU over classes (mIoU) is ``iou_score(...).nanmean()``.

    >>> iou_score(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]), mode="multiclass", num_classes=2).tolist()
    [0.5, 0.5]
    """
    return _score(iou_from_counts, pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                  aggregate=aggregate, empty=empty, include_background=include_background)


def volume_weights(ys: torch.Tensor, weighting: str, *, all_absent: float) -> torch.Tensor:
    """Generalized Dice class weights from target volumes ``ys`` (``(..., C)``, classes last): ``1 / ys²``
    (``"square"``), ``1 / ys`` (``"simple"``) or 1 (``"uniform"``). A class absent from the target (infinite
    weight) gets the largest finite weight of the other classes (MONAI's rule); where every class is absent,
    every weight is ``all_absent`` (MONAI: 0 in ``GeneralizedDiceLoss``, 1 in ``GeneralizedDiceScore``).
    The one rule for :func:`generalized_dice_score` and the generalized Dice loss."""
    if weighting == "square":
        w = 1.0 / (ys * ys)
    elif weighting == "simple":
        w = 1.0 / ys
    else:
        w = torch.ones_like(ys)
    inf = torch.isinf(w)
    w = w.masked_fill(inf, 0.0)
    wmax = w.amax(dim=-1, keepdim=True) if w.shape[-1] else w.sum(-1, keepdim=True)
    wmax = torch.where(wmax > 0, wmax, torch.full_like(wmax, all_absent))
    return torch.where(inf, wmax.expand_as(w), w)


def generalized_dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, *, weight_type: str = "square",
                                 empty: float = float("nan")) -> torch.Tensor:
    """Generalized Dice score over classes (the last dim) of counts ``(..., C)``.

    ``GDS = 2 Σ_c w_c TP_c / Σ_c w_c (2 TP_c + FP_c + FN_c)`` with ``w_c = 1 / |Y_c|²`` (``square``),
    ``1 / |Y_c|`` (``simple``) or 1 (``uniform``); a class absent from the target gets the largest weight of the
    other classes (MONAI's rule; 1 if all are absent). ``empty`` where the denominator is 0.
    """
    weight_type = check_choice("weight_type", weight_type, WEIGHT_TYPES)
    w = volume_weights(tp + fn, weight_type, all_absent=1.0)  # MONAI's GeneralizedDiceScore
    num = 2 * (w * tp).sum(-1)
    den = (w * (2 * tp + fp + fn)).sum(-1)
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.full_like(den, empty))


def generalized_dice_score(pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
                           ignore_index: int | None = None, include_background: bool = True,
                           weight_type: str = "square", aggregate: str = "mean",
                           empty: float = float("nan")) -> torch.Tensor:
    """Generalized Dice score (Sudre 2017) of hard predictions, one number over the classes.

    Formula in :func:`generalized_dice_from_counts`. ``aggregate="mean"``: the score of each image averaged
    over images, a scalar (MONAI ``GeneralizedDiceScore(reduction="mean")``); ``"pooled"``: the score of the
    counts of the whole batch; ``"none"``: ``(N,)``. ``include_background=False`` leaves class 0 out.

    >>> pred = torch.tensor([[0, 1, 1, 1]]); target = torch.tensor([[0, 1, 1, 0]])
    >>> round(generalized_dice_score(pred, target, mode="multiclass", num_classes=2).item(), 4)  # 2 (1/4 + 2/4) / (3/4 + 5/4)
    0.75
    """
    aggregate = check_aggregate(aggregate)
    include_background = check_bool("include_background", include_background)
    tp, fp, fn = confusion_counts(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                                  per_sample=aggregate != "pooled")
    if not include_background:
        tp, fp, fn = tp[..., 1:], fp[..., 1:], fn[..., 1:]
    g = generalized_dice_from_counts(tp, fp, fn, weight_type=weight_type, empty=check_empty(empty))
    return g if aggregate != "mean" else aggregate_scores(g.unsqueeze(1), "mean")[0]


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None) -> float:
    """Fraction of (kept) pixels — or elements, for multilabel masks — where prediction equals target.

    >>> pixel_accuracy(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 0, 1]]))
    0.6666666666666666
    """
    _check_tensors(pred, target)
    if target.is_floating_point():
        target = target >= 0.5
    if pred.dtype == torch.bool:
        target = target.bool()
    if target.ndim == pred.ndim + 1 and target.shape[1] == 1:
        target = target[:, 0]
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    n = int(valid.sum())
    return float(((pred == target) & valid).sum()) / n if n else float("nan")
