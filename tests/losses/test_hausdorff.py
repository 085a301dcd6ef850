"""HausdorffDTLoss against MONAI's HausdorffDTLoss / LogHausdorffDTLoss."""

import pytest
import torch

from seglab import get_loss
from seglab.losses import HausdorffDTLoss, hausdorff_loss
from seglab.transforms import DistanceField
from conftest import make_inputs


def _blobs(n, c, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    oh = torch.nn.functional.one_hot(torch.randint(0, c, (n, *shape), generator=g), c).movedim(-1, 1).double()
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    return pool(oh, 3, 1, 1).argmax(1)


def _onehot(t, c):
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("log", [False, True])
def test_multiclass_matches_monai(monai_losses, dims, include_background, log):
    shape = (9, 8) if dims == 2 else (6, 5, 7)
    x = torch.randn(2, 3, *shape, dtype=torch.float64) * 2
    t = _blobs(2, 3, shape)
    cls = monai_losses.LogHausdorffDTLoss if log else monai_losses.HausdorffDTLoss
    for batch in (False, True):
        ref = cls(softmax=True, include_background=include_background, batch=batch)(x, _onehot(t, 3))
        ours = HausdorffDTLoss("multiclass", include_background=include_background, batch=batch, log=log)(x, t)
        torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5])
def test_alpha_and_reductions_match_monai(monai_losses, alpha):
    x = torch.randn(3, 3, 10, 7, dtype=torch.float64)
    t = _blobs(3, 3, (10, 7), seed=3)
    for reduction in ("sum", "none"):
        ref = monai_losses.HausdorffDTLoss(alpha=alpha, softmax=True, include_background=True, reduction=reduction)(
            x, _onehot(t, 3))
        ours = hausdorff_loss(x, t, mode="multiclass", alpha=alpha, reduction=reduction)
        torch.testing.assert_close(ours, ref.reshape(ours.shape).to(ours.dtype), rtol=1e-6, atol=1e-7)
    assert hausdorff_loss(x, t, mode="multiclass", reduction="none").shape == (3, 3)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_modes_match_monai(monai_losses, mode):
    x, y = make_inputs(mode, 2, n=3, c=2)
    ref = monai_losses.HausdorffDTLoss(sigmoid=True, include_background=True)(x, y)
    torch.testing.assert_close(get_loss("hausdorff", mode=mode)(x, y), ref.to(x.dtype), rtol=1e-6, atol=1e-7)


def test_gradient_equals_monai(monai_losses):
    x = (torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2).requires_grad_()
    t = _blobs(2, 3, (8, 8), seed=1)
    g_ours = torch.autograd.grad(HausdorffDTLoss("multiclass", log=True)(x, t), x)[0]
    g_ref = torch.autograd.grad(monai_losses.LogHausdorffDTLoss(softmax=True, include_background=True)(x, _onehot(t, 3)), x)[0]
    torch.testing.assert_close(g_ours, g_ref.to(g_ours.dtype), rtol=1e-6, atol=1e-9)


def test_precomputed_field_equals_on_the_fly():
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    y = (_blobs(2, 2, (9, 9), seed=4)[:, None].expand(2, 2, 9, 9) == torch.tensor([0, 1]).view(1, 2, 1, 1)).double()
    tf = DistanceField("multilabel", spatial_dims=2)
    field = torch.stack([tf(y[i]) for i in range(2)]).double()
    loss = HausdorffDTLoss("multilabel")
    torch.testing.assert_close(loss(x, y, distance_map=field), loss(x, y))


def test_perfect_prediction_is_zero():
    t = _blobs(2, 3, (8, 8), seed=5)
    x = _onehot(t, 3) * 40 - 20
    assert float(hausdorff_loss(x, t, mode="multiclass")) < 1e-12


def test_bad_inputs():
    x, t = make_inputs("multiclass", 2)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        HausdorffDTLoss("multiclass", alpha=-1)
    with pytest.raises(ValueError, match=r"distance_map must have shape \(2, 3, 6, 5\)"):
        hausdorff_loss(x, t, mode="multiclass", distance_map=torch.zeros(2, 3, 5, 6))
