"""Issue 22 "reports of real images": a run with a folder saves its best and worst validation images (small, data
only) and the report draws them as image / ground truth / prediction."""

import json

import pytest
import torch

from seglab.cli import main
from seglab.train import examples as E

torch.set_num_threads(1)


def test_image_dice_per_image_with_void():
    y = torch.tensor([[[1, 1], [0, 255]], [[0, 0], [0, 0]], [[2, 2], [0, 0]]])
    p = torch.tensor([[[1, 1], [0, 1]], [[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    d = E.image_dice(p, y, mode="multiclass", num_classes=3, ignore_index=255)
    assert d.tolist() == [1.0, 1.0, 0.0]  # void left out; no foreground anywhere = 1; wrong class = 0
    yb = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert E.image_dice(torch.tensor([[[[True, True], [False, False]]]]), yb, mode="binary",
                        num_classes=1).tolist() == [pytest.approx(2 / 3)]


def test_train_out_saves_best_and_worst_validation_images_and_the_report_draws_them(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from seglab.results import ResultsStore

    assert main(["train", "--loss", "ce", "--task", "shapes", "--task-opt", "size=16", "--steps", "2",
                 "--eval-every", "2", "--device", "cpu", "-q", "--out", str(tmp_path / "r")]) == 0
    rid = json.loads(capsys.readouterr().out.strip())["run_id"]
    run = ResultsStore(tmp_path / "r").run_dir(rid)
    ex = torch.load(run / E.FILE, weights_only=True)
    assert ex["image"].shape[1:] == (16, 16) and len(ex["index"]) == 4
    assert ex["dice"][0] >= ex["dice"][-1] and float(ex["image"].min()) >= 0 and float(ex["image"].max()) <= 1
    assert ex["dice"].tolist() == sorted(ex["dice"].tolist(), reverse=True)
    assert main(["report", str(tmp_path / "r"), "--no-table"]) == 0
    pngs = {p.name for p in (tmp_path / "r" / "report").iterdir()}
    assert any(n.endswith("_examples.png") for n in pngs), pngs
