"""Plain ``ce`` runs torch's own op (``losses.ce.native_cross_entropy``): the same value and gradient as
``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits``, seglab's errors and seglab's values where they differ."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import seglab
from seglab.losses import ce as ce_mod
from seglab.losses.ce import cross_entropy


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_()


@pytest.mark.parametrize("shape", [(2, 3, 8), (2, 3, 8, 8), (2, 3, 4, 4, 4)])
@pytest.mark.parametrize("opts", [{}, {"class_weights": [1.0, 2.0, 0.5]}, {"ignore_index": 2}, {"label_smoothing": 0.1},
                                  {"reduction": "sum"}])
def test_multiclass_is_torch_exactly(shape, opts):
    x = _x(*shape)
    t = torch.randint(0, 3, (shape[0], *shape[2:]), generator=torch.Generator().manual_seed(1))
    ours = seglab.get_loss("ce", mode="multiclass", **opts)(x, t)
    assert ce_mod.native_cross_entropy(x, t, seglab.get_loss("ce", mode="multiclass", **opts).options(), None) is not None
    (g1,) = torch.autograd.grad(ours, x)
    w = opts.get("class_weights")
    ref = F.cross_entropy(x, t, weight=None if w is None else torch.tensor(w), ignore_index=opts.get("ignore_index", -100),
                          label_smoothing=opts.get("label_smoothing", 0.0), reduction=opts.get("reduction", "mean"))
    (g2,) = torch.autograd.grad(ref, x)
    assert torch.equal(ours, ref) and torch.equal(g1, g2)
    xk = x.detach().clone().requires_grad_()  # the fused kernel (the pipeline: a one-part composite) agrees
    kernel = (1.0 * seglab.get_loss("ce", mode="multiclass", **opts))(xk, t)
    (gk,) = torch.autograd.grad(kernel, xk)
    torch.testing.assert_close(kernel, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gk, g2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
def test_sigmoid_is_torch_exactly(mode):
    c = 1 if mode == "binary" else 3
    x = _x(2, c, 8, 8)
    y = (torch.rand(2, c, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    ours = cross_entropy(x, y, mode=mode, pos_weight=[2.0] * c)
    ref = F.binary_cross_entropy_with_logits(x, y, pos_weight=torch.full((c, 1, 1), 2.0))
    assert torch.equal(ours, ref)
    if mode == "binary":
        assert torch.equal(cross_entropy(x, y[:, 0], mode=mode, pos_weight=[2.0]), ref)


def test_seglab_errors_and_values_where_torch_differs():
    x = _x(2, 3, 4, 4)
    t = torch.zeros(2, 4, 4, dtype=torch.long)
    bad = t.clone()
    bad[0, 0, 0] = -100  # torch's default ignore value: out of range for seglab without ignore_index
    for off in (False, True):
        with pytest.raises(ValueError, match=r"found values \[-100\]"):
            cross_entropy(x, bad, mode="multiclass", validate=not off)
    nan = x.detach().clone()
    nan[0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="logits contain 1 non-finite values"):
        seglab.get_loss("ce", mode="multiclass")(nan, t)
    assert torch.isnan(cross_entropy(nan, t, mode="multiclass", validate=False))
    all_ignored = torch.full((2, 4, 4), 7)
    out = cross_entropy(x, all_ignored, mode="multiclass", ignore_index=7)
    assert out.item() == 0.0  # seglab's mean over no pixel (torch: NaN)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        cross_entropy(x, torch.full((2, 3, 4, 4), 2.0), mode="multilabel")
