"""Progress lines of `seglab train` (issue 11): steady in time, on stderr, off with --no-progress/--quiet; the
stdout JSON line is unchanged. (The non-TTY subprocess check is in test_user_model_e2e.py.)"""

import io
import json
import re

import pytest

from seglab.train.progress import ProgressPrinter, format_duration

LINE = re.compile(r"^step (\d+)/(\d+) \((\d+)%\)  loss (\S+)(  val Dice (\S+) @(\d+))?  elapsed (\S+)  ETA (\S+)$")
FINAL_KEYS = ["run_id", "status", "steps_done", "converged", "converged_step", "final_accuracy", "majority",
              "final_dice", "final_fg_dice", "final_mean_dice", "final_train_loss", "wall_s", "world_size"]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_lines_come_at_a_steady_rate_and_at_the_end():
    clock, out = Clock(), io.StringIO()
    p = ProgressPrinter(100, interval=10, stream=out, clock=clock)
    p.start(0)
    printed = []
    for done in range(1, 101):
        clock.t += 0.5  # 0.5 s per step: a line every 20 steps (10 s), and one at step 100
        if p.update(done, loss=1.0 / done):
            printed.append(done)
    assert printed == [20, 40, 60, 80, 100]
    lines = out.getvalue().splitlines()
    assert len(lines) == len(printed) and all(LINE.match(x) for x in lines), lines
    m = LINE.match(lines[0])
    assert m.group(1, 2, 3) == ("20", "100", "20") and m.group(8) == "10s"
    assert m.group(9) == "40s"  # the mean rate since the start (0.5 s/step) times the 80 steps left
    assert LINE.match(lines[-1]).group(9) == "0s"


def test_resumed_progress_counts_the_time_before_and_rates_from_the_restart():
    clock, out = Clock(), io.StringIO()
    p = ProgressPrinter(100, interval=0, stream=out, clock=clock)
    p.start(40, elapsed_before=30.0)
    clock.t += 10
    p.update(50, loss=0.5, dice=0.75, dice_step=40)
    m = LINE.match(out.getvalue().strip())
    assert m.group(1) == "50" and m.group(6, 7) == ("0.750", "40")
    assert m.group(8) == "40s" and m.group(9) == "50s"  # 10 steps in 10 s, 50 left


def test_force_and_interval_checks():
    out = io.StringIO()
    p = ProgressPrinter(10, interval=1e9, stream=out)
    p.start(0)
    assert not p.update(1) and p.update(1, force=True)
    for bad in (-1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match="interval"):
            ProgressPrinter(10, interval=bad)


@pytest.mark.parametrize("s, text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m"), (float("nan"), "?")])
def test_format_duration(s, text):
    assert format_duration(s) == text


ARGS = ["train", "--loss", "cce", "--task-opt", "size=16", "--steps", "6", "--eval-every", "3", "--device", "cpu"]


def test_cli_progress_on_stderr_and_the_json_line_unchanged(capsys):
    from seglab.cli import main

    assert main([*ARGS, "--progress-interval", "0"]) == 0
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert [int(LINE.match(x).group(1)) for x in lines] == [1, 2, 3, 4, 5, 6], lines
    assert LINE.match(lines[-1]).group(7) == "6"  # the last line shows the final validation
    (out,) = cap.out.strip().splitlines()
    assert list(json.loads(out)) == FINAL_KEYS
    assert main([*ARGS]) == 0  # default interval 10 s: a run this short prints its final line only
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    for off in ("--no-progress", "--quiet", "-q"):
        assert main([*ARGS, off]) == 0
        cap = capsys.readouterr()
        assert cap.err == "" and list(json.loads(cap.out)) == FINAL_KEYS
