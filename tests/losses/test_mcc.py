"""MCCLoss against MONAI's MCCLoss; ignore_index as dropped pixels; gradcheck."""

import pytest
import torch

from seglab.losses import MCCLoss, mcc_loss
from conftest import make_inputs


def _onehot(t, c):
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("batch", [False, True])
def test_multiclass_matches_monai(monai_losses, dims, batch):
    x, t = make_inputs("multiclass", dims, n=2, c=3)
    for include_background in (True, False):
        for reduction in ("mean", "sum", "none"):
            kw = dict(include_background=include_background, batch=batch, reduction=reduction)
            ref = monai_losses.MCCLoss(softmax=True, to_onehot_y=True, **kw)(x, t[:, None])
            torch.testing.assert_close(MCCLoss("multiclass", **kw)(x, t), ref)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
@pytest.mark.parametrize("target", ["hard", "soft"])
def test_sigmoid_modes_match_monai(monai_losses, mode, target):
    x, y = make_inputs(mode, 2, n=3, c=2, target=target)
    ref = monai_losses.MCCLoss(sigmoid=True, smooth_nr=0.1, smooth_dr=1e-3)(x, y)
    torch.testing.assert_close(mcc_loss(x, y, mode=mode, smooth_nr=0.1, smooth_dr=1e-3), ref)


def test_onehot_target_equals_index_target():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    torch.testing.assert_close(mcc_loss(x, _onehot(t, 3), mode="multiclass"), mcc_loss(x, t, mode="multiclass"))


def test_perfect_prediction_is_zero():
    _, t = make_inputs("multiclass", 2, n=2, c=3)
    x = _onehot(t, 3) * 1000.0  # softmax saturates to exact one-hot in float64
    assert float(mcc_loss(x, t, mode="multiclass")) == 0.0


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_ignored_pixels_are_dropped(monai_losses, mode):
    """ignore_index equals MONAI's MCC on the kept pixels only (the same pixels ignored in every sample)."""
    x, t = make_inputs(mode, 2, n=2, c=3)
    keep = torch.ones(6, 5, dtype=torch.bool)
    keep[1:3, 2:] = False
    tt = t.clone()
    if mode == "multiclass":
        tt[:, ~keep] = 255
        y_kept = _onehot(t, 3)[..., keep]
        ref = monai_losses.MCCLoss(softmax=True)(x[..., keep], y_kept)
    else:
        tt[:, :, ~keep] = 255
        ref = monai_losses.MCCLoss(sigmoid=True)(x[..., keep], t[..., keep])
    torch.testing.assert_close(mcc_loss(x, tt, mode=mode, ignore_index=255), ref)


@pytest.mark.parametrize("mode", ["multiclass", "multilabel", "binary"])
def test_gradcheck(mode):
    x, t = make_inputs(mode, 1, n=2, c=3)  # (2, C, 7)
    x.requires_grad_()
    for batch in (False, True):
        assert torch.autograd.gradcheck(lambda v: mcc_loss(v, t, mode=mode, batch=batch), (x,), atol=1e-7)


def test_bad_options():
    with pytest.raises(ValueError, match="smooth_dr must be a finite number > 0"):
        MCCLoss("binary", smooth_dr=0.0)
    with pytest.raises(ValueError, match="include_background=False would drop the only channel"):
        MCCLoss("binary", include_background=False)
