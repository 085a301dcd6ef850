"""TverskyLoss / focal Tversky against MONAI, smp and its special cases."""

import pytest
import torch

from seglab import TverskyLoss
from seglab.losses import dice_loss, jaccard_loss, tversky_loss
from conftest import make_inputs


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("ab", [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_multiclass_matches_monai(monai_losses, dims, batch, ab):
    x, t = make_inputs("multiclass", dims, n=2, c=3)
    ref = monai_losses.TverskyLoss(to_onehot_y=True, softmax=True, alpha=ab[0], beta=ab[1], batch=batch)(x, t[:, None])
    torch.testing.assert_close(TverskyLoss("multiclass", alpha=ab[0], beta=ab[1], batch=batch)(x, t), ref)


def test_multilabel_matches_monai(monai_losses):
    x, y = make_inputs("multilabel", 2, c=3)
    ref = monai_losses.TverskyLoss(sigmoid=True, alpha=0.2, beta=0.8, include_background=False)(x, y)
    torch.testing.assert_close(tversky_loss(x, y, mode="multilabel", alpha=0.2, beta=0.8, include_background=False), ref)


def test_matches_smp(smp_losses):
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    ref = smp_losses.TverskyLoss("multiclass", alpha=0.3, beta=0.7, smooth=0.0)(x, t)
    torch.testing.assert_close(tversky_loss(x, t, mode="multiclass", alpha=0.3, beta=0.7, batch=True, smooth=0.0), ref)


def test_special_cases_dice_and_jaccard():
    x, t = make_inputs("multiclass", 2, c=3)
    torch.testing.assert_close(tversky_loss(x, t, mode="multiclass", smooth=0.0), dice_loss(x, t, mode="multiclass", smooth=0.0))
    torch.testing.assert_close(tversky_loss(x, t, mode="multiclass", alpha=1.0, beta=1.0, smooth=0.0),
                               jaccard_loss(x, t, mode="multiclass", smooth=0.0))


def test_focal_tversky_exponent_per_class():
    x, t = make_inputs("multiclass", 2, c=3)
    per = tversky_loss(x, t, mode="multiclass", alpha=0.3, beta=0.7, reduction="none")
    torch.testing.assert_close(tversky_loss(x, t, mode="multiclass", alpha=0.3, beta=0.7, gamma=0.75), (per**0.75).mean())


def test_beta_penalises_false_negatives():
    # prediction misses half of a foreground object: FN-heavy; larger beta -> larger loss
    t = torch.zeros(1, 1, 10)
    t[..., :6] = 1
    x = torch.full((1, 1, 10), -8.0)
    x[..., :3] = 8.0
    lo = tversky_loss(x, t, mode="binary", alpha=0.7, beta=0.3)
    hi = tversky_loss(x, t, mode="binary", alpha=0.3, beta=0.7)
    assert hi > lo


def test_bad_parameters():
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0, got -0.1"):
        TverskyLoss("binary", alpha=-0.1)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0, got 0"):
        TverskyLoss("binary", gamma=0)


def test_focal_tversky_gradient_finite_at_perfect_class():
    """(1 - TI)^gamma with gamma < 1 has an infinite slope at TI = 1; a perfect class must not give NaN."""
    t = torch.zeros(1, 6, dtype=torch.long)
    t[0, :3] = 1
    x = torch.nn.functional.one_hot(t, 2).movedim(-1, 1).double() * 200 - 100
    x.requires_grad_(True)
    loss = tversky_loss(x, t, mode="multiclass", alpha=0.3, beta=0.7, gamma=0.75, smooth=0.0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and loss.item() < 1e-9
