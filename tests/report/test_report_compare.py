"""Issue 22: ``seglab report`` on a ``compare --fn`` folder (no crash: the comparison is the report), the comparison
section wherever compare.json is, short loss labels with a key."""

from __future__ import annotations

import json
import shutil

import pytest

FN = '''
def run(loss, seed, **kw):
    return {"dice": 0.5 + 0.01 * seed + (0.1 if "ce" in str(loss) else 0.0)}
'''


@pytest.fixture(scope="module")
def fn_folder(tmp_path_factory):
    from seglab.cli import main

    root = tmp_path_factory.mktemp("fn")
    (root / "fnrun.py").write_text(FN)
    assert main(["compare", "--fn", f"{root / 'fnrun.py'}:run", "--losses", "dice+ce,dice", "--mode", "multiclass",
                 "--seeds", "3", "--out", str(root / "cf")]) == 0
    assert (root / "cf" / "compare.json").is_file()
    return root / "cf"


def test_report_of_a_compare_fn_folder_is_the_comparison(fn_folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from seglab.cli import main

    capsys.readouterr()
    assert main(["report", str(fn_folder), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "<h2>Comparison</h2>" in page and "dice + ce" in page
    assert "Summary grid" not in page  # no trainer runs: no empty heat maps


def test_comparison_section_appears_beside_trainer_runs(mixed_report, fn_folder, tmp_path):
    from seglab.report import render_report

    res = tmp_path / "r"
    shutil.copytree(mixed_report["results"], res, ignore=shutil.ignore_patterns("report"))
    page = render_report(res, tmp_path / "a", figures=False)["html"].read_text()
    assert "<h2>Comparison</h2>" not in page and "Summary grid" in page
    shutil.copy(fn_folder / "compare.json", res / "compare.json")
    page = render_report(res, tmp_path / "b", figures=False)["html"].read_text()
    assert "<h2>Comparison</h2>" in page and "Summary grid" in page
    (res / "compare.json").write_text(json.dumps({"schema": "nonsense"}))
    page = render_report(res, tmp_path / "c", figures=False)["html"].read_text()
    assert "Summary grid" in page  # a damaged compare.json does not cost the report


def test_long_loss_specs_get_short_labels_and_a_key():
    from seglab.report.figures import MAX_LABEL, LossLabels

    long = "0.5*dice[batch=true,smooth=1e-07] + ce[label_smoothing=0.1]"
    lab = LossLabels(["study_dice", long, "dice + ce", long + " + focal"])
    assert lab("study_dice") == "DICE" and lab("dice + ce") == "dice + ce"
    assert lab(long) == "L1" and lab(long + " + focal") == "L2"
    assert all(len(lab(s)) <= MAX_LABEL for s in lab.short)
    assert lab.key().splitlines() == [f"L1 = {long}", f"L2 = {long} + focal"]
    assert LossLabels(["ce"]).key() == ""


def test_runs_without_a_convergence_verdict_show_none(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from rich.console import Console

    from seglab.cli import main
    from seglab.report import render_report
    from seglab.report.render import terminal_table

    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(3):
        m = (rng.random((16, 16)) > 0.7).astype(np.uint8)
        np.save(tmp_path / "d" / "images" / f"c{i}.npy", m + rng.normal(0, 0.3, m.shape).astype(np.float32))
        np.save(tmp_path / "d" / "masks" / f"c{i}.npy", m)
    assert main(["train", "--loss", "dice", "--task", "folder", "--task-opt", f"path={tmp_path / 'd'}", "--steps", "1",
                 "--eval-every", "1", "--device", "cpu", "-q", "--out", str(tmp_path / "r")]) == 0
    rep = render_report(tmp_path / "r", figures=False)
    (a,) = rep["agg"]
    assert a["verdict"] is False and a["converged"] == 0
    con = Console(width=200, record=True)
    con.print(terminal_table(rep["agg"]))
    assert "0/1" not in con.export_text()
