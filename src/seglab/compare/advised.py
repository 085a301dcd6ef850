"""The advised loss of a comparison: what ``seglab advise`` gives for the masks the runs train on.

``seglab compare --ablate advised`` (and the default baseline) and ``seglab advise --compare`` both take their loss
from :func:`advised_spec`, so the two commands agree on the advised loss for the same data.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from seglab.advise import FORMATS, advise
from seglab.advise.tasks import task_masks
from seglab.data import create_task
from seglab.data.readers import MASK_SUFFIXES, file_suffix


def training_masks(task: str, task_kw: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """``(masks, advise keyword arguments, source)``: the training masks of a task as ``seglab advise`` reads them.

    - a task with ``training_masks()`` (``brain-tissue``): those arrays, as ``seglab advise --task`` reads them;
    - the ``folder`` task: the mask files of its training cases (``train_cases``), read from disk by advise's own
      file reader (as ``seglab advise`` on a folder holding only those files), with the task's void label, colour
      reading and mask format;
    - a synthetic task (``shapes``, ``threshold``, ...: training batches are drawn afresh for every seed and step):
      its fixed validation set, drawn from the same generator, as ``seglab advise --task`` reads it.
    """
    t: Any = create_task(task, **task_kw)
    cases = getattr(t, "train_cases", None)
    if task == "folder" and cases is not None and getattr(t, "path", None) is not None:
        folder = Path(t.path, "masks")
        by_stem = {}
        for f in sorted(folder.iterdir()):
            suf = file_suffix(f)
            if not f.name.startswith(".") and f.is_file() and suf in MASK_SUFFIXES:
                by_stem[f.name[:-len(suf)]] = f
        files = [by_stem[c] for c in cases if c in by_stem]
        kw: dict[str, Any] = {"format": t.mask_format if t.mask_format in FORMATS else "auto"}
        if getattr(t, "ignore_index_option", "auto") != "auto":
            kw["ignore_index"] = t.ignore_index_option
        if getattr(t, "rgb_reading", None) is not None:
            kw["rgb_reading"] = t.rgb_reading
        return files, kw, f"the {len(files)} training masks of {folder} (the validation cases left out)"
    masks, names, fmt = task_masks(task, **task_kw)
    what = "training" if hasattr(t, "training_masks") else f"{t.validation_size} validation (same generator as training)"
    return masks, {"class_names": names, "format": fmt}, f"the {what} masks of task {task}"


def advise_training_masks(task: str, task_kw: dict[str, Any], **advise_kw: Any) -> tuple[Any, str]:
    """``(advice, source)``: :func:`seglab.advise` on the task's training masks (:func:`training_masks`);
    ``advise_kw`` (the weight method, its cap, ...) override the task's reading of the masks."""
    masks, kw, source = training_masks(task, task_kw)
    kw = {**kw, **advise_kw}
    if isinstance(masks, list) and masks and isinstance(masks[0], Path):
        with tempfile.TemporaryDirectory(prefix="seglab-advise-") as tmp:
            for f in masks:  # a folder of exactly these files, read as seglab advise reads a folder
                _link_or_copy(f, Path(tmp, f.name))
            return advise(tmp, **kw), source
    return advise(masks, **kw), source


def _link_or_copy(src: Path, dst: Path) -> None:
    """A symbolic link ``dst`` to ``src``, or a copy where links cannot be made."""
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def advised_spec(task: str, task_kw: dict[str, Any]) -> tuple[str, Any, str]:
    """``(spec, advice, source)``: the loss ``seglab advise`` gives for the task's training masks
    (:func:`training_masks`), the :class:`~seglab.advise.Advice` with its reasons, and which masks it read."""
    adv, source = advise_training_masks(task, task_kw)
    return adv.loss_spec, adv, source


def say_advised(spec: str, adv: Any, source: str, *, stream: Any = None) -> None:
    """Print the advised loss, the masks it was advised on, and advise's reasons."""
    out = stream or sys.stdout
    print(f"advised loss (seglab advise on {source}): {spec}", file=out)
    for r in list(getattr(adv, "reasons", []) or [])[:8]:
        print(f"  because: {r}", file=out)
    out.flush()
