"""Issue 24: two compares (or a compare and a sweep) on one results folder. A run that another live process holds
is waited for and named on stderr, never counted as failed; when its holder dies without writing it, this
compare trains it itself, so the verdicts stand on every seed asked for and the exit status says so."""

import json
import shutil
import subprocess
import sys
import time

import pytest

from seglab.cli import main
from seglab.results import ResultsStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock claims, /proc")

ARGS = ["compare", "--task", "shapes", "--task-opt", "size=16", "--model", "tiny", "--losses", "dice+ce,ce",
        "--seeds", "2", "--steps", "3", "--batch-size", "2", "--workers", "1", "--json"]
HOLDER = ("import sys, time; from seglab.results import ResultsStore; c = ResultsStore(sys.argv[1]).claim(sys.argv[2]); "
          "print(c is not None, flush=True); time.sleep(600)")


def test_a_run_held_by_another_process_is_waited_for_then_redone(tmp_path, capsys):
    out = tmp_path / "c"
    assert main([*ARGS, "--out", str(out)]) == 0  # every run once
    capsys.readouterr()
    store = ResultsStore(out)
    rid = sorted(store.done_ids())[0]
    shutil.rmtree(store.run_dir(rid))  # as if another compare were training it right now
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), rid], stdout=subprocess.PIPE, text=True)
    proc = None
    try:
        assert holder.stdout.readline().strip() == "True"
        proc = subprocess.Popen([sys.executable, "-m", "seglab", *ARGS, "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        while line and "waiting for" not in line:
            line = proc.stderr.readline()
        assert "waiting for 1 run(s)" in line and f"pid {holder.pid}" in line and rid in line, line
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting: the held run is not counted as failed
        holder.kill()  # the other process dies without writing its run
        holder.wait()
        stdout, err = proc.communicate(timeout=300)
    finally:
        for p in (holder, proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert proc.returncode == 0, err
    d = json.loads(stdout)
    assert d["failed_runs"] == [] and all(x["n_pairs"] == 2 for x in d["differences"]), d
    assert "left unfinished by another process" in err
    assert store.is_done(rid)


def test_a_failed_run_makes_the_exit_status_1(tmp_path, capsys, monkeypatch):
    """A grid left incomplete (a run failed or diverged: out of the pairs) is never exit 0."""
    out = tmp_path / "c"
    assert main([*ARGS, "--out", str(out)]) == 0
    capsys.readouterr()
    from seglab import results

    summaries = results.ResultsStore.summaries

    def one_less(self):
        return summaries(self)[1:]

    monkeypatch.setattr(results.ResultsStore, "summaries", one_less)
    assert main([*ARGS, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "incomplete: 1 run(s) left out of the pairs" in err, err


FN = "def run(loss, seed):\n    return {'dice': 0.5 + 0.01 * seed + (0.02 if 'Dice' in type(loss).__name__ + repr(loss) else 0.0)}\n"


def test_fn_waits_for_a_run_another_process_holds(tmp_path, capsys):
    """compare --fn: a loss x seed held by another live process is waited for (not reported as not run), and
    trained here once its holder dies without a result."""
    (tmp_path / "f.py").write_text(FN)
    out = tmp_path / "c"
    argv = ["compare", "--fn", str(tmp_path / "f.py") + ":run", "--losses", "dice+ce,ce", "--seeds", "3", "--mode",
            "multiclass", "--out", str(out), "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    store = ResultsStore(out)
    rid = sorted(store.done_ids())[0]
    shutil.rmtree(store.run_dir(rid))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), rid], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        import threading

        threading.Timer(3.0, holder.kill).start()  # the other process dies, without writing its run
        rc = main(argv)
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
    out_err = capsys.readouterr()
    assert rc == 0, out_err.err
    assert "waiting for 1 run(s)" in out_err.err and f"pid {holder.pid}" in out_err.err, out_err.err
    d = json.loads(out_err.out)
    assert d["failed_runs"] == [] and store.is_done(rid)
