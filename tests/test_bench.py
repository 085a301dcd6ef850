"""`seglab bench` on a tiny shape: runs, prints a table, writes JSON with the machine description, the spread
over rounds and the load average; every bad argument is one line on stderr and exit code 2 (issue 11)."""

from __future__ import annotations

import json

import pytest

from seglab import bench
from seglab.cli import main

pytest.importorskip("rich")

TINY = ["--shapes", "2x3x8x8", "--losses", "dice", "--rounds", "2", "--warmup", "0", "--no-memory"]


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--shapes", "2x3x16x16,1x2x4x4x4", "--losses", "dice+ce,dice,lovasz", "--rounds", "2",
               "--warmup", "1", "--against", "monai,smp", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "F.cross_entropy" in text and "dice+ce" in text and "IQR" in text
    res = json.loads(out.read_text())
    for key in ("cpu_model", "cpu_cores", "torch_version", "date"):
        assert key in res["machine"]
    for shape in ("2x3x16x16", "1x2x4x4x4"):
        r = res["shapes"][shape]
        assert r["F.cross_entropy"]["ratio_ce"] == 1.0
        assert r["dice+ce"]["ms"] > 0 and len(r["dice+ce"]["times_ms"]) == 2
        for name, v in r.items():  # the spread over rounds, per loss
            assert v["min_ms"] <= v["q1_ms"] <= v["median_ms"] <= v["q3_ms"] <= v["max_ms"], name
            assert v["median_ms"] == pytest.approx(v["ms"])
            assert v["iqr_ms"] == pytest.approx(v["q3_ms"] - v["q1_ms"]) and v["iqr_ms"] >= 0
            assert v["ratio_ce_min"] <= v["ratio_ce"] <= v["ratio_ce_max"]
            assert v["ratio_ce_iqr"] >= 0
    load = res["load"]
    assert load["cores"] >= 1 and isinstance(load["overloaded"], bool)
    assert "load_1min_start" in load and "load_1min_end" in load


@pytest.mark.parametrize("bad, option", [
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "-1"], "--rounds"),
    (["--rounds", "two"], "--rounds"),
    (["--warmup", "-1"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--against", "foo"], "--against"),
    (["--against", "monai,foo"], "--against"),
    (["--losses", "nosuchloss"], "--losses"),
    (["--losses", "dice[nosuchopt=1]"], "--losses"),
    (["--losses", ""], "--losses"),
    (["--shapes", "2x3"], "--shapes"),
    (["--shapes", "2xAx8x8"], "--shapes"),
    (["--shapes", "2x3x0x8"], "--shapes"),
    (["--shapes", "2x1x8x8"], "--shapes"),
    (["--dtype", "float8"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--out", "/dev/null/b.json"], "--out"),
])
def test_bench_bad_argument_is_one_line_exit_2(bad, option, tmp_path, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(bench, "bench_shape", lambda *a, **k: called.append(1))  # no work may start
    argv = ["bench", *TINY, "--out", str(tmp_path / "b.json"), *bad]
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("error:") and option in lines[0], lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    assert not called and not (tmp_path / "b.json").exists()


def test_bench_out_folder_is_rejected(tmp_path, capsys):
    assert main(["bench", *TINY, "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0]


def test_bench_one_round_has_zero_spread(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--rounds", "1", "--out", str(out)]) == 0
    v = json.loads(out.read_text())["shapes"]["2x3x8x8"]["dice"]
    assert v["min_ms"] == v["median_ms"] == v["max_ms"] and v["iqr_ms"] == 0


def test_bench_warns_when_overloaded(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "load_average", lambda: 1000.0 + (bench.os.cpu_count() or 1))
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--out", str(out)]) == 0
    warn = [ln for ln in capsys.readouterr().err.splitlines() if "load average" in ln]
    assert len(warn) == 2 and "start" in warn[0] and "end" in warn[1] and "unreliable" in warn[0]
    load = json.loads(out.read_text())["load"]
    assert load["overloaded"] is True and load["load_1min_start"] > load["cores"]


def test_spread_quantiles():
    s = bench.spread([4.0, 1.0, 3.0, 2.0])
    assert (s["min"], s["median"], s["max"]) == (1.0, 2.5, 4.0)
    assert s["q1"] == pytest.approx(1.75) and s["q3"] == pytest.approx(3.25) and s["iqr"] == pytest.approx(1.5)
