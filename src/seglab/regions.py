"""Region-based training, as nnU-Net does for nested structures (BraTS: whole tumour ⊃ tumour core ⊃ enhancing).

A label map holds one class per voxel (0 background, 1 edema, 2 non-enhancing core, 3 enhancing). The structures
one reports are **regions**, unions of labels that nest: ``regions=[[1, 2, 3], [2, 3], [3]]``. Training on
regions means one sigmoid output per region and a multi-label loss on region targets:

* :func:`labels_to_regions` — ``(N, *spatial)`` labels -> ``(N, R, *spatial)`` 0/1 region targets;
* :class:`RegionLoss` — wraps any multi-label loss so that the training loop passes label maps (and masks) as
  before; with :class:`seglab.DeepSupervisionLoss` around it, every level converts its downsampled labels;
* :func:`regions_to_labels` — region predictions back to a label map, nnU-Net's rule: the regions in order
  (broadest first), each sets its voxels to its **own** label (the label in it that no later region has).

>>> import torch
>>> y = torch.tensor([[0, 1, 2, 3]])
>>> labels_to_regions(y, [[1, 2, 3], [2, 3], [3]])[0].tolist()
[[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
>>> regions_to_labels(labels_to_regions(y, [[1, 2, 3], [2, 3], [3]]) > 0.5, [[1, 2, 3], [2, 3], [3]]).tolist()
[[0, 1, 2, 3]]
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any
from collections.abc import Sequence

import torch
from torch import nn

Regions = Sequence[Sequence[int]]


def check_regions(regions: Any) -> tuple[tuple[int, ...], ...]:
    """``regions``: a non-empty list of non-empty lists of non-negative labels, each region a distinct set."""
    if isinstance(regions, (str, bytes)) or not isinstance(regions, Sequence) or not regions:
        raise ValueError(f"regions must be a non-empty list of label lists, e.g. [[1, 2, 3], [2, 3], [3]]; got {regions!r}")
    out = []
    for r in regions:
        if isinstance(r, (str, bytes)) or not isinstance(r, Sequence) or not r or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r):
            raise ValueError(f"each region must be a non-empty list of non-negative integer labels, got {r!r}")
        out.append(tuple(sorted(set(int(v) for v in r))))
    if len(set(out)) != len(out):
        raise ValueError(f"regions must be distinct, got {regions!r}")
    return tuple(out)


def labels_to_regions(labels: torch.Tensor, regions: Regions, *, ignore_index: int | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, *spatial)`` (or ``(N, 1, *spatial)``) integer labels -> ``(N, R, *spatial)`` region targets in
    ``dtype``: channel ``r`` is 1 where the label is in ``regions[r]``. Voxels equal to ``ignore_index`` keep
    that value in every channel (a multi-label loss with the same ``ignore_index`` skips them)."""
    regs = check_regions(regions)
    if labels.is_floating_point():
        raise TypeError("labels must be an integer label map (N, *spatial)")
    if labels.ndim >= 3 and labels.shape[1] == 1:
        labels = labels[:, 0]
    chans = [torch.isin(labels, torch.tensor(r, device=labels.device)) for r in regs]
    out = torch.stack(chans, 1).to(dtype)
    if ignore_index is not None:
        out = torch.where((labels == ignore_index).unsqueeze(1), torch.full_like(out, float(ignore_index)), out)
    return out


def own_labels(regions: Regions) -> list[int]:
    """The label each region writes back: its largest label that no later region contains (nnU-Net's
    ``regions_class_order`` for nested regions)."""
    regs = check_regions(regions)
    out = []
    for i, r in enumerate(regs):
        later = set().union(*regs[i + 1:]) if i + 1 < len(regs) else set()
        own = [v for v in r if v not in later]
        if not own:
            raise ValueError(f"region {list(r)} has no label of its own (every label is in a later region): "
                             "order regions broadest first, e.g. [[1, 2, 3], [2, 3], [3]]")
        out.append(max(own))
    return out


def regions_to_labels(region_masks: torch.Tensor, regions: Regions) -> torch.Tensor:
    """``(N, R, *spatial)`` boolean region predictions (e.g. ``sigmoid(logits) > 0.5``) -> ``(N, *spatial)``
    int64 labels: the regions in order, each setting its voxels to its own label (:func:`own_labels`), 0 where
    no region is on."""
    regs = check_regions(regions)
    if region_masks.ndim < 3 or region_masks.shape[1] != len(regs):
        raise ValueError(f"region_masks must be (N, {len(regs)}, *spatial), got {tuple(region_masks.shape)}")
    masks = region_masks.bool()
    out = torch.zeros(masks.shape[:1] + masks.shape[2:], dtype=torch.long, device=masks.device)
    for r, lab in enumerate(own_labels(regs)):
        out[masks[:, r]] = lab
    return out


def nested_chain(pixel_counts: Sequence[int], pairs: Any) -> list[int] | None:
    """Channel indices ordered broadest first when the channels nest (each contained in the one before it:
    ``pairs[i][j] == pixel_counts[j]`` for the narrower ``j``), else None. ``pairs``: co-occurrence counts."""
    order = sorted(range(len(pixel_counts)), key=lambda i: -int(pixel_counts[i]))
    if len(order) < 2 or any(int(pixel_counts[i]) == 0 for i in order):
        return None
    for a, b in pairwise(order):
        if int(pairs[a][b]) != int(pixel_counts[b]) or int(pixel_counts[b]) == int(pixel_counts[a]):
            return None
    return order


class RegionLoss(nn.Module):
    """A multi-label loss on regions built from label maps: ``loss(logits (N, R, *), labels (N, *))``.

    ``loss`` is any seglab loss built with ``mode="multilabel"`` (e.g. ``seglab.get_loss("dice+ce",
    mode="multilabel")``, nnU-Net's region-based Dice + BCE); ``regions`` as :func:`labels_to_regions`.

    >>> import seglab, torch
    >>> rl = RegionLoss(seglab.get_loss("dice+ce", mode="multilabel"), [[1, 2, 3], [2, 3], [3]])
    >>> float(rl(torch.zeros(2, 3, 4, 4), torch.randint(0, 4, (2, 4, 4)))) > 0
    True
    """

    def __init__(self, loss: nn.Module, regions: Regions, *, ignore_index: int | None = None) -> None:
        super().__init__()
        self.loss = loss
        self.regions = check_regions(regions)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, mask: Any = None) -> torch.Tensor:
        if logits.ndim < 3 or logits.shape[1] != len(self.regions):
            raise ValueError(f"logits must have one channel per region ({len(self.regions)}), got {tuple(logits.shape)}")
        target = labels_to_regions(labels, self.regions, ignore_index=self.ignore_index, dtype=logits.dtype)
        return self.loss(logits, target) if mask is None else self.loss(logits, target, mask=mask)
