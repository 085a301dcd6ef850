"""The masks of a built-in task as ``seglab advise --task`` reads them (:func:`task_masks`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from seglab.data import create_task


def task_masks(name: str, **task_kw: Any) -> tuple[Iterable[Any], list[str], str]:
    """``(masks, class_names, format)`` for task ``name`` (options ``task_kw``): an iterator over its ``training_masks()`` if it
    has one (e.g. ``brain-tissue``), else over its validation targets; the format is ``"onehot"`` (channel
    first) for tasks whose targets have a channel axis, else ``"index"``."""
    task: Any = create_task(name, **task_kw)
    masks = task.training_masks() if hasattr(task, "training_masks") else (t.numpy() for t in task.validation()[1])
    fmt = "index" if task.mode == "multiclass" and not getattr(task, "soft", False) else "onehot"
    return masks, list(task.class_names), fmt
