"""Built-in sweep grids by name: the presets of :mod:`seglab.studies` (``seglab sweep --preset NAME``)."""

from __future__ import annotations

from typing import Any

from seglab.studies import PRESETS
from seglab.train.config import ConfigError


def get_preset(name: str, *, quick: bool = False, steps: int | None = None) -> dict[str, Any]:
    """The grid of preset ``name`` (``quick``: its short version; ``steps``: another step count)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name](quick=quick, steps=steps)
