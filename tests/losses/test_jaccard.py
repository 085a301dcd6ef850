"""JaccardLoss against MONAI (jaccard=True) and smp."""

import pytest
import torch

from seglab import JaccardLoss
from seglab.losses import jaccard_loss
from conftest import make_inputs


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
@pytest.mark.parametrize("batch", [False, True])
def test_matches_monai(monai_losses, mode, batch):
    x, y = make_inputs(mode, 2, n=2, c=3)
    kw = dict(to_onehot_y=True, softmax=True) if mode == "multiclass" else dict(sigmoid=True)
    yy = y[:, None] if mode == "multiclass" else y
    ref = monai_losses.DiceLoss(jaccard=True, batch=batch, smooth_nr=0.0, smooth_dr=0.0, **kw)(x, yy)
    torch.testing.assert_close(JaccardLoss(mode, batch=batch, smooth=0.0)(x, y), ref)


@pytest.mark.parametrize("mode", ["multiclass", "binary"])
def test_matches_smp(smp_losses, mode):
    x, y = make_inputs(mode, 3, n=2, c=3)
    ref = smp_losses.JaccardLoss(mode, smooth=0.0)(x, y.long() if mode == "multiclass" else y)
    torch.testing.assert_close(jaccard_loss(x, y, mode=mode, batch=True, smooth=0.0), ref)


def test_soft_target_semimetric():
    x, _ = make_inputs("multilabel", 2, c=2)
    y = torch.sigmoid(x).detach()
    assert jaccard_loss(x, y, mode="multilabel", smooth=0.0).item() == pytest.approx(0.0, abs=1e-12)
    assert jaccard_loss(x, y, mode="multilabel", smooth=0.0, soft_targets="product").item() > 0.1
