"""seglab sweep process hygiene: workers die with the sweep however it dies, SIGTERM is handled like Ctrl-C,
results-folder writes are safe between processes, a second sweep does not redo runs another is training, and
damaged run files are named and redone."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seglab.results import ResultsStore
from seglab.sweep import plan, run_sweep

torch.set_num_threads(1)

pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find processes")

GRID = {"losses": ["cce", "dicefg"], "fg_ratios": [0.5, 0.95], "norms": ["none"], "seeds": [0],
        "task_kw": {"size": 16}, "steps": 15, "eval_every": 5}


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _running(pid, cmd):
    """pid is alive (not a zombie) and still the process with that command line (no pid reuse)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and _cmdline(pid) == cmd


def _poll(cond, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _sweep_cmd(tmp_path, grid, out, *extra):
    (tmp_path / "g.json").write_text(json.dumps(grid))
    return [sys.executable, "-m", "seglab", "sweep", "--config", str(tmp_path / "g.json"), "--out", str(out),
            "--no-progress", *extra]


def _claims(out):
    d = Path(out) / ".claims"
    return list(d.glob("*.lock")) if d.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_sweep(tmp_path, sig):
    out = tmp_path / "res"
    grid = dict(GRID, seeds=[0, 1], steps=20000, eval_every=5000)  # far longer than the test
    proc = subprocess.Popen(_sweep_cmd(tmp_path, grid, out, "--workers", "2"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        # both workers started and training (each holds the claims of its pack)
        assert _poll(lambda: len(_claims(out)) >= 2 and len(
            [c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)]) >= 2, 180), "workers did not start"
        time.sleep(1.0)
        kids = {c: _cmdline(c) for c in _children(proc.pid)}  # the workers and the resource tracker
        assert sum(b"spawn_main" in c for c in kids.values()) == 2
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        if sig == signal.SIGTERM:  # handled like Ctrl-C: one line, exit 128 + 15
            assert proc.returncode == 143, err
            lines = err.decode().strip().splitlines()
            assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "Traceback" not in lines[0], err
        else:
            assert proc.returncode == -signal.SIGKILL
        left = lambda: [p for p, c in kids.items() if _running(p, c)]  # noqa: E731
        assert _poll(lambda: not left(), 60), f"processes left behind: {left()}"
        # the claims died with their holders: a new process can take every run
        store = ResultsStore(out)
        for rid in {r.run_id for r in plan(grid)}:
            c = store.claim(rid)
            assert c is not None
            c.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_second_sweep_does_not_redo_runs_another_is_training(tmp_path):
    out = tmp_path / "res"
    grid = dict(GRID, steps=1500, eval_every=500)
    planned = {r.run_id for r in plan(grid)}
    assert len(planned) == 4
    a = subprocess.Popen(_sweep_cmd(tmp_path, grid, out, "--workers", "2", "--no-pack"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert _poll(lambda: len(_claims(out)) >= 1, 180), "first sweep did not start"
        b = run_sweep(grid, out, workers=1, show_progress=False, pack=False)  # in this process, meanwhile
        _, err = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
            a.communicate()
    assert a.returncode == 0, err
    assert b.ok and b.elsewhere >= 1
    a_done = int(re.search(r"(\d+) run\(s\) done", err).group(1))
    assert a_done + b.finished == 4, (err, b)  # every run trained exactly once
    store = ResultsStore(out)
    assert store.done_ids() == planned and not _claims(out)


def test_stale_and_live_claims(tmp_path):
    store = ResultsStore(tmp_path / "r")
    (tmp_path / "r" / ".claims").mkdir(parents=True)
    (tmp_path / "r" / ".claims" / "abc.lock").write_text("999999999 somehost\n")  # left by a dead process
    c = store.claim("abc")
    assert c is not None and store.claim_owner("abc") == os.getpid()
    c.release()
    assert not (tmp_path / "r" / ".claims" / "abc.lock").exists()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from seglab.results import ResultsStore; "
                               f"c = ResultsStore({str(tmp_path / 'r')!r}).claim('abc'); print(c is not None, flush=True); "
                               "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert store.claim("abc") is None and store.claim_owner("abc") == holder.pid
    finally:
        holder.kill()
        holder.communicate()
    c = store.claim("abc")  # the kernel released the dead holder's lock
    assert c is not None
    c.release()


def test_config_json_is_safe_between_processes(tmp_path):
    root = tmp_path / "r"
    code = ("import sys; from seglab.results import ResultsStore; k = int(sys.argv[1]); s = ResultsStore(sys.argv[2])\n"
            "for i in range(25):\n"
            "    s.write_config({'g': k}, [{'run_id': f'{k}-{i}', 'label': ''}])\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k), str(root)]) for k in range(4)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    cfg = json.loads((root / "config.json").read_text())
    assert len(cfg["runs"]) == 100 and len({r["run_id"] for r in cfg["runs"]}) == 100
    assert sorted(g["g"] for g in cfg["grids"]) == [0, 1, 2, 3]
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_damaged_run_files_are_named_and_redone(tmp_path, capsys):
    from seglab.cli import main

    out = tmp_path / "r"
    (tmp_path / "g.json").write_text(json.dumps(GRID))
    args = ["sweep", "--config", str(tmp_path / "g.json"), "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 0
    store = ResultsStore(out)
    planned = sorted(store.done_ids())
    assert len(planned) == 4
    a, b, c, d = planned
    (store.run_dir(a) / "summary.json").write_text('{"run_id": "')  # unparseable
    steps = store.run_dir(b) / "steps.parquet"
    steps.write_bytes(steps.read_bytes()[: steps.stat().st_size // 2])  # truncated
    (store.run_dir(c) / "summary.json").write_text("{}")  # not a summary
    assert store.done_ids() == {d}  # damaged runs do not count as finished
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    warn = [ln for ln in err.splitlines() if ln.startswith("warning: damaged run")]
    assert len(warn) == 3, err
    assert any(a in ln and "summary.json" in ln for ln in warn)
    assert any(b in ln and "steps.parquet" in ln for ln in warn)
    assert any(c in ln and "summary.json" in ln for ln in warn)
    assert "3 run(s) done, 1 already finished" in err
    assert sorted(store.done_ids()) == planned
    assert len(list((out / ".damaged").iterdir())) == 3  # kept aside for inspection, out of runs/


CHILD_SCRIPT = '''
import multiprocessing as mp, os, sys, time
from seglab.sweep import runner

def child(ppid, lifeline):
    runner.set_parent_death_signal = lambda *a, **k: False   # the portable fallback alone
    runner._die_with_parent(ppid, lifeline)
    print("ready", flush=True)
    time.sleep(600)

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(os.getpid(), r if sys.argv[1] == "pipe" else None))
    p.start()
    print(p.pid, flush=True)
    time.sleep(600)
'''


@pytest.mark.parametrize("watch", ["pipe", "ppid"])
def test_parent_watch_fallback_without_the_death_signal(tmp_path, watch):
    """Without PR_SET_PDEATHSIG (not Linux), the worker's watch thread ends it when the parent dies."""
    (tmp_path / "parent.py").write_text(CHILD_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py"), watch], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"
        cmd = _cmdline(child)
        assert _running(child, cmd)
        parent.kill()
        parent.wait(timeout=60)
        assert _poll(lambda: not _running(child, cmd), 60), "the child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _session_procs(sid):
    """(pid, cmdline) of the live (not zombie) processes of session ``sid`` (the sweep's own session: every
    worker, the resource tracker and anything else it started, wherever they were reparented)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            out[int(d.name)] = _cmdline(int(d.name))
    return out


SLOW_MAIN = """
import sys, time
if __name__ == "__mp_main__":  # a spawned worker importing its parent's main module, as slowly as torch can be
    time.sleep(60)
from seglab.cli import main
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("launcher,moment", [("slow-main", "first-worker"), ("slow-main", "imports"),
                                             ("slow-main", "both-workers"), ("module", "imports")])
def test_a_sigkill_while_workers_start_leaves_no_process(tmp_path, launcher, moment):
    """Issue 24: a SIGKILL of the sweep while its workers are still importing used to leave them (and the
    resource tracker) alive for 20-35 s, because their parent-death signal was armed only after the imports
    (the main script ``seglab`` imports seglab, i.e. torch, in every spawned worker). Now it is armed before any
    import (seglab.sweep._spawn): 2 s after the kill nothing of the sweep's session is alive, whatever the moment.
    ``slow-main`` launches the sweep from a script whose import takes 60 s in a worker (a deterministic stand-in
    for a slow torch import); ``module`` is ``python -m seglab`` with its real imports."""
    out = tmp_path / "res"
    grid = dict(GRID, seeds=[0, 1], steps=20000, eval_every=5000)
    cmd = _sweep_cmd(tmp_path, grid, out, "--workers", "2", "--no-pack")
    if launcher == "slow-main":
        (tmp_path / "slow_main.py").write_text(SLOW_MAIN)
        cmd = [sys.executable, str(tmp_path / "slow_main.py"), *cmd[3:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    sid = proc.pid
    try:
        def workers():
            return [p for p, c in _session_procs(sid).items() if b"spawn_main" in c]
        need = 2 if moment == "both-workers" else 1
        assert _poll(lambda: len(workers()) >= need, 180, step=0.05), "no worker started"
        if moment == "imports":
            time.sleep(1.0)
        before = _session_procs(sid)
        assert any(b"spawn_main" in c for c in before.values())
        if launcher == "slow-main":
            assert not _claims(out)  # the workers are still importing
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        time.sleep(2.0)
        left = _session_procs(sid)
        assert not left, f"alive 2 s after the SIGKILL: {left} (before: {before})"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sid, signal.SIGKILL)  # our own session's group: nothing else
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_the_armed_command_line_runs_before_the_spawn_program():
    from seglab.sweep._spawn import armed_command_line, context

    cmd = ["python", "-X", "x", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()", "--multiprocessing-fork"]
    armed = armed_command_line(cmd, 1234)
    assert armed[:4] == cmd[:4] and armed[5:] == cmd[5:]
    prog = armed[4]
    assert prog.index("prctl(1, 9") < prog.index("spawn_main") and "getppid() != 1234" in prog
    assert "seglab" not in prog and "torch" not in prog  # stdlib only, before any heavy import
    ctx = context()
    if sys.platform.startswith("linux"):
        assert type(ctx).__name__ == "ArmedContext" and ctx.get_start_method() == "spawn"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watchdog reads /proc")
def test_the_ray_session_watchdog_kills_the_marked_processes_when_its_driver_ends():
    """The watchdog of a local Ray (seglab.sweep.ray_engine.start_watchdog): once its pipe reaches end-of-file
    (the driver ended, however), every process carrying the session's token in its environment is killed; a
    process without the token is left alone."""
    import uuid

    from seglab.sweep.ray_engine import SESSION_ENV, start_watchdog

    token = uuid.uuid4().hex
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              env=dict(os.environ, **{SESSION_ENV: token}))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env=dict(os.environ, **{SESSION_ENV: token + "x"}))
    dog = start_watchdog(f"{SESSION_ENV}={token}")
    try:
        assert dog is not None
        time.sleep(0.5)
        assert marked.poll() is None and other.poll() is None  # nothing happens while the driver lives
        dog.stdin.close()  # as the kernel does when the driver dies
        assert marked.wait(timeout=2.0) == -signal.SIGKILL
        assert dog.wait(timeout=5.0) == 0
        assert other.poll() is None
    finally:
        for p in (marked, other, dog):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


HOLDER = ("import sys, time; from seglab.results import ResultsStore; c = ResultsStore(sys.argv[1]).claim(sys.argv[2]); "
          "print(c is not None, flush=True); time.sleep(600)")


def test_a_run_of_a_killed_concurrent_sweep_is_finished_by_the_survivor(tmp_path):
    """Issue 24: two sweeps on one folder; the other one (here: a process holding one run's claim, as a sweep
    training it does) is killed. The survivor waits for that run (named on stderr, not failed), then trains it
    itself: it never exits 0 with the run unfinished."""
    out = tmp_path / "res"
    runs = [r.run_id for r in plan(GRID)]
    held = runs[0]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), held], stdout=subprocess.PIPE, text=True)
    proc = None
    try:
        assert holder.stdout.readline().strip() == "True"
        proc = subprocess.Popen(_sweep_cmd(tmp_path, GRID, out, "--workers", "1", "--no-pack"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        while line and "waiting for" not in line:
            line = proc.stderr.readline()
        assert "waiting for 1 run(s)" in line and f"pid {holder.pid}" in line and held in line, line
        assert ResultsStore(out).done_ids() == set(runs) - {held}  # the others are done, the held one is waited for
        time.sleep(1.5)
        assert proc.poll() is None
        holder.kill()
        holder.wait()
        _, err = proc.communicate(timeout=300)
    finally:
        for p in (holder, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert proc.returncode == 0, err
    assert "left unfinished by another process" in err and "0 failed" in err, err
    assert ResultsStore(out).done_ids() == set(runs) and not _claims(out)


def test_an_incomplete_grid_is_not_ok():
    from seglab.sweep.runner import SweepOutcome

    assert SweepOutcome(total=2).ok
    assert not SweepOutcome(total=2, unfinished=["abc"]).ok
    assert not SweepOutcome(total=2, failed=["abc"]).ok
