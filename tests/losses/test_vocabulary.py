"""The one loss vocabulary: grammar, strict values, presets, mode rules, format_loss round trip."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seglab
from seglab import CompositeLoss, CrossEntropyLoss, DiceLoss, FocalLoss, TverskyLoss, format_loss, get_loss, list_losses
from seglab.losses.base import LOSSES
from seglab.losses.registry import NAMES, STUDY_LABELS, STUDY_LOSSES, canonical_spec, describe_losses, parse_loss_spec

MODES = ("binary", "multiclass", "multilabel")


def _same_loss(a, b) -> bool:
    """Same class(es), weights and options (tensors compared by value)."""
    if type(a) is not type(b) or a.mode != b.mode:
        return False
    if isinstance(a, CompositeLoss):
        return a.weights == b.weights and len(a.parts) == len(b.parts) and all(
            _same_loss(p, q) for p, q in zip(a.parts, b.parts, strict=True))
    oa, ob = a.options(), b.options()
    if set(oa) != set(ob):
        return False
    for k in oa:
        x, y = oa[k], ob[k]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if x is None or y is None or not torch.equal(torch.as_tensor(x).double(), torch.as_tensor(y).double()):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


# --------------------------------------------------------------------------------------------- named defects

def test_dicefg_is_a_python_name():
    loss = get_loss("dicefg", mode="multiclass")
    assert isinstance(loss, DiceLoss) and loss.include_background is False and loss.batch is False


def test_loose_bool_is_rejected():
    with pytest.raises(ValueError, match="include_background"):
        get_loss("dice[include_background=no]", mode="multiclass")


def test_dice_means_per_sample_dice_everywhere():
    from seglab.train.specs import build_loss

    for loss in (get_loss("dice", mode="multiclass"), build_loss("dice", "multiclass")):
        assert isinstance(loss, DiceLoss) and loss.batch is False and loss.smooth == 1e-5
    study = get_loss("study_dice", mode="multiclass")
    assert study.batch is True and study.smooth == 1e-7


# --------------------------------------------------------------------------------------------------- grammar

def test_full_grammar():
    loss = get_loss("0.5*dice[batch=true,include_background=false] + ce[class_weights=[1,2,3]]", mode="multiclass")
    assert isinstance(loss, CompositeLoss) and loss.weights == [0.5, 1.0]
    d, ce = loss.parts
    assert d.batch is True and d.include_background is False
    assert ce.class_weights.tolist() == [1.0, 2.0, 3.0]


def test_values_are_parsed_strictly():
    (t,) = parse_loss_spec("dice[a=TRUE,b=False,c=null,d=None,e=1e-5,f=3,g=[1,2.5],h=product,i=\"x y\",j=-2]")
    assert t.options == {"a": True, "b": False, "c": None, "d": None, "e": 1e-5, "f": 3, "g": [1, 2.5],
                         "h": "product", "i": "x y", "j": -2}
    assert type(t.options["f"]) is int and type(t.options["e"]) is float


@pytest.mark.parametrize("spec, part", [
    ("dice[class_weights=[1,", "'['"),
    ("dice[class_weights=[1,2]", "'['"),
    ("dice[", "'['"),
    ("dice[=1]", "empty option name"),
    ("dice[smooth=1,smooth=2]", "duplicate option 'smooth'"),
    ("0*dice", "weight 0"),
    ("-1*dice", "weight -1"),
    ("1e999*dice", "weight '1e999'"),
    ("dice[smooth=inf]", "'smooth'"),
    ("dice[smooth=nan]", "'smooth'"),
    ("dice[class_weights=[[1,2]]]", "'class_weights'"),
    ("dice[smooth=1e-5x]", "'smooth'"),
    ("dice*0.5", "expected '+' or the end"),
    ("dice+", "empty term"),
    ("dice ce", "expected '+' or the end"),
    ("dice[batch]", "'=' after option 'batch'"),
    ("", "non-empty"),
])
def test_malformed_specs_name_the_problem(spec, part):
    with pytest.raises(ValueError, match=re.escape(part)):
        get_loss(spec, mode="multiclass")


def test_unknown_option_did_you_mean():
    with pytest.raises(ValueError, match=r"'smoth' \(did you mean 'smooth'\?\)"):
        get_loss("dice[smoth=1e-3]", mode="multiclass")


def test_unknown_name_did_you_mean():
    with pytest.raises(ValueError, match=r"unknown loss 'dicfg'; did you mean 'dicefg'"):
        get_loss("dicfg", mode="multiclass")


def test_mode_in_brackets_is_rejected():
    with pytest.raises(ValueError, match="multilabel"):
        get_loss("dice[mode=multilabel]", mode="multiclass")


def test_bracket_and_kwarg_conflict():
    with pytest.raises(ValueError, match="both in brackets and as keyword"):
        get_loss("dice[squared=true]", mode="multiclass", squared=False)
    # a kwarg goes to the terms that accept it and do not set it in brackets... but one that sets it is an error
    with pytest.raises(ValueError, match="include_background"):
        get_loss("dice[include_background=false]+jaccard", mode="multiclass", include_background=True)
    loss = get_loss("dice+ce[class_weights=[1,1]]", mode="multiclass", include_background=False)
    assert loss.parts[0].include_background is False


def test_kwargs_still_route_and_unroutable_is_typeerror():
    loss = get_loss("dice+ce", mode="multiclass", class_weights=[1.0, 2.0])
    assert all(p.class_weights.tolist() == [1.0, 2.0] for p in loss.parts)
    with pytest.raises(TypeError, match="squared"):
        get_loss("ce", mode="multiclass", squared=True)


# ---------------------------------------------------------------------------------------------------- presets

def test_presets_and_overrides():
    assert get_loss("dice_sq", mode="binary").squared is True
    fg = get_loss("dicefg_sq", mode="multilabel")
    assert fg.squared and not fg.include_background and not fg.batch
    ov = get_loss("study_dice[smooth=1e-5]", mode="multiclass")
    assert ov.batch is True and ov.smooth == 1e-5
    ft = get_loss("focal_tversky[gamma=1.5]", mode="multiclass")
    assert isinstance(ft, TverskyLoss) and (ft.alpha, ft.beta, ft.gamma) == (0.3, 0.7, 1.5)
    assert isinstance(get_loss("study_cce", mode="multiclass"), CrossEntropyLoss)


@pytest.mark.parametrize("name, mode, match", [
    ("dicefg", "binary", "does not apply to a binary task"),
    ("study_dicefg_sq", "binary", "does not apply to a binary task"),
    ("bce", "multiclass", "use 'cce'"),
    ("cce", "multilabel", "does not apply to a multilabel task"),
    ("study_cce", "binary", "does not apply to a binary task"),
])
def test_mode_rules(name, mode, match):
    with pytest.raises(ValueError, match=match):
        get_loss(name, mode=mode)


def test_vocabulary_is_listed_and_described():
    names = list_losses()
    for n in ["dicefg", "dice_sq", "dicefg_sq", "focal_tversky", *STUDY_LOSSES, "bce", "cce", "iou"]:
        assert n in names
    desc = describe_losses()
    assert set(desc) == set(names)
    assert desc["study_dice"][0] == "dice[batch=true,smooth=1e-07]"
    assert desc["dicefg"][0] == "dice[include_background=false]"
    assert list(STUDY_LABELS.values()) == ["CCE", "DICE", "DICEFG", "DICE_SQUARE", "DICEFG_SQUARE"]
    assert "format_loss" in seglab.__all__ and "format_loss" in seglab.losses.__all__


# ------------------------------------------------------------------------------------------------- round trip

def _applicable(name: str, mode: str) -> bool:
    e = NAMES.get(name)
    if e is None:  # a base loss: all modes unless its class says otherwise (onehot_bce: multiclass only)
        return mode in getattr(LOSSES[name], "modes", (mode,))
    return e.modes is None or mode in e.modes


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_every_name(mode):
    for name in list_losses():
        if not _applicable(name, mode):
            continue
        loss = get_loss(name, mode=mode)
        text = format_loss(loss)
        again = get_loss(text, mode=mode)
        assert _same_loss(loss, again), (name, text)
        assert format_loss(again) == text


@pytest.mark.parametrize("spec, mode, text", [
    ("dice", "multiclass", "dice"),
    ("study_dicefg", "multiclass", "dice[batch=true,include_background=false,smooth=1e-07]"),
    ("0.5*dice[squared=true] + 2*ce[class_weights=[0.163,1,1.929]]", "multiclass",
     "0.5*dice[squared=true] + 2.0*ce[class_weights=[0.163,1.0,1.929]]"),
    ("focal[alpha=0.25,gamma=1]+lovasz[per_image=true]", "binary", "focal[alpha=0.25,gamma=1.0] + lovasz[per_image=true]"),
    ("ce[pos_weight=[3,20],ignore_index=2]", "multilabel", "ce[ignore_index=2,pos_weight=[3.0,20.0]]"),
    ("dice[soft_targets=product,reduction=sum]", "multiclass", "dice[reduction=sum,soft_targets=product]"),
    ("gdice[weighting=simple]", "multiclass", "gdice[weighting=simple]"),
])
def test_round_trip_composites(spec, mode, text):
    loss = get_loss(spec, mode=mode)
    assert format_loss(loss) == text
    assert _same_loss(get_loss(text, mode=mode), loss)


def test_format_operators_built_losses():
    loss = DiceLoss("multiclass", batch=True) + 0.25 * FocalLoss("multiclass", gamma=3.0)
    text = format_loss(loss)
    assert text == "dice[batch=true] + 0.25*focal[gamma=3.0]"
    assert _same_loss(get_loss(text, mode="multiclass"), loss)


_floats = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    w=st.one_of(st.just(1.0), _floats),
    smooth=st.one_of(st.just(1e-5), st.floats(min_value=0.0, max_value=10.0, allow_nan=False)),
    squared=st.booleans(), batch=st.booleans(), include_background=st.booleans(), log=st.booleans(),
    cw=st.one_of(st.none(), st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=3, max_size=3)),
    ls=st.floats(min_value=0.0, max_value=0.5),
    with_ce=st.booleans(),
)
def test_round_trip_property(w, smooth, squared, batch, include_background, log, cw, ls, with_ce):
    mode = "multiclass"
    d = DiceLoss(mode, squared=squared, batch=batch, include_background=include_background, log=log, smooth=smooth,
                 class_weights=cw)
    loss = w * d if w != 1.0 else d
    if with_ce:
        loss = loss + CrossEntropyLoss(mode, label_smoothing=ls, class_weights=cw)
    text = format_loss(loss)
    again = get_loss(text, mode=mode)
    assert _same_loss(again, loss), text
    assert format_loss(again) == text


# ------------------------------------------------------------------------------------------- recorded names

def test_canonical_spec_pastes_into_get_loss():
    assert canonical_spec("study_dice", "multiclass") == "study_dice"
    assert canonical_spec("DiceFG", "multiclass") == "dicefg"
    assert canonical_spec("dice[batch=True]+ce", "multiclass") == "dice[batch=true] + ce"
    for spec in ("study_dicefg_sq", "0.5*dice[batch=True] + ce[class_weights=[1,2]]"):
        text = canonical_spec(spec, "multiclass")
        assert _same_loss(get_loss(text, mode="multiclass"), get_loss(spec, mode="multiclass"))
