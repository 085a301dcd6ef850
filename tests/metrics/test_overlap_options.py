"""Overlap-metric options that make them fit where people log them (issue 21): float label-map targets
``(N, 1, *)`` as the losses accept them, ``include_background``, and the absolute volume difference against medpy."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from seglab.metrics import DiceScore, IoU, VolumeDifference, dice_score, iou_score, volume_difference


def _maps(seed=0, n=3, c=3, size=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n, size, size), generator=g), torch.randint(0, c, (n, size, size), generator=g)


@pytest.mark.parametrize("fn", [dice_score, iou_score, volume_difference])
def test_float_label_map_target_equals_the_integer_one(fn):
    p, t = _maps()
    ref = fn(p, t, mode="multiclass", num_classes=3)
    got = fn(p, t[:, None].float(), mode="multiclass", num_classes=3)
    torch.testing.assert_close(got, ref, equal_nan=True)


def test_float_inputs_that_are_not_label_maps_name_the_tensor():
    p, t = _maps()
    with pytest.raises(TypeError, match="^pred: .*seglab.predict"):
        dice_score(p.float(), t, mode="multiclass", num_classes=3)
    with pytest.raises(TypeError, match="^target: .*whole numbers"):
        dice_score(p, t[:, None].float() + 0.5, mode="multiclass", num_classes=3)


@pytest.mark.parametrize(("fn", "cls"), [(dice_score, DiceScore), (iou_score, IoU), (volume_difference, VolumeDifference)])
@pytest.mark.parametrize("aggregate", ["mean", "pooled"])
def test_include_background_drops_class_zero(fn, cls, aggregate):
    p, t = _maps(1)
    full = fn(p, t, mode="multiclass", num_classes=3, aggregate=aggregate)
    fg = fn(p, t, mode="multiclass", num_classes=3, aggregate=aggregate, include_background=False)
    torch.testing.assert_close(fg, full[1:])
    m = cls(mode="multiclass", num_classes=3, aggregate=aggregate, include_background=False)
    m.update(p, t)
    torch.testing.assert_close(m.compute(), full[1:])


def test_include_background_equals_monai():
    mm = importlib.import_module("monai.metrics")
    p, t = _maps(2)
    oh = [torch.nn.functional.one_hot(x, 3).movedim(-1, 1) for x in (p, t)]
    metric = mm.DiceMetric(include_background=False, reduction="mean_batch")
    metric(*oh)
    ref = metric.aggregate()
    torch.testing.assert_close(dice_score(p, t, mode="multiclass", num_classes=3, include_background=False),
                               ref.double().flatten())


def test_volume_difference_equals_medpy_ravd():
    try:
        binary = importlib.import_module("medpy.metric.binary")
    except ImportError:
        pytest.fail("medpy is a test dependency (make test installs it with --no-deps)")
    for seed in range(5):
        p, t = _maps(seed, n=1, c=2, size=16)
        if not t.any():
            continue
        ours = float(volume_difference(p, t, mode="multiclass", num_classes=2)[1])
        assert ours == pytest.approx(abs(binary.ravd(p[0].numpy() == 1, t[0].numpy() == 1)))


def test_volume_difference_empty_target():
    t = torch.zeros(1, 4, 4, dtype=torch.long)
    p = t.clone()
    assert np.isnan(float(volume_difference(p, t, mode="multiclass", num_classes=2)[1]))
    p[0, 0, 0] = 1
    assert float(volume_difference(p, t, mode="multiclass", num_classes=2)[1]) == float("inf")
