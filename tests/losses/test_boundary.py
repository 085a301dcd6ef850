"""BoundaryLoss against MONAI's BoundaryLoss, and its precomputed-map path."""

import pytest
import torch

from seglab import get_loss
from seglab.losses import BoundaryLoss, boundary_loss
from seglab.transforms import SignedDistanceMap, signed_distance_map
from conftest import make_inputs


def _blobs(n, c, shape, seed=0):
    """Index targets with compact regions (a random map smoothed by majority): real borders, not salt noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, c, (n, *shape), generator=g)
    oh = torch.nn.functional.one_hot(t, c).movedim(-1, 1).double()
    pool = (torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d)
    return pool(oh, 3, 1, 1).argmax(1)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_multiclass_matches_monai(monai_losses, dims, include_background, batch):
    shape = (9, 8) if dims == 2 else (6, 5, 7)
    x = torch.randn(2, 3, *shape, dtype=torch.float64) * 2
    t = _blobs(2, 3, shape)
    kw = dict(include_background=include_background, batch=batch)
    for reduction in ("mean", "sum", "none"):
        ref = monai_losses.BoundaryLoss(softmax=True, to_onehot_y=True, reduction=reduction, **kw)(x, t[:, None])
        ours = BoundaryLoss("multiclass", reduction=reduction, **kw)(x, t)
        torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_modes_match_monai(monai_losses, mode):
    x, y = make_inputs(mode, 2, n=3, c=2)
    ref = monai_losses.BoundaryLoss(sigmoid=True)(x, y)
    torch.testing.assert_close(boundary_loss(x, y, mode=mode), ref.to(x.dtype), rtol=1e-6, atol=1e-7)


def test_gradient_equals_monai(monai_losses):
    x = (torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2).requires_grad_()
    t = _blobs(2, 3, (8, 8), seed=1)
    g_ours = torch.autograd.grad(BoundaryLoss("multiclass")(x, t), x)[0]
    g_ref = torch.autograd.grad(monai_losses.BoundaryLoss(softmax=True, to_onehot_y=True)(x, t[:, None]), x)[0]
    torch.testing.assert_close(g_ours, g_ref.to(g_ours.dtype), rtol=1e-6, atol=1e-9)


def test_precomputed_map_equals_on_the_fly():
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    t = _blobs(2, 3, (10, 9), seed=2)
    loss = BoundaryLoss("multiclass", include_background=False)
    tf = SignedDistanceMap("multiclass", spatial_dims=2, num_classes=3)
    batch = torch.utils.data.default_collate([tf({"target": t[i]}) for i in range(2)])
    torch.testing.assert_close(loss(x, t, distance_map=batch["distance_map"].double()), loss(x, t))
    phi = signed_distance_map(t, mode="multiclass", num_classes=3, dtype=torch.float64)
    torch.testing.assert_close(boundary_loss(x, t, mode="multiclass", distance_map=phi), BoundaryLoss("multiclass")(x, t))


def test_minimal_at_the_target_among_shifts():
    """The boundary integral is smallest when the predicted region is the target region (checks the sign)."""
    t = torch.zeros(1, 16, 16, dtype=torch.long)
    t[0, 5:11, 5:11] = 1
    values = []
    for shift in range(0, 5):
        pred = torch.roll(t, shift, dims=2)
        x = (torch.nn.functional.one_hot(pred, 2).movedim(-1, 1).double() * 20 - 10)
        values.append(float(boundary_loss(x, t, mode="multiclass", include_background=False)))
    assert values == sorted(values) and values[0] < values[-1]


def test_bad_inputs():
    x, t = make_inputs("multiclass", 2)
    with pytest.raises(ValueError, match=r"distance_map must have shape \(2, 3, 6, 5\)"):
        BoundaryLoss("multiclass")(x, t, distance_map=torch.zeros(2, 2, 6, 5))
    with pytest.raises(TypeError, match="distance_map must be a torch.Tensor"):
        boundary_loss(x, t, mode="multiclass", distance_map=[1.0])
    with pytest.raises(ValueError, match="include_background=False would drop the only channel"):
        BoundaryLoss("binary", include_background=False)
    with pytest.raises(ValueError, match="option 'batch' of boundary expects true or false"):
        get_loss("boundary[batch=1]", mode="multiclass")
    with pytest.raises(TypeError, match="mask is not supported by the loss 'boundary'"):
        BoundaryLoss("multiclass")(x, t, torch.ones(2, 6, 5, dtype=torch.bool))
