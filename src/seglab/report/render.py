"""Build the whole report of a results folder: PNGs, a self-contained HTML page, a terminal table."""

from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any

from seglab.results import ResultsStore, TextTable

from .data import _fmt, aggregate, class_names, figure_groups, figure_title, load_rows
from .data import loss_order as recorded_loss_order
from .figures import dice_figure, examples_figure, gradnorm_figure, study_figure, summary_grid

CONFIG_COLS = [("task", "task"), ("fg_ratio", "fg"), ("norm", "norm"), ("optimizer", "opt"), ("lr", "lr"),
               ("momentum", "mom"), ("loss", "loss")]
TABLE_COLS = CONFIG_COLS + [
    ("n", "runs"), ("converged", "conv"), ("diverged", "div"), ("final_accuracy", "val acc"),
    ("majority", "majority"), ("final_fg_dice", "fg Dice"), ("final_mean_dice", "mean Dice"),
    ("final_min_dice", "worst-class Dice"), ("final_train_loss", "train loss"), ("converged_step", "conv. step"),
]
#: a per-class Dice below this is marked as a failed class (HTML: red cell, terminal: red value)
FAILED_DICE = 0.1


def class_cols(agg: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(key, header)`` of the per-class columns: ``Dice <class>`` then ``IoU <class>`` for every class."""
    names = class_names(agg)
    return [(f"final_dice/{n}", f"Dice {n}") for n in names] + [(f"final_iou/{n}", f"IoU {n}") for n in names]


def _cell(a: dict[str, Any], k: str) -> str:
    v = a.get(k)
    if k == "converged":
        return f"{v}/{a['n']}" if a.get("verdict", True) else "—"
    if k == "fg_ratio":
        return "" if v is None else f"{100 * float(v):g}%"
    if v is None and k.startswith(("final_dice/", "final_iou/")):
        return ""  # a class of another task
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if k in ("lr", "momentum"):
            return f"{v:g}"
        if k in ("converged_step", "steps_done"):
            return f"{v:.0f}"
        return f"{v:.3f}"
    return _fmt(v)


def _failed(a: dict[str, Any], k: str) -> bool:
    v = a.get(k)
    return (k.startswith("final_dice/") or k == "final_min_dice") and isinstance(v, float) and v < FAILED_DICE


def _shown_cols(agg: list[dict[str, Any]], cols: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], str]:
    """Columns of ``cols`` to show and a caption stating the configuration columns that are the same in
    every row (left out of the table)."""
    const = [(k, h) for k, h in CONFIG_COLS if len({_cell(a, k) for a in agg}) == 1]
    shown = [(k, h) for k, h in cols if (k, h) not in const]
    caption = ", ".join(f"{h}={_cell(agg[0], k)}" for k, h in const if _cell(agg[0], k)) if agg else ""
    return shown, caption


def _rich_table(agg: list[dict[str, Any]], cols: list[tuple[str, str]], title: str) -> TextTable:
    """The rows of ``agg`` as a :class:`~seglab.results.TextTable`: configuration columns (with the loss) are
    the key columns, repeated when the table is split to fit the console; text is never read as markup nor cut."""
    shown, caption = _shown_cols(agg, cols)
    keys = {k for k, _ in CONFIG_COLS}
    t = TextTable(title, [(head, "left" if head in ("task", "norm", "opt", "loss") else "right", k in keys)
                          for k, head in shown], caption=caption or None)
    for a in agg:
        style = (None if not a.get("verdict", True) else
                 "green" if a["converged"] == a["n"] else ("red" if a["converged"] == 0 else "yellow"))
        t.add_row([(_cell(a, k), "bold red") if _failed(a, k) else _cell(a, k) for k, _ in shown], style=style)
    return t


def terminal_table(agg: list[dict[str, Any]], title: str = "seglab sweep summary"):
    """The summary table (one row per configuration, seeds pooled) as a ``rich`` renderable
    (:class:`~seglab.results.TextTable`: no markup, no cut loss names, split to fit the console); configuration
    columns that are the same in every row go into the caption."""
    return _rich_table(agg, TABLE_COLS, title)


def terminal_class_tables(agg: list[dict[str, Any]],
                          title: str = "final validation Dice and IoU per class (mean over seeds)") -> list:
    """Per-class final Dice and IoU of every configuration as ``rich`` renderables (:class:`TextTable`), one per set of classes (a sweep
    over tasks with different classes gets one table per task, so no table is padded with other tasks'
    classes); a class with Dice < :data:`FAILED_DICE` is in bold red. Empty without per-class data."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for a in agg:
        names = tuple(n for n in class_names([a]) if a.get(f"final_dice/{n}") is not None)
        if names:
            groups.setdefault(names, []).append(a)
    return [_rich_table(rows, CONFIG_COLS + [("n", "runs")] + class_cols(rows), title) for rows in groups.values()]


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def _html_table(agg: list[dict[str, Any]], cols: list[tuple[str, str]] | None = None) -> str:
    cols = TABLE_COLS if cols is None else cols
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    rows = []
    for a in agg:
        cls = ("none" if not a.get("verdict", True) else
               "ok" if a["converged"] == a["n"] else ("bad" if a["converged"] == 0 else "mixed"))
        cells = "".join(('<td class="failed">' if _failed(a, k) else "<td>") + f"{html.escape(_cell(a, k))}</td>"
                        for k, _ in cols)
        rows.append(f'<tr class="{cls}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _gnorm_table(agg: list[dict[str, Any]]) -> str:
    mons = sorted({k[len("mean_gnorm/"):] for a in agg for k in a if k.startswith("mean_gnorm/")})
    if not mons:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["fg", "norm", "opt", "lr", "mom", "loss"] + [f"‖∇{m}‖ mean" for m in mons] + [f"‖∇{m}‖ first 100" for m in mons])
    rows = []
    for a in agg:
        cells = [_cell(a, "fg_ratio"), _cell(a, "norm"), _cell(a, "optimizer"), _cell(a, "lr"), _cell(a, "momentum"), a["loss"]]
        cells += [_cell(a, f"mean_gnorm/{m}") for m in mons] + [_cell(a, f"early_gnorm/{m}") for m in mons]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1500px}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}tr.ok td{background:#eefbea}tr.bad td{background:#fdecea}tr.mixed td{background:#fff8e1}
tr td.failed{background:#f8c9c4;color:#8b0000;font-weight:bold}
code{background:#f4f4f4;padding:1px 3px}"""


def _curve_figures(store: ResultsStore, rows: list[dict[str, Any]], out: Path,
                   loss_order: list[str]) -> list[tuple[tuple, Path, Path | None, Path | None]]:
    """Per configuration group: its study-layout curves, validation Dice per class and example images."""
    return [(key, study_figure(store, key, by_loss, out, loss_order), dice_figure(store, key, by_loss, out, loss_order),
             examples_figure(store, key, by_loss, out, loss_order)) for key, by_loss in figure_groups(rows).items()]


def render_report(results: str | Path, out: str | Path | None = None, *, loss_order: list[str] | None = None,
                  figures: bool = True) -> dict[str, Any]:
    """Render ``results`` into ``out`` (default ``RESULTS/report``): ``index.html`` (self-contained), PNGs.
    Returns ``{"html": path, "pngs": [...], "agg": rows}``.

    The page holds the summary heat maps (foreground, mean and worst-class Dice), the configuration table, the
    per-class Dice and IoU table, gradient norms, and per configuration the study-layout curves and the
    validation Dice per class over steps. Every image is embedded (``data:`` URIs): the page references no
    other file."""
    store = ResultsStore(results)
    if not store.root.exists():
        raise FileNotFoundError(f"results folder {str(results)!r} does not exist")
    rows = load_rows(store)
    comparison = compare_section(store.root)
    if not rows and comparison is None:
        raise ValueError(f"{str(results)!r} holds no finished runs yet")
    out = Path(out) if out else store.root / "report"
    out.mkdir(parents=True, exist_ok=True)
    if not rows:  # only `seglab compare --fn` runs: the comparison is the report
        return _write_page(out, [f"<h1>seglab report — {html.escape(str(store.root))}</h1>",
                                 "<p>The runs of this folder are your own training function's (<code>seglab compare "
                                 "--fn</code>): they have no training curves; the comparison follows.</p>",
                                 comparison or ""], [], [])
    store.write_summary_table()
    agg = aggregate(rows)
    if loss_order is None:
        loss_order = recorded_loss_order(store)
    cc = class_cols(agg)
    grid_pngs = [summary_grid(agg, out, m) for m in ("final_fg_dice", "final_mean_dice", *(["final_min_dice"] if cc else []))]
    gn_png = gradnorm_figure(agg, out)
    study_pngs = _curve_figures(store, rows, out, loss_order) if figures else []
    pngs = grid_pngs + ([gn_png] if gn_png else []) + [p for _, *ps in study_pngs for p in ps if p is not None]
    cfg = store.read_config() or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>seglab report</title><style>{CSS}</style></head><body>",
             f"<h1>seglab report — {html.escape(str(store.root))}</h1>",
             f"<p>{len(rows)} finished run(s) in {len(agg)} configuration(s); generated {time.strftime('%Y-%m-%d %H:%M')}. "
             "Convergence: the criterion in each run's config (default: mean Dice over all classes, background "
             "included, ≥ 0.9 at the final validation — so both “everything background” and “everything "
             "foreground” count as not converged). Validation accuracy is shown beside the majority rate (the "
             "accuracy of predicting the most frequent class everywhere): on an imbalanced task it says little; "
             "the per-class Dice does.</p>",
             "<h2>Summary grid</h2>", *map(_img, grid_pngs),
             "<h2>Configurations</h2>", _html_table(agg)]
    if cc:
        parts += ["<h2>Per-class Dice and IoU</h2>",
                  f"<p>Final validation Dice and IoU of every class (mean over seeds); a class with Dice below "
                  f"{FAILED_DICE:g} is marked.</p>",
                  _html_table(agg, CONFIG_COLS + [("n", "runs")] + cc)]
    if gn_png:
        parts += ["<h2>Gradient norms</h2>", _img(gn_png), _gnorm_table(agg)]
    if study_pngs:
        parts.append("<h2>Training curves</h2><p>Per configuration: first the study's layout — one column per "
                     "training loss; top: global gradient norm of every monitored loss (log scale; points where "
                     "norms were recorded only every <code>grad_norm_every</code> steps); bottom: every monitored "
                     "loss. Smoothed with a moving average of 2% of the run; mean over seeds. Then the validation "
                     "Dice of each class over the steps, one line per training loss, mean over seeds. Where the "
                     "runs saved them (<code>seglab train --out</code>), the best and the worst validation image "
                     "of each training loss by per-image foreground Dice: image, ground truth, prediction.</p>")
        for key, p, dp, ep in study_pngs:
            parts += [f"<h3>{html.escape(figure_title(key))}</h3>", _img(p)]
            for extra in (dp, ep):
                if extra is not None:
                    parts.append(_img(extra))
    if comparison is not None:
        parts.append(comparison)
    grids = cfg.get("grids") or []
    if grids:
        import json

        parts += ["<h2>Configuration</h2><pre>", html.escape(json.dumps(grids, indent=1)), "</pre>"]
    return _write_page(out, parts[1:], pngs, agg)


def _write_page(out: Path, body: list[str], pngs: list[Path], agg: list[dict[str, Any]]) -> dict[str, Any]:
    head = (f"<!doctype html><html><head><meta charset='utf-8'><title>seglab report</title><style>{CSS}</style>"
            "</head><body>")
    html_path = out / "index.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(head + "".join(body) + "</body></html>")
    tmp.replace(html_path)
    return {"html": html_path, "pngs": pngs, "agg": agg}


def compare_section(root: Path) -> str | None:
    """The HTML section of the comparison ``seglab compare`` wrote into ``root`` (``compare.json``; its verdicts
    as ``compare.txt`` holds them, the text the command printed), None when the folder holds no comparison."""
    import json

    root = Path(root)
    f = root / "compare.json"
    if not f.is_file():
        return None
    txt = root / "compare.txt"
    try:
        d = json.loads(f.read_text())
        setup = d.get("setup") or {} if isinstance(d, dict) else {}
        what = (f"your training function <code>{html.escape(str(setup.get('fn')))}</code>"
                if setup.get("kind") == "fn" else "seglab's trainer")
        body = (f"<p>Paired comparison of the losses (runs of {what}); the full page is "
                f"<code>{html.escape(str(root / 'compare.html'))}</code>.</p>")
    except (OSError, ValueError) as e:  # a damaged compare.json must not cost the rest of the report
        body = f"<p>compare.json could not be read: {html.escape(str(e))}</p>"
    if txt.is_file():
        body += f"<pre>{html.escape(txt.read_text(errors='replace'))}</pre>"
    return "<h2>Comparison</h2>" + body
