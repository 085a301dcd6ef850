"""Issue 22: the sweep's progress bars show run labels as written: a loss spec in brackets is not rich
markup (``dice[batch=true] + ce`` was shown as ``dice + ce``) and the loss is never cut."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("rich")


def test_progress_bar_shows_bracketed_losses_whole():
    from rich.console import Console

    from seglab.sweep.runner import SweepProgress, job_id as _job_id
    from seglab.train.config import RunSpec

    losses = ["dice[batch=true] + ce", "0.5*dice[batch=true,include_background=false] + ce[class_weights=[1,2]]",
              "[link=x]y"]
    jobs = [[RunSpec(loss=spec, task_kw={"fg_ratio": 0.05, "size": 64})] for spec in losses]
    buf = io.StringIO()
    console = Console(file=buf, width=250, force_terminal=True, color_system=None)
    with SweepProgress(jobs, console, show=True, terminal=True) as prog:
        for job in jobs:
            prog.step(_job_id(job), 1, 2)
    text = buf.getvalue()
    for spec in losses:
        assert spec in text, (spec, text)
