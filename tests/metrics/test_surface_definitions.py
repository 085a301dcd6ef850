"""The three named definitions of the boundary metrics, each equal to its source on random 2D and 3D masks with
anisotropic spacing (to 1e-6), through both distance backends (``edt`` and scipy.ndimage):

* ``"monai"``            MONAI's compute_hausdorff_distance / compute_average_surface_distance / compute_surface_dice
* ``"pooled"``           medpy.metric.binary's hd, hd95, assd, asd
* ``"surface_weighted"`` DeepMind's surface_distance (compute_surface_distances and the metrics on its output)
"""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest
import torch

from seglab.metrics import average_surface_distance, hausdorff_distance, surface_dice
from seglab.metrics import surface as surface_mod
from seglab.metrics.surface import (
    DEFINITIONS,
    distance_backend,
    per_image_values,
    surface_distances,
    surface_element_sizes,
    weighted_percentile,
)

pytestmark = [pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning"),  # MONAI's own deprecation
              pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")]  # surface_distance's scipy use


def _peer(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"{name} is a test dependency (make test installs it with --no-deps)")


@pytest.fixture(scope="module")
def medpy():
    return _peer("medpy.metric.binary")


@pytest.fixture(scope="module")
def deepmind():
    return _peer("surface_distance")


@pytest.fixture(scope="module")
def mm():
    return _peer("monai.metrics")


@pytest.fixture(params=["edt", "scipy"])
def backend(request, monkeypatch):
    """Each test runs with the ``edt`` package computing the transforms and with scipy.ndimage's fallback."""
    if request.param == "edt":
        _peer("edt")
    else:
        monkeypatch.setitem(sys.modules, "edt", None)  # import fails as if edt were not installed
    assert distance_backend() == request.param
    return request.param


def _blobs(seed, shape, c=3, smooth=2):
    """Class maps of random blobs (smoothed noise, arg-maxed), ``(1, *shape)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, *shape, generator=g)
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    for _ in range(smooth):
        x = pool(x, 3, stride=1, padding=1)
    return x.argmax(1)


# (shape, spacing): 2D and 3D, anisotropic; the blobs touch the image border (the boundary there matters)
CASES = [((40, 36), (0.7, 1.3)), ((31, 44), (1.25, 0.4)), ((14, 12, 10), (1.5, 0.8, 2.0)),
         ((10, 16, 13), (0.6, 1.1, 0.9))]
IDS = ["2d-a", "2d-b", "3d-a", "3d-b"]
SEEDS = (0, 1)


def _pairs(shape):
    """Binary (pred, target) numpy pairs: every class of two blob maps (close) and of two unrelated maps."""
    out = []
    for seed in SEEDS:
        t = _blobs(10 + seed, shape)[0]
        for p in (_blobs(10 + seed, shape, smooth=1)[0], _blobs(20 + seed, shape)[0]):
            out += [((p == k).numpy(), (t == k).numpy()) for k in range(3)]
    return [(p, t) for p, t in out if p.any() and t.any()]


def _ours(kind, p, t, spacing, definition, **kw):
    """One value of a seglab metric for boolean numpy masks."""
    pt = torch.from_numpy(p)[None, None]
    tt = torch.from_numpy(t)[None, None]
    return per_image_values(kind, pt, tt, mode="multilabel", num_classes=1, ignore_index=None, spacing=spacing,
                            empty=float("nan"), definition=definition, **kw)[0, 0].item()


def _close(ours, ref):
    np.testing.assert_allclose(ours, float(ref), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape,spacing", CASES, ids=IDS)
def test_pooled_equals_medpy(medpy, backend, shape, spacing):
    for p, t in _pairs(shape):
        _close(_ours("hd", p, t, spacing, "pooled", percentile=95), medpy.hd95(p, t, voxelspacing=spacing))
        _close(_ours("hd", p, t, spacing, "pooled", percentile=None), medpy.hd(p, t, voxelspacing=spacing))
        _close(_ours("asd", p, t, spacing, "pooled"), medpy.assd(p, t, voxelspacing=spacing))
        _close(_ours("asd", p, t, spacing, "pooled", symmetric=False), medpy.asd(p, t, voxelspacing=spacing))


def _dm_symmetric_asd(sd):
    """The area-weighted mean of both directions' distances, from DeepMind's per-element output."""
    num = np.sum(sd["distances_gt_to_pred"] * sd["surfel_areas_gt"]) + np.sum(
        sd["distances_pred_to_gt"] * sd["surfel_areas_pred"])
    return num / (np.sum(sd["surfel_areas_gt"]) + np.sum(sd["surfel_areas_pred"]))


@pytest.mark.parametrize("shape,spacing", CASES, ids=IDS)
def test_surface_weighted_equals_deepmind(deepmind, backend, shape, spacing):
    checked = 0
    for p, t in _pairs(shape):
        sd = deepmind.compute_surface_distances(t, p, spacing)  # (mask_gt, mask_pred, spacing_mm)
        for pct in (95, 50, 5):
            _close(_ours("hd", p, t, spacing, "surface_weighted", percentile=pct),
                   deepmind.compute_robust_hausdorff(sd, pct))
        _close(_ours("hd", p, t, spacing, "surface_weighted", percentile=None),
               deepmind.compute_robust_hausdorff(sd, 100))
        # directed: the prediction's side only
        sd_pred_only = {**sd, "distances_gt_to_pred": np.zeros(1), "surfel_areas_gt": np.ones(1)}
        _close(_ours("hd", p, t, spacing, "surface_weighted", percentile=95, directed=True),
               deepmind.compute_robust_hausdorff(sd_pred_only, 95))
        _close(_ours("asd", p, t, spacing, "surface_weighted", symmetric=False),
               deepmind.compute_average_surface_distance(sd)[1])
        _close(_ours("asd", p, t, spacing, "surface_weighted"), _dm_symmetric_asd(sd))
        for tol in (0.5, 1.0, 2.2):
            _close(_ours("nsd", p, t, spacing, "surface_weighted", tolerance=(tol,)),
                   deepmind.compute_surface_dice_at_tolerance(sd, tol))
        # the per-element distances and areas themselves, as multisets
        s = surface_distances(p, t, spacing, "surface_weighted")
        np.testing.assert_allclose(np.sort(s.pred_to_target), sd["distances_pred_to_gt"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(np.sort(s.target_w), np.sort(sd["surfel_areas_gt"]), rtol=1e-12)
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("shape,spacing", CASES, ids=IDS)
def test_monai_equals_monai(mm, backend, shape, spacing):
    """The default definition through both backends (tests/metrics/test_surface.py covers more of MONAI)."""
    t, p = _blobs(3, shape), _blobs(4, shape)
    oh = [torch.nn.functional.one_hot(x, 3).movedim(-1, 1).float() for x in (p, t)]
    kw = dict(mode="multiclass", num_classes=3, aggregate="none")
    sp = list(spacing)
    for pct in (None, 95):
        ref = mm.compute_hausdorff_distance(*oh, include_background=True, percentile=pct, spacing=sp)
        torch.testing.assert_close(hausdorff_distance(p, t, pct, spacing, **kw), ref.double(), rtol=1e-6, atol=1e-9)
    ref = mm.compute_average_surface_distance(*oh, include_background=True, symmetric=True, spacing=sp)
    torch.testing.assert_close(average_surface_distance(p, t, spacing, **kw), ref.double(), rtol=1e-6, atol=1e-9)
    ref = mm.compute_surface_dice(*oh, [1.0, 1.5, 2.0], include_background=True, spacing=sp)
    torch.testing.assert_close(surface_dice(p, t, [1.0, 1.5, 2.0], spacing, **kw), ref.double(), rtol=1e-6, atol=1e-9)


def _transform_only(monkeypatch):
    """Send every element to the distance transform (no local search, no KD-tree): the path that uses edt."""
    monkeypatch.setattr(surface_mod, "_LOCAL_REACH", 0.0)
    monkeypatch.setattr(surface_mod, "_KD_FRACTION", -1.0)


def test_backends_agree_exactly_on_surface_dice_and_closely_on_distances(monkeypatch):
    """edt's float32 distances are within 1e-7 of scipy's float64 ones; the NSD decisions are identical,
    also at tolerances that are whole lattice distances (ties settled on the lattice)."""
    _peer("edt")
    _transform_only(monkeypatch)
    rng = np.random.default_rng(0)
    for shape, spacing in CASES:
        t, p = _blobs(5, shape)[0], _blobs(6, shape)[0]
        for k in range(3):
            pk, tk = (p == k).numpy(), (t == k).numpy()
            for definition in ("monai", "surface_weighted"):
                # tolerances equal to lattice distances: sqrt(sum((k_i s_i)^2)) for small integer offsets
                offs = rng.integers(0, 4, size=(4, len(shape)))
                tols = [float(np.sqrt(((o * np.asarray(spacing)) ** 2).sum())) for o in offs if o.any()]
                fast = [surface_distances(pk, tk, spacing, definition, tolerance=tol) for tol in tols]
                with monkeypatch.context() as m:
                    m.setitem(sys.modules, "edt", None)
                    slow = [surface_distances(pk, tk, spacing, definition, tolerance=tol) for tol in tols]
                for a, b in zip(fast, slow, strict=True):
                    np.testing.assert_allclose(a.pred_to_target, b.pred_to_target, rtol=2e-7)
                    np.testing.assert_allclose(a.target_to_pred, b.target_to_pred, rtol=2e-7)
                    np.testing.assert_array_equal(a.pred_within, b.pred_within)
                    np.testing.assert_array_equal(a.target_within, b.target_within)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 2.1), (2.5, 0.3, 1.0)])
def test_surface_element_areas_equal_deepmind_tables(deepmind, spacing):
    lt = importlib.import_module("surface_distance.lookup_tables")
    np.testing.assert_allclose(surface_element_sizes(spacing),
                               lt.create_table_neighbour_code_to_surface_area(spacing), rtol=1e-12, atol=0)
    np.testing.assert_allclose(surface_element_sizes(spacing[:2]),
                               lt.create_table_neighbour_code_to_contour_length(spacing[:2]), rtol=1e-12, atol=0)


def test_surface_weighted_by_hand():
    """A 2x3 rectangle (spacing 1, 2): its corner-grid contour is 2 * (2 * 1 + 3 * 2) long minus the four
    corner cuts, each a diagonal half-segment sqrt(1 + 4) / 2 in place of (1 + 2) / 2 of axis-parallel contour."""
    m = np.zeros((6, 7), bool)
    m[2:4, 2:5] = True
    s = surface_distances(m, m, (1.0, 2.0), "surface_weighted")
    expected = 2 * (2 * 1.0 + 3 * 2.0) - 4 * (1.5 - np.sqrt(5) / 2)
    assert s.pred_w.sum() == pytest.approx(expected, rel=1e-12)
    assert s.pred_to_target.max() == 0.0


def test_definitions_differ_where_they_should():
    """HD95: pooled <= max of the directed percentiles (always); on a lopsided pair strictly. Weighted
    percentile: no interpolation, the first distance whose cumulative weight reaches the fraction."""
    t = torch.zeros(1, 30, 30, dtype=torch.long)
    t[0, 5:25, 5:25] = 1
    p = torch.zeros_like(t)
    p[0, 5:25, 5:25] = 1
    p[0, 14:16, 25:29] = 1  # a thin spur: far from the target on the prediction's side only
    kw = dict(mode="multiclass", num_classes=2, aggregate="none")
    v = {d: hausdorff_distance(p, t, 95, definition=d, **kw)[0, 1].item() for d in DEFINITIONS}
    assert v["pooled"] < v["monai"]
    assert weighted_percentile(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0]), 50) == 2.0
    assert weighted_percentile(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0]), 25) == 1.0


def test_empty_policy_and_bad_definition():
    kw = dict(mode="multiclass", num_classes=2, aggregate="none")
    blob = torch.zeros(1, 8, 8, dtype=torch.long)
    blob[0, 2:5, 2:5] = 1
    empty = torch.zeros_like(blob)
    for d in DEFINITIONS:
        with pytest.warns(RuntimeWarning, match="inf"):
            assert hausdorff_distance(blob, empty, 95, definition=d, **kw)[0, 1].item() == float("inf")
        with pytest.warns(RuntimeWarning, match="inf"):
            assert average_surface_distance(empty, blob, definition=d, **kw)[0, 1].item() == float("inf")
        assert surface_dice(empty, blob, 1.0, definition=d, **kw)[0, 1].item() == 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isnan(surface_dice(empty, empty, 1.0, definition=d, **kw)[0, 1].item())
    with pytest.raises(ValueError, match="definition must be one of 'monai', 'pooled', 'surface_weighted'"):
        hausdorff_distance(blob, blob, definition="medpy", **kw)


def test_voxel_boundary_equals_binary_erosion():
    nd = importlib.import_module("scipy.ndimage")
    for shape in ((9, 7), (6, 5, 7)):
        for seed in range(3):
            m = np.random.default_rng(seed).random(shape) < 0.6
            np.testing.assert_array_equal(surface_mod._voxel_boundary(m), m & ~nd.binary_erosion(m))


def test_hausdorff_values_are_exact_with_edt(monkeypatch):
    """edt's float32 distances, but the Hausdorff distances and percentiles it picks are the exact float64
    values: bit-equal to the scipy backend's, every definition, 2D and 3D, anisotropic; and equal to the
    default path's (local search and KD-tree) to 1e-15."""
    _peer("edt")
    kw = dict(mode="multiclass", num_classes=3, aggregate="none")
    for shape, spacing in CASES:
        t, p = _blobs(7, shape), _blobs(8, shape)
        runs = []
        for path in ("edt", "scipy", "default"):
            with monkeypatch.context() as m:
                if path != "default":
                    _transform_only(m)
                if path == "scipy":
                    m.setitem(sys.modules, "edt", None)
                runs.append([hausdorff_distance(p, t, pct, spacing, definition=d, directed=di, **kw)
                             for d in DEFINITIONS for pct in (None, 95, 50, 12.5) for di in (False, True)])
        for a, b, c in zip(*runs, strict=True):
            assert torch.equal(a, b), (shape, a, b)
            torch.testing.assert_close(c, a, rtol=1e-15, atol=0)


@pytest.mark.parametrize("strategy", ["local+kdtree", "kdtree", "edt", "scipy"])
def test_distance_strategies_equal_a_plain_transform(monkeypatch, strategy):
    """Every way seglab finds the nearest surface element (local lattice search, then a KD-tree for the few
    far elements or one transform of the box for many) equals scipy's transform of the whole surface read at
    the other surface's elements: to 1e-15 where the result is float64 (two offsets of the same length can
    round differently, 3 x 0.6 against 2 x 0.9, and each method may find either), to 2e-7 where edt's float32
    is used."""
    nd = importlib.import_module("scipy.ndimage")
    if strategy == "kdtree":
        monkeypatch.setattr(surface_mod, "_LOCAL_REACH", 0.0)  # only the zero offset, then a KD-tree for all
        monkeypatch.setattr(surface_mod, "_KD_FRACTION", 1.0)
    elif strategy in ("edt", "scipy"):
        monkeypatch.setattr(surface_mod, "_LOCAL_REACH", 0.0)
        monkeypatch.setattr(surface_mod, "_KD_FRACTION", -1.0)  # anything left goes to the transform
        if strategy == "scipy":
            monkeypatch.setitem(sys.modules, "edt", None)
        else:
            _peer("edt")
    used = set()
    for shape, spacing in CASES:
        for seed, smooth in ((0, 1), (30, 2)):
            t, p = _blobs(9, shape)[0], _blobs(seed, shape, smooth=smooth)[0]
            for k in range(3):
                for definition in ("monai", "surface_weighted"):
                    s = surface_mod.surfaces((p == k).numpy(), (t == k).numpy(), spacing, definition)
                    if s is None or not s.pred.any() or not s.target.any():
                        continue
                    ref = nd.distance_transform_edt(~s.target, sampling=spacing)[s.pred]
                    d, exact = surface_mod._distances(s.target, s.pred, s.spacing, nd)
                    used.add(exact)
                    np.testing.assert_allclose(d, ref, rtol=1e-15 if exact else 2e-7, atol=0)
    # the default sends surfaces far apart to the transform (edt: not exact) and the rest to exact search
    assert {"local+kdtree": True in used, "kdtree": used == {True}, "edt": False in used, "scipy": used == {True}}[
        strategy]
