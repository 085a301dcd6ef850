"""``seglab.advise``: read masks, measure them, and recommend mode, activation, loss and class weights.

>>> import seglab.advise
>>> advice = seglab.advise.advise("masks/")        # or seglab.advise("masks/") — the module is callable
>>> print(advice)                                  # plain-text report; advice.to_dict() is the --json object

Masks can be a folder (read recursively, one file at a time: memory stays bounded), a single file, one NumPy
array, or an iterable of arrays (each one mask). See :mod:`seglab.advise.stats` for the encodings and
:mod:`seglab.advise.recommend` for the decision rules.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from seglab.advise.recommend import MAX_WEIGHT, Advice, recommend
from seglab.advise.stats import FORMATS, MaskStats, decode
from seglab.advise.weights import METHODS

__all__ = ["advise", "Advice", "FORMATS", "METHODS"]


def advise(
    masks: str | Path | np.ndarray | Iterable[np.ndarray],
    *,
    format: str = "auto",
    ignore_index: int | None | str = "auto",
    weights: str = "median",
    beta: float = 0.9999,
    rgb_reading: str | None = None,
    progress: bool = False,
    class_names: list[str] | None = None,
    max_weight: float = MAX_WEIGHT,
) -> Advice:
    """Measure ``masks`` and recommend how to train on them.

    Args:
        masks: a folder (recursive), a mask file, one array, or an iterable of arrays (one mask each).
        format: ``"auto"`` (infer per file), or force ``"index"``, ``"onehot"`` (channel-first 0/1, one- or
            multi-hot) or ``"rgb"``.
        ignore_index: label value left out of all statistics (index masks), passed on to the loss; ``"auto"``
            (default): detect a void label (a value outside the palette, or 255 standing apart from the class
            labels) and state the assumption in ``Advice.assumptions``; ``None``: every value is a class.
        weights: class-weight method: ``"median"`` (default; median-frequency balancing), ``"inverse"`` or
            ``"effective"`` (Cui et al. 2019, with ``beta``).
        rgb_reading: for colour masks: ``"multilabel"`` (R, G, B channels are labels; mixed colours overlap)
            or ``"classes"`` (each colour is a class). Default: multilabel when some colours are sums of
            primaries, else classes.
        progress: show a progress bar on stderr (files only).
        class_names: names for the classes found (one per class; for channel masks with an implicit
            background, one per channel is also accepted).
        max_weight: cap on the emitted class weights and ``pos_weight`` (``float("inf")``: no cap).

    Unreadable files are skipped and listed in ``Advice.skipped`` (with the error naming the file); if no
    file can be read, ``ValueError`` is raised, naming the folder and why the files were skipped.
    """
    void = _check_options(format, ignore_index, rgb_reading, weights)
    stats = MaskStats(ignore_index=void if isinstance(void, int) else None)
    if isinstance(masks, (str, Path)):
        _read_folder(stats, masks, format, progress)
    else:
        _read_arrays(stats, [masks] if isinstance(masks, np.ndarray) else masks, format)
    return recommend(stats, weights=weights, beta=beta, rgb_reading=rgb_reading, ignore_index=void, class_names=class_names,
                     max_weight=max_weight)


def _check_options(format: str, ignore_index: int | None | str, rgb_reading: str | None, weights: str) -> int | None | str:
    """Check :func:`advise`'s options (ValueError naming the bad one); returns ``ignore_index`` as an int, None or
    ``"auto"``."""
    if isinstance(ignore_index, str):
        if ignore_index.lower() == "auto":
            ignore_index = "auto"
        elif ignore_index.lower() == "none":
            ignore_index = None
        else:
            raise ValueError(f"ignore_index must be an int, None or 'auto', got {ignore_index!r}")
    elif ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))):
        raise ValueError(f"ignore_index must be an int, None or 'auto', got {ignore_index!r}")
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if rgb_reading not in (None, "multilabel", "classes"):
        raise ValueError(f"unknown rgb_reading {rgb_reading!r}; expected 'multilabel' or 'classes'")
    if weights not in METHODS:
        raise ValueError(f"unknown class-weight method {weights!r}; expected one of {', '.join(METHODS)}")
    return int(ignore_index) if isinstance(ignore_index, np.integer) else ignore_index


def _add_file(stats: MaskStats, f: Path, format: str) -> None:
    """Read one mask file into ``stats``, or record it as skipped (with the error naming the file)."""
    from seglab.data.readers import read_mask

    try:
        arr, meta = read_mask(f)
        stats.add(decode(arr, meta, format), str(f))
    except ValueError as e:
        msg = str(e)
        stats.skip(str(f), msg if str(f) in msg else f"{f}: {msg}")


def _read_folder(stats: MaskStats, masks: str | Path, format: str, progress: bool) -> None:
    """Read every mask file under ``masks`` (one at a time: memory stays bounded); ValueError if none is readable."""
    from seglab.data.readers import iter_mask_files

    files = iter_mask_files(masks)
    for f in _progress(files, progress):
        _add_file(stats, f, format)  # the file's array is dropped before the next is read
    if stats.n_files == 0:
        detail = "; ".join(e for _, e in stats.skipped[:3]) + (" ..." if stats.n_skipped > 3 else "")
        raise ValueError(f"no readable mask in {masks}: {stats.n_skipped} file(s) skipped: {detail}")


def _add_array(stats: MaskStats, a: np.ndarray, name: str, format: str) -> None:
    """Add one array to ``stats``, or record it as skipped."""
    try:
        stats.add(decode(np.asarray(a), {"kind": "numpy"}, format), name)
    except ValueError as e:
        stats.skip(name, f"{name}: {e}")


def _read_arrays(stats: MaskStats, items: Iterable[np.ndarray], format: str) -> None:
    """Add every array of ``items`` (one mask each); ValueError if none is readable."""
    for i, a in enumerate(items):
        _add_array(stats, a, f"array[{i}]", format)
    if stats.n_files == 0:
        raise ValueError("no readable mask among the arrays: " + ("; ".join(e for _, e in stats.skipped[:3]) or "none given"))


def _progress(files: list[Path], enabled: bool):
    """Yield ``files``, with a rich progress bar on stderr when ``enabled``."""
    if not enabled:
        yield from files
        return
    from seglab._extras import require

    require("rich", "the progress bar of seglab advise")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("reading masks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("masks", total=len(files))
        for f in files:
            yield f
            bar.advance(task)


class _CallableModule(types.ModuleType):
    """Lets ``seglab.advise(masks)`` work although ``seglab.advise`` is a package."""

    def __call__(self, *args, **kwargs) -> Advice:
        return advise(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
