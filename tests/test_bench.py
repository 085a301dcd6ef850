"""`seglab bench` on a tiny shape: runs, prints a table, writes JSON with the machine description."""

from __future__ import annotations

import json

from seglab.cli import main


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--shapes", "2x3x16x16,1x2x4x4x4", "--losses", "dice+ce,dice,lovasz", "--rounds", "2",
               "--warmup", "1", "--against", "monai,smp,nosuchlib", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "F.cross_entropy" in text and "dice+ce" in text and "nosuchlib skipped" in text
    res = json.loads(out.read_text())
    for key in ("cpu_model", "cpu_cores", "torch_version", "date"):
        assert key in res["machine"]
    for shape in ("2x3x16x16", "1x2x4x4x4"):
        r = res["shapes"][shape]
        assert r["F.cross_entropy"]["ratio_ce"] == 1.0
        assert r["dice+ce"]["ms"] > 0 and len(r["dice+ce"]["times_ms"]) == 2
