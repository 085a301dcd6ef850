"""FocalLoss against torchvision's formula (re-derived here), MONAI and smp."""

import pytest
import torch
import torch.nn.functional as F

from seglab import FocalLoss
from seglab.losses import cross_entropy, focal_loss
from conftest import make_inputs


def sigmoid_focal_reference(x, y, alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss, transcribed (torchvision does not import beside this torch)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss.mean()


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_sigmoid_focal_matches_torchvision_formula(mode, alpha, gamma):
    x, y = make_inputs(mode, 2, c=3)
    torch.testing.assert_close(focal_loss(x, y, mode=mode, gamma=gamma, alpha=alpha), sigmoid_focal_reference(x, y, alpha, gamma))


def test_sigmoid_focal_per_channel_alpha():
    x, y = make_inputs("multilabel", 2, c=2)
    a = torch.tensor([0.25, 0.75], dtype=torch.float64)
    ref = sigmoid_focal_reference(x, y, a.view(2, 1, 1), 2.0)
    torch.testing.assert_close(FocalLoss("multilabel", alpha=a)(x, y), ref)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_multiclass_focal_matches_monai(monai_losses, dims, gamma):
    x, t = make_inputs("multiclass", dims, c=4)
    ref = monai_losses.FocalLoss(to_onehot_y=True, use_softmax=True, gamma=gamma, reduction="none")(x, t[:, None])
    # MONAI returns the per-channel terms; the per-pixel loss is their sum over channels
    torch.testing.assert_close(focal_loss(x, t, mode="multiclass", gamma=gamma), ref.sum(1).mean().double(), rtol=1e-5, atol=1e-6)


def test_multiclass_focal_matches_smp(smp_losses):
    x, t = make_inputs("multiclass", 2, c=3)
    # smp sums one-vs-rest *sigmoid* focal terms per class: a different loss. Compare the binary case instead.
    xb, yb = make_inputs("binary", 2)
    ref = smp_losses.FocalLoss("binary", alpha=None, gamma=2.0)(xb, yb)
    torch.testing.assert_close(focal_loss(xb, yb, mode="binary", gamma=2.0), ref)


def test_gamma_zero_is_cross_entropy():
    x, t = make_inputs("multiclass", 2, c=3)
    torch.testing.assert_close(focal_loss(x, t, mode="multiclass", gamma=0.0), cross_entropy(x, t, mode="multiclass"))
    w = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    per_pixel = focal_loss(x, t, mode="multiclass", gamma=0.0, alpha=w, reduction="none")
    torch.testing.assert_close(per_pixel, F.cross_entropy(x, t, weight=w, reduction="none"))


def test_index_and_onehot_agree_with_alpha_and_ignore():
    x, t = make_inputs("multiclass", 2, c=3)
    a = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    oh = F.one_hot(t, 3).movedim(-1, 1).double()
    torch.testing.assert_close(focal_loss(x, t, mode="multiclass", alpha=a), focal_loss(x, oh, mode="multiclass", alpha=a))
    t2 = t.clone()
    t2[:, 0] = 9
    full = focal_loss(x, t, mode="multiclass", reduction="none")
    ours = focal_loss(x, t2, mode="multiclass", ignore_index=9)
    torch.testing.assert_close(ours, full[:, 1:].mean())


def test_focal_down_weights_easy_pixels():
    x = torch.tensor([[4.0, 0.2]], dtype=torch.float64).view(1, 1, 2)  # an easy and a hard positive
    y = torch.ones_like(x)
    per = focal_loss(x, y, mode="binary", reduction="none")
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert (per / ce)[0, 0, 0] < 1e-3 < (per / ce)[0, 0, 1]


def test_bad_alpha():
    x, t = make_inputs("multiclass", 2, c=3)
    with pytest.raises(ValueError, match=r"alpha must be a 1-D tensor with one entry per channel \(length 3\), got shape \(2\)"):
        focal_loss(x, t, mode="multiclass", alpha=torch.ones(2))
    with pytest.raises(ValueError, match="per-class weights"):
        focal_loss(x, t, mode="multiclass", alpha=0.25)
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0, got -1"):
        FocalLoss("binary", gamma=-1)
