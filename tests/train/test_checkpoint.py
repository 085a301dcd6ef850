"""Checkpoints and resumption of `seglab train` (issue 11): the last and the best checkpoint, an interrupted run
continued from its last checkpoint equals a run that was never interrupted (bit for bit on CPU), SIGTERM and
Ctrl-C write the last checkpoint and exit 143 / 130 with one line."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seglab.results import ResultsStore
from seglab.train import RunSpec, evaluate, train_run
from seglab.train import checkpoint as C
from seglab.train.loop import TrainInterrupted

torch.set_num_threads(1)

CFG = dict(loss="study_dice", task="threshold", task_kw={"fg_ratio": 0.3, "size": 16}, model="tiny",
           model_kw={"norm": "batch"}, lr=1e-2, seed=2, steps=30, eval_every=10, grad_norm_every=7)


def _same(a, b) -> bool:
    """Equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def _same_records(r1: dict, r2: dict) -> None:
    assert r1.keys() == r2.keys()
    for k in r1:
        assert _same(r1[k], r2[k]), k


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("full")
    res = train_run(RunSpec(**CFG), run_dir=d)
    return res, d


@pytest.mark.parametrize("stop_at", [10, 13])  # at a validation, between two
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, uninterrupted, stop_at):
    full, full_dir = uninterrupted
    cfg = RunSpec(**CFG)
    with pytest.raises(TrainInterrupted) as e:
        train_run(cfg, run_dir=tmp_path, should_stop=lambda done: "hook" if done == stop_at else None)
    assert (e.value.step, e.value.total, e.value.reason) == (stop_at, 30, "hook")
    assert e.value.checkpoint == tmp_path / C.CHECKPOINT_LAST
    ck = C.load(tmp_path / C.CHECKPOINT_LAST, run_id=full.spec.run_id)
    assert ck["step"] == stop_at and ck["status"] == "running" and len(ck["records"]["step"]) == stop_at
    res = train_run(cfg, run_dir=tmp_path, resume=ck)
    _same_records(res.steps, full.steps)
    assert res.evals == full.evals
    a = C.load(tmp_path / C.CHECKPOINT_LAST)
    b = C.load(full_dir / C.CHECKPOINT_LAST)
    _same_state(a["model"], b["model"])
    assert a["step"] == b["step"] == 30 and a["status"] == "finished"
    for k, v in full.summary.items():
        if k not in ("wall_s", "resumed_from_step", "provenance"):
            assert v == res.summary[k] or (isinstance(v, float) and math.isnan(v) and math.isnan(res.summary[k])), k
    when = ("time", "wall_s")  # the provenance differs only in when and how long
    assert {k: v for k, v in full.summary["provenance"].items() if k not in when} == \
        {k: v for k, v in res.summary["provenance"].items() if k not in when}
    assert res.summary["resumed_from_step"] == stop_at and full.summary["resumed_from_step"] is None


def test_best_checkpoint_holds_the_best_validation(uninterrupted):
    full, d = uninterrupted
    best = C.load(d / C.CHECKPOINT_BEST, run_id=full.spec.run_id)
    dices = [e["mean_dice"] for e in full.evals]
    k = dices.index(max(dices))
    assert best["step"] == full.evals[k]["step"] == full.summary["best_step"]
    assert best["best"] == {"step": best["step"], "mean_dice": max(dices)} and full.summary["best_mean_dice"] == max(dices)
    # its weights reproduce that validation (evaluated independently of the loop)
    from seglab.data import create_task
    from seglab.models import create_model

    task = create_task("threshold", fg_ratio=0.3, size=16)
    net = create_model("tiny", in_channels=1, out_channels=2, norm="batch")
    net.load_state_dict(best["model"])
    xv, yv = task.validation()
    m = evaluate(net, xv, yv, mode=task.mode, num_classes=2)
    assert m["mean_dice"] == pytest.approx(max(dices), abs=1e-12)


def test_checkpoints_load_with_weights_only_and_carry_the_config(uninterrupted):
    full, d = uninterrupted
    for name in (C.CHECKPOINT_LAST, C.CHECKPOINT_BEST):
        raw = torch.load(d / name, weights_only=True)
        assert raw["format"] == C.FORMAT and raw["run_id"] == full.spec.run_id
        assert RunSpec.from_dict(raw["config"]).run_id == full.spec.run_id
        assert raw["model_norm"] == "batch" and set(raw["rng"]) >= {"torch", "python", "numpy"}
        assert raw["optimizer"]["state"]  # Adam moments are there
    assert not list(d.glob(".*tmp*"))  # atomic writes leave no temporary file behind


def test_damaged_or_foreign_checkpoint_is_named(tmp_path, uninterrupted):
    full, d = uninterrupted
    bad = tmp_path / "checkpoint_last.pt"
    bad.write_bytes((d / C.CHECKPOINT_LAST).read_bytes()[:500])
    with pytest.raises(C.CheckpointError, match="checkpoint_last.pt' is unreadable"):
        C.load(bad)
    with pytest.raises(C.CheckpointError, match="does not exist"):
        C.load(tmp_path / "nope.pt")
    with pytest.raises(C.CheckpointError, match="belongs to run"):
        C.load(d / C.CHECKPOINT_LAST, run_id="0123456789ab")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(C.CheckpointError, match="not a seglab training checkpoint"):
        C.load(tmp_path / "other.pt")


def test_rng_state_roundtrip():
    import random

    import numpy as np

    st = C.rng_state()
    a = (torch.rand(3), random.random(), np.random.rand())
    C.set_rng_state(st)
    b = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


# ------------------------------------------------------------------------------------------------ the CLI

ARGS = ["--loss", "study_dice", "--task-opt", "size=16", "--task-opt", "fg_ratio=0.3", "--lr", "0.01", "--seed", "2",
        "--device", "cpu"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _interrupt(argv: list[str], sig: int) -> tuple[int, str]:
    """Start `seglab train` in a subprocess, send ``sig`` once it reports its first step, return (rc, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "seglab", "train", *argv, "--progress-interval", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    lines = []
    try:
        for line in p.stderr:
            lines.append(line)
            if line.startswith("step "):
                p.send_signal(sig)
                break
        _, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, "".join(lines) + rest


def test_sigterm_writes_the_last_checkpoint_and_resume_completes_the_run(tmp_path, capsys):
    from seglab.cli import main

    out = tmp_path / "res"
    argv = [*ARGS, "--steps", "200", "--eval-every", "50", "--out", str(out)]
    rc, err = _interrupt(argv, signal.SIGTERM)
    assert rc == 143, err
    msg = err.strip().splitlines()[-1]
    assert msg.startswith("interrupted by SIGTERM at step ") and "--resume" in msg, err
    k = int(msg.split("at step ")[1].split("/")[0])
    assert 0 < k < 200
    (pdir,) = (out / "runs").glob(".partial-*")
    assert C.load(pdir / C.CHECKPOINT_LAST)["step"] == k
    assert not [p for p in (out / "runs").iterdir() if not p.name.startswith(".")]  # nothing published yet

    assert main(["train", *argv, "--resume", "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert f"resuming run {pdir.name[len('.partial-'):]} from step {k}/200" in cap.err
    line = json.loads(cap.out.strip().splitlines()[-1])
    rid = line["run_id"]
    store = ResultsStore(out)
    assert store.is_done(rid) and not pdir.exists()
    run_dir = store.run_dir(rid)
    assert (run_dir / C.CHECKPOINT_LAST).exists() and (run_dir / C.CHECKPOINT_BEST).exists()
    assert store.summary(rid)["resumed_from_step"] == k

    cfg = RunSpec.from_dict(store.summary(rid)["config"])
    ref = train_run(cfg, run_dir=tmp_path / "ref")
    _same_records(store.steps(rid), ref.steps)
    assert line["final_mean_dice"] == ref.summary["final_mean_dice"]
    _same_state(C.load(run_dir / C.CHECKPOINT_LAST)["model"], C.load(tmp_path / "ref" / C.CHECKPOINT_LAST)["model"])

    # --resume of a finished run trains nothing and prints its result
    assert main(["train", *argv, "--resume", "--no-progress"]) == 0
    cap = capsys.readouterr()
    assert "already finished" in cap.err and json.loads(cap.out.strip().splitlines()[-1]) == line


@pytest.mark.parametrize("sig, rc, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_at_a_step_boundary_with_one_line(tmp_path, capsys, monkeypatch, sig, rc, name):
    """In process: the signal arrives while step 3 is reported; the run stops after that step, writes its last
    checkpoint (with --out) and exits 128 + signal; without --out nothing is saved."""
    from seglab.cli import main
    from seglab.train.progress import ProgressPrinter

    update = ProgressPrinter.update

    def raising(self, done, **kw):
        if done == 3:
            signal.raise_signal(sig)
        return update(self, done, **kw)

    monkeypatch.setattr(ProgressPrinter, "update", raising)
    before = signal.getsignal(sig)
    out = tmp_path / "res"
    for extra in ([], ["--out", str(out)]):
        assert main(["train", *ARGS, "--steps", "50", "--progress-interval", "1000", *extra]) == rc
        err = capsys.readouterr().err.strip().splitlines()[-1]
        where = f"checkpoint saved: {C.partial_dir(out, _run_id([*ARGS, '--steps', '50']))}" if extra else "nothing saved (no --out)"
        assert err.startswith(f"interrupted by {name} at step 3/50: {where}"), err
        assert signal.getsignal(sig) is before  # the handler is restored
    assert C.load(next((out / "runs").glob(".partial-*")) / C.CHECKPOINT_LAST)["step"] == 3


def _run_id(argv: list[str]) -> str:
    """The run id `seglab train argv` trains (its resolved configuration's)."""
    import argparse

    from seglab.train import validate_runs
    from seglab.cli.train import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    return validate_runs([config_from_args(p.parse_args(argv))])[0].run_id


def test_a_new_start_without_resume_replaces_the_partial_run(tmp_path, capsys):
    from seglab.cli import main

    out = tmp_path / "res"
    argv = [*ARGS, "--steps", "4", "--eval-every", "2", "--out", str(out), "--no-progress"]
    rid = _run_id(argv)
    pdir = C.partial_dir(out, rid)
    pdir.mkdir(parents=True)
    (pdir / C.CHECKPOINT_LAST).write_bytes(b"stale")
    (pdir / C.CHECKPOINT_BEST).write_bytes(b"stale")
    assert main(["train", *argv]) == 0
    assert "starting over (pass --resume to continue it)" in capsys.readouterr().err
    best = C.load(out / "runs" / rid / C.CHECKPOINT_BEST, run_id=rid)  # rewritten by this run, not the stale one
    assert best["step"] in (0, 2, 4)


def test_resume_of_a_damaged_checkpoint_is_one_line(tmp_path, capsys):
    from seglab.cli import main

    out = tmp_path / "res"
    argv = [*ARGS, "--steps", "4", "--out", str(out), "--resume", "--no-progress"]
    rid = _run_id(argv)
    pdir = C.partial_dir(out, rid)
    pdir.mkdir(parents=True)
    (pdir / C.CHECKPOINT_LAST).write_bytes(b"PK\x03\x04 truncated")
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --resume: checkpoint") and "unreadable" in err, err


@pytest.mark.parametrize("extra, words", [
    (["--resume"], "--resume needs --out"),
    (["--tensorboard"], "--tensorboard needs --out"),
    (["--progress-interval", "-1"], "--progress-interval"),
    (["--progress-interval", "nan"], "--progress-interval"),
])
def test_option_errors_are_one_line(capsys, extra, words):
    from seglab.cli import main

    assert main(["train", *ARGS, "--steps", "100000", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and words in err, err


def test_a_run_claimed_by_another_process_is_refused(tmp_path, capsys):
    from seglab.cli import main

    out = tmp_path / "res"
    argv = [*ARGS, "--steps", "4", "--out", str(out), "--no-progress"]
    with ResultsStore(out).claim(_run_id(argv)):  # as another `train` or a sweep worker holds it
        assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is being trained into" in err and f"pid {os.getpid()}" in err, err
    assert main(["train", *argv]) == 0  # released: trains
