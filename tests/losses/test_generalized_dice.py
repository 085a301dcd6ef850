"""GeneralizedDiceLoss against MONAI (Sudre 2017 weighting and MONAI's infinite-weight policy)."""

import pytest
import torch

from seglab import GeneralizedDiceLoss
from seglab.losses import generalized_dice_loss
from conftest import make_inputs


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("weighting", ["square", "simple", "uniform"])
def test_multiclass_matches_monai(monai_losses, dims, batch, weighting):
    x, t = make_inputs("multiclass", dims, n=3, c=4)
    ref = monai_losses.GeneralizedDiceLoss(to_onehot_y=True, softmax=True, w_type=weighting, batch=batch)(x, t[:, None])
    torch.testing.assert_close(GeneralizedDiceLoss("multiclass", weighting=weighting, batch=batch)(x, t), ref)


def test_absent_class_and_multilabel_match_monai(monai_losses):
    x, y = make_inputs("multilabel", 2, n=2, c=3)
    y[0, 1] = 0  # class 1 absent from sample 0 -> infinite weight replaced by the max finite one
    ref = monai_losses.GeneralizedDiceLoss(sigmoid=True, include_background=False)(x, y)
    torch.testing.assert_close(generalized_dice_loss(x, y, mode="multilabel", include_background=False), ref)


def test_all_empty_sample_is_zero_and_finite():
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    loss = generalized_dice_loss(x, y, mode="multilabel")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_bad_weighting():
    with pytest.raises(ValueError, match="weighting must be one of"):
        GeneralizedDiceLoss("multiclass", weighting="cubic")
