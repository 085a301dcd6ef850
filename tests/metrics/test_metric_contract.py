"""The metric contract: every registered metric (seglab.metrics.list_metrics) passes the same checks.

* functional == stateful: updates over two batches give what the function gives on the whole set;
* merge == one pass: two objects updated on halves, merged, equal one object that saw everything;
* empty masks: a class absent from prediction and target is NaN (the default ``empty``), never 0, and is left
  out of the mean; ``empty=`` replaces it;
* dtypes: integer class maps of any integer dtype give the same value;
* count metrics: ``from_counts`` on the summed counts equals the pooled function, and reaches training's
  evaluation (``<name>``, ``mean_<name>``, ``fg_<name>``);
* a toy metric registered in a test reaches ``list_metrics``, ``get_metric`` and training's evaluation.
"""

from __future__ import annotations

import math

import pytest
import torch

from seglab.metrics import METRICS, confusion_counts, get_metric, list_metrics, metric_info, register_metric
from seglab.train.evaluate import count_metric_values

NAMES = list_metrics()


def _batch(seed: int, n: int = 3, c: int = 3, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(n, size, size, dtype=torch.long)
    p = torch.zeros_like(t)
    for i in range(n):
        for k in range(1, c):
            r, s = torch.randint(1, size - 6, (2,), generator=g).tolist()
            t[i, r:r + 4 + k % 2, s:s + 4] = k
            dr, ds = torch.randint(-1, 2, (2,), generator=g).tolist()
            p[i, max(r + dr, 0):r + dr + 4, max(s + ds, 0):s + ds + 4 + k % 2] = k
    return p, t


def _opts(name: str) -> dict:
    return {**metric_info(name).required}


def test_every_metric_is_registered_once_with_a_description():
    assert {"dice", "iou", "generalized_dice", "hausdorff", "surface_distance", "surface_dice", "cldice"} <= set(NAMES)
    for n in NAMES:
        info = metric_info(n)
        assert info.name == n and info.description and isinstance(info.higher_is_better, bool)


@pytest.mark.parametrize("name", NAMES)
def test_functional_equals_stateful(name):
    p1, t1 = _batch(1)
    p2, t2 = _batch(2)
    m = get_metric(name, mode="multiclass", num_classes=3)
    m.update(p1, t1)
    m.update(p2, t2)
    f = metric_info(name).function(torch.cat([p1, p2]), torch.cat([t1, t2]), mode="multiclass", num_classes=3,
                                   **_opts(name))
    torch.testing.assert_close(m.compute(), f, equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_merge_equals_one_pass(name):
    p1, t1 = _batch(3)
    p2, t2 = _batch(4)
    a, b, whole = (get_metric(name, mode="multiclass", num_classes=3) for _ in range(3))
    a.update(p1, t1)
    b.update(p2, t2)
    whole.update(p1, t1)
    whole.update(p2, t2)
    torch.testing.assert_close(a.merge(b).compute(), whole.compute(), equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_an_absent_class_is_nan_never_zero(name):
    p, t = _batch(5, c=2)  # class 2 of 3 absent from prediction and target
    m = get_metric(name, mode="multiclass", num_classes=3)
    m.update(p, t)
    v = m.compute()
    if metric_info(name).per_class:
        assert math.isnan(float(v[2])) and not math.isnan(float(v[1]))
        filled = get_metric(name, mode="multiclass", num_classes=3, empty=-1.0)
        filled.update(p, t)
        assert float(filled.compute()[2]) == -1.0
    else:
        assert not math.isnan(float(v))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_integer_dtypes_agree(name, dtype):
    p, t = _batch(6)
    ref = get_metric(name, mode="multiclass", num_classes=3)
    ref.update(p, t)
    m = get_metric(name, mode="multiclass", num_classes=3)
    m.update(p.to(dtype), t.to(dtype))
    torch.testing.assert_close(m.compute(), ref.compute(), equal_nan=True)


@pytest.mark.parametrize("name", [n for n in NAMES if metric_info(n).from_counts is not None])
def test_count_metrics_reach_training_evaluation(name):
    p, t = _batch(7)
    tp, fp, fn = confusion_counts(p, t, mode="multiclass", num_classes=3)
    out = count_metric_values(tp.double(), fp.double(), fn.double(), mode="multiclass")
    pooled = metric_info(name).function(p, t, mode="multiclass", num_classes=3, aggregate="pooled")
    torch.testing.assert_close(torch.tensor(out[name], dtype=pooled.dtype), pooled)
    assert out[f"fg_{name}"] == pytest.approx(float(pooled[1:].mean()))
    assert out[f"mean_{name}"] == pytest.approx(float(pooled.mean()))


def test_unknown_metric_and_option_name_the_problem():
    with pytest.raises(ValueError, match="unknown metric 'dise'.*did you mean 'dice'"):
        get_metric("dise", mode="multiclass", num_classes=2)
    with pytest.raises(ValueError, match="unknown parameter.*'agregate'"):
        get_metric("dice", mode="multiclass", num_classes=2, agregate="mean")


def test_a_new_metric_is_one_class_with_a_decorator():
    """The CONTRIBUTING recipe: a toy count metric reaches the registry and training's evaluation, no other edit."""
    from seglab.metrics.overlap import dice_score
    from seglab.metrics.stateful import DiceScore

    def sensitivity_from_counts(tp, fp, fn, empty=float("nan")):
        den = tp + fn
        return torch.where(den > 0, tp / den.clamp_min(1), torch.full_like(den, empty))

    try:
        @register_metric("toy_sensitivity", function=dice_score, from_counts=sensitivity_from_counts,
                         higher_is_better=True)
        class ToySensitivity(DiceScore):
            """Sensitivity TP / (TP + FN) (a toy for the contract test)."""

        assert "toy_sensitivity" in list_metrics()
        assert isinstance(get_metric("toy_sensitivity", mode="multiclass", num_classes=2), ToySensitivity)
        out = count_metric_values(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 5.0]), torch.tensor([1.0, 1.0]),
                                  mode="multiclass")
        assert out["toy_sensitivity"] == [0.5, 0.75] and out["fg_toy_sensitivity"] == 0.75
    finally:
        METRICS._table.pop("toy_sensitivity", None)


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("seglab.metrics.registry", "seglab.train.evaluate", "seglab.advise.evidence"):
        mod = importlib.import_module(name)
        res = doctest.testmod(mod, extraglobs={"torch": torch})
        assert res.attempted > 0 and res.failed == 0, name
