"""Issues 22/24: user text in reports is shown as written. Terminal tables never read loss specs or class names
as rich markup and never cut a loss name (at 80 columns too); the HTML page escapes them; figure file names stay
bounded when the model is given by a long path."""

from __future__ import annotations

import io
import json
import re

import pytest

from report_helpers import make_four_class_folder

pytest.importorskip("rich")

#: canonical specs (as runs record them: seglab.format_loss)
SPECS = ["dice[include_background=false]", "dice[batch=true] + ce", "0.5*dice[batch=true,include_background=false] + ce"]
#: class names that are rich markup (``[/]`` raised MarkupError, ``[link=x]y`` printed as ``y``), HTML or
#: broken matplotlib mathtext (``$x^{$``)
CLASSES = ["$x^{$", "[/]", "[link=x]y", "<b>x</b>"]


def _render(renderable, width: int) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def _cells(text: str, column: str) -> list[str]:
    """The cells of ``column`` in every table of ``text`` (rich's box drawing), one entry per line."""
    out, cols = [], None
    for ln in text.splitlines():
        if ln.startswith("┃"):
            cols = [c.strip() for c in ln.strip("┃").split("┃")]
        elif ln.startswith("│") and cols and column in cols:
            out.append([c.strip() for c in ln.strip("│").split("│")][cols.index(column)])
    return out


def test_text_table_at_80_columns_shows_every_spec_whole():
    from seglab.results import TextTable

    heads = ["runs", "conv", "div", "val acc", "majority", "fg Dice", "mean Dice", "worst-class Dice", "train loss",
             "conv. step"]
    t = TextTable("summary", [("norm", "left", True), ("loss", "left", True)] + [(h, "right", False) for h in heads])
    for s in SPECS[:2]:
        t.add_row(["batch", s] + [f"0.{i}00" for i in range(len(heads))])
    text = _render(t, 80)
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text  # nothing cut with an ellipsis
    for s in SPECS[:2]:
        assert s in text, text  # whole, on one line (not "dice" nor "dice+ce")
    for h in heads:  # every column is shown somewhere (the table is split to fit, the key columns repeated)
        assert h in text or h.split()[0] in text, (h, text)
    assert _cells(text, "loss").count("dice[batch=true] + ce") >= 2


def test_text_table_cells_are_never_markup():
    from seglab.results import TextTable, escape_markup

    t = TextTable("[bold]title[/]", [("class", "left", True), ("Dice [/]", "right", False)], caption="task=[link=x]y")
    for c in CLASSES:
        t.add_row([c, ("0.050", "bold red")])
    text = _render(t, 80)
    for c in CLASSES + ["[bold]title[/]", "Dice [/]", "task=[link=x]y"]:  # title, header, caption too
        assert c in text, (c, text)
    # the escaping helper for strings that rich parses
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(" ".join(escape_markup(c) for c in CLASSES + SPECS))
    assert buf.getvalue().strip() == " ".join(CLASSES + SPECS)


def test_a_long_loss_is_folded_not_cut():
    from seglab.results import TextTable

    long = "+".join(f"dice[class_weights=[{i},1,1,1]]" for i in range(6))
    t = TextTable(None, [("loss", "left", True), ("Dice", "right", False)])
    t.add_row([long, "0.5"])
    text = _render(t, 60)
    assert "…" not in text
    assert "".join(_cells(text, "loss")) == long


def test_short_progress_label_keeps_the_loss():
    from seglab.sweep.runner import _short_label

    label = f"{SPECS[2]} | threshold fg_ratio=0.05 size=64 | tiny norm=batch | adam lr=0.001 | seed=0"
    short = _short_label(label)
    assert short.startswith(SPECS[2] + " | ") and len(short) <= 60 + len(SPECS[2])
    assert _short_label("dice | threshold") == "dice | threshold"


@pytest.fixture(scope="module")
def odd_results(tmp_path_factory):
    """A results folder of two runs on a folder task whose class names are markup/HTML, trained with bracketed
    loss specs by a user model given by a path of ~600 characters."""
    pytest.importorskip("pyarrow")
    import torch

    from seglab.sweep import run_sweep

    root = tmp_path_factory.mktemp("odd")
    make_four_class_folder(root / "data")
    deep = root
    for i in range(3):
        deep = deep / (f"models_{i}_" + "x" * 190)
    deep.mkdir(parents=True)
    (deep / "nets.py").write_text("import torch.nn as nn\n\n\ndef make_net(in_channels, out_channels, spatial_dims, **kw):\n"
                                  "    return nn.Conv2d(in_channels, out_channels, 3, padding=1)\n")
    model = f"{deep / 'nets.py'}:make_net"
    assert len(model) > 255
    grid = {"losses": SPECS[:2], "steps": 2, "eval_every": 2, "batch_size": 2, "grad_norm_every": 1,
            "tasks": [{"name": "folder", "path": str(root / "data"), "class_names": CLASSES}], "models": [model]}
    threads = torch.get_num_threads()
    outcome = run_sweep(grid, root / "r", workers=1, show_progress=False)
    assert outcome.ok and outcome.finished == 2
    assert torch.get_num_threads() == threads  # workers=1 trains in this process and restores its threads
    return root / "r"


def test_report_cli_prints_odd_names_literally(odd_results, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from seglab.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(odd_results), "--out", str(out)]) == 0  # was MarkupError / "File name too long"
    text = capsys.readouterr().out
    for c in CLASSES:
        assert f"Dice {c}" in text, (c, text)
    for s in SPECS[:2]:
        assert s in text, (s, text)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert any(n.endswith("_dice_curves.png") for n in pngs), pngs
    assert max(len(n.encode()) for n in pngs) <= 130, pngs
    html = (out / "index.html").read_text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "Dice [link=x]y" in html and "dice[batch=true] + ce" in html


def test_figure_names_are_bounded_and_distinct():
    from seglab.report.data import MAX_SLUG, bounded_name, figure_slug

    key = ("folder", None, "/" + "a" * 400 + "/nets.py:make_net", "batch", "adam", 0.001, 0.0)
    other = ("folder", None, "/" + "a" * 400 + "/nets.py:make_net2", "batch", "adam", 0.001, 0.0)
    s1, s2 = figure_slug(key), figure_slug(other)
    assert len(s1.encode()) <= MAX_SLUG and len(s2.encode()) <= MAX_SLUG
    assert s1 != s2 and s1.startswith("folder_-aaaa")
    assert re.fullmatch(r".*-[0-9a-f]{12}", s1)
    assert bounded_name("short") == "short"
    assert len(bounded_name("é" * 300).encode()) <= MAX_SLUG  # multi-byte characters are not split


def test_each_run_records_its_provenance(odd_results):
    import numpy
    import torch

    import seglab

    for f in (odd_results / "runs").glob("*/summary.json"):
        p = json.loads(f.read_text())["provenance"]
        assert p["seglab"] == seglab.__version__ and p["torch"] == torch.__version__
        assert p["numpy"] == numpy.__version__ and re.fullmatch(r"\d+\.\d+\.\d+.*", p["python"])
        assert isinstance(p["argv"], list) and p["host"] and p["cpu_model"] and p["device"] == "cpu"
        assert "git_commit" in p and "gpu" in p and p["seed"] == 0 and p["wall_s"] >= 0 and p["time"]
    cfg = json.loads((odd_results / "config.json").read_text())
    assert cfg["provenance"]["seglab"] == seglab.__version__ and "git_commit" in cfg["provenance"]
