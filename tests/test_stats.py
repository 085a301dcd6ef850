"""seglab.stats against scipy.stats (the independent reference; scipy is a test dependency, not a runtime one)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from seglab import stats

ss = pytest.importorskip("scipy.stats", reason="scipy is the reference; installed by make test")


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (1.0, 3.0), (2.5, 7.0), (30.0, 2.0), (200.0, 150.0)])
def test_betainc_and_quantile_match_scipy(a, b):
    for x in np.linspace(0.0, 1.0, 23):
        assert stats.betainc(a, b, float(x)) == pytest.approx(ss.beta.cdf(x, a, b), abs=1e-13)
    for q in (1e-6, 0.025, 0.3, 0.5, 0.975, 1 - 1e-6):
        assert stats.beta_ppf(q, a, b) == pytest.approx(ss.beta.ppf(q, a, b), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 200])
def test_t_distribution_matches_scipy(df):
    for t in (-40.0, -3.0, -0.5, 0.0, 0.7, 2.2, 12.0):
        assert stats.t_cdf(t, df) == pytest.approx(ss.t.cdf(t, df), rel=1e-10, abs=1e-14)
    for q in (0.001, 0.025, 0.5, 0.9, 0.975, 0.995):
        assert stats.t_ppf(q, df) == pytest.approx(ss.t.ppf(q, df), rel=1e-10, abs=1e-12)


def test_clopper_pearson_matches_scipy_binomtest():
    for n in (1, 2, 3, 5, 10, 20, 97, 500):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in (0.9, 0.95, 0.99):
                ref = ss.binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
                low, high = stats.clopper_pearson(k, n, conf)
                assert low == pytest.approx(ref.low, abs=1e-10)
                assert high == pytest.approx(ref.high, abs=1e-10)
    r = stats.rate(3, 10)
    assert r.rate == 0.3 and r.as_dict()["k"] == 3 and str(r).startswith("3/10 [")


def test_fisher_exact_matches_scipy_on_every_small_table():
    for a, b, c, d in itertools.product(range(4), repeat=4):
        for alt in ("two-sided", "less", "greater"):
            ref = ss.fisher_exact([[a, b], [c, d]], alternative=alt)
            got = stats.fisher_exact([[a, b], [c, d]], alternative=alt)
            assert got.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15), (a, b, c, d, alt)
            if not math.isnan(ref.statistic):
                assert got.odds_ratio == pytest.approx(ref.statistic)
    big = [[37, 12], [8, 45]]
    assert stats.fisher_exact(big).pvalue == pytest.approx(ss.fisher_exact(big).pvalue, rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
def test_paired_difference_matches_scipy(n):
    rng = np.random.default_rng(n)
    a = rng.normal(0.8, 0.05, n)
    b = a - rng.normal(0.01, 0.03, n)
    got = stats.paired_difference(a, b)
    d = a - b
    t = ss.ttest_rel(a, b)
    assert got.mean == pytest.approx(d.mean()) and got.sd == pytest.approx(d.std(ddof=1))
    assert got.t_pvalue == pytest.approx(t.pvalue, rel=1e-9)
    ci = t.confidence_interval(0.95)
    assert (got.low, got.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    perm = ss.permutation_test((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), vectorized=True,
                               permutation_type="samples", n_resamples=np.inf)
    assert got.exact and got.pvalue == pytest.approx(perm.pvalue, rel=1e-12)
    assert got.min_pvalue == 2.0 / 2**n
    assert got.contains_zero == (got.low <= 0 <= got.high)


def test_signflip_exact_counts_ties_and_monte_carlo_beyond_the_exact_limit():
    # all differences equal: only the all-plus and all-minus patterns reach |sum|
    got = stats.paired_difference([1.0] * 6, [0.0] * 6)
    assert got.pvalue == pytest.approx(2 / 64) and math.isnan(got.t_pvalue) and got.low == got.high == 1.0
    rng = np.random.default_rng(0)
    n = stats.MAX_EXACT_SIGNFLIP + 5
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    mc = stats.paired_difference(a, b, n_resamples=20_000, seed=3)
    assert not mc.exact
    # the sign-flip null of a mean is close to the t distribution's for n = 35
    assert mc.pvalue == pytest.approx(ss.ttest_rel(a, b).pvalue, abs=0.03)
    assert stats.paired_difference(a, b, n_resamples=5_000, seed=3).pvalue == \
        stats.paired_difference(a, b, n_resamples=5_000, seed=3).pvalue


def test_verdict_reads_no_evidence_when_the_interval_contains_zero():
    d = stats.paired_difference([0.9, 0.8, 0.85], [0.88, 0.84, 0.83])
    assert d.contains_zero and d.verdict("advised", "ce").startswith("no evidence of a difference")
    d = stats.paired_difference([0.9, 0.91, 0.92, 0.93], [0.5, 0.52, 0.49, 0.51])
    assert not d.contains_zero and d.verdict("advised", "ce").startswith("advised higher than ce")


@pytest.mark.parametrize("call,exc,word", [
    (lambda: stats.clopper_pearson(4, 3), ValueError, "k must be at most n"),
    (lambda: stats.clopper_pearson(1, 0), ValueError, "n must be at least 1"),
    (lambda: stats.clopper_pearson(1.5, 3), TypeError, "k must be a non-negative integer"),
    (lambda: stats.rate(1, 3, confidence=95), ValueError, "confidence"),
    (lambda: stats.fisher_exact([[1, 2, 3], [1, 2, 3]]), ValueError, "2x2"),
    (lambda: stats.fisher_exact([[1, -2], [1, 2]]), ValueError, "table entry"),
    (lambda: stats.fisher_exact([[1, 2], [1, 2]], alternative="both"), ValueError, "alternative"),
    (lambda: stats.paired_difference([1.0], [2.0]), ValueError, "at least 2 pairs"),
    (lambda: stats.paired_difference([1.0, 2.0], [2.0]), ValueError, "same length"),
    (lambda: stats.paired_difference([1.0, float("nan")], [2.0, 1.0]), ValueError, "finite"),
    (lambda: stats.paired_difference([1.0, 2.0], [2.0, 1.0], n_resamples=0), ValueError, "n_resamples"),
])
def test_bad_input_names_the_argument(call, exc, word):
    with pytest.raises(exc, match=word):
        call()
