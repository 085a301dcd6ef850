"""Soft clDice against MONAI's SoftclDiceLoss / SoftDiceclDiceLoss; the composite dice+cldice; gradcheck."""

import pytest
import torch

from seglab import get_loss
from seglab.losses import ClDiceLoss, cldice_loss
from seglab.losses.cldice import soft_skeleton
from conftest import make_inputs


def _onehot(t, c):
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("iterations", [0, 3, 6])
def test_multiclass_matches_monai(monai_losses, dims, iterations):
    x, t = make_inputs("multiclass", dims, n=2, c=3)
    for include_background in (True, False):
        ref = monai_losses.SoftclDiceLoss(iter_=iterations, softmax=True, include_background=include_background)(
            x, _onehot(t, 3))
        ours = ClDiceLoss("multiclass", iterations=iterations, include_background=include_background)(x, t)
        torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_modes_match_monai(monai_losses, mode):
    x, y = make_inputs(mode, 2, n=3, c=2)
    kw = dict(smooth=0.5, eps=1e-3)
    ref = monai_losses.SoftclDiceLoss(iter_=2, sigmoid=True, smooth_nr=0.5, smooth_dr=0.5, smooth=1e-3,
                                      reduction="none")(x, y)
    torch.testing.assert_close(cldice_loss(x, y, mode=mode, iterations=2, reduction="none", **kw), ref)


@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_dice_plus_cldice_matches_monai(monai_losses, alpha):
    """The composite parses through the grammar and equals MONAI's SoftDiceclDiceLoss ((1-a) Dice + a clDice)."""
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    ref = monai_losses.SoftDiceclDiceLoss(iter_=3, alpha=alpha, softmax=True, to_onehot_y=True)(x, t[:, None])
    loss = get_loss(f"{1 - alpha}*dice + {alpha}*cldice", mode="multiclass", smooth=1.0)
    torch.testing.assert_close(loss(x, t), ref)
    assert set(loss.last_parts) == {"dice", "cldice"}
    assert get_loss("dice+cldice[iterations=5]", mode="binary").parts[1].iterations == 5


def test_gradient_equals_monai(monai_losses):
    x, y = make_inputs("multilabel", 2, n=2, c=2)
    x.requires_grad_()
    g = torch.autograd.grad(ClDiceLoss("multilabel")(x, y), x)[0]
    g_ref = torch.autograd.grad(monai_losses.SoftclDiceLoss(sigmoid=True)(x, y), x)[0]
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("mode, shape", [("multiclass", (3, 2, 3)), ("multilabel", (4, 3)), ("binary", (5,))])
def test_gradcheck(mode, shape):
    g = torch.Generator().manual_seed(0)
    c = 1 if mode == "binary" else 2
    x = torch.randn(1, c, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 2, (1, *shape), generator=g)
    t = t if mode == "multiclass" else torch.rand(1, c, *shape, generator=g, dtype=torch.float64).round()
    assert torch.autograd.gradcheck(lambda v: cldice_loss(v, t, mode=mode, iterations=2), (x,), atol=1e-7, fast_mode=True)


def test_1d_equals_2d_with_a_singleton_axis():
    x, y = make_inputs("multilabel", 1, n=2, c=2)
    torch.testing.assert_close(cldice_loss(x, y, mode="multilabel"), cldice_loss(x[..., None], y[..., None], mode="multilabel"))


def test_soft_skeleton_of_a_bar_is_its_midline():
    bar = torch.zeros(1, 1, 9, 12, dtype=torch.float64)
    bar[..., 3:6, 1:11] = 1
    sk = soft_skeleton(bar, 3)
    assert sk[0, 0, 4, 2:10].min() == 1 and sk[0, 0, [3, 5]].sum() == 0  # midline row on, the outer rows off


def test_bad_options():
    with pytest.raises(ValueError, match="iterations must be a non-negative integer"):
        ClDiceLoss("binary", iterations=-1)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        ClDiceLoss("binary", eps=0)
    x = torch.randn(2, 1)
    with pytest.raises(ValueError, match="the cldice loss needs 1 or 2 or 3 spatial dims"):
        cldice_loss(x, torch.ones(2, 1), mode="binary")
