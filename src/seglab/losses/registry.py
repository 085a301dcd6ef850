"""Build losses from strings: ``get_loss("0.5*dice+ce", mode="multiclass", include_background=False)``."""

from __future__ import annotations

import inspect
import re
from typing import Any

from seglab._registry import unknown_name_message
from seglab.losses.base import CompositeLoss, Loss
from seglab.losses.ce import CrossEntropyLoss
from seglab.losses.dice import DiceLoss
from seglab.losses.focal import FocalLoss
from seglab.losses.generalized_dice import GeneralizedDiceLoss
from seglab.losses.jaccard import JaccardLoss
from seglab.losses.lovasz import LovaszLoss
from seglab.losses.tversky import TverskyLoss

LOSSES: dict[str, type[Loss]] = {
    "ce": CrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "gdice": GeneralizedDiceLoss,
    "tversky": TverskyLoss,
    "jaccard": JaccardLoss,
    "lovasz": LovaszLoss,
}
ALIASES: dict[str, str] = {
    "bce": "ce",
    "cce": "ce",
    "cross_entropy": "ce",
    "crossentropy": "ce",
    "generalized_dice": "gdice",
    "iou": "jaccard",
}
# presets: a name that fixes some arguments
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "focal_tversky": ("tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}),
}

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_]+)\s*$")


def list_losses() -> list[str]:
    """Names accepted by :func:`get_loss` (aliases included), sorted."""
    return sorted([*LOSSES, *ALIASES, *PRESETS])


def _resolve(name: str) -> tuple[type[Loss], dict[str, Any]]:
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in PRESETS:
        base, fixed = PRESETS[key]
        return LOSSES[base], dict(fixed)
    if key not in LOSSES:
        raise ValueError(unknown_name_message("loss", name, list_losses()))
    return LOSSES[key], {}


def _accepts(cls: type[Loss]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "mode"}


def get_loss(spec: str, mode: str, **kwargs: Any) -> Loss:
    """Build a loss (or a weighted sum of losses) from a string.

    ``spec`` is a ``+``-separated list of terms ``[weight*]name``, e.g. ``"dice"``, ``"dice+ce"``,
    ``"0.5*dice + focal"``. Names: see :func:`list_losses` (``ce``/``bce``: cross-entropy — softmax CE for
    multiclass, BCE-with-logits for multilabel/binary; ``focal``; ``dice``; ``gdice``; ``tversky``;
    ``focal_tversky``; ``jaccard``; ``lovasz``). Each keyword argument goes to every term whose constructor
    accepts it (``class_weights`` to CE and Dice, ``include_background`` to Dice, ...); one that no term
    accepts raises ``TypeError``. A single term returns that loss's module, several a :class:`CompositeLoss`.

    Example:
        >>> loss = get_loss("dice+ce", mode="multiclass", include_background=False, class_weights=[0.2, 1.0, 5.0])
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string like 'dice+ce', got {spec!r}")
    terms: list[tuple[float, type[Loss], dict[str, Any]]] = []
    for raw in spec.split("+"):
        m = _TERM.match(raw)
        if not m:
            raise ValueError(f"cannot parse loss term {raw.strip()!r} in {spec!r}; expected '[weight*]name', e.g. '0.5*dice'")
        cls, fixed = _resolve(m.group("name"))
        terms.append((float(m.group("w")) if m.group("w") else 1.0, cls, fixed))
    used: set[str] = set()
    built: list[tuple[float, Loss]] = []
    for w, cls, fixed in terms:
        accepted = _accepts(cls)
        kw = {k: v for k, v in kwargs.items() if k in accepted}
        used |= kw.keys()
        built.append((w, cls(mode, **{**fixed, **kw})))
    unused = set(kwargs) - used
    if unused:
        raise TypeError(
            f"argument(s) {sorted(unused)} not accepted by any loss in {spec!r} "
            f"(accepted: {sorted(set().union(*(_accepts(c) for _, c, _ in terms)))})"
        )
    if len(built) == 1 and built[0][0] == 1.0:
        return built[0][1]
    return CompositeLoss(built)
