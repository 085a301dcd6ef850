"""Issue 22 / 24: user data and user models. A folder with a 255 void label trains end to end; a model that breaks
the contract is one line before any step (exit 2); NaN logits at step 0 are the ``diverged`` status; a garbage
checkpoint's error does not advise ``weights_only=False``."""

import json
import pickle

import numpy as np
import pytest
import torch

from seglab.cli import main

torch.set_num_threads(1)


def void_folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:16, :16]
    for i in range(4):
        m = np.zeros((16, 16), np.uint8)
        m[(yy - 8) ** 2 + (xx - 8) ** 2 < 16] = 1
        m[(yy - 4) ** 2 + (xx - 4) ** 2 < 4] = 2
        m[0, :] = 255  # void
        Image.fromarray(m).save(root / "masks" / f"c{i}.png")
        Image.fromarray((m % 3 * 80 + rng.integers(0, 40, m.shape)).astype(np.uint8)).save(root / "images" / f"c{i}.png")
    return root


def test_folder_with_a_255_void_label_trains_end_to_end(tmp_path, capsys):
    from seglab.data import create_task

    data = void_folder(tmp_path / "data")
    assert create_task("folder", path=str(data)).ignore_index == 255
    assert main(["train", "--task", "folder", "--task-opt", f"path={data}", "--loss", "dice+ce", "--steps", "2",
                 "--eval-every", "1", "--device", "cpu", "-q"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "finished" and res["steps_done"] == 2
    assert len(res["final_dice"]) == 3 and all(0.0 <= d <= 1.0 for d in res["final_dice"])


def test_void_pixels_count_nowhere_in_validation():
    from seglab.data import create_task
    from seglab.train.evaluate import evaluate

    class Perfect(torch.nn.Module):  # logits = one-hot of the target where it is a class, class 0 on void pixels
        def __init__(self, y):
            super().__init__()
            self.y, self.w = y, torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            y = self.y.clone()
            y[y == 255] = 0
            return torch.nn.functional.one_hot(y.long(), 3).movedim(-1, 1).float() * 10

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        task = create_task("folder", path=str(void_folder(Path(d) / "data")))
    xv, yv = task.validation()
    m = evaluate(Perfect(yv), xv, yv, mode=task.mode, num_classes=3, ignore_index=task.ignore_index)
    assert m["accuracy"] == 1.0 and m["mean_dice"] == 1.0


NETS = '''
import torch
from torch import nn


def wrong_channels(*, in_channels, out_channels, spatial_dims=2):
    return nn.Conv2d(in_channels, out_channels + 2, 3, padding=1)


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        raise RuntimeError("boom inside")


def raises(**kw):
    return Boom()


class NoParams(nn.Module):
    def forward(self, x):
        return x.repeat(1, 2, 1, 1)


def no_params(**kw):
    return NoParams()


def wrong_shape(*, in_channels, out_channels, spatial_dims=2):
    return nn.Conv2d(in_channels, out_channels, 3)


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.c(x) * float("nan")


def nan(**kw):
    return NaNNet()
'''

_FAST = ["--loss", "dice+ce", "--steps", "2", "--eval-every", "2", "--task-opt", "size=16", "--device", "cpu", "-q"]


@pytest.mark.parametrize("factory, words", [
    ("wrong_channels", "4 output channels but the task has 2 classes"),
    ("raises", "raised RuntimeError: boom inside"),
    ("no_params", "no trainable parameters"),
    ("wrong_shape", "expected logits (1, 2, 16, 16)"),
])
def test_user_model_breaking_the_contract_is_one_line_exit_2(tmp_path, capsys, factory, words):
    (tmp_path / "nets.py").write_text(NETS)
    assert main(["train", *_FAST, "--model", f"{tmp_path / 'nets.py'}:{factory}"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --model") and words in err, err
    assert "class indices must lie" not in err and cap.out == ""


def test_nan_logits_at_step_0_are_the_diverged_status(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(NETS)
    assert main(["train", *_FAST, "--model", f"{tmp_path / 'nets.py'}:nan"]) == 1
    res = json.loads(capsys.readouterr().out.strip())
    assert res["status"] == "diverged" and res["steps_done"] == 0


@pytest.mark.parametrize("payload", [b"garbage" * 10, pickle.dumps({"a": 1})])
def test_garbage_checkpoint_error_never_advises_weights_only_false(tmp_path, payload):
    from seglab.train import checkpoint as C

    f = tmp_path / "checkpoint_last.pt"
    f.write_bytes(payload)
    with pytest.raises(C.CheckpointError) as e:
        C.load(f)
    msg = str(e.value)
    assert "unreadable" in msg and "weights_only" not in msg and "False" not in msg, msg


def test_user_data_defaults_monitor_the_trained_loss_and_give_no_verdict(tmp_path):
    from seglab.losses.registry import STUDY_LOSSES
    from seglab.train import RunSpec, validate_runs

    data = str(void_folder(tmp_path / "data"))
    (c,) = validate_runs([RunSpec(loss="0.5*dice+ce", task="folder", task_kw={"path": data})], build=False)
    assert c.monitors == ["0.5*dice + ce", "dice", "ce"] == [c.loss, "dice", "ce"] and c.converge is None
    (c,) = validate_runs([RunSpec(loss="dice", task="folder", task_kw={"path": data},
                                    converge={"metric": "fg_dice", "threshold": 0.5})], build=False)
    assert c.monitors == ["dice"] and c.converge == {"metric": "fg_dice", "threshold": 0.5}
    # the study's tasks keep the study's monitors and convergence rule (and so their run ids)
    (s,) = validate_runs([RunSpec(loss="study_dice", task="threshold", task_kw={"fg_ratio": 0.95})], build=False)
    assert s.monitors == list(STUDY_LOSSES) and s.converge == {"metric": "mean_dice", "threshold": 0.9}
    assert s.run_id == "c485def95e18"  # as before user-data defaults existed


def test_user_data_run_has_no_convergence_verdict_unless_asked(tmp_path, capsys):
    data = void_folder(tmp_path / "data")
    argv = ["train", "--task", "folder", "--task-opt", f"path={data}", "--loss", "dice+ce", "--steps", "1",
            "--eval-every", "1", "--device", "cpu", "-q"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip())["converged"] is None
    assert main([*argv, "--converge", "mean_dice>=0"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["converged"] is True
