"""``seglab train``'s options take their defaults from the run configuration (RunSpec), and its help shows them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from seglab.cli import main
from seglab.cli.train import RUN_OPTIONS, add_arguments, config_from_args
from seglab.train.config import GRAD_NORM_EVERY, RunSpec


def test_run_option_defaults_are_runconfigs():
    p = argparse.ArgumentParser()
    add_arguments(p)
    defaults = {a.dest: a.default for a in p._actions}
    fields = {f.name: f.default for f in dataclasses.fields(RunSpec) if f.default is not dataclasses.MISSING}
    shared = [o for o in RUN_OPTIONS if o in fields and o in defaults]
    assert {"task", "model", "optimizer", "lr", "steps", "batch_size", "eval_every", "grad_norm_every"} <= set(shared)
    for o in shared:
        assert defaults[o] == fields[o], o
    # the command line's defaults make the same run as RunSpec's (only the loss given)
    cfg = config_from_args(p.parse_args(["--loss", "dice"]))
    assert cfg == RunSpec(loss="dice")


def test_train_help_shows_the_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"monitor; default {GRAD_NORM_EVERY})" in text
    d = RunSpec(loss="dice")
    assert f"training steps (default {d.steps})" in text and f"learning rate (default {d.lr:g})" in text
