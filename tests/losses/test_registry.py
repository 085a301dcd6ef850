"""get_loss / list_losses and composition (a + b, w * a)."""

import pytest
import torch

import seglab
from seglab import CompositeLoss, CrossEntropyLoss, DiceLoss, FocalLoss, get_loss, list_losses
from conftest import make_inputs


def test_list_losses_contains_every_family():
    names = list_losses()
    for n in ["ce", "bce", "focal", "dice", "gdice", "tversky", "focal_tversky", "jaccard", "lovasz", "dicefg", "study_dice"]:
        assert n in names


def test_composite_from_string_equals_manual_sum():
    x, t = make_inputs("multiclass", 2, c=3)
    loss = get_loss("0.5*dice + ce", mode="multiclass", include_background=False, class_weights=[1.0, 2.0, 3.0])
    assert isinstance(loss, CompositeLoss)
    d = DiceLoss("multiclass", include_background=False, class_weights=[1.0, 2.0, 3.0])(x, t)
    ce = CrossEntropyLoss("multiclass", class_weights=[1.0, 2.0, 3.0])(x, t)
    torch.testing.assert_close(loss(x, t), 0.5 * d + ce, check_dtype=False)
    assert set(loss.last_parts) == {"dice", "ce"}
    torch.testing.assert_close(loss.last_parts["dice"], d.detach(), check_dtype=False)


def test_operators_build_weighted_sums():
    x, y = make_inputs("multilabel", 2, c=2)
    a, b = DiceLoss("multilabel"), FocalLoss("multilabel")
    comp = a + 2 * b
    assert comp.weights == [1.0, 2.0]
    torch.testing.assert_close(comp(x, y), a(x, y) + 2 * b(x, y))
    comp3 = 0.5 * (comp + a)
    assert comp3.weights == [0.5, 1.0, 0.5] and comp3.part_names == ["dice", "focal", "dice2"]


def test_single_name_returns_the_module():
    loss = get_loss("dice", mode="binary", squared=True)
    assert isinstance(loss, DiceLoss) and loss.squared
    assert isinstance(get_loss("bce", mode="multilabel"), CrossEntropyLoss)
    ft = get_loss("focal_tversky", mode="multiclass")
    assert (ft.alpha, ft.beta, ft.gamma) == (0.3, 0.7, 0.75)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match=r"unknown loss 'dcie'; did you mean 'dice'"):
        get_loss("dcie+ce", mode="multiclass")


def test_unroutable_kwarg_is_an_error():
    with pytest.raises(TypeError, match=r"\['squared'\] not accepted by any loss in 'ce'"):
        get_loss("ce", mode="multiclass", squared=True)


def test_bad_spec():
    with pytest.raises(ValueError, match="expected '\\+' or the end of the spec at position 4"):
        get_loss("dice*0.5", mode="multiclass")
    with pytest.raises(ValueError, match="non-empty string"):
        get_loss("", mode="multiclass")


def test_mixed_modes_rejected():
    with pytest.raises(ValueError, match="share one mode"):
        DiceLoss("multiclass") + CrossEntropyLoss("multilabel")


def test_weights_are_buffers_and_move_with_module():
    loss = get_loss("dice+ce", mode="multilabel", class_weights=[1.0, 2.0], pos_weight=[3.0, 4.0])
    bufs = dict(loss.named_buffers())
    assert any(k.endswith("pos_weight") for k in bufs) and any(k.endswith("class_weights") for k in bufs)
    loss.double()
    assert loss.parts[0].class_weights.dtype == torch.float64 and loss.parts[1].pos_weight.dtype == torch.float64
    sd = loss.state_dict()
    assert any("pos_weight" in k for k in sd)


def test_public_api_exports():
    for name in seglab.__all__:
        assert hasattr(seglab, name), name
