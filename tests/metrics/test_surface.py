"""Hausdorff distance, surface distance and surface Dice against MONAI, 2D and 3D with anisotropic spacing;
the empty-mask policy; the bad-input messages."""

from __future__ import annotations

import importlib
import math
import sys
import warnings

import numpy as np
import pytest
import torch

from seglab._extras import MissingExtraError
from seglab.metrics import (
    HausdorffDistance,
    SurfaceDice,
    SurfaceDistance,
    average_surface_distance,
    boundary_distances,
    hausdorff_distance,
    surface_dice,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI's own deprecation


@pytest.fixture(scope="module")
def mm():
    try:
        return importlib.import_module("monai.metrics")
    except ImportError:
        pytest.fail("MONAI is a test dependency (make test installs it)")


def _maps(seed, n, c, shape):
    """Class maps of blobs: smoothed noise, arg-maxed (every class present in every image)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *shape, generator=g)
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    x = pool(x, 3, stride=1, padding=1)
    return x.argmax(1)


def _onehot(x, c):
    return torch.nn.functional.one_hot(x, c).movedim(-1, 1).float()


def _close(a, b):
    torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=1e-5, equal_nan=True)


CASES = [((2, 3, (24, 20)), (0.7, 1.3)), ((1, 3, (10, 12, 8)), (1.5, 0.8, 2.0)), ((2, 2, (16, 16)), None)]


@pytest.mark.parametrize("dims,spacing", CASES, ids=["2d", "3d", "2d-unit"])
def test_equal_monai(mm, dims, spacing):
    n, c, shape = dims
    pred, target = _maps(1, n, c, shape), _maps(2, n, c, shape)
    p1, t1 = _onehot(pred, c), _onehot(target, c)
    kw = dict(mode="multiclass", num_classes=c, aggregate="none")
    sp = list(spacing) if spacing is not None else None
    for pct in (None, 95, 50):
        ref = mm.compute_hausdorff_distance(p1, t1, include_background=True, percentile=pct, spacing=sp)
        _close(hausdorff_distance(pred, target, pct, spacing, **kw), ref)
    ref = mm.compute_hausdorff_distance(p1, t1, include_background=True, percentile=95, directed=True, spacing=sp)
    _close(hausdorff_distance(pred, target, 95, spacing, directed=True, **kw), ref)
    for sym in (True, False):
        ref = mm.compute_average_surface_distance(p1, t1, include_background=True, symmetric=sym, spacing=sp)
        _close(average_surface_distance(pred, target, spacing, symmetric=sym, **kw), ref)
    tol = [0.5, 1.0, 2.0][:c]
    ref = mm.compute_surface_dice(p1, t1, tol, include_background=True, spacing=sp)
    _close(surface_dice(pred, target, tol, spacing, **kw), ref)
    # multilabel masks (N, C, *spatial) give the same numbers as the class maps
    ml = dict(mode="multilabel", num_classes=c, aggregate="none")
    _close(surface_dice(p1.bool(), t1, tol, spacing, **ml), ref)


def test_mean_over_images_and_stateful(mm):
    c, sp = 3, (0.9, 1.1)
    pred, target = _maps(3, 4, c, (20, 18)), _maps(4, 4, c, (20, 18))
    kw = dict(mode="multiclass", num_classes=c)
    ref = mm.HausdorffDistanceMetric(include_background=True, percentile=95, reduction="mean_batch")
    ref(_onehot(pred, c), _onehot(target, c), spacing=list(sp))
    _close(hausdorff_distance(pred, target, 95, sp, **kw), ref.aggregate())
    for metric, fn in ((HausdorffDistance(spacing=sp, **kw), lambda p, t: hausdorff_distance(p, t, 95, sp, **kw)),
                       (SurfaceDistance(spacing=sp, **kw), lambda p, t: average_surface_distance(p, t, sp, **kw)),
                       (SurfaceDice(tolerance=1.0, spacing=sp, **kw), lambda p, t: surface_dice(p, t, 1.0, sp, **kw))):
        metric.update(pred[:1], target[:1])
        metric.update(pred[1:], target[1:])
        _close(metric.compute(), fn(pred, target))
        assert metric.values().shape == (4, c)
        metric.reset()
        assert metric.values().shape == (0, c) and torch.isnan(metric.compute()).all()


def _one(shape, box=None):
    m = torch.zeros(1, *shape, dtype=torch.long)
    if box is not None:
        m[(0, *box)] = 1
    return m


def test_empty_mask_policy(mm):
    """Both empty: NaN (skipped by the mean); one empty: inf with a warning for distances, 0 for surface Dice."""
    kw = dict(mode="multiclass", num_classes=2, aggregate="none")
    blob = _one((8, 8), (slice(2, 5), slice(2, 5)))
    empty = _one((8, 8))
    for p, t in ((empty, blob), (blob, empty)):
        for fn in (lambda a, b: hausdorff_distance(a, b, 95, **kw), lambda a, b: hausdorff_distance(a, b, None, **kw),
                   lambda a, b: average_surface_distance(a, b, **kw)):
            with pytest.warns(RuntimeWarning, match=r"classes \[1\].*inf"):
                v = fn(p, t)
            assert v[0, 1].item() == math.inf and v[0, 0].item() > 0
        nsd = surface_dice(p, t, 1.0, **kw)
        assert nsd[0, 1].item() == 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = mm.compute_surface_dice(_onehot(p, 2), _onehot(t, 2), [1.0, 1.0], include_background=True)
        _close(nsd, ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = mm.compute_average_surface_distance(_onehot(p, 2), _onehot(t, 2), include_background=True)
            _close(average_surface_distance(p, t, **kw, symmetric=False), ref)  # MONAI: inf too
    # class 1 absent from both images' prediction and target: NaN, left out of the mean
    both = torch.cat([empty, blob])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both-empty is not warned about
        for v in (hausdorff_distance(empty, empty, **kw), average_surface_distance(empty, empty, **kw),
                  surface_dice(empty, empty, 1.0, **kw)):
            assert math.isnan(v[0, 1].item())
        mean = hausdorff_distance(both, both, **{**kw, "aggregate": "mean"})
        assert mean[1].item() == 0.0  # image 0's NaN skipped, image 1 perfect
        assert surface_dice(empty, empty, 1.0, **{**kw, "empty": 1.0})[0, 1].item() == 1.0


def test_boundary_distances_by_hand():
    """A 3x3 square and the same square shifted by one column, spacing (1, 2): boundaries 8 voxels each."""
    a = np.zeros((7, 7), bool)
    a[2:5, 1:4] = True
    b = np.roll(a, 1, axis=1)
    d_ab, d_ba = boundary_distances(a, b, (1.0, 2.0))
    assert len(d_ab) == len(d_ba) == 8  # the centre voxel is not on the boundary
    # a's left column is one column (x spacing 2) from b's boundary; a's right-centre voxel (3, 3) is inside b,
    # one row (spacing 1) from b's top and bottom boundary voxels; the other four lie on b's boundary
    assert sorted(d_ab.tolist()) == [0.0] * 4 + [1.0] + [2.0] * 3


def test_spacing_scales_distances():
    t = _one((12, 12), (slice(3, 7), slice(3, 7)))
    p = _one((12, 12), (slice(3, 9), slice(3, 7)))  # two extra rows
    kw = dict(mode="multiclass", num_classes=2, aggregate="none")
    assert hausdorff_distance(p, t, None, **kw)[0, 1].item() == 2.0
    assert hausdorff_distance(p, t, None, (0.5, 3.0), **kw)[0, 1].item() == 1.0  # rows are 0.5 apart
    assert hausdorff_distance(p, t, None, 2.0, **kw)[0, 1].item() == 4.0


def test_bad_inputs_name_the_argument():
    t = _one((6, 6), (slice(1, 3), slice(1, 3)))
    kw = dict(mode="multiclass", num_classes=2)
    with pytest.raises(ValueError, match=r"spacing must be None, a positive number or 2"):
        hausdorff_distance(t, t, 95, (1.0, 1.0, 1.0), **kw)
    with pytest.raises(ValueError, match="spacing must be a finite number > 0"):
        hausdorff_distance(t, t, 95, (1.0, -1.0), **kw)
    with pytest.raises(ValueError, match=r"percentile must be a finite number in \[0, 100\]"):
        hausdorff_distance(t, t, 101, **kw)
    with pytest.raises(ValueError, match="tolerance must be a non-negative number or 2"):
        surface_dice(t, t, [1.0], **kw)
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        SurfaceDice(tolerance=-1, **kw)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        average_surface_distance(t, t, aggregate="pooled", **kw)
    with pytest.raises(TypeError, match="multiclass metrics need an integer class map"):
        surface_dice(t.float(), t, 1.0, **kw)


def test_missing_scipy_is_one_line(monkeypatch):
    t = _one((6, 6), (slice(1, 3), slice(1, 3)))
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)  # import fails as if scipy were not installed
    with pytest.raises(MissingExtraError) as e:
        hausdorff_distance(t, t, mode="multiclass", num_classes=2)
    assert str(e.value) == ("hausdorff_distance needs scipy, which is not installed: pip install 'seglab[metrics]'")


SPACINGS = [round(0.1 * i, 1) for i in range(1, 31)]  # 0.1 .. 3.0


@pytest.mark.parametrize("ndim", [2, 3])
def test_surface_dice_at_whole_voxel_tolerances_equals_monai(mm, ndim):
    """A tolerance of k voxels written as a decimal (3 × 0.8 voxels → 2.4) keeps the boundary voxels that lie
    exactly k voxels away, as MONAI does, for spacings 0.1–3.0 and k = 1–5 along each axis (issue 24, item 4:
    these voxels used to be dropped because 3 * 0.8 == 2.4000000000000004 > 2.4)."""
    shape = (14,) * ndim
    mismatches, checked = [], 0
    for s in SPACINGS:
        for k in range(1, 6):
            for axis in range(ndim):
                spacing = tuple(s if a == axis else 1.0 for a in range(ndim))
                p = torch.zeros(1, *shape, dtype=torch.long)
                t = p.clone()
                box = [slice(2, 5)] * ndim
                p[(0, *box)] = 1
                box[axis] = slice(2 + k, 5 + k)
                t[(0, *box)] = 1
                tol = round(k * s, 10)
                ours = surface_dice(p, t, tol, spacing, mode="multiclass", num_classes=2, aggregate="none")[0, 1]
                oh = [torch.nn.functional.one_hot(m, 2).movedim(-1, 1) for m in (p, t)]
                ref = mm.compute_surface_dice(*oh, [tol, tol], include_background=True, spacing=list(spacing))[0, 1]
                checked += 1
                if abs(float(ours) - float(ref)) > 1e-9:
                    mismatches.append((spacing, k, float(ours), float(ref)))
    assert checked == len(SPACINGS) * 5 * ndim
    assert not mismatches, mismatches[:5]
