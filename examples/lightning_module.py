"""A Lightning module with a seglab loss and a seglab metric.

* the loss: any spec of ``seglab.get_loss`` (here ``dice+ce``), built once in ``__init__``; it is an
  ``nn.Module`` with buffers only (class weights), so Lightning moves it with the model;
* the metric: ``seglab.metrics.DiceScore`` (stateful, per-image mean as MONAI's ``DiceMetric``): ``update`` in
  ``validation_step``, ``compute`` + ``reset`` at the end of the epoch. Under DDP ``compute`` sums the counts of
  every process (never an average of averages), so every rank logs the same value;
* ``last_parts``: a composite loss reports each part's value after each call — logged per part.

Run: ``python examples/lightning_module.py`` (a few seconds on a CPU). Tested in tests/test_examples.py.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import seglab
from seglab.metrics import DiceScore


def synthetic_data(n: int, size: int = 24, seed: int = 0) -> TensorDataset:
    """Images (N, 1, H, W) and int64 class maps (N, H, W): a bright band (class 1), a dark band (class 2)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        a, b = torch.randint(0, size - 6, (2,), generator=g).tolist()
        labels[i, a:a + 6] = 1
        labels[i, :, b:b + 4] = 2
    images = 0.3 * torch.randn(n, 1, size, size, generator=g) + (labels == 1).float()[:, None] - (labels == 2).float()[:, None]
    return TensorDataset(images, labels)


class SegModule(L.LightningModule):
    """A tiny fully-convolutional network trained with a seglab loss; validation Dice from a seglab metric."""

    def __init__(self, loss: str = "dice+ce", num_classes: int = 3, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, num_classes, 1))
        self.loss = seglab.get_loss(loss, mode="multiclass")
        self.dice = DiceScore(mode="multiclass", num_classes=num_classes)
        self.val_dice: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        for name, value in getattr(self.loss, "last_parts", {}).items():  # dice, ce of a composite
            self.log(f"train/{name}", value)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", self.loss(logits, y))
        self.dice.update(seglab.predict(logits, "multiclass"), y)

    def on_validation_epoch_end(self) -> None:
        scores = self.dice.compute()  # (C,) per-class Dice; under DDP summed over processes first
        self.dice.reset()
        self.val_dice = scores
        self.log("val/dice_fg", scores[1:].nanmean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(max_steps: int = 40, seed: int = 0) -> SegModule:
    """Fit for ``max_steps`` steps on CPU and validate; returns the module (``val_dice`` holds the last scores)."""
    L.seed_everything(seed, verbose=False)
    train = DataLoader(synthetic_data(32, seed=seed), batch_size=8, shuffle=True)
    val = DataLoader(synthetic_data(8, seed=seed + 1), batch_size=8)
    module = SegModule()
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        check_val_every_n_epoch=1)
    trainer.fit(module, train, val)
    return module


if __name__ == "__main__":
    m = main()
    print("validation Dice per class:", [round(v, 3) for v in m.val_dice.tolist()])
