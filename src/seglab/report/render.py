"""Build the whole report of a results folder: PNGs, a self-contained HTML page, a terminal table."""

from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any, Optional

from seglab.results import ResultsStore

from .data import _fmt, aggregate, figure_groups, figure_title, load_rows
from .figures import gradnorm_figure, study_figure, summary_grid

TABLE_COLS = [
    ("task", "task"), ("fg_ratio", "fg"), ("norm", "norm"), ("optimizer", "opt"), ("lr", "lr"), ("momentum", "mom"),
    ("loss", "loss"), ("n", "runs"), ("converged", "conv"), ("diverged", "div"), ("final_accuracy", "val acc"),
    ("majority", "majority"), ("final_fg_dice", "fg Dice"), ("final_mean_dice", "mean Dice"),
    ("final_train_loss", "train loss"), ("converged_step", "conv. step"),
]


def _cell(a: dict[str, Any], k: str) -> str:
    v = a.get(k)
    if k == "converged":
        return f"{v}/{a['n']}"
    if k == "fg_ratio":
        return "" if v is None else f"{100 * float(v):g}%"
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if k in ("lr", "momentum"):
            return f"{v:g}"
        if k in ("converged_step", "steps_done"):
            return f"{v:.0f}"
        return f"{v:.3f}"
    return _fmt(v)


def terminal_table(agg: list[dict[str, Any]], title: str = "seglab sweep summary"):
    from seglab._extras import require

    Table = require("rich.table", "the results table").Table

    # columns that are the same in every row are stated in the caption instead
    const = [(k, h) for k, h in TABLE_COLS[:7] if len({_cell(a, k) for a in agg}) == 1]
    cols = [(k, h) for k, h in TABLE_COLS if (k, h) not in const]
    caption = ", ".join(f"{h}={_cell(agg[0], k)}" for k, h in const if _cell(agg[0], k)) if agg else ""
    t = Table(title=title, caption=caption or None, show_lines=False)
    for _, head in cols:
        t.add_column(head, justify="right" if head not in ("task", "norm", "opt", "loss") else "left")
    for a in agg:
        style = "green" if a["converged"] == a["n"] else ("red" if a["converged"] == 0 else "yellow")
        t.add_row(*[_cell(a, k) for k, _ in cols], style=style)
    return t


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def _html_table(agg: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in TABLE_COLS)
    rows = []
    for a in agg:
        cls = "ok" if a["converged"] == a["n"] else ("bad" if a["converged"] == 0 else "mixed")
        rows.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(_cell(a, k))}</td>" for k, _ in TABLE_COLS) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _gnorm_table(agg: list[dict[str, Any]]) -> str:
    mons = sorted({k[len("mean_gnorm/"):] for a in agg for k in a if k.startswith("mean_gnorm/")})
    if not mons:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ["fg", "norm", "opt", "lr", "mom", "loss"] + [f"‖∇{m}‖ mean" for m in mons] + [f"‖∇{m}‖ first 100" for m in mons])
    rows = []
    for a in agg:
        cells = [_cell(a, "fg_ratio"), _cell(a, "norm"), _cell(a, "optimizer"), _cell(a, "lr"), _cell(a, "momentum"), a["loss"]]
        cells += [_cell(a, f"mean_gnorm/{m}") for m in mons] + [_cell(a, f"early_gnorm/{m}") for m in mons]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1500px}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}tr.ok td{background:#eefbea}tr.bad td{background:#fdecea}tr.mixed td{background:#fff8e1}
code{background:#f4f4f4;padding:1px 3px}"""


def render_report(results: str | Path, out: Optional[str | Path] = None, *, loss_order: Optional[list[str]] = None,
                  figures: bool = True) -> dict[str, Any]:
    """Render ``results`` into ``out`` (default ``RESULTS/report``): ``index.html`` (self-contained), PNGs.
    Returns ``{"html": path, "pngs": [...], "agg": rows}``."""
    store = ResultsStore(results)
    if not store.root.exists():
        raise FileNotFoundError(f"results folder {str(results)!r} does not exist")
    rows = load_rows(store)
    if not rows:
        raise ValueError(f"{str(results)!r} holds no finished runs yet")
    store.write_summary_table()
    out = Path(out) if out else store.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(rows)
    if loss_order is None:
        from seglab.train.specs import STUDY_LOSSES

        loss_order = list(STUDY_LOSSES)
    pngs: list[Path] = []
    grid_png = summary_grid(agg, out, "final_fg_dice")
    grid2_png = summary_grid(agg, out, "final_mean_dice")
    gn_png = gradnorm_figure(agg, out)
    study_pngs = []
    if figures:
        for key, by_loss in figure_groups(rows).items():
            study_pngs.append((key, study_figure(store, key, by_loss, out, loss_order)))
    pngs = [grid_png, grid2_png] + ([gn_png] if gn_png else []) + [p for _, p in study_pngs]
    cfg = store.read_config() or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>seglab report</title><style>{CSS}</style></head><body>",
             f"<h1>seglab report — {html.escape(str(store.root))}</h1>",
             f"<p>{len(rows)} finished run(s) in {len(agg)} configuration(s); generated {time.strftime('%Y-%m-%d %H:%M')}. "
             "Convergence: the criterion in each run's config (default: mean Dice over all classes, background "
             "included, ≥ 0.9 at the final validation — so both “everything background” and “everything "
             "foreground” count as not converged).</p>",
             "<h2>Summary grid</h2>", _img(grid_png), _img(grid2_png),
             "<h2>Configurations</h2>", _html_table(agg)]
    if gn_png:
        parts += ["<h2>Gradient norms</h2>", _img(gn_png), _gnorm_table(agg)]
    if study_pngs:
        parts.append("<h2>Training curves (the study's layout)</h2><p>One column per training loss; top: global "
                     "gradient norm of every monitored loss (log scale); bottom: every monitored loss and the "
                     "validation accuracy (dashed). Smoothed with a moving average of 2% of the run; mean over seeds.</p>")
        for key, p in study_pngs:
            parts += [f"<h3>{html.escape(figure_title(key))}</h3>", _img(p)]
    grids = cfg.get("grids") or []
    if grids:
        import json

        parts += ["<h2>Configuration</h2><pre>", html.escape(json.dumps(grids, indent=1)), "</pre>"]
    parts.append("</body></html>")
    html_path = out / "index.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text("".join(parts))
    tmp.replace(html_path)
    return {"html": html_path, "pngs": pngs, "agg": agg}
