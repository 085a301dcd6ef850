"""brain-tissue tasks from nilearn's bundled MNI ICBM152 maps."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from seglab.data import create_task, list_tasks
from seglab.data import brain


@pytest.fixture(scope="module")
def task():
    return create_task("brain-tissue", size=32)


def test_registered_and_shapes(task):
    assert {"brain-tissue", "brain-tissue-nested"} <= set(list_tasks())
    assert task.mode == "multiclass" and task.num_classes == 3 and task.in_channels == 1 and task.spatial_dims == 2
    x, y = task.batch(step=0, batch_size=4, seed=0)
    assert x.shape == (4, 1, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert y.shape == (4, 32, 32) and y.dtype == torch.int64 and set(y.unique().tolist()) <= {0, 1, 2}
    xv, yv = task.validation()
    assert xv.shape[0] == task.validation_size == len(task.val_slices) and yv.shape == (xv.shape[0], 32, 32)
    assert set(yv.unique().tolist()) == {0, 1, 2}  # middle slices hold all three tissues


def test_deterministic_and_config_roundtrip(task):
    a = task.batch(step=3, batch_size=5, seed=7)
    b = create_task(**task.config()).batch(step=3, batch_size=5, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], task.batch(step=4, batch_size=5, seed=7)[0])


def test_split_by_slice_range_with_gap(task):
    tr, va = set(task.train_slices), task.val_slices
    assert not tr & set(va)
    assert va == list(range(va[0], va[-1] + 1))  # one contiguous block
    assert all(abs(t - v) > task.gap for t in tr for v in (va[0], va[-1]))
    assert len(va) == pytest.approx(0.2 * (len(tr) + len(va) + 2 * task.gap), abs=2)


def test_soft_labels_sum_to_one():
    t = create_task("brain-tissue", size=16, soft=True)
    _, y = t.batch(0, 3, 0)
    assert y.shape == (3, 3, 16, 16) and y.dtype == torch.float32
    torch.testing.assert_close(y.sum(1), torch.ones(3, 16, 16))
    assert ((y > 0) & (y < 1)).any()  # real soft labels at tissue boundaries


def test_nested_white_matter_inside_brain():
    t = create_task("brain-tissue-nested", size=32)
    assert t.mode == "multilabel" and t.class_names == ["brain", "white matter"]
    _, y = t.validation()
    assert y.shape[1] == 2 and y.dtype == torch.float32
    assert torch.all(y[:, 1] <= y[:, 0])  # WM implies brain
    assert (y[:, 1] < y[:, 0]).any() and (y[:, 1] > 0).any()  # and is strictly nested (grey matter)


def test_parameter_errors():
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        create_task("brain-tissue", size=4)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 0.9\)"):
        create_task("brain-tissue", val_fraction=0.95)
    with pytest.raises(ValueError, match="unknown parameter"):
        create_task("brain-tissue-nested", soft=True)


def test_missing_nilearn_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'seglab\[brain\]'"):
        brain.nilearn_data_dir()


def test_advise_on_brain_tissue():
    from seglab.advise import advise
    from seglab.advise.tasks import task_masks

    masks, names, fmt = task_masks("brain-tissue")
    a = advise(masks, class_names=names, format=fmt)
    assert a.mode == "multiclass" and a.activation == "softmax" and a.class_names == names
    # the README's and docs/brain_tissue.md's advice: class weights in the CE term only, none in the Dice term
    assert a.loss_spec.startswith("dice[include_background=false] + ce[class_weights=[0.16302517,1.0,1.928777")
    masks, names, fmt = task_masks("brain-tissue-nested")
    a = advise(masks, class_names=names, format=fmt)
    assert a.mode == "multilabel" and a.activation == "sigmoid" and a.multilabel_overlap_fraction > 0.2
    assert a.overlap_pairs[0]["names"] == ["brain", "white matter"]


def test_cli_advise_task(capsys):
    import json

    from seglab.cli import main

    assert main(["advise", "--task", "brain-tissue-nested", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "multilabel" and d["loss"] == "dice+ce" and len(d["pos_weight"]) == 2
    assert main(["advise"]) == 2
    assert "exactly one of PATH or --task" in capsys.readouterr().err
