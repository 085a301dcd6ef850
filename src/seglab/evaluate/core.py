"""``seglab evaluate``: score a folder of predictions against a folder of ground truths, case by case.

Writes, in ``out``:

* ``per_case.csv`` — one row per case × class × metric: ``case, class, metric, value, empty`` (``empty``: ""
  or ``both_empty`` / ``missed`` / ``hallucinated``). Rows are appended case by case (one write per case), so
  an interrupted run resumes: cases already complete in the file are skipped.
* ``summary.json`` — per metric and class: ``n``, mean, median, a percentile-bootstrap 95 % interval of the
  mean over cases (2,000 resamples, seed 0), and the empty counts; the options (metrics, definitions, the
  empty convention, spacing) and the provenance of the run; ``schema_version``.

One case is in memory at a time (per worker process with ``workers > 1``). Conventions:
:mod:`seglab.evaluate.metrics`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np
import torch

from seglab.evaluate.cases import CasePair, pair_cases, read_pair
from seglab.evaluate.metrics import MetricSpec, case_values, check_empty_convention, empty_kind

SCHEMA_VERSION = 1
CSV_FIELDS = ("case", "class", "metric", "value", "empty")
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class EvalOptions:
    """What one evaluation computes (recorded in summary.json)."""

    metrics: tuple[MetricSpec, ...]
    num_classes: int | None = None  # None: 1 + the largest label of the ground truths and predictions
    include_background: bool = False
    empty: str = "nan"
    spacing: tuple[float, ...] | None = None  # None: the NIfTI header's, else 1 per axis

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": [{"name": m.name, "registered": m.registered, "options": m.options} for m in self.metrics],
                "num_classes": self.num_classes, "include_background": self.include_background, "empty": self.empty,
                "spacing": list(self.spacing) if self.spacing else None}


def _max_label(cases: list[CasePair]) -> int:
    top = 0
    for c in cases:
        p, g, _ = read_pair(c, None)
        top = max(top, int(p.max()), int(g.max()))
    return top + 1


def _done_cases(path: Path, rows_per_case: int) -> set[str]:
    """Cases complete in an existing per_case.csv (a case cut short by a kill is dropped and redone)."""
    if not path.exists():
        return set()
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["case"]] = counts.get(r["case"], 0) + 1
    done = {c for c, n in counts.items() if n == rows_per_case}
    if len(done) != len(counts) or any(len(r) != len(CSV_FIELDS) or None in r.values() for r in rows):
        keep = [r for r in rows if r["case"] in done and None not in r.values()]
        _write_rows(path, keep, mode="w")
    return done


def _write_rows(path: Path, rows: list[dict[str, Any]], mode: str = "a") -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    if mode == "w" or not path.exists() or path.stat().st_size == 0:
        w.writeheader()
    w.writerows(rows)
    with path.open(mode if path.exists() else "w") as f:
        f.write(buf.getvalue())
        f.flush()


def score_case(case: CasePair, opts: EvalOptions, num_classes: int) -> list[dict[str, Any]]:
    """The per_case.csv rows of one case."""
    pred, gt, spacing = read_pair(case, opts.spacing)
    if int(pred.max()) >= num_classes or int(gt.max()) >= num_classes:
        raise ValueError(f"case {case.name!r}: label {max(int(pred.max()), int(gt.max()))} >= --num-classes {num_classes}")
    p_has = torch.bincount(pred.reshape(-1), minlength=num_classes) > 0
    g_has = torch.bincount(gt.reshape(-1), minlength=num_classes) > 0
    classes = range(0 if opts.include_background else 1, num_classes)
    rows = []
    for spec in opts.metrics:
        vals = case_values(spec, pred, gt, num_classes=num_classes, spacing=spacing, empty=opts.empty)
        rows += [{"case": case.name, "class": k, "metric": spec.name, "value": repr(vals[k]),
                  "empty": empty_kind(bool(p_has[k]), bool(g_has[k]))} for k in classes]
    return rows


def _scored(cases: list[CasePair], opts: EvalOptions, num_classes: int, workers: int) -> Iterator[list[dict[str, Any]]]:
    """The rows of each case, in order: in this process (``workers <= 1``), or in ``workers`` processes that die
    with this one (each holds one case at a time; results come back in case order)."""
    if workers <= 1 or len(cases) <= 1:
        yield from (score_case(c, opts, num_classes) for c in cases)
        return
    # children armed to die with this process before any heavy import. Imported here: importing it runs
    # seglab/sweep/__init__ (runner, grid, results), 0.56-0.60 s measured after seglab.evaluate.core is loaded
    from seglab.sweep._spawn import context

    with ProcessPoolExecutor(max_workers=workers, mp_context=context()) as pool:
        yield from pool.map(score_case, cases, [opts] * len(cases), [num_classes] * len(cases))


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, out: str | Path, opts: EvalOptions, *,
                     progress: Callable[[int, int, str], None] | None = None,
                     provenance: dict[str, Any] | None = None, workers: int = 1) -> dict[str, Any]:
    """Score every case, write ``per_case.csv`` and ``summary.json`` in ``out``; returns the summary.
    ``workers > 1`` scores cases in that many processes (memory: one case per process)."""
    check_empty_convention(opts.empty)
    cases = pair_cases(pred_dir, gt_dir)
    C = opts.num_classes or _max_label(cases)
    n_classes = C - (0 if opts.include_background else 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "per_case.csv"
    done = _done_cases(csv_path, n_classes * len(opts.metrics))
    todo = [c for c in cases if c.name not in done]
    for i, rows in enumerate(_scored(todo, opts, C, workers)):
        _write_rows(csv_path, rows)
        if progress:
            progress(len(done) + i + 1, len(cases), todo[i].name)
    summary = summarize(read_per_case(csv_path), opts)
    summary.update({"num_classes": C, "n_cases": len(cases), "pred": str(pred_dir), "gt": str(gt_dir),
                    "provenance": provenance or {}})
    (out / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True) + "\n")
    return summary


def read_per_case(path: str | Path) -> list[dict[str, Any]]:
    """per_case.csv as rows with ``value`` a float and ``class`` an int."""
    with Path(path).open(newline="") as f:
        return [{**r, "class": int(r["class"]), "value": float(r["value"])} for r in csv.DictReader(f)]


def bootstrap_mean_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` over cases (``inf`` values give ``inf``
    bounds where they are drawn).

    >>> bootstrap_mean_ci(np.array([1.0, 1.0, 1.0]))
    (1.0, 1.0)
    """
    if len(values) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    with np.errstate(invalid="ignore"):
        means = values[idx].mean(axis=1)
    a = (1 - confidence) / 2
    with np.errstate(invalid="ignore"):
        return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def summarize(rows: list[dict[str, Any]], opts: EvalOptions) -> dict[str, Any]:
    """summary.json's object from the per-case rows (module docstring)."""
    table: dict[str, dict[str, Any]] = {}
    for spec in opts.metrics:
        per_class: dict[str, Any] = {}
        for k in sorted({r["class"] for r in rows if r["metric"] == spec.name}):
            sel = [r for r in rows if r["metric"] == spec.name and r["class"] == k]
            v = np.array([r["value"] for r in sel], dtype=np.float64)
            ok = v[~np.isnan(v)]
            lo, hi = bootstrap_mean_ci(ok)
            per_class[str(k)] = {
                "n": int(len(ok)), "n_nan": int(np.isnan(v).sum()),
                "mean": float(ok.mean()) if len(ok) else math.nan,
                "median": float(np.median(ok)) if len(ok) else math.nan, "ci95": [lo, hi],
                **{f"n_{e}": sum(r["empty"] == e for r in sel) for e in ("both_empty", "missed", "hallucinated")}}
        table[spec.name] = per_class
    return {"schema_version": SCHEMA_VERSION, "options": opts.as_dict(), "metrics": table}


def print_progress(i: int, n: int, name: str) -> None:
    """A one-line progress display on stderr."""
    end = "\n" if i == n else ""
    print(f"\r[{i}/{n}] {name[:60]:<60}", end=end, file=sys.stderr, flush=True)
