"""seglab sweep progress (issue 11): plain lines at a steady rate when stderr is not a terminal, the rich progress
bar when it is."""

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

from seglab.sweep import plan
from seglab.sweep.runner import SweepProgress

GRID = {"losses": ["cce", "dicefg"], "fg_ratios": [0.5], "norms": ["none"], "seeds": [0], "task_kw": {"size": 16},
        "steps": 200, "eval_every": 100}
LINE = re.compile(r"^sweep: (\d+)/(\d+) runs done, (\d+) running, (\d+) failed, elapsed (\S+), ETA (\S+)$")


def _cmd(tmp_path, *extra):
    (tmp_path / "g.json").write_text(json.dumps(GRID))
    return [sys.executable, "-m", "seglab", "sweep", "--config", str(tmp_path / "g.json"), "--out",
            str(tmp_path / "r"), "--workers", "1", "--no-pack", *extra]


def test_plain_progress_lines_at_a_steady_rate_when_not_a_terminal(tmp_path):
    every = 0.4
    proc = subprocess.Popen(_cmd(tmp_path, "--progress-every", str(every)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen = [(time.monotonic(), line.rstrip("\n")) for line in proc.stderr]  # (arrival time, line)
    assert proc.wait(timeout=300) == 0, seen
    text = "\n".join(ln for _, ln in seen)
    assert "\x1b[" not in text  # plain text: no terminal control codes
    prog = [(t, LINE.match(ln)) for t, ln in seen if ln.startswith("sweep: ")]
    assert all(m for _, m in prog), text
    assert len(prog) >= 3, text  # lines while it runs, not only at the end
    done = [int(m.group(1)) for _, m in prog]
    assert done == sorted(done) and {int(m.group(2)) for _, m in prog} == {2}
    assert prog[-1][1].group(1, 3, 4) == ("2", "0", "0") and prog[-1][1].group(6) == "0s", text
    gaps = [b[0] - a[0] for a, b in zip(prog[:-2], prog[1:-1], strict=True)]  # the final line comes at the end, whenever that is
    assert all(g > every * 0.5 for g in gaps), gaps  # a steady rate, not a flood
    assert seen[-1][1].startswith("2 run(s) done, 0 already finished"), text


def test_the_terminal_keeps_the_progress_bar(tmp_path):
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="120")
    proc = subprocess.Popen(_cmd(tmp_path, "--progress-every", "0.2"), stdout=subprocess.DEVNULL, stderr=slave,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], 1.0)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=300) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "runs" in out and "2/2" in out, out  # rich's bar of all runs
    assert not any(ln.lstrip().startswith("sweep: ") for ln in out.splitlines()), out
    assert {r.run_id for r in plan(GRID)} <= {p.name for p in (tmp_path / "r" / "runs").iterdir()}


class _Console:
    is_terminal = False


def test_progress_line_counts_and_eta(capsys):
    from seglab.train.config import RunSpec

    jobs = [[RunSpec(loss="cce", seed=s)] for s in range(4)]
    p = SweepProgress(jobs, _Console(), every_s=3600)
    p.t0 -= 100.0  # 100 s into the sweep
    assert LINE.match(p.line()).group(1, 3, 6) == ("0", "0", "?")
    p.job_done(jobs[0][0].run_id, 1)
    p.step(jobs[1][0].run_id, 50, 100)
    m = LINE.match(p.line())
    # 1.5 of 4 runs' steps in 100 s: 2.5 runs to go take ~167 s
    assert m.group(1, 3, 4) == ("1", "1", "0") and m.group(5) == "1m40s" and m.group(6) in ("2m46s", "2m47s"), p.line()
    p.job_done(jobs[1][0].run_id, 0, 1)
    assert LINE.match(p.line()).group(1, 3, 4) == ("1", "0", "1")
    p.tick()  # within the interval: nothing printed
    assert capsys.readouterr().err == ""
