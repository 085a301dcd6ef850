"""`seglab bench` without a usable compiler reports the C++ backend as unavailable and still times (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("rich")


def test_bench_runs_without_compiler(tmp_path):
    out = tmp_path / "bench.json"
    code = ("import sys; from seglab.cli import main; "
            f"sys.exit(main(['bench', '--shapes', '2x3x8x8', '--losses', 'dice+ce,lovasz', '--rounds', '1', '--warmup', '0', "
            f"'--no-memory', '--force', '--out', {str(out)!r}]))")
    env = {**os.environ, "CXX": "/nonexistent/g++", "SEGLAB_KERNEL_CACHE": str(tmp_path / "cache"), "COLUMNS": "200"}
    env.pop("SEGLAB_FUSED_BACKEND", None)
    env.pop("SEGLAB_FUSED", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "C++ kernels unavailable" in proc.stdout and "/nonexistent/g++" in proc.stdout
    res = json.loads(out.read_text())
    assert res["settings"]["fused_backend"] == "reference"
    assert "CXX" in res["settings"]["cpp_unavailable_reason"]
    timed = res["shapes"]["2x3x8x8"]
    assert {"F.cross_entropy", "dice+ce", "lovasz"} <= set(timed)
    assert all(v["ms"] > 0 for v in timed.values())
