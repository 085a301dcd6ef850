"""Detection F1 over connected components (seglab.metrics.components), by hand and against an independent
brute-force matcher on random blobs, 2D and 3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from seglab.metrics import DetectionF1, detection_counts, detection_f1


def _brute(p, t, thr, conn):
    """Every pair of components by set IoU, with Python sets (independent of the bincount matcher)."""
    s = ndimage.generate_binary_structure(p.ndim, conn)
    lp, n_p = ndimage.label(p, s)
    lt, n_t = ndimage.label(t, s)
    P = [set(zip(*np.nonzero(lp == i), strict=True)) for i in range(1, n_p + 1)]
    T = [set(zip(*np.nonzero(lt == j), strict=True)) for j in range(1, n_t + 1)]
    tp = sum(1 for a in T for b in P if len(a & b) / len(a | b) > thr)
    return tp, n_p - tp, n_t - tp


def test_by_hand():
    t = torch.zeros(1, 10, 10, dtype=torch.long)
    t[0, 1:4, 1:4] = 1  # found
    t[0, 6:9, 6:9] = 1  # missed (the prediction covers 1/9 of it)
    p = torch.zeros_like(t)
    p[0, 1:4, 1:3] = 1  # IoU 6/9 > 0.5
    p[0, 6, 6] = 1
    p[0, 0, 8:10] = 1  # invented
    tp, fp, fn = detection_counts(p, t, mode="multiclass", num_classes=2)
    assert (tp[0, 1].item(), fp[0, 1].item(), fn[0, 1].item()) == (1, 2, 1)
    assert detection_f1(p, t, mode="multiclass", num_classes=2)[1].item() == pytest.approx(2 / 5)
    assert detection_f1(p, t, mode="multiclass", num_classes=2, iou_threshold=0.7)[1].item() == 0.0


@pytest.mark.parametrize("shape", [(24, 24), (10, 12, 11)])
@pytest.mark.parametrize("conn", [1, 2])
def test_random_blobs_equal_brute_force(shape, conn):
    rng = np.random.default_rng(len(shape) * 10 + conn)
    for _ in range(4):
        t = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.52
        p = ndimage.gaussian_filter(rng.random(shape), 1.2) > 0.52
        p |= np.roll(t, 1, axis=0) & (rng.random(shape) > 0.2)
        tp, fp, fn = detection_counts(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None], mode="binary",
                                      num_classes=1, connectivity=conn)
        assert (int(tp), int(fp), int(fn)) == _brute(p, t, 0.5, conn)


def test_stateful_pools_component_counts():
    t = torch.zeros(2, 8, 8, dtype=torch.long)
    t[:, 1:3, 1:3] = 1
    p = t.clone()
    p[1] = 0
    m = DetectionF1(mode="multiclass", num_classes=2, aggregate="pooled")
    m.update(p, t)
    assert m.compute()[1].item() == pytest.approx(2 * 1 / (2 * 1 + 0 + 1))
    with pytest.raises(ValueError, match="iou_threshold"):
        DetectionF1(mode="multiclass", num_classes=2, iou_threshold=0.3)


@pytest.mark.parametrize("shape", [(32, 32), (12, 14, 16)])
def test_component_dice_equals_monai_per_component(shape):
    import importlib
    import warnings

    from seglab.metrics import component_dice

    mm = importlib.import_module("monai.metrics")
    rng = np.random.default_rng(len(shape))
    for _ in range(4):
        t = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.55
        p = np.roll(t, 1, axis=0) & (rng.random(shape) > 0.1)
        if not t.any():
            continue
        pt, tt = torch.from_numpy(p.astype(np.int64))[None], torch.from_numpy(t.astype(np.int64))[None]
        oh = [torch.nn.functional.one_hot(x, 2).movedim(-1, 1) for x in (pt, tt)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = mm.DiceMetric(include_background=False, per_component=True, reduction="none")(*oh)
        ours = component_dice(pt, tt, mode="multiclass", num_classes=2, aggregate="none")[0, 1]
        assert float(ours) == pytest.approx(float(ref.flatten()[0]), abs=1e-6)


@pytest.mark.parametrize("shape", [(40, 36), (14, 16, 18)])
def test_boundary_iou_equals_the_distance_formulation(shape):
    """Boundary IoU against an independent reading of Cheng et al.'s band: a mask pixel is in the band when its
    chessboard distance to the background (outside the image included) is at most d."""
    from seglab.metrics import BoundaryIoU, boundary_iou

    rng = np.random.default_rng(len(shape) + 7)
    d = max(1, int(round(0.05 * np.sqrt(sum(s * s for s in shape)))))

    def band(m):
        padded = np.pad(m, 1)
        dist = ndimage.distance_transform_cdt(padded, metric="chessboard")[(slice(1, -1),) * m.ndim]
        return m & (dist <= d)

    for _ in range(3):
        t = ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5
        p = np.roll(t, 2, axis=-1)
        bp, bt = band(p), band(t)
        want = (bp & bt).sum() / (bp | bt).sum()
        pt, tt = (torch.from_numpy(x.astype(np.int64))[None] for x in (p, t))
        got = boundary_iou(pt, tt, mode="multiclass", num_classes=2, dilation_ratio=0.05, aggregate="none")[0, 1]
        assert float(got) == pytest.approx(want)
        m = BoundaryIoU(mode="multiclass", num_classes=2, dilation_ratio=0.05)
        m.update(pt, tt)
        assert float(m.compute()[1]) == pytest.approx(want)
