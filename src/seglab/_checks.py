"""Input validation for the public entry points: shapes, dtypes and value ranges.

Every error says what was expected and what came. Checks that scan tensor values (ranges, finiteness,
channel sums) cost a pass over the data; turn them off with ``seglab.set_validation(False)`` or
``validate=False`` on a call once the pipeline is known to be right.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

MODES = ("binary", "multiclass", "multilabel")
REDUCTIONS = ("mean", "sum", "none")

_VALIDATE = True


def set_validation(enabled: bool) -> None:
    """Globally enable/disable the value checks (range, finiteness, channel sums) of every loss."""
    global _VALIDATE
    _VALIDATE = bool(enabled)


def validation_enabled() -> bool:
    return _VALIDATE


@contextlib.contextmanager
def validation(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_validation`."""
    global _VALIDATE
    old, _VALIDATE = _VALIDATE, bool(enabled)
    try:
        yield
    finally:
        _VALIDATE = old


def resolve(validate: bool | None) -> bool:
    return _VALIDATE if validate is None else bool(validate)


def check_mode(mode: str) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_logits(logits: torch.Tensor, mode: str, *, validate: bool) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor (raw network outputs), got dtype {logits.dtype}")
    if not 2 <= logits.ndim <= 5:
        raise ValueError(
            f"logits must have shape (N, C, *spatial) with 0 to 3 spatial dims (2 to 5 dims in all), "
            f"got {logits.ndim} dims with shape {_shape(logits)}"
        )
    if mode == "binary" and logits.shape[1] != 1:
        raise ValueError(
            f"binary mode expects logits with C == 1 channel, got shape {_shape(logits)} (C={logits.shape[1]}); "
            f"use mode='multiclass' for C mutually exclusive classes or mode='multilabel' for C independent channels"
        )
    if mode == "multiclass" and logits.shape[1] < 2:
        raise ValueError(
            f"multiclass mode needs at least 2 channels (softmax over C), got shape {_shape(logits)}; "
            f"for a single foreground channel use mode='binary'"
        )
    # one cheap read pass (measured 0.26 ms vs 9 ms for isfinite().all() on 16x4x256x256): NaN/inf propagate
    # into the sum; only a non-finite sum (or a finite-value overflow, then not an error) pays for the exact count
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    if validate and logits.numel() and not bool(torch.isfinite(logits.sum(dtype=acc))):
        n_bad = int((~torch.isfinite(logits)).sum())
        if n_bad:
            raise ValueError(f"logits contain {n_bad} non-finite values (NaN or inf); the network or its input diverged")


def check_weight(weight: torch.Tensor | None, num_channels: int, name: str) -> None:
    if weight is None:
        return
    if weight.ndim != 1 or weight.shape[0] != num_channels:
        raise ValueError(
            f"{name} must be a 1-D tensor with one entry per channel (length {num_channels}), got shape {_shape(weight)}"
        )
    _check_weight_values(weight, name)


def _check_weight_values(w: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative, got {w.tolist()}")


def as_weight(value, name: str) -> torch.Tensor | None:
    """Turn a user-given per-channel weight (sequence or tensor) into a float 1-D tensor."""
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per channel), got shape {_shape(t)}")
    _check_weight_values(t, name)
    return t
