"""ECE and reliability bins (seglab.metrics.calibration) against torchmetrics and a numpy reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seglab.metrics import CalibrationError, ReliabilityBins, expected_calibration_error, reliability_bins

tm = pytest.importorskip("torchmetrics.classification", reason="torchmetrics is in the test extra")


def _multiclass(shape, c, seed, dtype=torch.float32, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(scale * torch.randn(shape[0], c, *shape[1:], generator=g, dtype=torch.float64), 1).to(dtype)
    target = torch.randint(0, c, shape, generator=g)
    # make the net right more often than chance, so that bins differ
    right = torch.rand(shape, generator=g) < 0.5
    target = torch.where(right, probs.argmax(1), target)
    return probs, target


def _numpy_bins(conf: np.ndarray, correct: np.ndarray, n_bins: int):
    """Reference: equal-width bins [k/M, (k+1)/M), conf == 1 in the last, written with np.floor."""
    idx = np.minimum(np.floor(conf.astype(np.float64) * n_bins).astype(int), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    s_conf = np.bincount(idx, weights=conf.astype(np.float64), minlength=n_bins)
    s_corr = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore"):
        return count, s_conf / count, s_corr / count


@pytest.mark.parametrize("shape", [(3, 17, 13), (2, 6, 7, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
@pytest.mark.parametrize("ignore_index", [None, 255, -100])
def test_multiclass_equals_torchmetrics(shape, n_bins, ignore_index):
    c = 4
    probs, target = _multiclass(shape, c, seed=n_bins + len(shape))
    if ignore_index is not None:
        g = torch.Generator().manual_seed(1)
        target[torch.rand(shape, generator=g) < 0.3] = ignore_index
    kw = dict(n_bins=n_bins, ignore_index=ignore_index)
    ref = tm.MulticlassCalibrationError(num_classes=c, norm="l1", **kw)(probs, target)
    ref_max = tm.MulticlassCalibrationError(num_classes=c, norm="max", **kw)(probs, target)
    b = reliability_bins(probs, target, **kw)
    assert b.ece == pytest.approx(ref.item(), abs=1e-6)
    assert b.mce == pytest.approx(ref_max.item(), abs=1e-6)
    assert expected_calibration_error(probs, target, **kw) == b.ece
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    assert b.total == int(keep.sum())


def test_bins_equal_numpy_reference():
    probs, target = _multiclass((4, 16, 16), 3, seed=3, dtype=torch.float64)
    conf, pred = probs.max(1)
    count, mean_conf, acc = _numpy_bins(conf.flatten().numpy(), (pred == target).flatten().numpy(), 12)
    b = reliability_bins(probs, target, n_bins=12)
    np.testing.assert_array_equal(b.count.numpy(), count)
    np.testing.assert_allclose(b.confidence.numpy(), mean_conf, rtol=1e-12)  # NaN where empty, in both
    np.testing.assert_allclose(b.accuracy.numpy(), acc, rtol=1e-12)
    ok = count > 0
    assert b.ece == pytest.approx(float((count[ok] / count.sum() * np.abs(acc[ok] - mean_conf[ok])).sum()), abs=1e-12)
    np.testing.assert_allclose(b.edges.numpy(), np.linspace(0, 1, 13))


def test_target_with_channel_dim_and_float64_input():
    probs, target = _multiclass((2, 9, 9), 5, seed=4, dtype=torch.float64)
    ref = tm.MulticlassCalibrationError(num_classes=5, n_bins=15)(probs, target)
    assert expected_calibration_error(probs, target.unsqueeze(1)) == pytest.approx(ref.item(), abs=1e-6)


def test_confidence_one_goes_to_the_last_bin():
    """torchmetrics puts conf == 1.0 in an extra bin; seglab in the last one. Moving 1.0 down by one ulp makes
    torchmetrics bin it where seglab does, and the ECE agrees."""
    probs, target = _multiclass((2, 8, 8), 3, seed=5)
    sat = torch.zeros(2, 8, 8, dtype=torch.bool)
    sat[:, :3] = True  # a quarter of the pixels: a saturated one-hot prediction
    onehot = torch.nn.functional.one_hot(probs.argmax(1), 3).movedim(-1, 1).float()
    probs = torch.where(sat.unsqueeze(1), onehot, probs)
    target[:, :1] = (target[:, :1] + 1) % 3  # and some of those wrong, so the gap is not zero
    b = reliability_bins(probs, target)
    assert b.count[-1] >= int(sat.sum())
    below = torch.where(probs == 1.0, torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)), probs)
    ref = tm.MulticlassCalibrationError(num_classes=3, n_bins=15)(below, target)
    assert b.ece == pytest.approx(ref.item(), abs=1e-6)


@pytest.mark.parametrize("mode", ["binary", "multilabel"])
@pytest.mark.parametrize("ignore_index", [None, 255])
@pytest.mark.parametrize("shape", [(3, 1, 11, 10), (2, 3, 5, 6, 4)], ids=["2d", "3d"])
def test_binary_multilabel_equal_torchmetrics(mode, ignore_index, shape):
    g = torch.Generator().manual_seed(len(shape))
    logits = 2 * torch.randn(shape, generator=g)
    target = (torch.rand(shape, generator=g) < torch.sigmoid(0.5 * logits)).long()  # related, not calibrated
    if ignore_index is not None:
        target[torch.rand(shape, generator=g) < 0.2] = ignore_index
    probs = torch.sigmoid(logits)
    for n_bins in (5, 15):
        ref = tm.BinaryCalibrationError(n_bins=n_bins, norm="l1", ignore_index=ignore_index)(probs, target)
        got = expected_calibration_error(probs, target, mode=mode, n_bins=n_bins, ignore_index=ignore_index)
        assert got == pytest.approx(ref.item(), abs=1e-6)
    if ignore_index is None:  # bool and float 0/1 targets give the same
        for t in (target.bool(), target.float()):
            assert expected_calibration_error(probs, t, mode=mode) == pytest.approx(
                expected_calibration_error(probs, target, mode=mode), abs=1e-12)


def test_half_precision_and_all_ignored():
    probs, target = _multiclass((2, 8, 8), 3, seed=6)
    ref = expected_calibration_error(probs.double(), target)
    assert expected_calibration_error(probs.half(), target) == pytest.approx(ref, abs=5e-3)
    assert expected_calibration_error(probs.bfloat16(), target) == pytest.approx(ref, abs=2e-2)
    b = reliability_bins(probs, torch.full_like(target, 255), ignore_index=255)
    assert math.isnan(b.ece) and b.total == 0 and bool(b.confidence.isnan().all()) and math.isnan(b.mce)


def test_as_dict_is_json():
    probs, target = _multiclass((1, 6, 6), 3, seed=7)
    d = reliability_bins(probs, target, n_bins=20).as_dict()
    back = json.loads(json.dumps(d))
    assert back["n_bins"] == 20 and len(back["count"]) == 20 and len(back["edges"]) == 21
    assert None in back["accuracy"]  # 36 pixels cannot fill 20 bins... empty bins are None, not NaN
    assert sum(back["count"]) == 36


# ---------------------------------------------------------------- properties
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 30), st.floats(0.1, 8.0))
def test_ece_in_unit_interval_and_one_bin_is_mean_gap(seed, c, n_bins, scale):
    probs, target = _multiclass((2, 5, 4), c, seed=seed, scale=scale)
    ece = expected_calibration_error(probs, target, n_bins=n_bins)
    assert 0.0 <= ece <= 1.0
    conf, pred = probs.double().max(1)
    one = abs(float((pred == target).double().mean() - conf.mean()))
    assert expected_calibration_error(probs, target, n_bins=1) == pytest.approx(one, abs=1e-7)
    assert expected_calibration_error(probs, target, n_bins=1) <= ece + 1e-7  # coarser partition: never larger


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(1, 15), st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(0, 99))
def test_perfectly_calibrated_gives_zero(c, n_bins, sizes, seed):
    """Groups of m pixels with top confidence k/m and exactly k of them right: ECE 0 (and the bin accuracy = its
    confidence) whatever the binning, as each group lies in one bin."""
    g = torch.Generator().manual_seed(seed)
    probs, targets = [], []
    for m in sizes:
        lo = m // c + 1  # k/m > 1/c, so class 0 is the top label
        if lo > m:
            continue
        k = int(torch.randint(lo, m + 1, (), generator=g))
        top = k / m
        p = torch.full((m, c), (1 - top) / (c - 1), dtype=torch.float64)
        p[:, 0] = top
        t = torch.ones(m, dtype=torch.long)
        t[:k] = 0
        probs.append(p)
        targets.append(t)
    if not probs:
        return
    p = torch.cat(probs).T.unsqueeze(0)  # (1, C, P)
    t = torch.cat(targets).unsqueeze(0)
    b = reliability_bins(p, t, n_bins=n_bins)
    assert b.ece == pytest.approx(0.0, abs=1e-12)
    ok = b.count > 0
    torch.testing.assert_close(b.accuracy[ok], b.confidence[ok])


# ---------------------------------------------------------------- stateful
def test_stateful_equals_function_and_merges():
    probs, target = _multiclass((6, 10, 10), 4, seed=8)
    target[:, 0] = 255
    whole = reliability_bins(probs, target, n_bins=10, ignore_index=255)
    m = CalibrationError("multiclass", 10, ignore_index=255)
    for i in range(0, 6, 2):
        m.update(probs[i:i + 2], target[i:i + 2])
    assert m.compute().item() == pytest.approx(whole.ece, abs=1e-12)
    assert m.compute().item() == pytest.approx(whole.ece, abs=1e-12)  # compute leaves the state alone
    torch.testing.assert_close(m.bins().count, whole.count)
    a, b = CalibrationError("multiclass", 10, ignore_index=255), CalibrationError("multiclass", 10, ignore_index=255)
    a.update(probs[:1], target[:1])
    b.update(probs[1:], target[1:])
    assert a.merge(b).compute().item() == pytest.approx(whole.ece, abs=1e-12)
    with pytest.raises(ValueError, match="same options"):
        a.merge(CalibrationError("multiclass", 11, ignore_index=255))
    m.reset()
    assert math.isnan(m.compute().item()) and m.bins().total == 0
    assert isinstance(m.bins(), ReliabilityBins)


def test_sync_all_reduces_the_bin_sums(monkeypatch):
    """Two ranks simulated in one process: compute() all-reduces the (3, n_bins) sums (SUM) and bins from them, so the
    result equals one process seeing all data (uneven split: averaging per-rank ECEs would differ). A real 2-process
    gloo group runs the same code path (tests/metrics/test_ddp_metrics.py for the other metrics)."""
    import seglab.metrics.stateful as cal  # the sum-state base class holds the all-reduce

    probs, target = _multiclass((5, 8, 8), 3, seed=9)
    ranks = [CalibrationError("multiclass", 15), CalibrationError("multiclass", 15)]
    ranks[0].update(probs[:3], target[:3])
    ranks[1].update(probs[3:], target[3:])
    calls = []

    def all_reduce(t, op=None, group=None):
        calls.append((op, group))
        t.copy_(ranks[0]._sums + ranks[1]._sums)

    monkeypatch.setattr(cal.dist, "all_reduce", all_reduce)
    for m in ranks:
        monkeypatch.setattr(m, "_group", lambda: (True, "group"))
    whole = expected_calibration_error(probs, target)
    for m in ranks:
        assert m.compute().item() == pytest.approx(whole, abs=1e-12)
    assert calls == [(cal.dist.ReduceOp.SUM, "group")] * 2
    local = expected_calibration_error(probs[:3], target[:3])
    assert ranks[0]._sums.sum() > 0 and local != pytest.approx(whole, abs=1e-6)
    ranks[0].sync = False
    monkeypatch.undo()
    assert ranks[0].compute().item() == pytest.approx(local, abs=1e-12)  # the state itself was not changed


# ---------------------------------------------------------------- bad input
def test_bad_input_names_the_argument():
    probs, target = _multiclass((2, 4, 4), 3, seed=10)
    cases = [
        (TypeError, "probs must be a torch.Tensor", lambda: expected_calibration_error(probs.numpy(), target)),
        (TypeError, "target must be a torch.Tensor", lambda: expected_calibration_error(probs, target.tolist())),
        (TypeError, "probs must be a floating-point", lambda: expected_calibration_error(target.unsqueeze(1), target)),
        (ValueError, r"probs must be probabilities in \[0, 1\]", lambda: expected_calibration_error(probs * 3 - 1, target)),
        (ValueError, "probs must be probabilities", lambda: expected_calibration_error(probs * float("nan"), target)),
        (ValueError, "probs must sum to 1", lambda: expected_calibration_error(probs * 0.5, target)),
        (ValueError, "target must be a class map of shape", lambda: expected_calibration_error(probs, target[:, :3])),
        (TypeError, "target must be an integer class map", lambda: expected_calibration_error(probs, target.float())),
        (ValueError, r"target values must lie in \[0, 3\)", lambda: expected_calibration_error(probs, target + 1)),
        (ValueError, "C >= 2", lambda: expected_calibration_error(probs[:, :1] / probs[:, :1], target * 0)),
        (ValueError, r"probs must have shape \(N, C, \*spatial\)", lambda: expected_calibration_error(probs[0, 0, 0], target)),
        (ValueError, "n_bins must be an integer >= 1", lambda: expected_calibration_error(probs, target, n_bins=0)),
        (TypeError, "n_bins must be an integer", lambda: expected_calibration_error(probs, target, n_bins=2.5)),
        (TypeError, "n_bins must be an integer", lambda: expected_calibration_error(probs, target, n_bins=True)),
        (ValueError, "mode must be one of", lambda: expected_calibration_error(probs, target, mode="softmax")),
        (TypeError, "ignore_index must be None or an integer", lambda: reliability_bins(probs, target, ignore_index=0.5)),
        (ValueError, "target must have the shape of probs", lambda: expected_calibration_error(probs, target, mode="binary")),
        (ValueError, "target values must be 0 or 1",
         lambda: expected_calibration_error(probs, torch.full_like(probs, 2).long(), mode="multilabel")),
        (ValueError, "n_bins must be an integer >= 1", lambda: CalibrationError("multiclass", -1)),
        (ValueError, "mode must be one of", lambda: CalibrationError("sigmoid")),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()
    # ignored pixels may hold anything (padding), probabilities there are not checked either
    t = target.clone()
    t[0] = 255
    p = probs.clone()
    p[0] = 7.0
    assert expected_calibration_error(p, t, ignore_index=255) == pytest.approx(
        expected_calibration_error(probs[1:], target[1:]), abs=1e-12)


def test_docstring_examples_run():
    import doctest

    import seglab.metrics.calibration as cal

    res = doctest.testmod(cal, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 10 and res.failed == 0


@pytest.mark.parametrize("n_bins", [1, 4, 15])
def test_adaptive_calibration_error_equals_numpy_equal_mass_bins(n_bins):
    import numpy as np

    from seglab.metrics import adaptive_calibration_error

    g = torch.Generator().manual_seed(n_bins)
    probs = torch.softmax(torch.randn(2, 3, 9, 7, generator=g) * 2, 1)
    target = torch.randint(0, 3, (2, 9, 7), generator=g)
    conf, pred = probs.max(1)
    c = conf.flatten().double().numpy()
    a = (pred == target).flatten().double().numpy()
    order = np.argsort(c, kind="stable")
    gaps = [abs(ab.mean() - cb.mean()) for cb, ab in zip(np.array_split(c[order], n_bins), np.array_split(a[order], n_bins), strict=True)]
    assert adaptive_calibration_error(probs, target, n_bins=n_bins) == pytest.approx(np.mean(gaps))
    if n_bins == 1:  # one bin: ACE equals ECE with one bin
        from seglab.metrics import expected_calibration_error

        assert adaptive_calibration_error(probs, target, n_bins=1) == pytest.approx(
            expected_calibration_error(probs, target, n_bins=1))
