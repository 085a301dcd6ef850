"""onehot_bce: per-channel BCE-with-logits on one-hot masks of a multiclass task, against torch's BCE."""

import pytest
import torch
import torch.nn.functional as F

import seglab
from seglab.losses.onehot_bce import OneHotBCELoss, onehot_bce_loss


def _ref(x, y, c):
    return F.binary_cross_entropy_with_logits(x, F.one_hot(y, c).movedim(-1, 1).to(x.dtype))


class TestOneHotBCE:
    @pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 4, 4, 5, 6)])
    def test_equals_torch_bce_on_one_hot(self, shape):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        assert torch.allclose(onehot_bce_loss(x, y), _ref(x, y, shape[1]), atol=1e-12)
        dense = F.one_hot(y, shape[1]).movedim(-1, 1).double()
        assert torch.allclose(OneHotBCELoss()(x, dense), _ref(x, y, shape[1]), atol=1e-12)
        assert torch.allclose(onehot_bce_loss(x, y, reduction="sum"), _ref(x, y, shape[1]) * x.numel(), rtol=1e-12)
        assert onehot_bce_loss(x, y, reduction="none").shape == x.shape

    def test_ignore_index_equals_kept_pixels(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (2, 6, 6), generator=g)
        y[0, :2] = 255
        keep = y != 255
        xs = x.movedim(1, -1)[keep]  # (P, C)
        ref = F.binary_cross_entropy_with_logits(xs, F.one_hot(y[keep], 3).double())
        assert torch.allclose(onehot_bce_loss(x, y, ignore_index=255), ref, atol=1e-12)

    def test_gradcheck(self):
        x = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, 3, (1, 4, 4))
        assert torch.autograd.gradcheck(lambda z: onehot_bce_loss(z, y), (x,))

    def test_modes_and_vocabulary(self):
        assert seglab.format_loss(seglab.get_loss("onehot_bce", "multiclass")) == "onehot_bce"
        for mode in ("binary", "multilabel"):
            with pytest.raises(ValueError, match="multiclass"):
                seglab.get_loss("onehot_bce", mode)
        with pytest.raises(ValueError, match="onehot_bce"):
            seglab.get_loss("bce", "multiclass")
