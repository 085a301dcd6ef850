"""clDice against the authors' formula (jocpae/clDice, cldice_metric/cldice.py), by hand, and its empty-mask policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.morphology import skeletonize

from seglab.metrics import CLDiceScore, cldice_score


def _reference(v_p: np.ndarray, v_l: np.ndarray) -> float:
    """The authors' clDice: cl_score(v, s) = sum(v * s) / sum(s); 2 tprec tsens / (tprec + tsens)."""
    def cl_score(v, s):
        return np.sum(v * s) / np.sum(s)

    tprec = cl_score(v_p, skeletonize(v_l))
    tsens = cl_score(v_l, skeletonize(v_p))
    return 2 * tprec * tsens / (tprec + tsens)


def _blobs(seed, shape, c=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, c, *shape, generator=g)
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    return pool(x, 3, stride=1, padding=1).argmax(1)


@pytest.mark.parametrize("shape", [(40, 36), (14, 16, 12)], ids=["2d", "3d"])
def test_equals_the_authors_formula(shape):
    pred, target = _blobs(1, shape), _blobs(2, shape)
    got = cldice_score(pred, target, mode="multiclass", num_classes=3, aggregate="none")
    compared = 0
    for i in range(2):
        for k in range(3):
            p, t = (pred[i] == k).numpy(), (target[i] == k).numpy()
            if skeletonize(p).any() and skeletonize(t).any():
                assert got[i, k].item() == pytest.approx(_reference(p, t), rel=1e-12)
                compared += 1
    assert compared >= 4
    mean = cldice_score(pred, target, mode="multiclass", num_classes=3)
    torch.testing.assert_close(mean, got.nanmean(0))
    m = CLDiceScore(mode="multiclass", num_classes=3)
    m.update(pred[:1], target[:1])
    m.update(pred[1:], target[1:])
    torch.testing.assert_close(m.compute(), mean)


def test_broken_line_by_hand_and_empty_policy():
    t = torch.zeros(1, 9, 9, dtype=torch.long)
    t[0, 4, 1:8] = 1
    p = t.clone()
    p[0, 4, 4] = 0  # one gap: Tprec = 1, Tsens = 6/7
    kw = dict(mode="multiclass", num_classes=2, aggregate="none")
    assert cldice_score(p, t, **kw)[0, 1].item() == pytest.approx(2 * (6 / 7) / (1 + 6 / 7))
    assert cldice_score(t, t, **kw)[0, 1].item() == 1.0
    empty = torch.zeros_like(t)
    assert cldice_score(empty, t, **kw)[0, 1].item() == 0.0 and cldice_score(t, empty, **kw)[0, 1].item() == 0.0
    assert math.isnan(cldice_score(empty, empty, **kw)[0, 1].item())
    assert cldice_score(empty, empty, **{**kw, "empty": 1.0})[0, 1].item() == 1.0
