"""Issue 20: library calls leave the caller's process-global state as it was: torch's CPU random generator
after ``train_run`` and an in-process sweep (both seed it with each run's seed), and the sweep's thread count
(tests/train/test_option_checks.py)."""

from __future__ import annotations

import torch


def test_train_run_restores_the_callers_generator():
    from seglab.train.config import RunSpec
    from seglab.train.loop import train_run

    cfg = RunSpec(loss="dice", steps=2, eval_every=2, task_kw={"size": 16}, seed=5)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = train_run(cfg)
    assert torch.equal(torch.rand(4), expected)  # was the stream of seed 5 after the run's draws
    again = train_run(cfg)
    assert again.summary["final_train_loss"] == first.summary["final_train_loss"]  # still seeded by cfg.seed


def test_inline_sweep_restores_the_callers_generator(tmp_path):
    from seglab.sweep import run_sweep

    torch.manual_seed(321)
    expected = torch.rand(4)
    torch.manual_seed(321)
    out = run_sweep({"losses": ["dice", "ce"], "steps": 1, "eval_every": 1, "fg_ratios": [0.1], "task_kw": {"size": 16}},
                    tmp_path / "r", workers=1, show_progress=False)  # one pack, trained in this process
    assert out.ok and out.finished == 2
    assert torch.equal(torch.rand(4), expected)
