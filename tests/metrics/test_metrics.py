"""Hard-prediction Dice/IoU with the empty-class policy."""

import math

import pytest
import torch

from seglab.metrics import confusion_counts, dice_from_counts, dice_score, iou_score, pixel_accuracy


@pytest.mark.parametrize("aggregate", ["mean", "pooled"])
def test_multiclass_counts_and_dice_by_hand(aggregate):
    target = torch.tensor([[0, 0, 1, 1, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 0]])
    tp, fp, fn = confusion_counts(pred, target, mode="multiclass", num_classes=4)
    assert tp.tolist() == [1, 2, 1, 0] and fp.tolist() == [1, 1, 0, 0] and fn.tolist() == [1, 0, 1, 0]
    d = dice_score(pred, target, mode="multiclass", num_classes=4, aggregate=aggregate)  # one image: same
    assert d[:3].tolist() == pytest.approx([0.5, 0.8, 2 / 3])
    assert math.isnan(d[3].item())  # class 3 absent from prediction and target: NaN by policy
    assert dice_score(pred, target, mode="multiclass", num_classes=4, empty=1.0)[3].item() == 1.0
    assert iou_score(pred, target, mode="multiclass", num_classes=4)[1].item() == pytest.approx(2 / 3)


def test_per_image_and_mean_over_images_skip_empty():
    target = torch.tensor([[0, 1], [0, 0]])
    pred = torch.tensor([[0, 1], [0, 0]])
    per = dice_score(pred, target, mode="multiclass", num_classes=2, aggregate="none")
    assert per[0].tolist() == [1.0, 1.0] and per[1, 0].item() == 1.0 and math.isnan(per[1, 1].item())
    assert dice_score(pred, target, mode="multiclass", num_classes=2).tolist() == [1.0, 1.0]


def test_mean_and_pooled_differ_by_hand():
    """Image 1 scores class 1 at 4/5, image 2 misses it (0): per-image mean 0.4, pooled 2*2/(2*2+1+2) = 4/7."""
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 0]])
    target = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])
    kw = dict(mode="multiclass", num_classes=2)
    assert dice_score(pred, target, **kw)[1].item() == pytest.approx((0.8 + 0.0) / 2)
    assert dice_score(pred, target, aggregate="pooled", **kw)[1].item() == pytest.approx(4 / 7)
    per = dice_score(pred, target, aggregate="none", **kw)
    assert torch.equal(per.mean(0), dice_score(pred, target, **kw))


def test_bad_options_name_the_argument():
    p = t = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        dice_score(p, t, mode="multiclass", num_classes=2, aggregate="mean_samples")
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        iou_score(p, t, mode="multiclass", num_classes=0)
    with pytest.raises(TypeError, match="pred must be a torch.Tensor"):
        dice_score([0, 1], t, mode="multiclass", num_classes=2)
    with pytest.raises(TypeError, match="empty must be a real number"):
        dice_score(p, t, mode="multiclass", num_classes=2, empty="nan")


def test_predicted_but_absent_scores_zero():
    tp, fp, fn = confusion_counts(torch.tensor([[1, 1]]), torch.tensor([[0, 0]]), mode="multiclass", num_classes=2)
    assert dice_from_counts(tp, fp, fn)[1].item() == 0.0


def test_multilabel_counts_and_ignore():
    target = torch.tensor([[[1.0, 1.0, 0.0, -1.0]]])
    pred = torch.tensor([[[True, False, True, True]]])
    tp, fp, fn = confusion_counts(pred, target, mode="multilabel", num_classes=1, ignore_index=-1)
    assert (tp.item(), fp.item(), fn.item()) == (1, 1, 1)


def test_ignore_index_multiclass_and_accuracy():
    target = torch.tensor([[0, 1, 255]])
    pred = torch.tensor([[0, 0, 1]])
    tp, fp, fn = confusion_counts(pred, target, mode="multiclass", num_classes=2, ignore_index=255)
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 0] and fn.tolist() == [0, 1]
    assert pixel_accuracy(pred, target, ignore_index=255) == 0.5


def test_bad_indices():
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 2\)"):
        confusion_counts(torch.tensor([[0, 5]]), torch.tensor([[0, 1]]), mode="multiclass", num_classes=2)
