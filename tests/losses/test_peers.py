"""The argument mappings of docs/peers.md, each run as an equality (1e-5) with the peer on random inputs.

MONAI (DiceCELoss, DiceFocalLoss, TverskyLoss, MaskedDiceLoss, DiceLoss(reduction="none")), smp (DiceLoss) and
nnU-Net (DC_and_CE_loss with MemoryEfficientSoftDiceLoss / SoftDiceLoss). Inputs follow each peer's own
conventions (MONAI: float (N, 1, *spatial) label maps); seglab takes them as they are. The plain-default
equalities (MONAI DiceLoss, TverskyLoss with index targets, smp DiceLoss without ignore_index) live in
test_dice.py, test_tversky.py, test_contract.py and are not repeated here.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seglab import DiceLoss, FocalLoss, get_loss
from seglab.kernels import dispatch

TOL = dict(rtol=1e-5, atol=1e-5)


def _mc(n=2, c=4, spatial=(9, 8), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *spatial, generator=g).to(dtype) * 2
    t = torch.randint(0, c, (n, *spatial), generator=g)
    return x, t


def _onehot(t, c):
    return F.one_hot(t, c).movedim(-1, 1).float()


# ---------------------------------------------------------------- MONAI
@pytest.mark.parametrize("spatial", [(9, 8), (5, 4, 6)])
@pytest.mark.parametrize("include_background, batch", [(True, False), (False, True)])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.3, 1.7)])
@pytest.mark.parametrize("fused", [True, False])
def test_monai_dice_ce(monai_losses, spatial, include_background, batch, lambdas, fused):
    x, t = _mc(spatial=spatial)
    ld, lc = lambdas
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True, include_background=include_background, batch=batch,
                                  lambda_dice=ld, lambda_ce=lc)(x, t[:, None].float())
    ours = get_loss(f"{ld}*dice + {lc}*ce", mode="multiclass", include_background=include_background, batch=batch)
    with dispatch.fused(fused):
        torch.testing.assert_close(ours(x, t[:, None].float()), ref, **TOL)


def test_monai_dice_ce_weight(monai_losses):
    """MONAI's ``weight`` multiplies each class's Dice loss before a plain mean (sum w L / C); seglab's
    ``class_weights`` give a weighted mean (sum w L / sum w). CE normalises by sum w_t in both. So seglab's
    ``class_weights=w`` equals MONAI's ``weight=w * C / sum(w)``."""
    x, t = _mc()
    w = torch.tensor([0.5, 1.0, 2.0, 3.0])
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True, weight=w * 4 / w.sum())(x, t[:, None].float())
    torch.testing.assert_close(get_loss("dice+ce", mode="multiclass", class_weights=w)(x, t[:, None].float()), ref, **TOL)


def test_monai_dice_ce_binary(monai_losses):
    """With one channel MONAI's DiceCELoss(sigmoid=True) uses BCE-with-logits: seglab's binary dice+ce."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 9, 8, generator=g) * 2
    y = (torch.rand(2, 1, 9, 8, generator=g) > 0.5).float()
    ref = monai_losses.DiceCELoss(sigmoid=True)(x, y)
    torch.testing.assert_close(get_loss("dice+ce", mode="binary")(x, y), ref, **TOL)


@pytest.mark.parametrize("gamma", [2.0, 0.5])
def test_monai_dice_focal_softmax(monai_losses, gamma):
    """MONAI's DiceFocalLoss(softmax=True) pairs a softmax Dice with a *sigmoid* focal loss on the one-hot target
    (its FocalLoss defaults to use_softmax=False), averaged over N*C*H*W: in seglab, the sum of a multiclass
    DiceLoss and a multilabel FocalLoss on the one-hot target."""
    x, t = _mc()
    ref = monai_losses.DiceFocalLoss(to_onehot_y=True, softmax=True, gamma=gamma, lambda_focal=0.7)(x, t[:, None].float())
    ours = DiceLoss("multiclass")(x, t[:, None].float()) + 0.7 * FocalLoss("multilabel", gamma=gamma)(x, _onehot(t, 4))
    torch.testing.assert_close(ours, ref, **TOL)


def test_monai_dice_focal_sigmoid(monai_losses):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 9, 8, generator=g) * 2
    y = (torch.rand(2, 3, 9, 8, generator=g) > 0.5).float()
    ref = monai_losses.DiceFocalLoss(sigmoid=True, gamma=2.0, include_background=True)(x, y)
    torch.testing.assert_close(get_loss("dice+focal[gamma=2]", mode="multilabel")(x, y), ref, **TOL)


@pytest.mark.parametrize("spatial", [(9, 8), (5, 4, 6)])
def test_monai_tversky_with_label_maps(monai_losses, spatial):
    x, t = _mc(spatial=spatial)
    ref = monai_losses.TverskyLoss(to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7, include_background=False)(
        x, t[:, None].float())
    ours = get_loss("tversky[alpha=0.3,beta=0.7]", mode="multiclass", include_background=False)
    torch.testing.assert_close(ours(x, t[:, None].float()), ref, **TOL)


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_monai_masked_dice(monai_losses, batch, fused):
    """MONAI's MaskedDiceLoss multiplies input (after softmax) and target by the mask. Given a one-hot target
    that removes the masked pixels from every sum, as seglab's mask. (Given a label map with to_onehot_y=True,
    MONAI masks the labels *before* one-hot encoding, so masked pixels count as background targets.)"""
    x, t = _mc()
    m = torch.rand(2, 1, 9, 8, generator=torch.Generator().manual_seed(3)) > 0.4
    ref = monai_losses.MaskedDiceLoss(softmax=True, batch=batch)(x, _onehot(t, 4), mask=m.float())
    with dispatch.fused(fused):
        torch.testing.assert_close(DiceLoss("multiclass", batch=batch)(x, t[:, None].float(), mask=m), ref, **TOL)


def test_monai_dice_reduction_none_shape(monai_losses):
    """MONAI keeps singleton spatial dims, (N, C, 1, 1); seglab returns (N, C): ``.view(N, C, 1, 1)`` converts."""
    x, t = _mc()
    ref = monai_losses.DiceLoss(to_onehot_y=True, softmax=True, reduction="none")(x, t[:, None].float())
    ours = DiceLoss("multiclass", reduction="none")(x, t[:, None].float())
    assert ref.shape == (2, 4, 1, 1) and ours.shape == (2, 4)
    torch.testing.assert_close(ours.view(2, 4, 1, 1), ref, **TOL)


# ---------------------------------------------------------------- segmentation_models_pytorch
def test_smp_dice_ignore_index(smp_losses):
    """smp's DiceLoss pools the batch (dims (0, 2)): seglab batch=True. smp zeroes classes absent from the
    target and clamps the denominator with eps; with every class present and smooth=0 they agree."""
    x, t = _mc(c=3)
    t[0, :2] = 255
    assert all(bool((t == k).any()) for k in range(3))
    ref = smp_losses.DiceLoss("multiclass", ignore_index=255, smooth=0.0)(x, t)
    ours = get_loss("dice", mode="multiclass", batch=True, smooth=0.0, ignore_index=255)
    torch.testing.assert_close(ours(x, t), ref, **TOL)


def test_smp_dice_binary(smp_losses):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 9, 8, generator=g) * 2
    y = (torch.rand(2, 1, 9, 8, generator=g) > 0.5).float()
    ref = smp_losses.DiceLoss("binary", smooth=0.0)(x, y)
    torch.testing.assert_close(get_loss("dice", mode="binary", batch=True, smooth=0.0)(x, y), ref, **TOL)


# ---------------------------------------------------------------- nnU-Net
def _nnunet():
    return pytest.importorskip("nnunetv2.training.loss.compound_losses",
                               reason="nnU-Net is an optional test peer: pip install --no-deps nnunetv2")


@pytest.mark.parametrize("batch_dice", [True, False])
@pytest.mark.parametrize("do_bg", [False, True])
@pytest.mark.parametrize("dice_class", ["MemoryEfficientSoftDiceLoss", "SoftDiceLoss"])
@pytest.mark.parametrize("spatial", [(9, 8), (5, 4, 6)])
def test_nnunet_dc_and_ce(batch_dice, do_bg, dice_class, spatial):
    cl = _nnunet()
    from nnunetv2.training.loss import dice as nn_dice

    x, t = _mc(spatial=spatial)
    ref = cl.DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": do_bg, "ddp": False}, {},
                            weight_ce=1, weight_dice=1, ignore_label=None,
                            dice_class=getattr(nn_dice, dice_class))(x, t[:, None].float())
    ours = get_loss("dice+ce", mode="multiclass", batch=batch_dice, include_background=do_bg)
    # nnU-Net's Dice term is -dice, seglab's 1 - dice
    torch.testing.assert_close(ours(x, t[:, None].float()), ref + 1, **TOL)


@pytest.mark.parametrize("fused", [True, False])
def test_nnunet_ignore_label_is_ignore_index_and_mask(fused):
    cl = _nnunet()
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    x, t = _mc()
    keep = torch.rand(t.shape, generator=torch.Generator().manual_seed(5)) > 0.3
    t_ign = t.masked_fill(~keep, 4)  # nnU-Net's ignore label is the class after the last one
    ref = cl.DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                            weight_dice=1, ignore_label=4, dice_class=MemoryEfficientSoftDiceLoss)(x, t_ign[:, None].float())
    with dispatch.fused(fused):
        by_ignore = get_loss("dice+ce", mode="multiclass", batch=True, include_background=False, ignore_index=4)(
            x, t_ign[:, None].float())
        by_mask = get_loss("dice+ce", mode="multiclass", batch=True, include_background=False)(x, t, mask=keep)
    torch.testing.assert_close(by_ignore, ref + 1, **TOL)
    torch.testing.assert_close(by_mask, ref + 1, **TOL)
