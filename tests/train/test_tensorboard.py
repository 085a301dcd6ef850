"""`seglab train --tensorboard` (issue 11): event files beside the Parquet records, read back with TensorBoard's
own EventAccumulator and compared with the records of the results store."""

import json
import sys

import pytest

from seglab.results import ResultsStore
from seglab.train.loop import tb_tag

ARGS = ["train", "--loss", "dice+ce", "--task", "shapes", "--task-opt", "size=16", "--task-opt", "num_classes=3",
        "--steps", "6", "--eval-every", "3", "--grad-norm-every", "2", "--device", "cpu", "--no-progress"]


def test_event_file_holds_loss_per_class_dice_and_grad_norms(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seglab.cli import main

    out = tmp_path / "res"
    assert main([*ARGS, "--tensorboard", "--out", str(out)]) == 0
    rid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    logdir = out / "tensorboard" / rid
    assert list(logdir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    store = ResultsStore(out)
    steps, evals, s = store.steps(rid), store.evals(rid), store.summary(rid)

    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == steps["step"]
    assert [e.value for e in loss] == pytest.approx(steps["train_loss"], rel=1e-6)  # float32 in the event file
    for name in s["class_names"]:
        ev = acc.Scalars(f"val/dice/{name}")
        assert [e.step for e in ev] == evals["step"] == [0, 3, 6]
        assert [e.value for e in ev] == pytest.approx(evals[f"dice/{name}"], rel=1e-6, nan_ok=True)
        assert f"val/iou/{name}" in tags
    assert {"val/mean_dice", "val/fg_dice", "val/accuracy"} <= tags
    for col, values in steps.items():
        if not col.startswith("gnorm/"):
            continue
        tag = tb_tag("grad_norm/" + col[len("gnorm/"):])  # "dice + ce" -> "dice___ce"
        measured = [(k, v) for k, v in zip(steps["step"], values, strict=True) if v == v]  # not NaN
        got = acc.Scalars(tag)
        assert [e.step for e in got] == [k for k, _ in measured], col
        assert [e.value for e in got] == pytest.approx([v for _, v in measured], rel=1e-6)
    assert [e.step for e in acc.Scalars("grad_norm/study_dice")] == [0, 2, 4]  # a monitor: every 2nd step
    assert len(acc.Scalars(tb_tag("grad_norm/dice + ce"))) == 6  # the training loss: every step


def test_missing_tensorboard_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from seglab.cli import main

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails as if not installed
    assert main([*ARGS, "--tensorboard", "--out", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'seglab[tensorboard]'" in err, err
    assert not (tmp_path / "res").exists()  # checked before anything was made
