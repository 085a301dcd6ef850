"""Dice / IoU / generalized Dice against MONAI and torchmetrics, and which averaging convention is which."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from seglab.metrics import DiceScore, GeneralizedDiceScore, IoU, dice_score, generalized_dice_score, iou_score


def _peer(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"{name} is a test dependency (make test installs it)")


def _maps(seed, n=5, c=4, shape=(12, 10), absent=True):
    """Random class maps; with ``absent``, class c-1 is missing from some targets and predictions."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, c, (n, *shape), generator=g)
    target = torch.randint(0, c, (n, *shape), generator=g)
    if absent:
        target[0][target[0] == c - 1] = 0  # absent from target 0, still predicted: Dice 0
        pred[1][pred[1] == c - 1] = 1
        target[1][target[1] == c - 1] = 1  # absent from both in image 1: empty (NaN, skipped)
        pred[2][pred[2] == c - 2] = 0  # predicted nowhere in image 2 but present in its target: Dice 0
    return pred, target


def _onehot(x, c):
    return torch.nn.functional.one_hot(x, c).movedim(-1, 1)


def _close(a, b):
    torch.testing.assert_close(a.double().cpu(), b.double().cpu(), rtol=1e-6, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_and_iou_equal_torchmetrics(seed):
    tm = _peer("torchmetrics.segmentation")
    c = 4
    pred, target = _maps(seed, c=c)
    kw = dict(mode="multiclass", num_classes=c)
    m = tm.DiceScore(num_classes=c, average="none", input_format="index")
    m.update(pred, target)
    _close(dice_score(pred, target, **kw), m.compute())  # per image, then averaged: the default
    g = tm.DiceScore(num_classes=c, average="none", input_format="index", aggregation_level="global")
    g.update(pred, target)
    _close(dice_score(pred, target, aggregate="pooled", **kw), g.compute())
    iou = tm.MeanIoU(num_classes=c, per_class=True, input_format="index")
    iou.update(pred, target)
    _close(iou_score(pred, target, **kw), iou.compute())


def test_dice_equals_monai_both_empty_conventions():
    mm = _peer("monai.metrics")
    c = 4
    pred, target = _maps(3, c=c)
    p1, t1 = _onehot(pred, c), _onehot(target, c)
    kw = dict(mode="multiclass", num_classes=c)
    # MONAI ignore_empty=False: an empty target scores 1 if nothing is predicted, else 0 == seglab empty=1.0
    m = mm.DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=False)
    m(p1, t1)
    _close(dice_score(pred, target, empty=1.0, **kw), m.aggregate())
    m = mm.DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    m(p1, t1)
    _close(dice_score(pred, target, empty=1.0, aggregate="none", **kw), m.aggregate())
    # MONAI ignore_empty=True (its default) makes every empty target NaN, predicted or not; seglab only when both
    # are empty (a false positive scores 0): the two agree wherever the target is not empty.
    m = mm.DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    m(p1, t1)
    ours = dice_score(pred, target, aggregate="none", **kw)
    has_target = t1.flatten(2).any(-1)
    _close(ours[has_target], m.aggregate()[has_target])
    assert ours[0, c - 1].item() == 0.0 and math.isnan(m.aggregate()[0, c - 1].item())


def test_iou_equals_monai():
    mm = _peer("monai.metrics")
    c = 4
    pred, target = _maps(4, c=c)
    m = mm.MeanIoU(include_background=True, reduction="none", ignore_empty=False)
    m(_onehot(pred, c), _onehot(target, c))
    _close(iou_score(pred, target, mode="multiclass", num_classes=c, empty=1.0, aggregate="none"), m.aggregate())
    m = mm.MeanIoU(include_background=True, reduction="mean_batch", ignore_empty=False)
    m(_onehot(pred, c), _onehot(target, c))
    _close(iou_score(pred, target, mode="multiclass", num_classes=c, empty=1.0), m.aggregate())


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("weight_type", ["square", "simple", "uniform"])
def test_generalized_dice_equals_monai(include_background, weight_type):
    mm = _peer("monai.metrics")
    c = 4
    pred, target = _maps(5, c=c)  # absent classes: MONAI's max-weight rule
    m = mm.GeneralizedDiceScore(include_background=include_background, reduction="mean", weight_type=weight_type)
    ref = m(_onehot(pred, c), _onehot(target, c)).reshape(-1)  # one score per image (classes summed)
    kw = dict(mode="multiclass", num_classes=c, include_background=include_background, weight_type=weight_type)
    _close(generalized_dice_score(pred, target, aggregate="none", **kw), ref)
    _close(generalized_dice_score(pred, target, **kw), ref.mean())


def test_generalized_dice_equals_torchmetrics():
    tm = _peer("torchmetrics.segmentation")
    c = 3
    pred, target = _maps(6, c=c, absent=False)  # every class in every target (torchmetrics' absent-class rule differs)
    m = tm.GeneralizedDiceScore(num_classes=c, input_format="index")
    m.update(pred, target)
    _close(generalized_dice_score(pred, target, mode="multiclass", num_classes=c), m.compute())


def test_multilabel_dice_equals_torchmetrics_one_hot():
    tm = _peer("torchmetrics.segmentation")
    g = torch.Generator().manual_seed(7)
    pred = torch.rand(4, 3, 9, 9, generator=g) > 0.5
    target = (torch.rand(4, 3, 9, 9, generator=g) > 0.6).long()
    m = tm.DiceScore(num_classes=3, average="none", input_format="one-hot")
    m.update(pred.long(), target)
    _close(dice_score(pred, target, mode="multilabel", num_classes=3), m.compute())


def test_stateful_overlap_equals_functional_on_all_data():
    c = 4
    pred, target = _maps(8, n=6, c=c)
    kw = dict(mode="multiclass", num_classes=c)
    for aggregate in ("mean", "pooled"):
        for cls, fn in ((DiceScore, dice_score), (IoU, iou_score)):
            m = cls(aggregate=aggregate, **kw)
            for i in range(0, 6, 2):
                m.update(pred[i:i + 2], target[i:i + 2])
            _close(m.compute(), fn(pred, target, aggregate=aggregate, **kw))
        m = GeneralizedDiceScore(aggregate=aggregate, **kw)
        m.update(pred[:3], target[:3])
        m.update(pred[3:], target[3:])
        _close(m.compute(), generalized_dice_score(pred, target, aggregate=aggregate, **kw))
    m = DiceScore(**kw)
    m.update(pred, target)
    m.reset()
    assert torch.isnan(m.compute()).all()  # nothing seen: every class empty
    m.update(pred[:2], target[:2])
    _close(m.compute(), dice_score(pred[:2], target[:2], **kw))


def test_stateful_merge_sums_states():
    c = 3
    pred, target = _maps(9, n=4, c=c)
    a, b = DiceScore(mode="multiclass", num_classes=c), DiceScore(mode="multiclass", num_classes=c)
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    _close(a.merge(b).compute(), dice_score(pred, target, mode="multiclass", num_classes=c))
    with pytest.raises(ValueError, match="same options"):
        a.merge(DiceScore(mode="multiclass", num_classes=c, aggregate="pooled"))
    with pytest.raises(ValueError, match="aggregate must be one of"):
        DiceScore(mode="multiclass", num_classes=c, aggregate="none")
