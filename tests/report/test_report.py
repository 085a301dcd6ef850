"""seglab.report renders a tiny sweep: PNGs, a self-contained HTML page, a terminal table."""

import torch

from seglab.report import render_report
from seglab.sweep import run_sweep

torch.set_num_threads(1)


def test_report_renders_from_a_tiny_sweep(tmp_path, capsys):
    grid = {"losses": ["cce", "dicefg"], "fg_ratios": [0.05], "norms": ["batch", "none"], "steps": 12,
            "eval_every": 6, "task_kw": {"size": 16}, "grids": [{"optimizers": ["adam"]}, {"optimizers": [{"name": "sgd", "lr": 0.01, "momentum": 0.9}]}]}
    run_sweep(grid, tmp_path / "r", workers=1, show_progress=False)
    rep = render_report(tmp_path / "r")
    html = rep["html"].read_text()
    # 3 heat maps (foreground, mean, worst-class Dice), gradient norm vs fg, per configuration group
    # (2 norms x 2 optimizer settings) the study-layout curves and the Dice-over-time curves
    assert html.count("data:image/png;base64,") == len(rep["pngs"]) == 3 + 1 + 2 * 4
    assert "<table>" in html and "dicefg" in html and 'src="http' not in html
    for p in rep["pngs"]:
        assert p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(rep["agg"]) == 8
    assert {a["norm"] for a in rep["agg"]} == {"batch", "none"}
    from seglab.cli import main

    assert main(["report", str(tmp_path / "r"), "--no-curves"]) == 0
    out = capsys.readouterr().out
    assert "seglab sweep summary" in out and "dicefg" in out
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_report_bad_input_and_damaged_runs(tmp_path, capsys):
    """One line naming the path, exit 2 (issue 11); damaged runs are named and left out, not a traceback."""
    from seglab.cli import main
    from seglab.results import ResultsStore

    def one_line(argv, *words):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
        for w in words:
            assert w in err, (w, err)

    f = tmp_path / "a_file"
    f.write_text("x")
    one_line(["report", str(f)], "a_file", "not a folder")
    grid = {"losses": ["cce", "dicefg"], "fg_ratios": [0.5], "norms": ["none"], "steps": 6, "eval_every": 3,
            "task_kw": {"size": 16}}
    run_sweep(grid, tmp_path / "r", workers=1, show_progress=False)
    one_line(["report", str(tmp_path / "r"), "--out", "/dev/null/x", "--no-curves"], "/dev/null/x")
    one_line(["report", str(tmp_path / "r"), "--out", str(f), "--no-curves"], "a_file")
    store = ResultsStore(tmp_path / "r")
    a, b = sorted(store.done_ids())
    (store.run_dir(a) / "summary.json").write_text("{}")
    assert main(["report", str(tmp_path / "r"), "--no-curves", "--no-table"]) == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and a in err and "summary.json" in err and err.startswith("warning"), err
    (store.run_dir(b) / "summary.json").write_text("not json")
    assert main(["report", str(tmp_path / "r"), "--no-curves"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["warning:", "warning:", "error:"] and "no finished runs" in lines[-1], lines
    (tmp_path / "r" / "config.json").write_text("[")
    one_line(["report", str(tmp_path / "r"), "--no-curves"], "config.json")
