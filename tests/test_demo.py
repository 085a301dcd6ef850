"""``seglab demo``: bad options give one line and exit 2 before any work; SIGTERM is handled like Ctrl-C
(one line, exit 143, finished runs kept, no worker left behind)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _demo(capsys, *args):
    from seglab.cli import main

    rc = main(["demo", "--no-progress", *args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [
    (["--out", "/dev/null/x"], "--out"),
    (["--workers", "-1"], "--workers"),
    (["--steps", "0"], "--steps"),
])
def test_bad_options_one_line_exit_2(tmp_path, capsys, args, needle):
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "res")]
    rc, err = _demo(capsys, *args)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "res").exists()  # nothing was started


def test_an_existing_file_as_out(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, err = _demo(capsys, "--out", str(f))
    assert rc == 2 and "--out" in err and "not a folder" in err, err


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find processes")
def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "seglab", "demo", "--no-progress", "--out", str(out),
                             "--steps", "100000", "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not (out / ".claims").exists() or not list((out / ".claims").glob("*.lock")):
            assert time.time() < deadline and proc.poll() is None, "the demo's worker did not start"
            time.sleep(0.3)
        time.sleep(1.0)  # the worker is training
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "resume" in lines[0], err
        for k in kids:  # the worker (and the resource tracker) died with the demo
            deadline = time.time() + 60
            while time.time() < deadline and Path(f"/proc/{k}").exists() and \
                    Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
                time.sleep(0.2)
            alive = Path(f"/proc/{k}").exists() and Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
            assert not alive, f"process {k} outlived the demo"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
