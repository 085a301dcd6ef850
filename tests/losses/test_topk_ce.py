"""TopK cross-entropy against nnU-Net's TopKLoss semantics and a torch computation of top-k CE.

nnunetv2/training/loss/robust_ce_loss.py (MIC-DKFZ/nnUNet): ``TopKLoss(weight, ignore_index, k=10)`` computes
``nn.CrossEntropyLoss(weight, ignore_index=..., reduce=False)`` per voxel on the (N, 1, *spatial) target, takes
``torch.topk(res.view(-1), int(num_voxels * k / 100))`` and returns the mean. ``_nnunet_topk`` below is that
computation written with torch's functional CE (nnunetv2 is not a dependency).
"""

import pytest
import torch
import torch.nn.functional as F

from seglab import get_loss
from seglab.losses import TopKCrossEntropyLoss, topk_cross_entropy
from conftest import make_inputs


def _nnunet_topk(x, target, k=10.0, weight=None, ignore_index=-100):
    target = target[:, 0].long()
    res = F.cross_entropy(x, target, weight=weight, ignore_index=ignore_index, reduction="none")
    num_voxels = res.numel()
    res, _ = torch.topk(res.view((-1,)), int(num_voxels * k / 100), sorted=False)
    return res.mean()


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("k", [10.0, 25, 100])
def test_multiclass_equals_nnunet(dims, k):
    x, t = make_inputs("multiclass", dims, n=3, c=4)
    torch.testing.assert_close(topk_cross_entropy(x, t, mode="multiclass", k=k), _nnunet_topk(x, t[:, None], k))
    # nnU-Net's float (N, 1, *spatial) label map
    torch.testing.assert_close(TopKCrossEntropyLoss("multiclass", k=k)(x, t[:, None]), _nnunet_topk(x, t[:, None].double(), k))


def test_weights_and_ignore_equal_nnunet():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    t = t.clone()
    t[:, 0, :] = 255
    w = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    ours = get_loss("topk_ce[k=20]", mode="multiclass", class_weights=w, ignore_index=255)(x, t)
    torch.testing.assert_close(ours, _nnunet_topk(x, t[:, None], 20, weight=w, ignore_index=255))


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_modes_are_top_k_bce(mode):
    x, y = make_inputs(mode, 2, n=2, c=3)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none").reshape(-1)
    ref = bce.sort(descending=True).values[: int(bce.numel() * 15 / 100)].mean()
    torch.testing.assert_close(topk_cross_entropy(x, y, mode=mode, k=15), ref)


def test_reductions():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    kk = int(2 * 6 * 5 * 10 / 100)
    none = topk_cross_entropy(x, t, mode="multiclass", reduction="none")
    assert none.shape == (2, 6, 5) and int((none > 0).sum()) == kk
    torch.testing.assert_close(none.sum(), topk_cross_entropy(x, t, mode="multiclass", reduction="sum"))
    torch.testing.assert_close(none.sum() / kk, topk_cross_entropy(x, t, mode="multiclass"))
    # the kept pixels are the largest CE values
    ce = F.cross_entropy(x, t, reduction="none")
    assert ce[none > 0].min() >= ce[none == 0].max()


def test_k_100_is_mean_ce_and_tiny_k_keeps_one_pixel():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    torch.testing.assert_close(topk_cross_entropy(x, t, mode="multiclass", k=100), F.cross_entropy(x, t))
    torch.testing.assert_close(topk_cross_entropy(x, t, mode="multiclass", k=0.1),
                               F.cross_entropy(x, t, reduction="none").max())


@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_gradcheck(mode):
    x, t = make_inputs(mode, 1, n=2, c=3)  # (2, 3, 7)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda v: topk_cross_entropy(v, t, mode=mode, k=30), (x,), atol=1e-7)


def test_bad_k():
    with pytest.raises(ValueError, match=r"k must be a finite number in \(0, 100\]"):
        TopKCrossEntropyLoss("multiclass", k=0)
    with pytest.raises(ValueError, match=r"k must be a finite number in \(0, 100\]"):
        get_loss("topk_ce[k=150]", mode="multiclass")
