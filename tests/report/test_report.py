"""seglab.report renders a tiny sweep: PNGs, a self-contained HTML page, a terminal table."""

import torch

from seglab.report import render_report
from seglab.sweep import run_sweep

torch.set_num_threads(1)


def test_report_renders_from_a_tiny_sweep(tmp_path, capsys):
    grid = {"losses": ["cce", "dicefg"], "fg_ratios": [0.05, 0.95], "norms": ["batch", "none"], "steps": 12,
            "eval_every": 6, "task_kw": {"size": 16}, "grids": [{"optimizers": ["adam"]}, {"optimizers": [{"name": "sgd", "lr": 0.01, "momentum": 0.9}]}]}
    run_sweep(grid, tmp_path / "r", workers=1, show_progress=False)
    rep = render_report(tmp_path / "r")
    html = rep["html"].read_text()
    assert html.count("data:image/png;base64,") == len(rep["pngs"]) >= 3 + 8
    assert "<table>" in html and "dicefg" in html and 'src="http' not in html
    for p in rep["pngs"]:
        assert p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(rep["agg"]) == 16
    from seglab.cli import main

    assert main(["report", str(tmp_path / "r"), "--no-curves"]) == 0
    out = capsys.readouterr().out
    assert "seglab sweep summary" in out and "dicefg" in out
    assert main(["report", str(tmp_path / "missing")]) == 2
