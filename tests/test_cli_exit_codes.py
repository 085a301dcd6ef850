"""Issue 24: one exit-code table for every command (docs/cli.md): 0 ok, 1 diverged or failed runs, 2 usage or bad
input, 130 Ctrl-C (SIGINT), 143 SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seglab.cli import commands, main


@pytest.mark.parametrize("command", sorted(commands()))
def test_a_usage_error_exits_2(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--no-such-option-anywhere"])
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err  # argparse: a usage line, then the error


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "--losses", "cce", "--workers", "-1", "--out", "x"], "--workers"),
    (["compare", "--seeds", "1", "--out", "x"], "--seeds"),
    (["bench", "--shapes", "2x1x8x8"], "--shapes"),
    (["train", "--loss", "cce", "--steps", "0"], "steps"),  # (train names the field, not yet the option)
])
def test_bad_input_exits_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


def test_an_impossible_bench_shape_is_one_line_naming_the_option(tmp_path):
    r = subprocess.run([sys.executable, "-m", "seglab", "bench", "--shapes", "100000x4x4096x4096", "--out", ""],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--shapes 100000x4x4096x4096" in lines[0] and "GiB" in lines[0], r.stderr


def test_check_memory_names_the_shape():
    import torch

    from seglab.bench import BenchArgError, check_memory

    check_memory([(2, 4, 8, 8)], torch.device("cpu"), torch.float32)  # fits
    with pytest.raises(BenchArgError, match=r"--shapes 100000x4x4096x4096"):
        check_memory([(2, 4, 8, 8), (100000, 4, 4096, 4096)], torch.device("cpu"), torch.float32)


GRID = {"losses": ["cce"], "fg_ratios": [0.5], "norms": ["none"], "seeds": [0, 1], "task_kw": {"size": 16},
        "steps": 50000, "eval_every": 10000}  # far longer than the test
COMPARE = ["compare", "--task", "shapes", "--task-opt", "size=16", "--model", "tiny", "--losses", "dice+ce,ce",
           "--seeds", "2", "--steps", "50000", "--batch-size", "2", "--workers", "1", "--json"]


def _command(kind, tmp_path):
    out = tmp_path / "r"
    if kind == "sweep":
        (tmp_path / "g.json").write_text(json.dumps(GRID))
        return ["sweep", "--config", str(tmp_path / "g.json"), "--out", str(out), "--workers", "2", "--no-pack",
                "--no-progress"], out
    return [*COMPARE, "--out", str(out)], out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals, flock claims")
@pytest.mark.parametrize("kind, sig, code", [("sweep", signal.SIGTERM, 143), ("sweep", signal.SIGINT, 130),
                                             ("compare", signal.SIGTERM, 143), ("compare", signal.SIGINT, 130)])
def test_a_signal_while_training_exits_128_plus_the_signal(tmp_path, kind, sig, code):
    argv, out = _command(kind, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "seglab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        claims = Path(out) / ".claims"
        deadline = time.time() + 240
        while time.time() < deadline and not (claims.exists() and list(claims.glob("*.lock"))):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        assert list(claims.glob("*.lock")), "no run started"
        time.sleep(1.0)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err
        assert "interrupted by" in err and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: nothing else
            proc.communicate()
