"""DiceLoss against MONAI, segmentation_models_pytorch, the Chlebus 2018 formula, and its stated policies."""


import pytest
import torch
import torch.nn.functional as F

from seglab import DiceLoss
from seglab.losses import dice_loss
from conftest import make_inputs


def onehot(t, c):
    return F.one_hot(t, c).movedim(-1, 1).double()


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("squared", [False, True])
def test_multiclass_matches_monai(monai_losses, dims, batch, include_background, squared):
    x, t = make_inputs("multiclass", dims, n=3, c=4)
    ref = monai_losses.DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True,
                                squared_pred=squared, batch=batch)(x, t[:, None])
    ours = DiceLoss("multiclass", include_background=include_background, squared=squared, batch=batch)(x, t)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("log", [False, True])
def test_sigmoid_modes_match_monai(monai_losses, mode, batch, log):
    x, y = make_inputs(mode, 2, n=2, c=3)
    ref_lossfn = monai_losses.DiceLoss(sigmoid=True, batch=batch, reduction="none")
    per_class = 1 - ref_lossfn(x, y).flatten(1 if not batch else 0)  # monai gives 1 - dice per class
    ref = (-torch.log(per_class)).mean() if log else (1 - per_class).mean()
    torch.testing.assert_close(DiceLoss(mode, batch=batch, log=log)(x, y), ref)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("log", [False, True])
def test_batch_dice_matches_smp(smp_losses, dims, log):
    # smp sums over batch and spatial dims (our batch=True) and zeroes classes absent from the target;
    # with every class present and smooth = 0 the two coincide.
    x, t = make_inputs("multiclass", dims, n=2, c=3)
    assert all((t == k).any() for k in range(3))
    ref = smp_losses.DiceLoss("multiclass", log_loss=log, smooth=0.0)(x, t)
    ours = DiceLoss("multiclass", batch=True, smooth=0.0, log=log)(x, t)
    torch.testing.assert_close(ours, ref)


def test_multilabel_matches_smp(smp_losses):
    x, y = make_inputs("multilabel", 2, n=2, c=3)
    ref = smp_losses.DiceLoss("multilabel", smooth=0.0)(x, y)
    torch.testing.assert_close(DiceLoss("multilabel", batch=True, smooth=0.0)(x, y), ref)


@pytest.mark.parametrize("fg_only", [False, True])
@pytest.mark.parametrize("square", [False, True])
def test_chlebus_formula(fg_only, square):
    """The study's Dice: eps=1e-7 in numerator and denominator, sums over batch and spatial axes."""
    x, t = make_inputs("multiclass", 2, n=2, c=2)
    p, y = torch.softmax(x, 1), onehot(t, 2)
    if fg_only:
        p, y = p[:, 1:], y[:, 1:]
    axis = (0, 2, 3)
    eps = 1e-7
    nom = 2 * (y * p).sum(axis) + eps
    if square:
        y, p = y**2, p**2
    den = y.sum(axis) + p.sum(axis) + eps
    study = 1 - (nom / den).mean()
    ours = dice_loss(x, t, mode="multiclass", batch=True, smooth=1e-7, include_background=not fg_only, squared=square)
    torch.testing.assert_close(ours, study)


def test_trivial_optimum_of_foreground_dice_at_95_percent_foreground():
    """Predicting everything foreground at 95% foreground gives foreground Dice loss 1 - 2*0.95/1.95 ≈ 0.026."""
    n_pix = 400
    t = torch.zeros(1, n_pix, dtype=torch.long)
    t[0, : int(0.95 * n_pix)] = 1
    x = torch.zeros(1, 2, n_pix, dtype=torch.float64)
    x[:, 1] = 50.0  # softmax = [0, 1] everywhere: "everything foreground"
    loss = dice_loss(x, t, mode="multiclass", include_background=False, batch=True, smooth=1e-7)
    expected = 1 - 2 * 0.95 / 1.95
    assert expected == pytest.approx(0.02564, abs=1e-5)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    # with the background included the same prediction is punished: background Dice is 0
    assert dice_loss(x, t, mode="multiclass", batch=True).item() > 0.5


@pytest.mark.parametrize("smooth", [1e-5, 0.0])
@pytest.mark.parametrize("batch", [False, True])
def test_empty_class_contributes_zero_and_never_nan(smooth, batch):
    x = torch.full((2, 3, 4, 4), -30.0, dtype=torch.float64)
    x[:, 0] = 30.0  # predicts class 0 everywhere
    t = torch.zeros(2, 4, 4, dtype=torch.long)  # class 0 everywhere: classes 1, 2 absent from target and prediction
    x.requires_grad_(True)
    per_class = dice_loss(x, t, mode="multiclass", smooth=smooth, batch=batch, reduction="none")
    per_class.sum().backward()
    assert torch.isfinite(per_class).all() and torch.isfinite(x.grad).all()
    assert ((per_class >= 0) & (per_class <= 1)).all()
    if smooth > 0:  # absent from target and prediction: Dice = smooth/smooth = 1, loss 0
        torch.testing.assert_close(per_class, torch.zeros_like(per_class), atol=1e-12, rtol=0)
    else:  # smooth = 0: the exact 0/0 is defined as Dice 1; a vanishing predicted mass already gives Dice 0
        assert per_class[..., 0].abs().max() < 1e-12
        exact = dice_loss(torch.zeros(1, 1, 3, dtype=torch.float64).fill_(-1e4), torch.zeros(1, 1, 3, dtype=torch.float64),
                          mode="binary", smooth=0.0)
        assert exact.item() == 0.0
    # a class absent from the target but predicted costs ~1
    x2 = x.detach().clone()
    x2[:, 2, 0, 0] = 90.0
    per_class2 = dice_loss(x2, t, mode="multiclass", smooth=smooth, batch=batch, reduction="none")
    assert per_class2[..., 2].min().item() > 0.99


def test_all_background_multilabel_batch_is_finite():
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    for batch in (False, True):
        loss = dice_loss(x, y, mode="multilabel", batch=batch)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all() and 0 <= loss.item() <= 1


def test_ignore_index_equals_cropping_the_pixels():
    x, t = make_inputs("multiclass", 1, n=1, c=3)
    t2 = t.clone()
    t2[0, :2] = 255
    ours = dice_loss(x, t2, mode="multiclass", ignore_index=255)
    ref = dice_loss(x[..., 2:], t[..., 2:], mode="multiclass")
    torch.testing.assert_close(ours, ref)


def test_class_weights_weighted_mean():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    w = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    per = dice_loss(x, t, mode="multiclass", reduction="none")
    torch.testing.assert_close(dice_loss(x, t, mode="multiclass", class_weights=w), ((per * w).sum(1) / w.sum()).mean())


def test_index_onehot_and_channel_target_agree():
    x, t = make_inputs("multiclass", 3, n=2, c=3)
    a = dice_loss(x, t, mode="multiclass")
    torch.testing.assert_close(a, dice_loss(x, onehot(t, 3), mode="multiclass"))
    torch.testing.assert_close(a, dice_loss(x, t[:, None], mode="multiclass"))


def test_soft_targets_semimetric_minimum_at_prediction():
    """Wang & Blaschko 2023: the plain soft Dice is not minimal at p == y for soft y; the semimetric form is."""
    x, _ = make_inputs("multiclass", 2, n=2, c=3)
    y = torch.softmax(x, 1).detach()
    semimetric = dice_loss(x, y, mode="multiclass", smooth=0.0)
    product = dice_loss(x, y, mode="multiclass", smooth=0.0, soft_targets="product")
    assert semimetric.item() == pytest.approx(0.0, abs=1e-12)
    assert product.item() > 0.1  # plain soft Dice claims a large loss for a perfect soft prediction
    # on hard (one-hot) targets both forms agree
    x2, t2 = make_inputs("multiclass", 2, n=2, c=3)
    oh = onehot(t2, 3)
    torch.testing.assert_close(dice_loss(x2, oh, mode="multiclass"), dice_loss(x2, oh, mode="multiclass", soft_targets="product"))


def test_soft_targets_gradient_pushes_towards_target():
    x, _ = make_inputs("multilabel", 2, n=1, c=2)
    y = torch.sigmoid(make_inputs("multilabel", 2, n=1, c=2, seed=5)[0])
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = dice_loss(x, y, mode="multilabel", smooth=0.0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert (torch.sigmoid(x) - y).abs().mean().item() < 0.1


def test_log_dice():
    x, t = make_inputs("multiclass", 2, c=3)
    per = dice_loss(x, t, mode="multiclass", reduction="none")
    torch.testing.assert_close(dice_loss(x, t, mode="multiclass", log=True), (-torch.log(1 - per)).mean())


def test_reduction_shapes():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    assert dice_loss(x, t, mode="multiclass", reduction="none").shape == (2, 3)
    assert dice_loss(x, t, mode="multiclass", reduction="none", batch=True, include_background=False).shape == (2,)
    torch.testing.assert_close(dice_loss(x, t, mode="multiclass", reduction="sum"),
                               dice_loss(x, t, mode="multiclass", reduction="none").sum())


def test_binary_include_background_false_is_an_error():
    with pytest.raises(ValueError, match="only channel of binary"):
        DiceLoss("binary", include_background=False)


def test_process_group_requires_batch():
    with pytest.raises(ValueError, match="only applies to batch=True"):
        DiceLoss("multiclass", process_group="world")
    x, t = make_inputs("multiclass", 2)
    with pytest.raises(RuntimeError, match="not initialised"):
        dice_loss(x, t, mode="multiclass", batch=True, process_group="world")
