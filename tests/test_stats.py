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


# ------------------------------------------------------------------ the analysis plan: sign-flip, Holm, TOST, verdicts
def _brute_signflip(d):
    """Two-sided sign-flip p by listing every sign pattern (the definition, no shortcuts)."""
    d = [float(x) for x in d]
    obs = abs(sum(d))
    tol = 1e-12 * sum(abs(x) for x in d)
    hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= obs - tol
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11])
def test_signflip_pvalue_equals_brute_force_enumeration(n):
    rng = np.random.default_rng(100 + n)
    for d in (rng.normal(0.01, 0.03, n), rng.integers(-2, 3, n).astype(float), np.full(n, 0.2)):
        p, exact = stats.signflip_pvalue(d)
        assert exact and p == pytest.approx(_brute_signflip(d), abs=1e-15), d
    assert stats.signflip_pvalue([0.1, 0.2, 0.3]) == (0.25, True)
    assert stats.signflip_pvalue([0.0, 0.0, 0.0])[0] == 1.0


def test_signflip_pvalue_is_exact_to_16_seeds_then_seeded_monte_carlo():
    rng = np.random.default_rng(7)
    d16 = rng.normal(0.02, 0.05, 16)
    p16, exact16 = stats.signflip_pvalue(d16)
    assert exact16 and p16 == pytest.approx(_brute_signflip(d16), abs=1e-15)
    d18 = rng.normal(0.02, 0.05, 18)
    p18, exact18 = stats.signflip_pvalue(d18, seed=1)
    ref = _brute_signflip(d18)
    assert not exact18
    # 100,000 draws: the standard error is at most 0.0016; four of them
    assert p18 == pytest.approx(ref, abs=4 * math.sqrt(ref * (1 - ref) / 100_000) + 1e-5)
    assert stats.signflip_pvalue(d18, seed=1) == (p18, False)  # seeded: the same p again


def _holm_stepdown_rejects(p, alpha):
    """Holm's procedure as stated: walk the sorted p-values, reject while p_(k) <= alpha / (m - k + 1)."""
    m = len(p)
    rejected = [False] * m
    for k, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] <= alpha / (m - k):
            rejected[i] = True
        else:
            break
    return rejected


def test_holm_textbook_values():
    # the Holm-Bonferroni example (four hypotheses, alpha 0.05): H4 and H1 are rejected, H3 and H2 are not
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [a < 0.05 for a in adj] == [True, False, False, True]
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1 (2 * 0.5 = 1, then the running max)
    assert stats.holm([0.02]) == [0.02]  # one test: no adjustment
    assert stats.holm([0.01, None, float("nan"), 0.02]) == pytest.approx([0.02, None, None, 0.02])
    assert stats.holm([]) == []


def test_holm_equals_the_stepdown_procedure_at_every_level():
    rng = np.random.default_rng(19)
    for m in (1, 2, 3, 6, 18, 24):
        for _ in range(20):
            p = list(rng.uniform(0, 0.2, m) ** 2)
            if m > 2:
                p[1] = p[0]  # ties
            adj = stats.holm(p)
            assert all(a >= q for a, q in zip(adj, p, strict=True))
            for alpha in (0.001, 0.01, 0.05, 0.1):
                # the adjusted p is the smallest level at which the step-down procedure rejects
                want = _holm_stepdown_rejects(p, alpha)
                assert [a <= alpha for a in adj] == want, (p, alpha)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20])
@pytest.mark.parametrize("margin", [0.01, 0.05])
def test_tost_matches_two_one_sided_scipy_t_tests(n, margin):
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.004, -0.012, 0.03):
        d = rng.normal(shift, 0.01, n)
        got = stats.tost_paired(d, margin)
        lo = ss.ttest_1samp(d, -margin, alternative="greater").pvalue
        up = ss.ttest_1samp(d, margin, alternative="less").pvalue
        assert got.p_lower == pytest.approx(lo, rel=1e-9, abs=1e-15)
        assert got.p_upper == pytest.approx(up, rel=1e-9, abs=1e-15)
        assert got.pvalue == pytest.approx(max(lo, up), rel=1e-9, abs=1e-15)
        ci = ss.t.interval(0.90, n - 1, loc=d.mean(), scale=ss.sem(d))
        assert (got.low, got.high) == (pytest.approx(ci[0], rel=1e-9), pytest.approx(ci[1], rel=1e-9))
        # TOST at 0.05 passes exactly when the 90 % t-interval lies inside the margin
        assert got.equivalent == (-margin < ci[0] and ci[1] < margin)


def test_tost_without_spread_and_bad_input():
    assert stats.tost_paired([0.005] * 4, 0.01).pvalue == 0.0
    assert stats.tost_paired([0.02] * 4, 0.01).pvalue == 1.0
    with pytest.raises(ValueError, match="margin"):
        stats.tost_paired([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="margin"):
        stats.tost_paired([0.1, 0.2], float("inf"))
    with pytest.raises(ValueError, match="at least 2"):
        stats.tost_paired([0.1], 0.01)
    with pytest.raises(ValueError, match="p-values"):
        stats.holm([0.1, 1.5])


@pytest.mark.parametrize("p_adj, low, high, tost_p, verdict", [
    (0.01, 0.002, 0.02, 0.9, "better"),
    (0.01, -0.02, -0.002, 0.9, "worse"),
    (0.01, 0.001, 0.004, 0.001, "better"),   # better wins over equivalent
    (0.06, 0.002, 0.02, 0.9, "inconclusive"),  # interval excludes 0 but the adjusted p does not reject
    (0.01, -0.001, 0.02, 0.9, "inconclusive"),  # the adjusted p rejects but the interval contains 0
    (0.01, -0.001, 0.02, 0.01, "equivalent"),
    (0.5, -0.004, 0.004, 0.01, "equivalent"),
    (0.5, -0.004, 0.004, 0.05, "inconclusive"),  # TOST must pass strictly (p < 0.05)
    (None, -0.004, 0.004, None, "inconclusive"),
])
def test_plan_verdict_mapping(p_adj, low, high, tost_p, verdict):
    assert stats.plan_verdict(p_adj, low, high, tost_p) == verdict
    assert verdict in stats.VERDICTS


def test_disagreement_flag():
    assert stats.disagree(0.006, -0.0002, 0.022)        # p < 0.05 but the interval contains 0
    assert stats.disagree(0.0625, -0.052, -0.0001)      # interval excludes 0 but p = 0.0625
    assert not stats.disagree(0.002, 0.003, 0.007)
    assert not stats.disagree(0.5, -0.1, 0.1)
    assert not stats.disagree(None, 0.1, 0.2)


def test_paired_difference_max_exact_switches_to_monte_carlo():
    a = [0.1 * i for i in range(12)]
    b = [0.05 * i for i in range(12)]
    assert stats.paired_difference(a, b).exact
    assert not stats.paired_difference(a, b, max_exact=10, n_resamples=2_000).exact
