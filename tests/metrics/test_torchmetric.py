"""Registered seglab metrics as torchmetrics Metrics (seglab.metrics.torchmetric): equal to the seglab metric,
mergeable states (what DDP sums or concatenates), MetricCollection, and Lightning's self.log in a real Trainer."""

from __future__ import annotations

import pytest
import torch

from seglab.metrics import dice_score, get_metric, list_metrics, metric_info
from seglab.metrics.torchmetric import torchmetric


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(2, 12, 12, dtype=torch.long)
    t[:, 2:7, 2:7] = 1
    t[:, 8:11, 3:10] = 2
    p = torch.roll(t, shifts=int(torch.randint(-1, 2, (1,), generator=g)), dims=1)
    return p, t


@pytest.mark.parametrize("name", list_metrics())
def test_equals_the_seglab_metric_and_merges(name):
    opts = dict(mode="multiclass", num_classes=3, **metric_info(name).required)
    ref = get_metric(name, **opts)
    a, b = torchmetric(name, **opts), torchmetric(name, **opts)
    for i, m in enumerate((a, a, b)):
        p, t = _batch(i)
        m.update(p, t)
        ref.update(p, t)
    a.merge_state(b)  # what the all-reduce (sum) or all-gather (cat) of two processes gives
    torch.testing.assert_close(a.compute(), ref.compute(), equal_nan=True)


def test_metric_collection_and_class_reduction():
    from torchmetrics import MetricCollection

    coll = MetricCollection({"dice": torchmetric("dice", mode="multiclass", num_classes=3, class_reduction="mean"),
                             "iou": torchmetric("iou", mode="multiclass", num_classes=3)})
    p, t = _batch(0)
    coll.update(p, t)
    out = coll.compute()
    assert out["dice"].ndim == 0 and out["iou"].shape == (3,)
    assert float(out["dice"]) == pytest.approx(float(dice_score(p, t, mode="multiclass", num_classes=3).mean()))
    with pytest.raises(ValueError, match="class_reduction"):
        torchmetric("dice", mode="multiclass", num_classes=3, class_reduction="sum")


def test_lightning_self_log(tmp_path):
    import lightning as L  # the dev extra installs it
    torch.manual_seed(0)
    xs, ys = torch.randn(8, 1, 12, 12), _batch(0)[1].repeat(4, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=4)
    seen = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Conv2d(1, 3, 3, padding=1)
            self.val_dice = torchmetric("dice", mode="multiclass", num_classes=3, class_reduction="mean")

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            pred = self.net(x).argmax(1)
            seen.append((pred, y))
            self.val_dice.update(pred, y)
            self.log("val_dice", self.val_dice, on_epoch=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(Module(), loader, loader)
    pred, y = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    want = dice_score(pred, y, mode="multiclass", num_classes=3)
    assert float(trainer.callback_metrics["val_dice"]) == pytest.approx(float(want[~want.isnan()].mean()), rel=1e-6)
