"""seglab.DeepSupervisionLoss against hand-computed weighted sums, MONAI's DeepSupervisionLoss and nnU-Net's
DeepSupervisionWrapper (when nnunetv2 imports)."""

from __future__ import annotations

import re

import pytest
import torch

import seglab
from seglab import DeepSupervisionLoss, get_loss
from seglab.losses.deep_supervision import downsample_target, nnunet_weights


def _outputs(n=2, c=3, size=16, levels=3, seed=0, dims=2):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(n, c, *([size // 2**k] * dims), generator=g, dtype=torch.float64) for k in range(levels)]
    t = torch.randint(0, c, (n, *([size] * dims)), generator=g)
    return outs, t


def test_nnunet_weights_by_hand():
    assert nnunet_weights(1) == [1.0]
    assert nnunet_weights(2) == [1.0, 0.0]
    for got, want in zip(nnunet_weights(4), [1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0], strict=True):
        assert got == pytest.approx(want, rel=1e-15)


def test_equals_weighted_sum_with_a_list_of_targets():
    outs, t = _outputs()
    targets = [t, t[:, ::2, ::2], t[:, ::4, ::4]]
    inner = get_loss("dice+ce", mode="multiclass")
    w = [0.6, 0.3, 0.1]
    ref = sum(wk * inner(o, tk) for wk, o, tk in zip(w, outs, targets, strict=True))
    torch.testing.assert_close(DeepSupervisionLoss(inner, weights=w)(outs, targets), ref)
    # default weights: nnU-Net's [1, 0.5, 0] / 1.5
    ref = (1 / 1.5) * inner(outs[0], targets[0]) + (0.5 / 1.5) * inner(outs[1], targets[1])
    ds = DeepSupervisionLoss(inner)
    torch.testing.assert_close(ds(outs, targets), ref)
    assert ds.last_levels[2] is None and ds.last_levels[0] is not None


def test_full_resolution_target_is_downsampled_nearest_exact():
    """"nearest-exact" (MONAI's choice) reads source pixel floor((i + 0.5) * scale): for 16 -> 8 pixel 2i + 1,
    for 16 -> 4 pixel 4i + 2, written here by slicing."""
    outs, t = _outputs()
    inner = get_loss("dice+ce", mode="multiclass")
    ref = inner(outs[0], t) + 0.5 * inner(outs[1], t[:, 1::2, 1::2]) + 0.25 * inner(outs[2], t[:, 2::4, 2::4])
    for target in (t, t[:, None], t[:, None].float()):
        torch.testing.assert_close(DeepSupervisionLoss(inner, weights=[1.0, 0.5, 0.25])(outs, target), ref)


def test_downsample_keeps_dtype_and_values():
    t = torch.randint(0, 5, (2, 1, 9, 7))
    for dt in (torch.int64, torch.int32, torch.uint8, torch.float32, torch.bool):
        tt = (t > 2) if dt == torch.bool else t.to(dt)
        out = downsample_target(tt, (4, 3), 4)
        assert out.dtype == tt.dtype and out.shape == (2, 1, 4, 3)
        assert set(out.unique().tolist()) <= set(tt.unique().tolist())
    onehot = torch.nn.functional.one_hot(t[:, 0], 5).movedim(-1, 1).float()
    down = downsample_target(onehot, (4, 3), 4)
    torch.testing.assert_close(down.sum(1), torch.ones(2, 4, 3))  # still one-hot
    x3 = downsample_target(torch.randint(0, 3, (1, 8, 8, 8)), (4, 4, 4), 5)
    assert x3.shape == (1, 4, 4, 4)


def test_equals_monai_deep_supervision_loss(monai_losses):
    outs, t = _outputs(levels=4, size=32)
    for w in ([1.0, 0.5, 0.25, 0.125], [1.0, 0.2, 0.2, 0.0]):
        ref = monai_losses.DeepSupervisionLoss(monai_losses.DiceCELoss(to_onehot_y=True, softmax=True), weights=w)(
            [o.float() for o in outs], t[:, None].float())
        ours = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass"), weights=w)([o.float() for o in outs],
                                                                                       t[:, None].float())
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_equals_nnunet_deep_supervision_wrapper():
    pytest.importorskip("nnunetv2", reason="nnU-Net is an optional test peer: pip install --no-deps nnunetv2")
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    outs, t = _outputs(levels=4, size=32)
    outs = [o.float() for o in outs]
    targets = [t[:, None], t[:, None, 1::2, 1::2], t[:, None, 2::4, 2::4], t[:, None, 4::8, 4::8]]
    targets = [x.float() for x in targets]  # nnU-Net's loader gives float label maps (N, 1, *)
    w = nnunet_weights(4)
    nn_loss = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False},
                                                    {}, weight_ce=1, weight_dice=1, ignore_label=None,
                                                    dice_class=MemoryEfficientSoftDiceLoss), w)
    ours = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass", batch=True, include_background=False))
    # nnU-Net's Dice term is -dice, seglab's 1 - dice: the sums differ by the total weight (1)
    torch.testing.assert_close(ours(outs, targets), nn_loss(outs, targets) + sum(w), rtol=1e-5, atol=1e-5)


def test_gradients_reach_weighted_levels_only():
    outs, t = _outputs()
    outs = [o.requires_grad_() for o in outs]
    DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass"))(outs, t).backward()
    assert outs[0].grad is not None and outs[1].grad is not None and outs[2].grad is None


def test_gradcheck():
    outs, t = _outputs(n=1, c=2, size=4, levels=2)
    ds = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass"), weights=[0.7, 0.3])
    outs = [o.requires_grad_() for o in outs]
    assert torch.autograd.gradcheck(lambda a, b: ds([a, b], t), tuple(outs))


def test_single_tensor_is_one_level_and_3d_and_mask():
    outs, t = _outputs(dims=3, size=8, levels=2)
    inner = get_loss("dice+ce", mode="multiclass")
    torch.testing.assert_close(DeepSupervisionLoss(inner)(outs[0], t), inner(outs[0], t))
    m = torch.rand(t.shape) > 0.3
    ref = inner(outs[0], t, mask=m) + 0.5 * inner(outs[1], t[:, 1::2, 1::2, 1::2], mask=m[:, 1::2, 1::2, 1::2])
    torch.testing.assert_close(DeepSupervisionLoss(inner, weights=[1, 0.5])(outs, t, mask=m), ref)


def test_per_sample_composite_none():
    outs, t = _outputs()
    ds = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass", reduction="none"), weights=[1.0, 0.5, 0.25])
    out = ds(outs, t)
    assert out.shape == (2,)
    mean = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass"), weights=[1.0, 0.5, 0.25])
    torch.testing.assert_close(out, torch.stack([mean([o[i:i + 1] for o in outs], t[i:i + 1]) for i in range(2)]))


def test_compiles_with_fullgraph():
    torch._dynamo.reset()
    outs, t = _outputs()
    outs = [o.float() for o in outs]
    ds = DeepSupervisionLoss(get_loss("dice+ce", mode="multiclass"))
    compiled = torch.compile(lambda a, b, c, y: ds([a, b, c], y), fullgraph=True, backend="eager")
    with seglab.validation(False):
        torch.testing.assert_close(compiled(*outs, t[:, None].float()), ds(outs, t))


def test_bad_inputs():
    outs, t = _outputs()
    inner = get_loss("dice+ce", mode="multiclass")

    def raises(exc, msg, fn):
        with pytest.raises(exc, match=re.escape(msg)):
            fn()

    raises(ValueError, "weights has 2 entries but the network gave 3 outputs",
           lambda: DeepSupervisionLoss(inner, weights=[1, 0.5])(outs, t))
    raises(ValueError, "weights[1] must be a finite number >= 0, got -0.5",
           lambda: DeepSupervisionLoss(inner, weights=[1, -0.5]))
    raises(ValueError, "weights must not all be zero, got [0.0, 0.0]", lambda: DeepSupervisionLoss(inner, weights=[0, 0]))
    raises(TypeError, "weights must be None or a non-empty sequence of numbers", lambda: DeepSupervisionLoss(inner, weights=[]))
    raises(TypeError, "loss must be a loss module or callable", lambda: DeepSupervisionLoss("dice"))
    raises(ValueError, "target is a list of 2 but there are 3 outputs", lambda: DeepSupervisionLoss(inner)(outs, [t, t]))
    raises(ValueError, "logits must come highest resolution first: logits[1] (2, 3, 8, 8) is larger than logits[0] (2, 3, 4, 4)",
           lambda: DeepSupervisionLoss(inner)(outs[::-1], t))
    raises(ValueError, "logits[1] has shape (2, 4, 8, 8) but logits[0] has (2, 3, 16, 16)",
           lambda: DeepSupervisionLoss(inner)([outs[0], torch.randn(2, 4, 8, 8)], t))
    raises(TypeError, "logits must be a non-empty list/tuple of tensors", lambda: DeepSupervisionLoss(inner)([], t))
    raises(ValueError, "deep supervision level 1 (logits (2, 3, 8, 8)): multiclass integer target must have shape",
           lambda: DeepSupervisionLoss(inner)(outs, [t, t, t[:, ::4, ::4]]))
