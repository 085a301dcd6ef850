"""Issue 24: options that cannot work are refused before any step (one line on stderr, exit 2, nothing
written): a per-class option whose length is not the task's class count, absurd step counts, convergence
thresholds outside [0, 1]. Also: every command ends quietly on a closed output pipe, help states the real
defaults, and a sweep in this process leaves torch's thread count as it was."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seglab.cli import main

pytest.importorskip("rich")


def _one_line_error(capsys, argv, *words) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("loss, words", [
    ("ce[class_weights=[1,2,3,4,5]]", ["--loss", "class_weights", "5 entries", "2 classes"]),
    ("dice[class_weights=[1,2,3]]+ce", ["--loss", "class_weights", "3 entries"]),
    ("focal[alpha=[0.2,0.3,0.5]]", ["--loss", "alpha", "3 entries"]),
])
def test_train_checks_per_class_options_before_training(tmp_path, capsys, loss, words):
    out = tmp_path / "r"
    _one_line_error(capsys, ["train", "--loss", loss, "--steps", "2", "--device", "cpu", "--out", str(out), "-q"],
                    *words)
    assert not (out / "runs").exists()  # no partial run left behind


def test_train_accepts_per_class_options_of_the_right_length(tmp_path, capsys):
    rc = main(["train", "--loss", "ce[class_weights=[1,3]]", "--steps", "1", "--eval-every", "1", "--device", "cpu",
               "-q", "--task-opt", "size=16"])
    assert rc in (0, 1), capsys.readouterr().err  # trained (converged or not), no configuration error


def test_sweep_checks_per_class_options_before_any_worker(tmp_path, capsys):
    out = tmp_path / "r"
    _one_line_error(capsys, ["sweep", "--losses", "ce[class_weights=[1,2,3,4,5]],dice", "--steps", "2",
                             "--workers", "1", "--no-progress", "--out", str(out)], "--losses", "class_weights")
    assert not (out / "runs").exists()


@pytest.mark.parametrize("argv, words", [
    (["--steps", "100000000000000000000"], ["steps", "1,000,000,000"]),
    (["--eval-every", "100000000000000000000"], ["eval_every"]),
    (["--converge", "mean_dice>=2"], ["threshold", "[0, 1]", "2.0"]),
    (["--converge", "fg_dice>=-0.5"], ["threshold", "[0, 1]"]),
    (["--converge", "mean_dice>=nan"], ["threshold"]),
])
def test_train_refuses_absurd_values(tmp_path, capsys, argv, words):
    _one_line_error(capsys, ["train", "--loss", "dice", "--device", "cpu", "--out", str(tmp_path / "r"), *argv], *words)
    assert not (tmp_path / "r" / "runs").exists()


def test_float_steps_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--loss", "dice", "--steps", "1e20"])
    assert e.value.code == 2 and "invalid int value: '1e20'" in capsys.readouterr().err


def test_sweep_refuses_absurd_steps(tmp_path, capsys):
    _one_line_error(capsys, ["sweep", "--losses", "dice", "--steps", "100000000000000000000", "--list"], "steps")


def test_broken_pipe_is_quiet():
    """``seglab sweep --list | head -1``: the listing (~4000 lines, more than a pipe holds) meets a closed pipe;
    the command ends with status 1 and no traceback."""
    seeds = ",".join(map(str, range(2000)))
    p = subprocess.Popen([sys.executable, "-m", "seglab", "sweep", "--list", "--losses", "dice,ce", "--seeds", seeds],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()  # what `head -1` does
    err = p.stderr.read().decode()
    rc = p.wait(timeout=120)
    assert first.startswith(b"0\t"), first
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert rc == 1, (rc, err)


def test_broken_pipe_through_head():
    r = subprocess.run(f"'{sys.executable}' -m seglab sweep --list --losses dice,ce --seeds "
                       f"{','.join(map(str, range(2000)))} | head -1", shell=True, capture_output=True, text=True,
                       timeout=120)
    assert r.stdout.startswith("0\t") and len(r.stdout.splitlines()) == 1
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_help_states_the_defaults_runs_use(capsys):
    from seglab.train.config import GRAD_NORM_EVERY, RunSpec

    assert RunSpec(loss="dice").grad_norm_every == GRAD_NORM_EVERY
    for cmd in ("sweep", "train"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "default 1: every step" not in text
        assert (f"else {GRAD_NORM_EVERY};" if cmd == "sweep" else f"default {GRAD_NORM_EVERY})") in text, text


def test_inline_sweep_restores_torch_threads(tmp_path):
    import torch

    from seglab.sweep import run_sweep

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        out = run_sweep({"losses": ["dice"], "steps": 1, "eval_every": 1, "task_kw": {"size": 16}}, tmp_path / "r",
                        workers=1, threads=1, show_progress=False)
        assert out.ok and out.finished == 1
        assert torch.get_num_threads() == 3  # was left at 1
    finally:
        torch.set_num_threads(before)


def test_train_run_json_records_provenance(tmp_path, capsys):
    import json

    import seglab

    rc = main(["train", "--loss", "dice", "--steps", "1", "--eval-every", "1", "--device", "cpu", "-q",
               "--task-opt", "size=16", "--seed", "7", "--out", str(tmp_path / "r")])
    assert rc in (0, 1)
    (summary,) = (tmp_path / "r" / "runs").glob("*/summary.json")
    p = json.loads(summary.read_text())["provenance"]
    for k in ("seglab", "torch", "numpy", "python", "argv", "cwd", "host", "cpu_model", "gpu", "git_commit",
              "device", "seed", "wall_s", "time"):
        assert k in p, k
    assert p["seglab"] == seglab.__version__ and p["seed"] == 7 and p["device"] == "cpu"
    assert p["git_commit"] is None or len(p["git_commit"].split("+")[0]) == 40
