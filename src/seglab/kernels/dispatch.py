"""Entry point from the losses into the fused kernels: :func:`fused_stats`.

A loss (or a composite of losses sharing logits and target, e.g. Dice + CE) describes what it needs as a
:class:`~seglab.kernels.plan.StatsRequest`; :func:`fused_stats` returns the :class:`~seglab.kernels.plan.FusedStats`
computed by one call of the registered op ``torch.ops.seglab.fused_stats`` (see :mod:`seglab.kernels.ops`), or
None when no fused kernel applies — the caller then runs its reference code. The loss applies its own head to the
statistics. Nothing here knows what a Dice or a cross-entropy is, and nothing here checks user input: the losses
check everything before calling (the kernels still bounds-check the labels they read).

Backends: :mod:`seglab.kernels.cpu_ext` (C++ via ctypes; CPU, index-target multiclass and sigmoid modes),
:mod:`seglab.kernels.triton_backend` (Triton; CUDA, every kind, first choice there; triton is imported only when a
non-CPU tensor first asks) and :mod:`seglab.kernels.eager` (torch ops; CUDA where Triton does not run, and forced
with ``SEGLAB_FUSED_BACKEND``).
On CPU the eager backend is slower than the reference (measured 16x4x256x256 Dice+CE fwd+bwd, 2 cores:
reference 20.5 ms, eager 29.7 ms, C++ 9.1 ms), so it runs there only when forced: ``SEGLAB_FUSED_BACKEND=eager``
(everything eager) or ``=cpu`` (C++ where it applies, eager elsewhere).

Switch: ``with seglab.kernels.dispatch.fused(False):`` (context-local, like validation), ``set_fused(False)``
(current thread/task) or the environment variable ``SEGLAB_FUSED=0`` (the default of every context). The results
are the same either way, within floating-point rounding; only the speed differs.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from types import ModuleType
from typing import Any
from collections.abc import Callable, Iterator

import torch

from seglab.kernels import ops
from seglab.kernels.ops import KernelCfg  # noqa: F401  (re-exported for tests and backends)
from seglab.kernels.plan import FusedStats, KernelCall, StatsRequest

def assume_constant_result(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` when seglab is imported.

    torch's decorator imports ``torch._dynamo`` (about 1.9 s, most of ``import seglab``; issue 23) only to set the
    marker below, which dynamo reads when it traces a call of ``fn``: the function is then run at trace time and its
    result baked into the graph. ``tests/kernels/test_lazy_compile.py`` checks that torch's decorator still sets
    exactly this marker (and the compile tests that it takes effect).
    """
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


_FUSED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "seglab_fused", default=os.environ.get("SEGLAB_FUSED", "1").strip().lower() not in ("0", "false", "no", "off"))


def set_fused(enabled: bool) -> None:
    """Enable or disable the fused kernels in the current context (thread / task); the reference code runs when off."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    _FUSED.set(enabled)


@assume_constant_result
def fused_enabled() -> bool:
    """Whether the fused kernels may run in the current context (read once per trace under ``torch.compile``)."""
    return _FUSED.get()


@contextlib.contextmanager
def fused(enabled: bool) -> Iterator[None]:
    """Enable or disable the fused kernels inside a ``with`` block (current thread/task only)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    token = _FUSED.set(enabled)
    try:
        yield
    finally:
        _FUSED.reset(token)


_CPU: list[ModuleType] = []  # the cpu_ext module once imported (backend_name runs on every call)
_TRITON: list[ModuleType] = []  # the triton_backend module once imported (it imports triton only when first asked)


@assume_constant_result
def _triton_runs(device_type: str, dtype: torch.dtype, channels: int) -> bool:
    """Whether the Triton kernels run for such logits (evaluated once per trace under ``torch.compile``: it may
    import triton, which dynamo cannot trace)."""
    if not _TRITON:
        _TRITON.append(ops.backend_module("triton"))
    return bool(_TRITON[0].runs_on(device_type, dtype, channels))


def backend_name(x: torch.Tensor, kind: str) -> str | None:
    """The backend (``"cpu"``, ``"triton"`` or ``"eager"``) that runs ``kind`` (``"mc"``, ``"mcd"``, ``"ml"``) for
    logits ``x``, or None (the reference path).

    CPU: C++ (``"cpu"``) for ``mc``/``ml``, else the reference. Other devices (CUDA): Triton when
    :func:`seglab.kernels.triton_backend.supports` the logits, else eager. ``SEGLAB_FUSED_BACKEND=eager`` forces
    eager everywhere; ``=triton`` forces Triton where it runs (CUDA, or CPU tensors under ``TRITON_INTERPRET=1``) and
    eager elsewhere; ``=cpu`` forces C++ where it applies and eager elsewhere.
    """
    forced = os.environ.get("SEGLAB_FUSED_BACKEND")
    forced = forced.strip().lower() if forced else ""
    if forced == "eager":
        return "eager"
    if x.device.type != "cpu" or forced == "triton":
        ok = forced != "cpu" and _triton_runs(x.device.type, x.dtype, x.shape[1] if x.ndim >= 2 else 0)
        return "triton" if ok else "eager"
    if kind in ("mc", "ml") and _cpu_available():
        return "cpu"
    return "eager" if forced == "cpu" else None


@assume_constant_result
def _cpu_available() -> bool:
    """Whether the C++ kernels are built and loaded (evaluated once per trace under ``torch.compile``: the first call
    builds or loads the library under a ``threading.Lock``, which dynamo cannot trace — a compiled loss called before
    any eager call failed with "Unsupported context manager: lock")."""
    if not _CPU:
        _CPU.append(ops.backend_module("cpu"))
    return bool(_CPU[0].available())


def backend_for(x: torch.Tensor, kind: str) -> ModuleType | None:
    """The backend module for ``kind`` and logits ``x`` (see :func:`backend_name`), or None for the reference path."""
    name = backend_name(x, kind)
    return None if name is None else ops.backend_module(name)


_DEFAULTS: dict[tuple[int, str, float], torch.Tensor] = {}


def _weight(v: torch.Tensor | None, c: int, like: torch.Tensor, default: float = 1.0) -> torch.Tensor:
    if v is None:  # one cached read-only tensor per (C, device, value): not rebuilt on every call
        key = (c, str(like.device), default)
        w = _DEFAULTS.get(key)
        if w is None:
            w = _DEFAULTS[key] = torch.full((c,), default, dtype=torch.float64, device=like.device)
        return w
    return v.detach().to(device=like.device, dtype=torch.float64).expand(c)


def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached 0-dim constant (the pixel count of an index target without ignore_index): not rebuilt per call."""
    key = (value, dtype, device)
    v = _CONSTANTS.get(key)
    if v is None:
        if len(_CONSTANTS) > 256:
            _CONSTANTS.clear()
        v = _CONSTANTS[key] = torch.full((), value, dtype=dtype, device=device)
    return v


_CONSTANTS: dict[tuple[float, torch.dtype, torch.device], torch.Tensor] = {}


def fused_stats(req: StatsRequest, logits: torch.Tensor, target: torch.Tensor) -> FusedStats | None:
    """The statistics ``req`` asks for, from one fused kernel call; None when no fused kernel applies.

    Expects checked inputs (the losses validate before calling); declines (None) rather than raising on what it
    does not cover: empty tensors, a target that requires grad, shapes it does not recognise, sigmoid modes with
    label smoothing or multiclass with ``pos_weight``.
    """
    if not fused_enabled():
        return None
    if logits.numel() == 0 or logits.ndim < 2 or target.requires_grad or target.device != logits.device:
        return None
    n, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    valid = None
    if req.mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool:
        t = target[:, 0] if (target.ndim == logits.ndim and target.shape[1] == 1) else target
        if t.ndim != logits.ndim - 1 or t.shape[0] != n or t.shape[1:] != logits.shape[2:]:
            return None
        tgt = t.reshape(n, -1)
        if tgt.dtype != torch.int64:
            tgt = tgt.long()
        kind, tgt = "mc", tgt if tgt.is_contiguous() else tgt.contiguous()
    else:
        y = target.unsqueeze(1) if (req.mode == "binary" and target.ndim == logits.ndim - 1) else target
        if tuple(y.shape) != tuple(logits.shape) or y.dtype == torch.bool and req.mode == "multiclass":
            return None
        y = y.to(torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype)
        if req.mode == "multiclass":
            kind = "mcd"
            if req.ignore_index is not None:  # no data-dependent branch: an all-True mask is fine
                ign = (y == req.ignore_index).any(1)
                valid = ~ign
                y = y.masked_fill(ign.unsqueeze(1), 0.0)
        else:
            kind = "ml"
        tgt = y
    if (req.label_smoothing and kind == "ml") or (req.pos_weight is not None and req.mode == "multiclass"):
        return None
    backend = backend_name(logits, kind)
    if backend is None:
        return None
    ones = _weight(None, c, logits)
    alpha = ones if req.focal_alpha is None else _weight(req.focal_alpha, c, logits)
    alpha_neg = 1.0 - alpha if (req.focal_alpha is not None and kind == "ml") else ones
    call = KernelCall(x=logits, target=tgt, valid=valid,
                      weight=ones if req.ce_weight is None else _weight(req.ce_weight, c, logits),
                      pos_weight=ones if req.pos_weight is None else _weight(req.pos_weight, c, logits),
                      alpha=alpha, alpha_neg=alpha_neg, kind=kind, backend=backend,
                      ignore_index=None if kind == "mcd" else req.ignore_index, squared=req.squared,
                      label_smoothing=float(req.label_smoothing), focal=req.focal,
                      gamma=float(req.gamma) if req.focal else 0.0)
    cd = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    if torch.compiler.is_compiling():  # the registered op (packed float64 outputs)
        stats64, scal64 = ops.call_op(call)
        stats, scal = stats64.to(cd), scal64.to(cd)
        parts = list(stats.unbind(1)) + list(scal.unbind(0))
    else:  # the same implementation without the op's dispatch cost, fields returned separately (see ops)
        parts = ops.FusedStatsFunction.apply(logits, call)
    k = 3 if kind == "mc" else 4
    tp, ps, ys = parts[:3]
    s_ce, s_norm, s_smooth, s_focal = parts[k:]
    if kind == "mc":
        eps = float(req.label_smoothing)
        ce_sum = (1 - eps) * s_ce + (eps / c) * s_smooth if eps else s_ce
        count = ys.detach().sum() if req.ignore_index is not None else _constant(
            float(n * math.prod(spatial)), cd, logits.device)
        return FusedStats("index", tp, ps, ys, None, ce_sum, s_norm, s_focal, count)
    count = s_norm.detach()
    return FusedStats("dense" if kind == "mcd" else "sigmoid", tp, ps, ys, parts[3], s_ce, count, s_focal, count)
