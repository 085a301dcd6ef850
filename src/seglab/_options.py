"""``K=V`` command-line options (``--task-opt``, ``--model-opt``): one parser for every command."""

from __future__ import annotations

import json
from typing import Any


def parse_value(text: str) -> Any:
    """A task/model option value: true/false, none/null, a JSON value, else the text itself."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return t


def parse_kv(items: list[str], flag: str = "--task-opt") -> dict[str, Any]:
    """``["size=16", "frequencies=[0.8,0.1]"]`` -> ``{"size": 16, "frequencies": [0.8, 0.1]}``; ValueError
    naming ``flag`` for an item without ``=``."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"{flag}: expected K=V, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = parse_value(v)
    return out
