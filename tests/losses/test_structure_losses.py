"""Properties every structure-aware / robust loss keeps (issue 12): empty batches, empty and full masks, autocast."""

import pytest
import torch

from seglab import get_loss

NAMES = ["boundary", "hausdorff", "cldice", "skeleton_recall", "mcc", "topk_ce", "dice+cldice"]


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_gives_zero_with_zero_gradient(name):
    x = torch.zeros(0, 3, 8, 8, requires_grad=True)
    v = get_loss(name, mode="multiclass")(x, torch.zeros(0, 8, 8, dtype=torch.long))
    assert v.shape == () and float(v.detach()) == 0.0
    v.backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_finite_on_empty_and_full_masks(name, mode):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    targets = ([torch.zeros(2, 8, 8, dtype=torch.long)] if mode == "multiclass"
               else [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)])
    for y in targets:
        loss = get_loss(name, mode=mode)(x, y)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all(), (name, mode)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_autocast_accumulates_in_float32(name):
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    img = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(img)
        loss = get_loss(name, mode="multiclass")(logits, t)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    torch.testing.assert_close(loss.detach(), get_loss(name, mode="multiclass")(logits.float().detach(), t),
                               rtol=0, atol=1e-5)


def test_mcc_float32_has_no_cancellation_in_tn():
    """TN near 0 beside a large image: float32 agrees with float64 (TN = count - sum p - sum y + TP would not)."""
    x = 6.0 + torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = torch.ones_like(x)
    y[..., :2, :2] = 0
    mcc_ref = 1 - get_loss("mcc", mode="binary")(x, y)  # about -1e-5: the float32 value must get its digits right
    mcc_32 = 1 - get_loss("mcc", mode="binary")(x.float(), y.float()).double()
    torch.testing.assert_close(mcc_32, mcc_ref, rtol=1e-2, atol=0)  # the cancelling form is off by 65 %
