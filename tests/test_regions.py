"""seglab.regions: nested-region targets from labels (against MONAI's BraTS conversion), back to labels, the
RegionLoss wrapper (also under deep supervision) and nesting detection."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import seglab
from seglab.regions import RegionLoss, check_regions, labels_to_regions, nested_chain, own_labels, regions_to_labels

BRATS = [[1, 2, 3], [2, 3], [3]]


def test_regions_equal_monai_brats_conversion():
    t = importlib.import_module("monai.transforms")
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (2, 6, 7, 5), generator=g)]  # MONAI's BraTS labels 1, 2, 4
    ref = torch.stack([torch.as_tensor(t.ConvertToMultiChannelBasedOnBratsClasses()(y[i][None])) for i in range(2)])
    ours = labels_to_regions(y, [[1, 4], [1, 2, 4], [4]])  # MONAI's order: tumour core, whole tumour, enhancing
    assert ref.shape == ours.shape == (2, 3, 6, 7, 5) and torch.equal(ours.bool(), ref.bool())


def test_round_trip_and_own_labels():
    y = torch.randint(0, 4, (3, 8, 8))
    assert own_labels(BRATS) == [1, 2, 3]
    assert torch.equal(regions_to_labels(labels_to_regions(y, BRATS) > 0.5, BRATS), y)
    with pytest.raises(ValueError, match="no label of its own"):
        own_labels([[3], [2, 3]])


def test_ignore_index_and_bad_regions():
    y = torch.tensor([[0, 1, 255, 3]])
    r = labels_to_regions(y, BRATS, ignore_index=255)
    assert r[0, :, 2].tolist() == [255.0, 255.0, 255.0] and r[0, :, 3].tolist() == [1.0, 1.0, 1.0]
    for bad in ([], [[1], [1]], [[-1]], "123", [[1.5]]):
        with pytest.raises(ValueError):
            check_regions(bad)


def test_region_loss_equals_the_loss_on_region_targets_and_works_with_deep_supervision():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (2, 8, 8), generator=g)
    x = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    inner = seglab.get_loss("dice+ce", mode="multilabel")
    got = RegionLoss(inner, BRATS)(x, y)
    want = inner(x, labels_to_regions(y, BRATS))
    torch.testing.assert_close(got, want)
    got.backward()
    assert torch.isfinite(x.grad).all()
    ds = seglab.DeepSupervisionLoss(RegionLoss(inner, BRATS))
    outs = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 4, 4, generator=g)]
    assert torch.isfinite(ds(outs, y))
    with pytest.raises(ValueError, match="one channel per region"):
        RegionLoss(inner, BRATS)(torch.randn(2, 4, 8, 8), y)


def test_nested_chain():
    counts = [100, 40, 10]
    pairs = np.array([[100, 40, 10], [40, 40, 10], [10, 10, 10]])
    assert nested_chain(counts, pairs) == [0, 1, 2]
    pairs[0, 1] = pairs[1, 0] = 30  # channel 1 leaves channel 0
    assert nested_chain(counts, pairs) is None


def test_advise_detects_nested_channels_and_region_targets_train():
    from seglab.advise import advise

    masks = []
    for i in range(4):
        m = np.zeros((3, 16, 16), np.uint8)
        m[0, 2:14, 2:14] = 1
        m[1, 4:12, 4 + i % 2:12] = 1
        m[2, 6:9, 6:9] = 1
        masks.append(m)
    adv = advise(masks, format="multihot")
    assert adv.mode == "multilabel" and adv.nested_regions == ["channel 0", "channel 1", "channel 2"]
    assert "nested_regions" in [e["rule"] for e in adv.evidence]
    masks[0][2, 0, 0] = 1  # channel 2 now leaves channel 1: not nested
    assert advise(masks, format="multihot").nested_regions is None

    # region targets from label maps train: a few steps of a 1x1 conv lower the region loss
    torch.manual_seed(0)
    y = torch.zeros(4, 12, 12, dtype=torch.long)
    y[:, 2:10, 2:10], y[:, 4:8, 4:8], y[:, 5:7, 5:7] = 1, 2, 3
    x = torch.nn.functional.one_hot(y, 4).movedim(-1, 1).float()
    net = torch.nn.Conv2d(4, 3, 1)
    loss = RegionLoss(seglab.get_loss("dice+ce", mode="multilabel"), BRATS)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    first = None
    for _ in range(30):
        opt.zero_grad()
        value = loss(net(x), y)
        first = first if first is not None else float(value.detach())
        value.backward()
        opt.step()
    assert float(value) < 0.5 * first
    assert torch.equal(regions_to_labels(net(x) > 0, BRATS), y)
