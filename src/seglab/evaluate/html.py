"""The HTML page of ``seglab evaluate``: per metric, a table per class and the distribution of the per-case
values (an inline SVG strip plot: one dot per case, the mean and median marked). Self-contained: no script,
no external file; every user-supplied text is escaped."""

from __future__ import annotations

import html
import json
import math
from typing import Any

WIDTH, ROW_H, PAD = 640, 28, 150


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and math.isnan(x):
        return "NaN"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _strip(values_by_class: dict[int, list[float]], names: dict[int, str]) -> str:
    finite = [v for vs in values_by_class.values() for v in vs if math.isfinite(v)]
    if not finite:
        return "<p>no finite value to draw</p>"
    lo, hi = min(finite), max(finite)
    hi = hi if hi > lo else lo + 1.0

    def x(v: float) -> float:
        return PAD + (WIDTH - PAD - 20) * (v - lo) / (hi - lo)

    rows = []
    for i, (k, vs) in enumerate(sorted(values_by_class.items())):
        y = ROW_H * i + ROW_H / 2
        rows.append(f'<text x="4" y="{y + 4:.1f}" font-size="12">{html.escape(names.get(k, str(k)))}</text>')
        ok = [v for v in vs if math.isfinite(v)]
        rows += [f'<circle cx="{x(v):.1f}" cy="{y:.1f}" r="3" fill="#4477aa" fill-opacity="0.6"/>' for v in ok]
        if ok:
            mean, med = sum(ok) / len(ok), sorted(ok)[len(ok) // 2]
            rows.append(f'<line x1="{x(mean):.1f}" x2="{x(mean):.1f}" y1="{y - 9:.1f}" y2="{y + 9:.1f}" stroke="#cc3311" '
                        'stroke-width="2"><title>mean</title></line>')
            rows.append(f'<rect x="{x(med) - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="none" stroke="#222">'
                        '<title>median</title></rect>')
    h = ROW_H * len(values_by_class) + 24
    axis = (f'<text x="{PAD}" y="{h - 4}" font-size="11">{_fmt(lo)}</text>'
            f'<text x="{WIDTH - 60}" y="{h - 4}" font-size="11">{_fmt(hi)}</text>')
    return f'<svg width="{WIDTH}" height="{h}" role="img">{"".join(rows)}{axis}</svg>'


def _summary_table(per_class: dict[str, Any], names: dict[int, str]) -> str:
    cols = ["class", "n", "mean", "median", "95 % CI of the mean", "NaN", "both empty", "missed", "hallucinated"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for k, s in per_class.items():
        cells = [names.get(int(k), k), s["n"], s["mean"], s["median"], f"[{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]",
                 s["n_nan"], s["n_both_empty"], s["n_missed"], s["n_hallucinated"]]
        body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _comparison_table(rows: list[dict[str, Any]], names: dict[int, str]) -> str:
    cols = ["metric", "class", "n", "d (B better > 0)", "95 % t-interval", "p", "p (Holm)", "TOST p", "verdict"]
    body = []
    for r in rows:
        cells = [r["metric"], names.get(r["class"], str(r["class"])), r["n"], r["mean"],
                 f"[{_fmt(r['low'])}, {_fmt(r['high'])}]", r["p_raw"], r.get("p_holm"), r["tost_p"],
                 r["verdict"] + (" †" if r.get("disagreement") else "")]
        body.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in cells) + "</tr>")
    return (f"<table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{''.join(body)}</table>"
            "<p>† the t-interval and the sign-flip test disagree (docs/analysis_plan.md).</p>")


def render_html(summary: dict[str, Any], rows: list[dict[str, Any]], *, class_names: list[str] | None = None,
                comparison: list[dict[str, Any]] | None = None, title: str = "seglab evaluate") -> str:
    """The page as a string (``rows``: per_case.csv rows; ``comparison``: rows of
    :func:`seglab.evaluate.paired.compare_rows`)."""
    names = {i: n for i, n in enumerate(class_names or [])}
    opts = summary["options"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:980px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{summary['n_cases']} cases · predictions {html.escape(summary['pred'])} · ground truth "
             f"{html.escape(summary['gt'])} · empty-mask convention <b>{html.escape(opts['empty'])}</b> "
             "(docs/metrics.md)</p>"]
    for spec in opts["metrics"]:
        name = spec["name"]
        defn = html.escape(json.dumps({"registered": spec["registered"], **spec["options"]}))
        parts.append(f"<h2>{html.escape(name)}</h2><p>definition: <code>{defn}</code></p>")
        parts.append(_summary_table(summary["metrics"][name], names))
        by_class: dict[int, list[float]] = {}
        for r in rows:
            if r["metric"] == name:
                by_class.setdefault(r["class"], []).append(r["value"])
        parts.append(_strip(by_class, names))
    if comparison:
        parts += ["<h2>Comparison</h2>", _comparison_table(comparison, names)]
    parts.append("</body></html>")
    return "\n".join(parts)
