"""Every bad input gets a ValueError/TypeError that says what was expected and what came."""

import pytest
import torch

import seglab
from seglab import get_loss
from seglab.losses import cross_entropy, dice_loss

ALL = ["ce", "focal", "dice", "gdice", "tversky", "jaccard", "lovasz", "dice+ce"]


@pytest.mark.parametrize("name", ALL)
def test_wrong_rank(name):
    with pytest.raises(ValueError, match=r"0 to 3 spatial dims .* got 6 dims"):
        get_loss(name, mode="multiclass")(torch.randn(1, 2, 2, 2, 2, 2), torch.zeros(1, 2, 2, 2, 2, dtype=torch.long))


@pytest.mark.parametrize("name", ALL)
def test_channel_mismatch(name):
    with pytest.raises(ValueError, match=r"target has C=2 channels but logits have C=3"):
        get_loss(name, mode="multilabel")(torch.randn(2, 3, 4, 4), torch.zeros(2, 2, 4, 4))


@pytest.mark.parametrize("name", ALL)
def test_spatial_mismatch(name):
    with pytest.raises(ValueError, match=r"integer target must have shape \(N, \*spatial\) = \(2, 4, 4\).* got \(2, 4, 5\)"):
        get_loss(name, mode="multiclass")(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))


@pytest.mark.parametrize("name", ALL)
def test_index_out_of_range(name):
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    t[0, 0, 0] = 255
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\).*found values \[255\].*pass ignore_index"):
        get_loss(name, mode="multiclass")(torch.randn(2, 3, 4, 4), t)
    t[0, 0, 1] = 3
    with pytest.raises(ValueError, match=r"other than ignore_index=255; found values \[3\]"):
        get_loss(name, mode="multiclass", ignore_index=255)(torch.randn(2, 3, 4, 4), t)


def test_float_multiclass_target_must_sum_to_one():
    y = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"channels sum to 1 .* use mode='multilabel'"):
        dice_loss(torch.randn(2, 3, 4, 4), y, mode="multiclass")


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_target_outside_unit_interval(mode):
    c = 1 if mode == "binary" else 2
    y = torch.zeros(2, c, 4, 4)
    y[0, 0, 0, 0] = 255.0
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\].*got range \[0, 255\]"):
        cross_entropy(torch.randn(2, c, 4, 4), y, mode=mode)


def test_nan_target_rejected():
    y = torch.zeros(1, 2, 3)
    y[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        dice_loss(torch.randn(1, 2, 3), y, mode="multilabel")


@pytest.mark.parametrize("kw", ["class_weights", "pos_weight"])
def test_wrong_weight_length(kw):
    loss = get_loss("ce", mode="multilabel", **{kw: [1.0, 2.0]})
    with pytest.raises(ValueError, match=rf"{kw} must be a 1-D tensor with one entry per channel \(length 3\), got shape \(2\)"):
        loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))


def test_weights_must_be_1d_and_non_negative():
    with pytest.raises(ValueError, match=r"class_weights must be a 1-D tensor with one entry per channel, got shape \(1, 2\)"):
        seglab.DiceLoss("multiclass", class_weights=[[1.0, 2.0]])
    with pytest.raises(ValueError, match="finite and non-negative"):
        seglab.CrossEntropyLoss("multiclass", class_weights=[1.0, -2.0])


def test_pos_weight_is_for_sigmoid_modes():
    with pytest.raises(ValueError, match="pos_weight applies to sigmoid outputs"):
        seglab.CrossEntropyLoss("multiclass", pos_weight=[2.0, 2.0])


@pytest.mark.parametrize("name", ALL)
def test_binary_needs_one_channel(name):
    with pytest.raises(ValueError, match=r"binary mode expects logits with C == 1 channel, got shape \(2, 2, 4, 4\)"):
        get_loss(name, mode="binary")(torch.randn(2, 2, 4, 4), torch.zeros(2, 4, 4))


def test_unknown_mode():
    with pytest.raises(ValueError, match=r"mode must be one of \('binary', 'multiclass', 'multilabel'\), got 'softmax'"):
        seglab.DiceLoss("softmax")
    with pytest.raises(ValueError, match="mode must be one of"):
        dice_loss(torch.randn(1, 2, 3), torch.zeros(1, 3, dtype=torch.long), mode="multi-class")


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), got 'avg'"):
        seglab.DiceLoss("multiclass", reduction="avg")


@pytest.mark.parametrize("name", ALL)
def test_non_finite_logits(name):
    x = torch.randn(2, 3, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"logits contain 1 non-finite values"):
        get_loss(name, mode="multiclass")(x, torch.zeros(2, 4, 4, dtype=torch.long))


def test_integer_logits_and_non_tensor_inputs():
    with pytest.raises(TypeError, match="floating-point tensor"):
        dice_loss(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), mode="multiclass")
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        dice_loss(torch.zeros(1, 2, 3), [0, 1, 0], mode="multiclass")


def test_validation_can_be_switched_off():
    x = torch.randn(2, 3, 4, 4)
    x[0, 0, 0, 0] = float("inf")
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    with seglab.validation(False):
        out = dice_loss(x, t, mode="multiclass")  # no value scan: runs (the user asked for speed)
    assert out.ndim == 0
    out2 = dice_loss(x, t, mode="multiclass", validate=False)
    assert out2.ndim == 0
    seglab.set_validation(False)
    try:
        get_loss("dice+ce", mode="multiclass")(x, t)
    finally:
        seglab.set_validation(True)
    with pytest.raises(ValueError, match="non-finite"):
        dice_loss(x, t, mode="multiclass")
    # shape errors stay on even without value checks: they are free
    with pytest.raises(ValueError, match="binary mode expects"):
        dice_loss(x, t, mode="binary", validate=False)


def test_huge_finite_logits_are_not_reported_as_non_finite():
    # the fast finiteness check sums the logits; a sum that overflows on finite values must not raise
    x = torch.full((1, 2, 4), 3e38)
    t = torch.zeros(1, 4, dtype=torch.long)
    assert torch.isinf(x.sum())
    dice_loss(x, t, mode="multiclass")
