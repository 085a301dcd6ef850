"""Issue 11, reports: every class's Dice and IoU in the HTML and terminal tables, Dice-over-time figures, norm
labels of any model, and no empty panel when data exist (the fixture is in conftest.py)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from report_helpers import CLASSES


class _Tables(HTMLParser):
    """Every <table> of a page as a list of rows (lists of cell texts, the header row first)."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _expected(results) -> dict[tuple[str, str], dict[str, str]]:
    """(task, loss) -> {"Dice <class>" / "IoU <class>": value to 3 decimals}, straight from the runs'
    summary.json files (one seed per configuration here)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for f in sorted((results / "runs").glob("*/summary.json")):
        s = json.loads(f.read_text())
        d = out.setdefault((s["config"]["task"], s["config"]["loss"]), {})
        for name, dice, iou in zip(s["class_names"], s["final_dice"], s["final_iou"], strict=True):
            d[f"Dice {name}"], d[f"IoU {name}"] = f"{dice:.3f}", f"{iou:.3f}"
    return out


def test_html_table_shows_each_class_dice_and_iou(mixed_report):
    html = mixed_report["rep"]["html"].read_text()
    p = _Tables()
    p.feed(html)
    per_class = [t for t in p.tables if any(h.startswith("Dice ") for h in t[0])]
    assert len(per_class) == 1, [t[0] for t in p.tables]
    head, *rows = per_class[0]
    for c in CLASSES:
        assert f"Dice {c}" in head and f"IoU {c}" in head, head
    exp = _expected(mixed_report["results"])
    folder_rows = {r[head.index("loss")]: dict(zip(head, r, strict=False)) for r in rows if r[head.index("task")] == "folder"}
    assert sorted(folder_rows) == sorted(loss for task, loss in exp if task == "folder") and len(folder_rows) == 2
    for loss, cells in folder_rows.items():
        for col, value in exp[("folder", loss)].items():
            assert cells[col] == value, (loss, col, cells[col], value)
        assert cells["norm"] == "batch", cells  # a UNet with its default batch norm (issue 11: was "none")
    # the threshold task's classes are columns too; the folder rows leave them empty
    thr_names = [k[len("Dice "):] for (task, _), e in exp.items() if task == "threshold" for k in e if k.startswith("Dice ")]
    assert thr_names
    for n in thr_names:
        assert f"Dice {n}" in head
    # failed classes (Dice < 0.1) are marked in the page
    if any(float(v) < 0.1 for e in exp.values() for k, v in e.items() if k.startswith("Dice ")):
        assert 'class="failed"' in html


def test_terminal_tables_show_each_class_dice(mixed_report, capsys):
    from rich.console import Console

    from seglab.report import terminal_class_tables, terminal_table

    agg = mixed_report["rep"]["agg"]
    console = Console(width=400, no_color=True)
    tables = terminal_class_tables(agg)
    assert len(tables) == 2  # the folder task's classes and the threshold task's: one table each
    for t in tables:
        console.print(t)
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(ln for ln in lines if "Dice liver" in ln)
    cols = [c.strip() for c in header.strip("┃│ ").split("┃")]
    exp = _expected(mixed_report["results"])
    for c in CLASSES:
        assert f"Dice {c}" in cols and f"IoU {c}" in cols
    body = lines[lines.index(header):]
    end = next(i for i, ln in enumerate(body) if ln.startswith("└"))
    assert "task=folder" in body[end + 1]  # the caption: the column that is the same in every row
    body = body[:end]  # this table only
    rows = [dict(zip(cols, [c.strip() for c in ln.strip("│ ").split("│")], strict=False)) for ln in body if ln.startswith("│")]
    for task, loss in exp:
        if task != "folder":
            continue
        (cells,) = [r for r in rows if r["loss"] == loss]
        for c in CLASSES:
            assert cells[f"Dice {c}"] == exp[("folder", loss)][f"Dice {c}"], (loss, c, cells)
    console.print(terminal_table(agg))
    assert "worst-class Dice" in capsys.readouterr().out


def test_report_cli_prints_the_class_table(mixed_report, capsys, tmp_path):
    from seglab.cli import main

    assert main(["report", str(mixed_report["results"]), "--no-curves", "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "per class" in out
    for c in CLASSES:
        assert f"Dice {c}" in out


def test_dice_over_time_figures_and_no_accuracy_curve(mixed_report):
    rep = mixed_report["rep"]
    names = sorted(p.name for p in rep["pngs"])
    dice = [n for n in names if n.endswith("_dice_curves.png")]
    assert len(dice) == 2, names  # the folder task and the threshold task
    assert "summary_final_min_dice.png" in names
    html = rep["html"].read_text()
    assert html.count("data:image/png;base64,") == len(rep["pngs"])
    assert "val accuracy" not in html and "validation accuracy (dashed)" not in html


def test_every_figure_has_drawn_data(mixed_report):
    """grad_norm_every (1000) > steps (8): the monitors' gradient norms exist only at step 0; every panel of
    every figure the report saves still shows its data (issue 11: the gradient-norm panels were empty)."""
    figs = mixed_report["figures"]
    assert {p.name for p in mixed_report["rep"]["pngs"]} <= set(figs)
    assert any(n.startswith("folder_") and not n.endswith("_dice_curves.png") for n in figs)
    empty = {name: panels for name, panels in figs.items() if panels}
    assert not empty, empty


def test_gradient_norm_panels_draw_sparse_points():
    """Unit check of plot_series: a series recorded only at a few steps is drawn (with markers); an all-NaN one
    draws nothing and says so."""
    import numpy as np

    plt = pytest.importorskip("matplotlib.pyplot")
    from seglab.report.figures import plot_series

    from report_helpers import drawn

    steps = np.arange(500.0)
    y = np.full(500, np.nan)
    y[0] = 2.0
    fig, ax = plt.subplots()
    assert plot_series(ax, steps, y) and drawn(ax)
    y[::100] = 1.5
    ax.cla()
    assert plot_series(ax, steps, y) and drawn(ax) and len(ax.lines[0].get_xdata()) == 5
    ax.cla()
    assert not plot_series(ax, steps, np.full(500, np.nan)) and not drawn(ax)
    plt.close(fig)


def test_norm_label_prefers_the_recorded_model_norm():
    from seglab.report.data import default_norm
    from seglab.results import flatten_summary

    def summary(model, model_kw, **extra):
        return {"run_id": "x", "status": "finished", "class_names": [],
                "config": {"loss": "ce", "task": "t", "model": model, "model_kw": model_kw}, **extra}

    assert flatten_summary(summary("unet", {}, model_norm="group"))["norm"] == "group"
    assert flatten_summary(summary("unet", {"norm": None}, model_norm="batch"))["norm"] == "batch"
    assert flatten_summary(summary("unet", {"norm": None}))["norm"] == "none"
    assert "norm" not in flatten_summary(summary("unet", {}))  # left to the report (factory default)
    assert "model_norm" not in flatten_summary(summary("unet", {}, model_norm="layer"))
    import inspect

    from seglab.models import UNet

    unet_default = inspect.signature(UNet).parameters["norm"].default
    assert default_norm("unet") == unet_default == "batch"
    assert default_norm("mypkg.nets:make_net") == "unknown"  # a user model that recorded nothing: not "none"
