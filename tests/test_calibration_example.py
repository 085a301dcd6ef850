"""examples/calibration_experiment.py runs (tiny: 2 seeds, 2 steps, 16 px) and writes what docs/calibration.md reads."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from seglab.metrics import ReliabilityBins

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "calibration_experiment.py"


def _load():
    spec = importlib.util.spec_from_file_location("seglab_example_calibration_experiment", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_calibration_experiment_smoke(tmp_path, capsys):
    ex = _load()
    out, fig = tmp_path / "cal.json", tmp_path / "cal.png"
    threads = torch.get_num_threads()
    try:
        res = ex.main(["--seeds", "2", "--steps", "2", "--batch", "2", "--size", "16", "--out", str(out),
                       "--figure", str(fig), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)  # main() sets it for the process
    assert fig.stat().st_size > 1000
    d = json.loads(out.read_text())
    assert d["setup"]["steps"] == 2 and d["setup"]["seeds"] == [0, 1] and set(d["runs"]) == set(ex.LOSSES)
    for name, runs in d["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            assert 0 <= r["ece"] <= 1 and r["nll"] > 0 and r["temperature"] > 0
            # the stored bins give the stored ECE (one truth: ReliabilityBins.from_sums)
            b = r["bins"]
            cnt = torch.tensor(b["count"], dtype=torch.float64)
            conf = torch.tensor([0.0 if v is None else v for v in b["confidence"]], dtype=torch.float64)
            acc = torch.tensor([0.0 if v is None else v for v in b["accuracy"]], dtype=torch.float64)
            again = ReliabilityBins.from_sums(torch.stack([cnt, conf * cnt, acc * cnt])).ece
            assert again == pytest.approx(r["ece"], abs=1e-12)
            assert sum(b["count"]) == d["setup"]["validation_images"] * 16 * 16
        assert sum(d["pooled_bins"][name]["count"]) == 2 * d["setup"]["validation_images"] * 16 * 16
        assert d["summary"][name]["ece"]["mean"] == pytest.approx(sum(r["ece"] for r in runs) / 2)
    diff = d["differences"]["dice - ce"]["ece"]
    assert diff["low"] <= diff["mean"] <= diff["high"] and diff["n"] == 2
    assert diff["mean"] == pytest.approx(sum(a["ece"] - b["ece"] for a, b in zip(d["runs"]["dice"], d["runs"]["ce"], strict=True)) / 2)
    assert "| dice+ce |" in capsys.readouterr().out
    assert res["wall_s"] > 0


def test_temperature_fit_recovers_a_known_temperature():
    """Labels drawn from softmax(z / 2): the NLL-optimal temperature of z is close to 2."""
    ex = _load()
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(5000, 3, generator=g, dtype=torch.float64)
    y = torch.multinomial((z / 2).softmax(1), 1, generator=g)[:, 0]
    assert ex.fit_temperature(z, y) == pytest.approx(2.0, rel=0.1)


def test_bad_option_exits_2(capsys):
    ex = _load()
    with pytest.raises(SystemExit) as e:
        ex.main(["--seeds", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--seeds must be >= 2" in err and "Traceback" not in err
    assert math.isfinite(ex.N_BINS)


def test_docs_table_is_the_committed_json(capsys):
    """docs/calibration.md's table block is rendered from docs/data/calibration.json (--check exits 1 otherwise)."""
    ex = _load()
    ex.main(["--check"])  # SystemExit(1) on any difference


def test_render_rewrites_only_the_block(tmp_path):
    ex = _load()
    doc = tmp_path / "doc.md"
    doc.write_text("before 0.5\n<!-- calibration:table -->\nstale\n<!-- /calibration:table -->\nafter\n")
    ex.main(["--render", "--doc", str(doc), "--figure", str(tmp_path / "fig.png")])
    assert (tmp_path / "fig.png").stat().st_size > 1000  # the figure is drawn from the JSON too
    text = doc.read_text()
    assert text.startswith("before 0.5\n<!-- calibration:table -->\n") and text.endswith("<!-- /calibration:table -->\nafter\n")
    assert "stale" not in text and "| dice+ce |" in text
    with pytest.raises(SystemExit) as e:
        doc.write_text(text.replace("| dice+ce |", "| dice + ce |"))
        ex.main(["--check", "--doc", str(doc)])
    assert e.value.code == 1
