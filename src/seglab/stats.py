"""Small-sample statistics for comparing training runs: rates, 2x2 tables and paired differences.

Everything here is exact or numerically exact for the sample sizes seglab's experiments have (3 to a few
hundred runs) and needs only the standard library and numpy; scipy is **not** required (the tests compare
every function with ``scipy.stats``, which stays an optional dependency).

* :func:`clopper_pearson` / :func:`rate` -- the exact (Clopper--Pearson) interval of a binomial rate
  ``k / n``: ``[B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)]`` with ``B(q; a, b)`` the beta quantile, ``a = 1 -
  confidence`` (``scipy.stats.binomtest(k, n).proportion_ci(method="exact")``).
* :func:`fisher_exact` -- Fisher's exact test on a 2x2 table ``[[a, b], [c, d]]``, conditional on the margins
  (hypergeometric null). The two-sided p-value sums the probabilities of every table no more likely than the
  observed one, compared exactly in integers (``scipy.stats.fisher_exact``).
* :func:`paired_difference` -- differences ``d_i = a_i - b_i`` of paired runs (same seed, two
  configurations): mean, sample sd, the Student-t interval ``mean +- t(1-a/2; n-1) sd / sqrt(n)``, the paired
  t-test p-value (``scipy.stats.ttest_rel``) and the sign-flip permutation p-value (under H0 each ``d_i`` is
  equally likely ``+-|d_i|``; p = share of the ``2^n`` sign patterns whose ``|sum|`` reaches the observed one,
  exact up to ``n = 30`` by meet-in-the-middle, Monte Carlo beyond; ``scipy.stats.permutation_test`` with
  ``permutation_type="samples"``).

The verdicts of docs/analysis_plan.md (used by ``seglab compare``), each a small function:

* :func:`signflip_pvalue` -- the plan's primary test: the exact two-sided sign-flip test on per-seed differences
  (all ``2^n`` sign patterns for ``n <= 16``, 100,000 seeded random patterns beyond).
* :func:`holm` -- Holm--Bonferroni adjusted p-values within one family.
* :func:`tost_paired` -- equivalence within ``+-margin``: two one-sided paired t-tests (TOST), i.e. the
  ``1 - 2 alpha`` (90 %) t-interval inside the margin.
* :func:`plan_verdict` -- ``better`` / ``worse`` (adjusted p < alpha and the t-interval excludes 0 on that side),
  ``equivalent`` (else, when TOST passes) or ``inconclusive`` (:data:`VERDICTS`, the only words);
  :func:`disagree` -- whether the t-interval and the unadjusted sign-flip test disagree.

Small samples, honestly: with ``n`` pairs the sign-flip p-value cannot go below ``2 / 2^n`` (0.25 for 3 seeds,
0.0625 for 5, 0.002 for 10), and :attr:`PairedDifference.min_pvalue` says so. Without a passing TOST, a
difference that is not ``better``/``worse`` is ``inconclusive``: never "as good as" or "no difference".

Example::

    >>> from seglab.stats import rate, fisher_exact, paired_difference
    >>> r = rate(3, 3)
    >>> round(r.low, 3), r.high
    (0.292, 1.0)
    >>> round(fisher_exact([[3, 0], [0, 3]]).pvalue, 3)
    0.1
    >>> d = paired_difference([0.91, 0.88, 0.93, 0.90, 0.95], [0.85, 0.86, 0.90, 0.91, 0.89])
    >>> d.n, round(d.mean, 3), d.contains_zero, d.min_pvalue
    (5, 0.032, True, 0.0625)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "Rate", "FisherResult", "PairedDifference", "betainc", "beta_ppf", "t_cdf", "t_ppf",
    "clopper_pearson", "rate", "fisher_exact", "paired_difference", "MAX_EXACT_SIGNFLIP",
    "Tost", "VERDICTS", "signflip_pvalue", "holm", "tost_paired", "plan_verdict", "disagree",
]

MAX_EXACT_SIGNFLIP = 30  # sign-flip p-values are exact (all 2^n patterns) up to this many pairs
_ALTERNATIVES = ("two-sided", "less", "greater")


# ------------------------------------------------------------------ argument checks
def _check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)):
        raise TypeError(f"confidence must be a number in (0, 1), got {confidence!r} ({type(confidence).__name__})")
    c = float(confidence)
    if not (0.0 < c < 1.0):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return c


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ special functions
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0``, ``0 <= x <= 1``."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a > 0 and b > 0, got a={a!r}, b={b!r}")
    if not (0.0 <= x <= 1.0):
        raise ValueError(f"x must be in [0, 1], got {x!r}")
    if x == 0.0 or x == 1.0:
        return x
    lfront = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(lfront)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _bisect(f: Any, lo: float, hi: float, target: float) -> float:
    """The x in [lo, hi] with increasing ``f(x) = target``, to the last bit."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of the Beta(a, b) distribution (inverse of :func:`betainc` in x)."""
    if not (0.0 <= q <= 1.0):
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    if q in (0.0, 1.0):
        return q
    return _bisect(lambda x: betainc(a, b, x), 0.0, 1.0, q)


def t_cdf(t: float, df: float) -> float:
    """Student-t cumulative distribution with ``df > 0`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of the Student-t distribution (``t_ppf(0.975, n - 1)`` for a 95 % interval)."""
    if not (0.0 < q < 1.0):
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    hi = 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    return _bisect(lambda t: t_cdf(t, df), 0.0, hi, q)


# ------------------------------------------------------------------ rates
@dataclass(frozen=True)
class Rate:
    """``k`` successes of ``n`` with the exact (Clopper--Pearson) interval ``[low, high]``."""

    k: int
    n: int
    low: float
    high: float
    confidence: float = 0.95

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rate": self.rate}

    def __str__(self) -> str:
        return f"{self.k}/{self.n} [{self.low:.2f}, {self.high:.2f}]"


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval of a binomial rate ``k / n``, as ``(low, high)``.

    ``low = B(a/2; k, n-k+1)`` (0 when ``k = 0``), ``high = B(1-a/2; k+1, n-k)`` (1 when ``k = n``),
    ``a = 1 - confidence``. Example: ``clopper_pearson(0, 3)`` is ``(0.0, 0.708...)``.
    """
    k, n = _check_count("k", k), _check_count("n", n)
    c = _check_confidence(confidence)
    if n == 0:
        raise ValueError("n must be at least 1 (no trials, no rate)")
    if k > n:
        raise ValueError(f"k must be at most n, got k={k}, n={n}")
    alpha = 1.0 - c
    low = 0.0 if k == 0 else beta_ppf(alpha / 2.0, k, n - k + 1)
    high = 1.0 if k == n else beta_ppf(1.0 - alpha / 2.0, k + 1, n - k)
    return low, high


def rate(k: int, n: int, confidence: float = 0.95) -> Rate:
    """:class:`Rate` of ``k`` successes in ``n`` trials with its Clopper--Pearson interval."""
    low, high = clopper_pearson(k, n, confidence)
    return Rate(int(k), int(n), low, high, float(confidence))


# ------------------------------------------------------------------ 2x2 tables
@dataclass(frozen=True)
class FisherResult:
    """Fisher's exact test: the table, its sample odds ratio ``a d / (b c)`` and the p-value."""

    table: tuple[tuple[int, int], tuple[int, int]]
    odds_ratio: float
    pvalue: float
    alternative: str = "two-sided"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fisher_exact(table: Sequence[Sequence[int]], alternative: str = "two-sided") -> FisherResult:
    """Fisher's exact test of a 2x2 table ``[[a, b], [c, d]]`` (rows: groups, columns: outcome yes/no).

    Under H0 (no association) ``a`` is hypergeometric given the margins,
    ``P(a = x) = C(a+c, x) C(b+d, a+b-x) / C(n, a+b)``. ``"two-sided"`` sums every ``P(x) <= P(a)`` (compared
    exactly in integers), ``"less"`` is ``P(X <= a)``, ``"greater"`` ``P(X >= a)``.
    Example: ``fisher_exact([[3, 0], [0, 3]]).pvalue`` is 0.1 (3/3 against 0/3).
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    try:
        rows = [list(r) for r in table]
    except TypeError:
        raise TypeError(f"table must be a 2x2 table of counts [[a, b], [c, d]], got {table!r}") from None
    if len(rows) != 2 or any(len(r) != 2 for r in rows):
        raise ValueError(f"table must be a 2x2 table of counts [[a, b], [c, d]], got {table!r}")
    (a, b), (c, d) = [[_check_count("table entry", v) for v in r] for r in rows]
    odds = a * d / (b * c) if b * c else (float("inf") if a * d else float("nan"))
    r1, c1, n = a + b, a + c, a + b + c + d
    lo, hi = max(0, r1 + c1 - n), min(r1, c1)
    if lo == hi:  # only one table has these margins
        return FisherResult(((a, b), (c, d)), odds, 1.0, alternative)
    weights = {x: math.comb(c1, x) * math.comb(n - c1, r1 - x) for x in range(lo, hi + 1)}
    total = math.comb(n, r1)
    if alternative == "less":
        num = sum(w for x, w in weights.items() if x <= a)
    elif alternative == "greater":
        num = sum(w for x, w in weights.items() if x >= a)
    else:
        obs = weights[a]
        num = sum(w for w in weights.values() if w <= obs)
    return FisherResult(((a, b), (c, d)), odds, min(1.0, float(Fraction(num, total))), alternative)


# ------------------------------------------------------------------ paired differences
@dataclass(frozen=True)
class PairedDifference:
    """Paired differences ``a - b``: mean, sd, the t-interval and two p-values.

    ``pvalue`` is the sign-flip permutation p-value (exact when ``exact``), ``t_pvalue`` the paired t-test's;
    ``min_pvalue = 2 / 2^n`` is the smallest p-value the sign-flip test can give with ``n`` pairs.
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float
    t_pvalue: float
    pvalue: float
    exact: bool
    min_pvalue: float
    confidence: float = 0.95

    @property
    def contains_zero(self) -> bool:
        """Whether the interval contains 0: "no evidence of a difference" at this confidence."""
        return self.low <= 0.0 <= self.high

    def verdict(self, better: str = "a", worse: str = "b") -> str:
        """One line: which is higher, or "no evidence of a difference" when the interval contains 0."""
        ci = f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}], p = {self.pvalue:.3g}, n = {self.n}"
        if self.contains_zero:
            return f"no evidence of a difference between {better} and {worse}: {ci}"
        hi, lo = (better, worse) if self.mean > 0 else (worse, better)
        return f"{hi} higher than {lo}: {ci}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contains_zero": self.contains_zero}


def _as_vector(name: str, values: Any) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must hold finite numbers only, got {values!r}")
    return v


def _signflip_exact(d: np.ndarray, tol: float) -> float:
    """Share of the 2^n sign patterns with ``|sum(+-d)| >= |sum(d)| - tol`` (meet in the middle)."""
    n = len(d)
    half = n // 2

    def sums(part: np.ndarray) -> np.ndarray:
        s = np.zeros(1)
        for x in part:
            s = np.concatenate([s + x, s - x])
        return s

    left, right = np.sort(sums(d[:half])), sums(d[half:])
    t = abs(float(d.sum())) - tol
    # |l + r| >= t  <=>  l >= t - r  or  l <= -t - r  (disjoint when t > 0)
    if t <= 0:
        return 1.0
    ge = len(left) - np.searchsorted(left, t - right, side="left")
    le = np.searchsorted(left, -t - right, side="right")
    return float((ge + le).sum()) / float(2**n)


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                      n_resamples: int = 100_000, seed: int = 0,
                      max_exact: int | None = None) -> PairedDifference:
    """Paired comparison of ``a`` and ``b`` (one entry per seed, same order): ``d = a - b``.

    Returns the mean of ``d``, its sample sd (``ddof=1``), the Student-t interval
    ``mean +- t(1 - alpha/2; n-1) * sd / sqrt(n)``, the paired t-test p-value and the two-sided sign-flip
    permutation p-value of ``mean(d)`` (:func:`signflip_pvalue`: exact for ``n <= max_exact``, by default
    ``MAX_EXACT_SIGNFLIP``, else ``n_resamples`` random sign patterns from ``seed``, with
    p = (hits + 1) / (n_resamples + 1)). Needs ``n >= 2`` pairs. When every
    difference is equal (sd = 0) the interval is the point and ``t_pvalue`` is nan.
    """
    c = _check_confidence(confidence)
    x, y = _as_vector("a", a), _as_vector("b", b)
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same length (one entry per pair), got {len(x)} and {len(y)}")
    n = len(x)
    if n < 2:
        raise ValueError(f"a and b need at least 2 pairs, got {n}")
    nres = _check_count("n_resamples", n_resamples)
    if nres < 1:
        raise ValueError("n_resamples must be at least 1")
    d = x - y
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd > 0:
        se = sd / math.sqrt(n)
        half = t_ppf(0.5 + c / 2.0, n - 1) * se
        tstat = mean / se
        # the lower tail (not 1 - cdf) keeps its digits far out
        t_p = min(1.0, 2.0 * t_cdf(-abs(tstat), n - 1))
    else:
        half, t_p = 0.0, float("nan")
    p, exact = signflip_pvalue(d, max_exact=MAX_EXACT_SIGNFLIP if max_exact is None else max_exact,
                               n_resamples=nres, seed=seed)
    return PairedDifference(n=n, mean=mean, sd=sd, low=mean - half, high=mean + half, t_pvalue=t_p,
                            pvalue=min(1.0, p), exact=exact, min_pvalue=min(1.0, 2.0 / 2**n), confidence=c)


# ------------------------------------------------------------------ the analysis plan (docs/analysis_plan.md)
#: the four verdicts of docs/analysis_plan.md section 5, the only words a comparison's verdict may use
VERDICTS = ("better", "worse", "equivalent", "inconclusive")
#: the plan's primary test is exact (all 2^n sign patterns) up to this many seeds, seeded Monte Carlo beyond
PLAN_MAX_EXACT = 16
PLAN_RESAMPLES = 100_000
DISAGREEMENT = "t-interval and sign-flip test disagree"


def signflip_pvalue(d: Sequence[float], *, max_exact: int = PLAN_MAX_EXACT, n_resamples: int = PLAN_RESAMPLES,
                    seed: int = 0) -> tuple[float, bool]:
    """Two-sided sign-flip permutation p-value of ``mean(d)`` for paired differences ``d``, as ``(p, exact)``.

    Under H0 each ``d_i`` is equally likely ``+|d_i|`` or ``-|d_i|``; p is the share of sign patterns whose
    ``|sum|`` reaches the observed ``|sum(d)|`` (ties within ``1e-12 * sum|d|`` count). Exact over all ``2^n``
    patterns for ``n <= max_exact`` (16 in the analysis plan), else ``n_resamples`` random patterns drawn from
    ``seed`` with ``p = (hits + 1) / (n_resamples + 1)``. All differences 0 give p = 1.
    Example: ``signflip_pvalue([0.1, 0.2, 0.3])`` is ``(0.25, True)`` (only ``+++`` and ``---`` reach 0.6).
    """
    v = _as_vector("d", d)
    if len(v) < 1:
        raise ValueError("d needs at least 1 difference")
    nres = _check_count("n_resamples", n_resamples)
    if nres < 1:
        raise ValueError("n_resamples must be at least 1")
    tol = 1e-12 * float(np.abs(v).sum())
    if len(v) <= _check_count("max_exact", max_exact):
        return min(1.0, _signflip_exact(v, tol)), True
    rng = np.random.default_rng(seed)
    obs = abs(float(v.sum())) - tol
    if obs <= 0:
        return 1.0, False
    hits = 0
    for start in range(0, nres, 10_000):
        m = min(10_000, nres - start)
        signs = rng.integers(0, 2, size=(m, len(v)), dtype=np.int8) * 2 - 1
        hits += int((np.abs(signs @ v) >= obs).sum())
    return min(1.0, (hits + 1) / (nres + 1)), False


def holm(pvalues: Sequence[Any]) -> list[float | None]:
    """Holm--Bonferroni adjusted p-values, in the input order (``None``/nan entries are not tests: left ``None``).

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(i)`` is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where it is below alpha controls the family-wise error
    rate at alpha (Holm 1979). Example: ``holm([0.01, 0.04, 0.03])`` is ``[0.03, 0.06, 0.06]``.
    """
    idx = [i for i, p in enumerate(pvalues) if p is not None and not (isinstance(p, float) and math.isnan(p))]
    for i in idx:
        p = pvalues[i]
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not (0.0 <= float(p) <= 1.0):
            raise ValueError(f"p-values must be numbers in [0, 1] (or None), got {p!r}")
    out: list[float | None] = [None] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: float(pvalues[i]))):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


@dataclass(frozen=True)
class Tost:
    """Equivalence of a paired mean difference within ``+-margin`` by two one-sided t-tests (TOST).

    ``p_lower`` tests H0 ``mean <= -margin`` against ``mean > -margin``, ``p_upper`` H0 ``mean >= margin``
    against ``mean < margin``; ``pvalue = max(p_lower, p_upper)``. ``low``/``high`` is the ``1 - 2 alpha``
    (90 %) t-interval; ``equivalent`` (``pvalue < alpha``) holds exactly when it lies inside ``(-margin, margin)``.
    """

    n: int
    mean: float
    margin: float
    p_lower: float
    p_upper: float
    pvalue: float
    low: float
    high: float
    alpha: float = 0.05

    @property
    def equivalent(self) -> bool:
        return self.pvalue < self.alpha

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "equivalent": self.equivalent}


def tost_paired(d: Sequence[float], margin: float, alpha: float = 0.05) -> Tost:
    """TOST of the paired differences ``d`` (one per seed) for equivalence within ``+-margin``.

    ``t_lower = (mean + margin) / se``, ``p_lower = P(T > t_lower)``; ``t_upper = (mean - margin) / se``,
    ``p_upper = P(T < t_upper)``, ``T`` Student-t with ``n - 1`` df, ``se = sd / sqrt(n)`` (the one-sided
    ``scipy.stats.ttest_1samp(d, -margin, alternative="greater")`` and ``(d, margin, alternative="less")``).
    When every difference is equal (sd = 0) each one-sided p is 0 if the mean lies strictly on the tested side
    of its bound, else 1. Needs ``n >= 2`` and a finite ``margin > 0``.
    """
    v = _as_vector("d", d)
    n = len(v)
    if n < 2:
        raise ValueError(f"d needs at least 2 differences, got {n}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or not (
            math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a finite number > 0, got {margin!r}")
    a = float(alpha)
    if not (0.0 < a < 0.5):
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    mg = float(margin)
    mean = float(v.mean())
    sd = float(v.std(ddof=1))
    if sd > 0:
        se = sd / math.sqrt(n)
        p_lo = t_cdf(-(mean + mg) / se, n - 1)  # P(T > t_lower), by symmetry
        p_up = t_cdf((mean - mg) / se, n - 1)
        half = t_ppf(1.0 - a, n - 1) * se
    else:
        p_lo = 0.0 if mean > -mg else 1.0
        p_up = 0.0 if mean < mg else 1.0
        half = 0.0
    return Tost(n=n, mean=mean, margin=mg, p_lower=p_lo, p_upper=p_up, pvalue=max(p_lo, p_up), low=mean - half,
                high=mean + half, alpha=a)


def plan_verdict(p_adjusted: float | None, low: float, high: float, tost_p: float | None,
                 alpha: float = 0.05) -> str:
    """The verdict of docs/analysis_plan.md section 5 for a difference ``d = B - A`` (B: the arm, A: the baseline).

    ``"better"``: ``p_adjusted < alpha`` and the t-interval ``[low, high]`` lies above 0; ``"worse"``: the same
    with the interval below 0; ``"equivalent"``: neither, and the TOST p-value ``tost_p < alpha``;
    ``"inconclusive"``: everything else (also when a p-value is ``None``: not tested).
    """
    if p_adjusted is not None and p_adjusted < alpha:
        if low > 0.0:
            return "better"
        if high < 0.0:
            return "worse"
    if tost_p is not None and tost_p < alpha:
        return "equivalent"
    return "inconclusive"


def disagree(p_raw: float | None, low: float, high: float, alpha: float = 0.05) -> bool:
    """Whether the t-interval and the (unadjusted) sign-flip test disagree: one of "the interval excludes 0" and
    "p_raw < alpha" holds without the other (docs/analysis_plan.md section 2). False when not tested."""
    if p_raw is None:
        return False
    return (not (low <= 0.0 <= high)) != (p_raw < alpha)
