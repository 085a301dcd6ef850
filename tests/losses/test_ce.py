"""CrossEntropyLoss against torch.nn built-ins and the source documents' clipped formula."""

import pytest
import torch
import torch.nn.functional as F

from seglab import CrossEntropyLoss
from seglab.losses import cross_entropy
from conftest import make_inputs


@pytest.mark.parametrize("dims", [0, 1, 2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_index_matches_torch(dims, reduction, weighted):
    x, t = make_inputs("multiclass", dims, c=4)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64) if weighted else None
    ours = CrossEntropyLoss("multiclass", class_weights=w, reduction=reduction)(x, t)
    ref = torch.nn.CrossEntropyLoss(weight=w, reduction=reduction)(x, t)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_multiclass_ignore_index_and_smoothing_match_torch(smoothing):
    x, t = make_inputs("multiclass", 2, c=3)
    t[0, 0, :3] = 255
    w = torch.tensor([0.2, 1.0, 4.0], dtype=torch.float64)
    ours = cross_entropy(x, t, mode="multiclass", class_weights=w, ignore_index=255, label_smoothing=smoothing)
    ref = F.cross_entropy(x, t, weight=w, ignore_index=255, label_smoothing=smoothing)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_multiclass_float_targets_match_torch(kind):
    x, y = make_inputs("multiclass", 3, c=3, target=kind)
    torch.testing.assert_close(cross_entropy(x, y, mode="multiclass"), F.cross_entropy(x, y))


def test_index_and_onehot_targets_agree():
    x, t = make_inputs("multiclass", 2, c=5)
    oh = F.one_hot(t, 5).movedim(-1, 1).double()
    torch.testing.assert_close(cross_entropy(x, t, mode="multiclass"), cross_entropy(x, oh, mode="multiclass"))
    torch.testing.assert_close(cross_entropy(x, t[:, None], mode="multiclass"), cross_entropy(x, t, mode="multiclass"))


@pytest.mark.parametrize("mode", ["multilabel", "binary"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_bce_pos_weight_broadcasts_like_torch(mode, dims):
    x, y = make_inputs(mode, dims, c=3)
    c = x.shape[1]
    pw = torch.linspace(1.0, 9.0, c, dtype=torch.float64)
    cw = torch.linspace(0.5, 2.0, c, dtype=torch.float64)
    view = (c,) + (1,) * dims
    ref = torch.nn.BCEWithLogitsLoss(weight=cw.view(view), pos_weight=pw.view(view))(x, y)
    ours = CrossEntropyLoss(mode, class_weights=cw, pos_weight=pw)(x, y)
    torch.testing.assert_close(ours, ref)


def test_binary_accepts_target_without_channel_dim():
    x, y = make_inputs("binary", 2)
    torch.testing.assert_close(cross_entropy(x, y[:, 0], mode="binary"), F.binary_cross_entropy_with_logits(x, y))


def test_multilabel_ignore_index_drops_elements():
    x, y = make_inputs("multilabel", 2, c=2)
    y2 = y.clone()
    y2[0, 1] = -1
    keep = y2 != -1
    ref = F.binary_cross_entropy_with_logits(x[keep], y[keep])
    torch.testing.assert_close(cross_entropy(x, y2, mode="multilabel", ignore_index=-1), ref)


def test_all_ignored_gives_zero_not_nan():
    x, t = make_inputs("multiclass", 2)
    t[:] = -100
    x.requires_grad_(True)
    loss = cross_entropy(x, t, mode="multiclass", ignore_index=-100)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(x.grad).all()


def test_source_document_clipped_cce_formula():
    """Chlebus 2018: mean over pixels of -sum_c y log(clip(softmax, 1e-7, 1-1e-7)); equal for moderate logits."""
    x, t = make_inputs("multiclass", 2, n=3, c=2, scale=1.5)
    y = F.one_hot(t, 2).movedim(-1, 1).double()
    p = torch.softmax(x, 1).clamp(1e-7, 1 - 1e-7)
    study = (-(y * torch.log(p)).sum(1)).mean()
    torch.testing.assert_close(cross_entropy(x, t, mode="multiclass"), study)


def test_log_space_survives_extreme_logits():
    """Clipping probabilities would cap the loss at -log(1e-7) = 16.1; log-space CE keeps the true value."""
    x = torch.tensor([[[100.0]], [[-100.0]]]).view(1, 2, 1)
    t = torch.tensor([[0]]).view(1, 1)
    x2 = torch.tensor([[-100.0], [100.0]]).view(1, 2, 1).requires_grad_(True)
    loss = cross_entropy(x2, t, mode="multiclass")
    loss.backward()
    assert loss.item() == pytest.approx(200.0)
    assert torch.isfinite(x2.grad).all() and x2.grad.abs().sum() > 0
    assert cross_entropy(x, t, mode="multiclass").item() == pytest.approx(0.0, abs=1e-30)
