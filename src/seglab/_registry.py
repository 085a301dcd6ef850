"""The one registry class of seglab (losses, models, tasks) and its helpers: did-you-mean errors, keyword checks."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Generic, TypeVar
from collections.abc import Callable, Iterator, Mapping

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=Callable[..., Any])


class Registry(Mapping[str, T], Generic[T]):
    """One name -> factory table (losses, models, tasks): ``@REG.register(name)`` where a thing is defined,
    ``REG.get_factory(name)`` (ValueError with a did-you-mean for an unknown name), ``REG.create(name, **kw)``
    (ValueError naming unknown parameters before anything is built), ``REG.names()``. Reads as a mapping.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("tiny")
        ... def tiny(*, width=4): ...
        >>> MODELS.names()
        ['tiny']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, T] = {}

    def register(self, name: str) -> Callable[[F], F]:  # F: the factory's own type is kept
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(factory: F) -> F:
            if name in self._table and self._table[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._table[name] = factory  # type: ignore[assignment]
            return factory

        return decorator

    def __getitem__(self, name: str) -> T:
        return self._table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def names(self) -> list[str]:
        return sorted(self._table)

    def get_factory(self, name: Any, known: list[str] | None = None) -> T:
        if not isinstance(name, str) or name not in self._table:
            raise ValueError(unknown_name_message(self.kind, name, self.names() if known is None else known))
        return self._table[name]

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        factory = self.get_factory(name)
        check_kwargs(self.kind, name, factory, kwargs)
        return factory(*args, **kwargs)


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
