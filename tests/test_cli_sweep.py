"""``seglab sweep --help`` states the defaults the code uses (issue 22: it said --grad-norm-every 1, runs used 50;
its --monitors default named the study's set for user data too)."""

from __future__ import annotations

import pytest

from seglab.cli import main


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # argparse wraps the help at the terminal width (also at hyphens)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_sweep_help_defaults_come_from_the_code(capsys):
    from seglab.data import list_tasks
    from seglab.models import NORMS, list_models
    from seglab.studies import STUDY_STEPS
    from seglab.sweep.presets import PRESETS, get_preset
    from seglab.sweep.runner import PROGRESS_EVERY_S
    from seglab.train.config import GRAD_NORM_EVERY, OPTIMIZERS

    text = _help("sweep", capsys)
    assert f"else {GRAD_NORM_EVERY};" in text
    every_step = [n for n in PRESETS if get_preset(n).get("grad_norm_every") == 1]
    assert f"the presets {', '.join(every_step)} set 1" in text
    assert f"use the study's {STUDY_STEPS:,} iterations" in text
    assert f"(default {PROGRESS_EVERY_S:g})" in text
    assert f"built-in grid: {', '.join(PRESETS)}" in text
    assert f"({', '.join(list_tasks())})" in text and f"({', '.join(list_models())})" in text
    assert f"comma list: {','.join(OPTIMIZERS)}" in text
    assert f"{','.join(n or 'none' for n in NORMS)} (unet)" in text


def test_monitors_default_is_stated_alike_and_is_the_trainers(capsys):
    from seglab.cli._common import MONITORS_HELP
    from seglab.train.specs import default_monitors, loss_parts, run_monitors

    for command in ("sweep", "train"):
        assert " ".join(MONITORS_HELP.split()) in _help(command, capsys), command
    # what the text says: the study's set on a study task, the trained loss and its parts on user data
    assert run_monitors("threshold", "dice+ce", "multiclass") == default_monitors("multiclass")
    assert run_monitors("folder", "dice+ce", "multiclass") == loss_parts("dice+ce")
