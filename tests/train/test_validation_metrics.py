"""train/evaluate.py: validation from summed counts through the metric registry; void pixels count nowhere."""

from __future__ import annotations

import pytest
import torch

from seglab.metrics import dice_score, iou_score
from seglab.train.evaluate import evaluate


class Fixed(torch.nn.Module):
    """Returns logits that predict ``pred`` whatever the input."""

    def __init__(self, pred: torch.Tensor, num_classes: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.logits = torch.nn.functional.one_hot(pred, num_classes).movedim(-1, 1).float() * 10

    def forward(self, x):
        return self.logits[: x.shape[0]] + self.w


def test_pooled_registry_metrics_and_void_pixels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (4, 8, 8), generator=g)
    pred = torch.randint(0, 3, (4, 8, 8), generator=g)
    y_void = y.clone()
    y_void[:, :2] = 255
    out = evaluate(Fixed(pred, 3), torch.zeros(4, 1, 8, 8), y_void, mode="multiclass", num_classes=3, ignore_index=255)
    keep = y_void != 255
    want = dice_score(pred, y_void, mode="multiclass", num_classes=3, ignore_index=255, aggregate="pooled")
    assert out["dice"] == pytest.approx(want.tolist())
    assert out["iou"] == pytest.approx(iou_score(pred, y_void, mode="multiclass", num_classes=3, ignore_index=255,
                                                 aggregate="pooled").tolist())
    assert out["accuracy"] == pytest.approx(float((pred == y_void)[keep].double().mean()))
    assert out["fg_dice"] == pytest.approx(float(want[1:].mean()))
    with pytest.raises(ValueError, match="class indices"):
        evaluate(Fixed(pred, 3), torch.zeros(4, 1, 8, 8), y_void, mode="multiclass", num_classes=3)
