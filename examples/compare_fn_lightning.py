"""``seglab compare --lightning``: which loss is better in YOUR LightningModule.

``Module`` is an ordinary LightningModule that takes the loss as a constructor argument (``loss=``); ``Data`` an
ordinary LightningDataModule. ``seglab compare`` builds ``Module(loss=seglab.get_loss(spec, mode=...))`` for
every loss x paired seed, seeds everything with ``lightning.seed_everything(seed)``, fits with
``lightning.Trainer`` and reads the metrics ``trainer.validate`` returns: here the per-class Dice logged as
``dice/<class>``, which becomes ``{"dice": {class: value}}``.

Run the comparison (seconds on a CPU with these options)::

    seglab compare --lightning examples/compare_fn_lightning.py:Module \\
        --datamodule examples/compare_fn_lightning.py:Data --losses dice+ce,ce --seeds 3 --mode multiclass \\
        --fn-opt trainer.max_steps=20 --fn-opt data.size=16 --out results/compare_lightning

``trainer.K=V`` goes to ``lightning.Trainer``, ``data.K=V`` to ``Data``, any other ``--fn-opt`` to ``Module``.
Tested in tests/compare/test_compare_fn.py.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

CLASS_NAMES = ("background", "disk", "square")


def synthetic(n: int, size: int, seed: int) -> TensorDataset:
    """``n`` images with a bright disk (class 1) and a dark square (class 2) on noise, and their class maps."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(n, size, size, dtype=torch.long)
    q, s = max(size // 4, 2), max(size // 5, 2)
    for i in range(n):
        cy, cx = torch.randint(q, size - q, (2,), generator=g).tolist()
        r = int(torch.randint(max(q // 2, 1), q + 1, (1,), generator=g))
        labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        sy, sx = torch.randint(0, size - s, (2,), generator=g).tolist()
        labels[i, sy:sy + s, sx:sx + s] = 2
    images = 0.5 * torch.randn(n, 1, size, size, generator=g) + (labels == 1).float()[:, None] \
        - (labels == 2).float()[:, None]
    return TensorDataset(images, labels)


class Data(L.LightningDataModule):
    """Synthetic training and validation sets (the validation set is the same for every seed)."""

    def __init__(self, size: int = 32, n_train: int = 32, n_val: int = 16, batch_size: int = 4):
        super().__init__()
        self.size, self.n_train, self.n_val, self.batch_size = size, n_train, n_val, batch_size

    def setup(self, stage: str | None = None) -> None:
        self.train_set = synthetic(self.n_train, self.size, seed=0)
        self.val_set = synthetic(self.n_val, self.size, seed=12345)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)  # seeded by seed_everything

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.n_val)


class Module(L.LightningModule):
    """A small conv net trained with the given ``loss``; logs the pooled validation Dice of every class."""

    def __init__(self, loss: torch.nn.Module, lr: float = 1e-2, width: int = 8):
        super().__init__()
        self.loss = loss
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(width, len(CLASS_NAMES), 1))
        self._counts = torch.zeros(len(CLASS_NAMES), 3)  # per class: intersection, predicted, true

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if torch.rand(()) < 0.5:  # augmentation: a random left-right flip
            x, y = x.flip(-1), y.flip(-1)
        value = self.loss(self(x), y)
        self.log("train_loss", value)
        return value

    def on_validation_epoch_start(self) -> None:
        self._counts.zero_()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pred = self(x).argmax(1)
        for c in range(len(CLASS_NAMES)):
            p, t = pred == c, y == c
            self._counts[c] += torch.tensor([(p & t).sum(), p.sum(), t.sum()], dtype=torch.float32)

    def on_validation_epoch_end(self) -> None:
        for c, name in enumerate(CLASS_NAMES):
            inter, npred, ntrue = self._counts[c].tolist()
            dice = 2 * inter / (npred + ntrue) if npred + ntrue else float("nan")
            self.log(f"dice/{name}", dice)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)
