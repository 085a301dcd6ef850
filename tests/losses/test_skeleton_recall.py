"""Skeleton Recall against a direct computation of its formula with scikit-image on fixed masks.

The reference here does not reuse seglab's transform: it skeletonizes with ``skimage.morphology.skeletonize``,
builds the tube with two ``skimage.morphology.dilation`` calls (default cross footprint), keeps it inside the
foreground and labels it, as nnU-Net Skeleton-Recall's ``SkeletonTransform(do_tube=True)`` does, then evaluates
``1 - mean_c (sum p_c s_c + smooth) / (sum s_c + smooth)`` with numpy.
"""

import numpy as np
import pytest
import torch
from skimage.morphology import dilation, skeletonize

from seglab import get_loss
from seglab.losses import SkeletonRecallLoss, skeleton_recall_loss
from seglab.transforms import TubedSkeleton


def _masks_2d():
    t = np.zeros((2, 20, 18), dtype=np.int64)
    t[0, 8:13, 1:17] = 1          # a horizontal band
    t[0, 2:18, 3:6] = 2           # a vertical band of class 2 crossing it
    t[1, 3:16, 4:15] = 1          # a filled square
    t[1, 5:9, 6:9] = 0            # with a hole
    return t


def _mask_3d():
    t = np.zeros((1, 9, 12, 10), dtype=np.int64)
    t[0, 3:7, 2:10, 3:7] = 1      # a thick rod
    t[0, 2:8, 5:7, 1:9] = 2
    return t


def _reference_skeleton(seg):
    """nnU-Net's transform, per image: skeleton of seg > 0, dilated twice, times the labels."""
    out = np.zeros_like(seg)
    for i in range(seg.shape[0]):
        if (seg[i] > 0).any():
            sk = (skeletonize(seg[i] > 0) > 0).astype(np.int64)
            out[i] = dilation(dilation(sk)) * seg[i]
    return out


def _reference_loss(probs, skel_onehot, smooth, batch):
    axes = tuple(range(2, probs.ndim))
    inter = (probs * skel_onehot).sum(axes)
    total = skel_onehot.sum(axes)
    if batch:
        inter, total = inter.sum(0), total.sum(0)
    return 1.0 - np.mean((inter + smooth) / (total + smooth))


@pytest.mark.parametrize("seg", [_masks_2d(), _mask_3d()], ids=["2d", "3d"])
@pytest.mark.parametrize("batch", [False, True])
def test_multiclass_equals_the_formula(seg, batch):
    c = 3
    x = torch.randn(seg.shape[0], c, *seg.shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    skel = _reference_skeleton(seg)
    onehot = np.eye(c)[skel].transpose(0, -1, *range(1, skel.ndim))[:, 1:]  # classes 1..C-1
    probs = torch.softmax(x, 1).numpy()[:, 1:]
    ref = _reference_loss(probs, onehot, 1e-5, batch)
    t = torch.from_numpy(seg)
    assert float(skeleton_recall_loss(x, t, mode="multiclass", batch=batch)) == pytest.approx(ref, rel=1e-12)
    # the DataLoader transform gives the same skeleton: passing it changes nothing
    tf = TubedSkeleton("multiclass", spatial_dims=seg.ndim - 1)
    pre = torch.stack([tf({"target": t[i]})["skeleton"] for i in range(t.shape[0])])
    assert torch.equal(pre, torch.from_numpy(skel))
    got = SkeletonRecallLoss("multiclass", batch=batch)(x, t, skeleton=pre)
    assert float(got) == pytest.approx(ref, rel=1e-12)


def test_multilabel_skeleton_per_channel():
    seg = _masks_2d()
    y = np.stack([seg == 1, seg == 2], axis=1).astype(np.float64)  # (2, 2, H, W)
    x = torch.randn(*y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    skel = np.stack([_reference_skeleton(y[:, k].astype(np.int64)) for k in range(2)], axis=1).astype(np.float64)
    ref = _reference_loss(torch.sigmoid(x).numpy(), skel, 1e-3, False)
    got = get_loss("skeleton_recall[smooth=0.001]", mode="multilabel")(x, torch.from_numpy(y))
    assert float(got) == pytest.approx(ref, rel=1e-12)


def test_no_tube_is_the_plain_skeleton():
    seg = _masks_2d()
    x = torch.randn(2, 3, *seg.shape[1:], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sk = np.stack([skeletonize(s > 0) for s in seg]) * seg
    ref = _reference_loss(torch.softmax(x, 1).numpy()[:, 1:], np.eye(3)[sk].transpose(0, 3, 1, 2)[:, 1:], 1e-5, False)
    assert float(skeleton_recall_loss(x, torch.from_numpy(seg), mode="multiclass", tube=0)) == pytest.approx(ref, rel=1e-12)


def test_gradient_only_on_the_skeleton_and_towards_it():
    seg = torch.from_numpy(_masks_2d())
    x = torch.zeros(2, 3, *seg.shape[1:], dtype=torch.float64, requires_grad=True)
    skeleton_recall_loss(x, seg, mode="multiclass").backward()
    skel = torch.from_numpy(_reference_skeleton(_masks_2d()))
    on = skel > 0
    assert x.grad.abs().sum(1)[~on].max() == 0  # no skeleton pixel, no gradient
    g_true = x.grad.gather(1, skel.unsqueeze(1)).squeeze(1)[on]
    assert (g_true < 0).all()  # gradient descent raises the logit of the skeleton's class


def test_perfect_recall_is_zero_loss():
    seg = torch.from_numpy(_masks_2d())
    x = torch.nn.functional.one_hot(seg, 3).movedim(-1, 1).double() * 1000
    assert float(skeleton_recall_loss(x, seg, mode="multiclass")) == pytest.approx(0.0, abs=1e-9)


def test_bad_inputs():
    seg = torch.from_numpy(_masks_2d())
    x = torch.zeros(2, 3, *seg.shape[1:], dtype=torch.float64)
    with pytest.raises(ValueError, match="skeleton values must be class indices in \\[0, 3\\)"):
        skeleton_recall_loss(x, seg, mode="multiclass", skeleton=seg + 5)
    with pytest.raises(TypeError, match="a multiclass skeleton is an integer class map"):
        skeleton_recall_loss(x, seg, mode="multiclass", skeleton=seg.double())
    with pytest.raises(ValueError, match="the skeleton_recall loss needs 2 or 3 spatial dims"):
        skeleton_recall_loss(torch.zeros(2, 3, 7), torch.zeros(2, 7, dtype=torch.long), mode="multiclass")
    with pytest.raises(ValueError, match="tube must be a non-negative integer"):
        SkeletonRecallLoss("binary", tube=-1)
