"""Sparse gradient-norm monitoring (issue 11): a sparse default, 0 = off, the study preset keeps every step.

Monitoring never changes training: the training loss's gradient is the one stepped whatever the monitors do,
so the sparse and switched-off runs must follow the dense run's trajectory exactly, and their recorded norms
must be the dense run's norms at the measured steps."""

import math

import pytest
import torch

from seglab.train import ConfigError, RunSpec, train_run, validate_runs
from seglab.train.config import GRAD_NORM_EVERY, measures_grad_norms

torch.set_num_threads(1)

MONS = ["study_cce", "study_dice", "study_dicefg"]


def _cfg(**kw):
    base = dict(loss="study_dice", task="threshold", task_kw={"fg_ratio": 0.3, "size": 16}, model="tiny",
                model_kw={"norm": None}, lr=1e-2, seed=1, steps=12, eval_every=6, monitors=MONS)
    base.update(kw)
    return RunSpec(**base)


def test_default_is_sparse():
    assert GRAD_NORM_EVERY > 1
    assert RunSpec(loss="cce").grad_norm_every == GRAD_NORM_EVERY
    assert [s for s in range(120) if measures_grad_norms(s, 50)] == [0, 50, 100]
    assert not any(measures_grad_norms(s, 0) for s in range(10))


@pytest.fixture(scope="module")
def dense():
    return train_run(_cfg(grad_norm_every=1))


@pytest.mark.parametrize("every", [5, 0])
def test_sparse_and_off_follow_the_dense_trajectory(dense, every):
    r = train_run(_cfg(grad_norm_every=every))
    assert r.steps["train_loss"] == dense.steps["train_loss"]
    assert r.evals == dense.evals
    for m in MONS:
        assert r.steps[f"loss/{m}"] == dense.steps[f"loss/{m}"]
        g, gd = r.steps[f"gnorm/{m}"], dense.steps[f"gnorm/{m}"]
        for step, (a, b) in enumerate(zip(g, gd, strict=True)):
            if m == "study_dice" or (every and step % every == 0):  # the training loss: every step
                assert a == pytest.approx(b, rel=1e-12), (m, step)
            else:
                assert math.isnan(a), (m, step)
    s = r.summary
    if every == 0:
        assert all(math.isnan(s[f"mean_gnorm/{m}"]) for m in MONS if m != "study_dice")
    else:
        measured = [dense.steps["gnorm/study_cce"][k] for k in range(0, 12, every)]
        assert s["mean_gnorm/study_cce"] == pytest.approx(sum(measured) / len(measured))


def test_validation_accepts_zero_and_rejects_negative():
    assert validate_runs([_cfg(grad_norm_every=0)])[0].grad_norm_every == 0
    with pytest.raises(ConfigError, match="grad_norm_every must be an integer >= 0"):
        validate_runs([_cfg(grad_norm_every=-1)])
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        validate_runs([_cfg(steps=0)])


def test_cli_and_sweep_grid_accept_zero(capsys):
    import json

    from seglab.cli import main
    from seglab.sweep.grid import expand

    assert main(["train", "--loss", "cce", "--steps", "2", "--eval-every", "2", "--task-opt", "size=16",
                 "--grad-norm-every", "0", "--device", "cpu", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "finished"
    (run,) = expand({"losses": ["cce"], "grad_norm_every": 0})
    assert run.grad_norm_every == 0
    with pytest.raises(ConfigError, match="grad_norm_every"):
        expand({"losses": ["cce"], "grad_norm_every": -1})


def test_study_presets_monitor_every_step():
    from seglab.sweep.grid import expand
    from seglab.sweep.presets import PRESETS, get_preset

    assert "chlebus2018" in PRESETS
    for name in PRESETS:  # every built-in preset reproduces the study, which monitors every step
        for quick in (False, True):
            runs = expand(get_preset(name, quick=quick))
            assert runs and all(r.grad_norm_every == 1 for r in runs), name
