"""Loss specifications used by runs: the study's named losses, ``spec[key=value,...]`` strings, validation.

A *loss spec* is a string understood by :func:`resolve_loss`:

* a study name (case-insensitive): ``cce``, ``dice``, ``dicefg``, ``dice_sq``, ``dicefg_sq`` (aliases
  ``DICE_SQUARE``, ``DICEFG_SQUARE``) — the losses of Chlebus (2018), i.e. Dice with sums over batch *and*
  spatial axes (``batch=True``) and ``smooth=1e-7``; ``bce`` (sigmoid BCE, binary/multilabel tasks only);
* any :func:`seglab.get_loss` spec (``"focal"``, ``"dice+ce"``, ``"0.5*dice+ce"`` ...), optionally followed by
  keyword arguments in brackets: ``"dice[batch=True,squared=True,smooth=1e-5]"``.

Values in brackets are parsed as JSON where possible (``true``/``True``, numbers, ``null``/``None``),
otherwise kept as strings.
"""

from __future__ import annotations

import json
import re
from typing import Any

STUDY_DICE = {"batch": True, "smooth": 1e-7}

#: name -> (get_loss spec, kwargs, modes it applies to (None = any))
NAMED_LOSSES: dict[str, tuple[str, dict[str, Any], tuple[str, ...] | None]] = {
    "cce": ("ce", {}, ("multiclass",)),
    "bce": ("ce", {}, ("binary", "multilabel")),
    "dice": ("dice", dict(STUDY_DICE), None),
    "dicefg": ("dice", dict(STUDY_DICE, include_background=False), ("multiclass", "multilabel")),
    "dice_sq": ("dice", dict(STUDY_DICE, squared=True), None),
    "dicefg_sq": ("dice", dict(STUDY_DICE, squared=True, include_background=False), ("multiclass", "multilabel")),
}
ALIASES = {"dice_square": "dice_sq", "dicefg_square": "dicefg_sq", "ce_study": "cce"}

#: the study's five training losses, in its column order
STUDY_LOSSES = ["cce", "dice", "dicefg", "dice_sq", "dicefg_sq"]

#: loss names that only make sense with sigmoid outputs (binary/multilabel)
SIGMOID_ONLY = {"bce"}

_SPEC_RE = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*$")


def _parse_value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except (json.JSONDecodeError, ValueError):
        return t


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` on ``sep`` outside brackets: ``"dice[a=1,b=[1,2]],ce" -> ["dice[a=1,b=[1,2]]", "ce"]``."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dice[batch=True]" -> ("dice", {"batch": True})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string, got {spec!r}")
    m = _SPEC_RE.match(spec)
    if not m:
        raise ValueError(f"cannot parse loss spec {spec!r}; expected NAME or NAME[key=value,...]")
    name, inner = m.group(1), m.group(2)
    kw: dict[str, Any] = {}
    if inner:
        for part in split_top_level(inner):
            if not part.strip():
                continue
            if "=" not in part:
                raise ValueError(f"loss spec {spec!r}: expected key=value, got {part!r}")
            k, v = part.split("=", 1)
            kw[k.strip()] = _parse_value(v)
    return name, kw


def canonical_name(spec: str) -> str:
    name, kw = parse_spec(spec)
    key = ALIASES.get(name.lower(), name.lower())
    base = key if key in NAMED_LOSSES else name
    if kw:
        return base + "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(kw.items())) + "]"
    return base


def resolve_loss(spec: str, mode: str) -> tuple[str, dict[str, Any]]:
    """Map a loss spec to ``(get_loss spec, kwargs)`` for a task of ``mode``; raise ValueError if it does
    not apply to ``mode`` (e.g. ``bce`` — a multilabel/sigmoid loss — on a multiclass task)."""
    name, kw = parse_spec(spec)
    key = ALIASES.get(name.lower(), name.lower())
    if key in NAMED_LOSSES:
        base, base_kw, modes = NAMED_LOSSES[key]
        if modes is not None and mode not in modes:
            kind = "sigmoid (binary/multilabel)" if key in SIGMOID_ONLY else "/".join(modes)
            raise ValueError(
                f"loss {spec!r} is a {kind} loss and does not apply to a {mode} task"
                + ("; use 'cce' (softmax cross-entropy) for multiclass tasks" if key in SIGMOID_ONLY else "")
            )
        out = dict(base_kw)
        out.update(kw)
        return base, out
    declared = kw.pop("mode", None)
    if declared is not None and declared != mode:
        raise ValueError(f"loss {spec!r} declares mode={declared!r} but the task is {mode}")
    return name, kw


def build_loss(spec: str, mode: str, *, process_group: Any = None):
    """Construct the loss module for ``spec`` on a task of ``mode`` (via :func:`seglab.get_loss`).

    ``process_group`` (distributed runs) is passed to losses with batch statistics that accept it
    (``batch=True`` Dice and friends) so that their value is the Dice of the global batch.
    """
    from seglab import get_loss  # core losses

    base, kw = resolve_loss(spec, mode)
    if process_group is not None and kw.get("batch"):
        try:
            return get_loss(base, mode=mode, process_group=process_group, **kw)
        except (TypeError, ValueError):
            pass  # this loss has no process_group: per-rank value, averaged by the caller
    return get_loss(base, mode=mode, **kw)


def default_monitors(mode: str) -> list[str]:
    """Monitor set: CE/BCE and the Dice variants that apply to ``mode``."""
    if mode == "multiclass":
        return list(STUDY_LOSSES)
    if mode == "multilabel":
        return ["bce", "dice", "dicefg", "dice_sq"]
    return ["bce", "dice", "dice_sq"]
