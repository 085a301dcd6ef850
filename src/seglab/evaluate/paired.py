"""Which of two prediction folders is better on these cases: paired differences, case by case.

``d = value(B) − value(A)`` per case, class and metric (cases where either value is NaN or infinite are left out
and counted). The statistics are those of ``seglab compare`` under docs/analysis_plan.md: the exact (to 16
cases; seeded Monte Carlo beyond) sign-flip p with the 95 % t-interval beside it, Holm within each metric
(one family: every class of that metric), and for metrics where higher is better TOST at ``±margin``. For
distances, ``better`` means smaller and no equivalence margin is set unless ``distance_margin`` is given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seglab import stats as S
from seglab.evaluate.metrics import MetricSpec


def _pairs(a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]], metric: str, k: int
           ) -> tuple[list[float], list[float], int]:
    av = {r["case"]: r["value"] for r in a_rows if r["metric"] == metric and r["class"] == k}
    bv = {r["case"]: r["value"] for r in b_rows if r["metric"] == metric and r["class"] == k}
    common = sorted(set(av) & set(bv))
    keep = [c for c in common if math.isfinite(av[c]) and math.isfinite(bv[c])]
    return [av[c] for c in keep], [bv[c] for c in keep], len(common) - len(keep)


def _row(spec: MetricSpec, k: int, a: list[float], b: list[float], left_out: int, margin: float | None) -> dict:
    row: dict[str, Any] = {"metric": spec.name, "class": k, "n": len(a), "left_out": left_out}
    if len(a) < 2:
        return {**row, "mean": math.nan, "low": math.nan, "high": math.nan, "p_raw": None, "tost_p": None}
    sign = 1.0 if not spec.distance else -1.0  # d > 0 means B is better
    d = sign * (np.asarray(b) - np.asarray(a))
    pd = S.paired_difference(list(d), [0.0] * len(d))
    tost = S.tost_paired(list(d), margin).pvalue if margin else None
    return {**row, "mean": pd.mean, "low": pd.low, "high": pd.high, "p_raw": pd.pvalue, "tost_p": tost,
            "disagreement": S.disagree(pd.pvalue, pd.low, pd.high)}


def compare_rows(a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]], metrics: tuple[MetricSpec, ...], *,
                 margin: float = 0.01, distance_margin: float | None = None) -> list[dict[str, Any]]:
    """One row per metric and class: ``mean`` of ``d`` (positive: B better), interval, raw and Holm p, TOST p
    and the verdict (``better``: B better than A)."""
    out = []
    for spec in metrics:
        classes = sorted({r["class"] for r in a_rows if r["metric"] == spec.name})
        fam = [_row(spec, k, *_pairs(a_rows, b_rows, spec.name, k), distance_margin if spec.distance else margin)
               for k in classes]
        for r, p_adj in zip(fam, S.holm([r["p_raw"] for r in fam]), strict=True):
            r["p_holm"] = p_adj
            r["verdict"] = S.plan_verdict(p_adj, r["low"], r["high"], r["tost_p"]) if r["p_raw"] is not None \
                else "inconclusive"
        out += fam
    return out
