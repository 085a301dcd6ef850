"""Helpers shared by the name registries (models, tasks, losses): did-you-mean errors and keyword checks."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable


def registrar(kind: str, table: dict[str, Callable[..., Any]]) -> Callable[[str], Callable]:
    """The ``register_<kind>(name)`` decorator factory of a registry held in ``table``."""

    def register(name: str) -> Callable:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind} name must be a non-empty string, got {name!r}")

        def decorator(factory):
            if name in table and table[name] is not factory:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = factory
            return factory

        return decorator

    return register


def unknown_name_message(kind: str, name: Any, known: list[str]) -> str:
    msg = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    if close:
        msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return msg + f" (available: {', '.join(known) or 'none'})"


def check_kwargs(kind: str, name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Raise ValueError for keyword arguments ``factory`` does not accept (instead of a TypeError)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins / C callables: let the call itself complain
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, accepted, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"{kind} {name!r} got unknown parameter(s) {', '.join(hints)}; accepted: {', '.join(accepted)}"
        )
