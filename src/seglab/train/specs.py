"""The losses of training runs, in the one loss vocabulary of :mod:`seglab.losses.registry`.

A run's ``loss`` and ``monitors`` are :func:`seglab.get_loss` specs (``"dice"``, ``"dice[batch=true]"``,
``"0.5*dice[batch=true]+ce"``); this module only adds what runs need on top: the default monitor sets,
``(base, options)`` of single-term specs (for packed runs) and process groups for distributed batch Dice.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from seglab.losses.registry import canonical_spec, format_loss, get_loss, loss_options, resolve_term
from seglab.studies import STUDY_CONVERGE, study_monitors, study_task

__all__ = ["build_loss", "canonical_spec", "default_monitors", "loss_parts", "resolve_loss", "run_converge",
           "run_monitors"]


def resolve_loss(spec: str, mode: str) -> tuple[str, dict[str, Any]]:
    """``spec`` on a ``mode`` task -> ``(base loss, options)`` for a single unweighted term
    (``"dice[batch=true,smooth=1e-7]"`` -> ``("dice", {"batch": True, "smooth": 1e-7})``), ``(canonical spec, {})`` otherwise.
    Raises ValueError if the spec is malformed or does not apply to ``mode`` (e.g. ``bce`` on multiclass)."""
    r = resolve_term(spec, mode)
    if r is not None:
        return r
    return format_loss(get_loss(spec, mode)), {}


def _ignore_index_of(loss: Any) -> Any:
    if hasattr(loss, "ignore_index"):
        return loss.ignore_index
    return loss.options().get("ignore_index") if hasattr(loss, "options") else None


def build_loss(spec: str, mode: str, *, process_group: Any = None, ignore_index: int | None = None):
    """Construct the loss module for ``spec`` on a task of ``mode`` (via :func:`seglab.get_loss`).

    ``process_group`` (distributed runs) is given to the parts with batch statistics that accept it
    (``batch=True`` Dice and friends) so that their value is the loss of the global batch.
    ``ignore_index``: the task's void label (a folder's 255), given to every part so that void pixels count
    nowhere; raises ValueError naming the loss when a part has no ``ignore_index`` option.
    """
    from seglab.losses.base import CompositeLoss

    loss = get_loss(spec, mode)
    if ignore_index is not None and _ignore_index_of(loss) != ignore_index:
        try:
            loss = get_loss(spec, mode, ignore_index=ignore_index)
        except (TypeError, ValueError) as e:
            raise ValueError(f"loss {spec!r} cannot skip the task's void label {ignore_index} (pixels to ignore): "
                             f"{e}; choose losses with an ignore_index option (ce, dice, ...)") from None
    if process_group is None:
        return loss
    terms = loss.terms if isinstance(loss, CompositeLoss) else [(1.0, loss)]
    out, changed = [], False
    for w, part in terms:
        if getattr(part, "batch", False) and "process_group" in inspect.signature(type(part).__init__).parameters:
            part = type(part)(part.mode, **{**loss_options(part), "process_group": process_group})
            changed = True
        out.append((w, part))
    if not changed:
        return loss
    return out[0][1] if len(out) == 1 and out[0][0] == 1.0 else CompositeLoss(out)


def loss_parts(spec: str) -> list[str]:
    """The trained loss and, for a weighted sum, each of its terms unweighted: ``"0.5*dice+ce"`` ->
    ``["0.5*dice+ce", "dice", "ce"]``; ``"dice"`` -> ``["dice"]``."""
    from seglab.losses.registry import parse_loss_spec

    terms = parse_loss_spec(spec)
    out = [spec]
    if len(terms) > 1 or (terms and terms[0].weight != 1.0):
        for t in terms:
            text = re.sub(r"^\s*[-+0-9.eE]+\s*\*\s*", "", t.text).strip()
            if text not in out:
                out.append(text)
    return out


def run_monitors(task_name: str, loss: str, mode: str) -> list[str]:
    """The default monitor set of a run: a study's set on its tasks (:func:`seglab.studies.study_monitors`), the
    trained loss and its parts (:func:`loss_parts`) on user data."""
    return study_monitors(mode) if study_task(task_name) else loss_parts(loss)


def run_converge(task_name: str) -> dict[str, Any] | None:
    """The default convergence rule of a run: a study's on its tasks (:data:`seglab.studies.STUDY_CONVERGE`), none
    (no verdict) on user data."""
    return dict(STUDY_CONVERGE) if study_task(task_name) else None


#: the default monitor set of a task mode on the study tasks (public name, ``seglab.train.default_monitors``)
default_monitors = study_monitors
