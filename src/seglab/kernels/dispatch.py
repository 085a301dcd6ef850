"""Entry point from the losses into the fused kernels.

``try_fused(parts, logits, target)`` receives the resolved configuration of one or more loss terms that
share the same logits/target (e.g. Dice + CE), as ``[(name, params), ...]`` with ``name`` one of
``"ce", "focal", "dice", "gdice", "tversky", "jaccard"`` and ``params`` the term's keyword arguments
(``mode``, ``reduction``, weights, ...). It returns one loss tensor per part, in order, computed by a
fused kernel, or ``None`` when no fused kernel applies; the caller then runs the reference code.

How it is split:

* one ``torch.autograd.Function`` (:class:`_FusedStats`) runs a *backend* kernel that computes the activation
  once and, in one sweep, the per-(sample, class) statistics (tp, sum p, sum y, sum |p - y|) and the sums of
  the pixel-wise losses (CE, label-smoothing term, focal). Its backward receives the gradients of all those
  outputs and writes ``d loss / d logits`` in one pass (activation recomputed, nothing saved but the inputs);
* the loss *heads* (Dice / Jaccard / Tversky / generalized Dice from the statistics, means over pixels) are
  ordinary autograd code on ``(N, C)`` tensors, written as in ``seglab.losses`` (same helpers).

Backends (same functions, one module each): :mod:`seglab.kernels.cpu_ext` (C++ via ctypes; CPU, float32/64,
half inputs upcast) and :mod:`seglab.kernels.eager` (torch ops; any device, e.g. CUDA, and the fallback
when no compiler exists). ``SEGLAB_FUSED_BACKEND=eager|cpu`` forces one (tests, benchmarks).

Switch: ``set_fused(False)`` or the environment variable ``SEGLAB_FUSED=0`` disables the fused path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.autograd.function import once_differentiable

from seglab.kernels import eager

_ENABLED = os.environ.get("SEGLAB_FUSED", "1").strip().lower() not in ("0", "false", "no", "off")
REGION = ("dice", "gdice", "tversky", "jaccard")
PIXEL = ("ce", "focal")


def set_fused(enabled: bool) -> None:
    """Enable or disable the fused kernels globally (the reference implementations run when disabled)."""
    global _ENABLED
    _ENABLED = bool(enabled)


def fused_enabled() -> bool:
    return _ENABLED


@contextlib.contextmanager
def fused(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_fused`."""
    global _ENABLED
    old, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = old


@dataclass
class KernelCfg:
    """What the kernels need; weights are (C,) tensors (ones when absent)."""

    ignore_index: Any
    squared: bool
    weight: torch.Tensor
    alpha: torch.Tensor
    alpha_neg: torch.Tensor
    pos_weight: torch.Tensor
    label_smoothing: float = 0.0
    focal: bool = False
    gamma: float = 0.0

    @property
    def smoothing(self) -> bool:
        return self.label_smoothing > 0


class _NotApplicable(Exception):
    pass


def backend_for(x: torch.Tensor, kind: str):
    """The backend module that runs ``kind`` ("mc", "mcd", "ml") for logits ``x``, or None for the reference.

    CPU: the C++ kernel where it applies. The eager torch backend is *slower* than the reference on CPU
    (measured, 16x4x256x256 Dice+CE fwd+bwd, 2 cores: reference 20.5 ms, eager 29.7 ms, C++ 9.1 ms), so on CPU
    it runs only when forced with ``SEGLAB_FUSED_BACKEND=eager`` (or ``=cpu``, for what C++ does not cover);
    otherwise the reference path runs. Other
    devices (CUDA): the eager backend (one activation pass, no autograd intermediates).
    """
    forced = os.environ.get("SEGLAB_FUSED_BACKEND", "").strip().lower()
    if forced == "eager":
        return eager
    if x.device.type != "cpu":
        return eager
    if kind in ("mc", "ml") and x.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        from seglab.kernels import cpu_ext

        if cpu_ext.available():
            return cpu_ext
    # SEGLAB_FUSED_BACKEND=cpu asks for the fused path wherever it exists: eager for what C++ does not cover
    return eager if forced == "cpu" else None


class _FusedStats(torch.autograd.Function):
    """(logits, target) -> (stats (N, K, C) float64, scalars (4,) float64), hand-written backward."""

    @staticmethod
    def forward(ctx, x, backend, kind, cfg, *tgt):  # type: ignore[override]
        stats, scal = getattr(backend, f"{kind}_forward")(x.detach(), *tgt, cfg)
        ctx.save_for_backward(x)
        ctx.meta = (backend, kind, cfg, tgt)
        return stats, scal

    @staticmethod
    @once_differentiable
    def backward(ctx, g_stats, g_scal):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        backend, kind, cfg, tgt = ctx.meta
        gx = getattr(backend, f"{kind}_backward")(x, *tgt, cfg, g_stats.contiguous(), g_scal.contiguous())
        return (gx, None, None, None) + (None,) * len(tgt)


def _weight(v, C: int, like: torch.Tensor, default: float = 1.0) -> torch.Tensor:
    if v is None:
        return torch.full((C,), default, dtype=torch.float64, device=like.device)
    v = torch.as_tensor(v).to(device=like.device, dtype=torch.float64)
    if v.ndim == 0:
        v = v.expand(C)
    if v.shape != (C,):
        raise _NotApplicable
    return v


def _plan(parts, logits: torch.Tensor, target: torch.Tensor):
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise _NotApplicable
    if not logits.is_floating_point() or logits.ndim < 2 or logits.numel() == 0 or target.device != logits.device:
        raise _NotApplicable
    names = [n for n, _ in parts]
    if any(n not in REGION + PIXEL for n in names) or names.count("ce") > 1 or names.count("focal") > 1:
        raise _NotApplicable
    modes = {p.get("mode") for _, p in parts}
    if len(modes) != 1:
        raise _NotApplicable
    mode = modes.pop()
    if mode not in ("multiclass", "multilabel", "binary"):
        raise _NotApplicable
    for _, p in parts:
        if p.get("reduction", "mean") not in ("mean", "sum") or p.get("process_group") is not None:
            raise _NotApplicable
    ignores = {p.get("ignore_index") for _, p in parts}
    if len(ignores) != 1:
        raise _NotApplicable
    ignore = ignores.pop()
    squared = {bool(p.get("squared", False)) for n, p in parts if n in REGION}
    if len(squared) > 1:
        raise _NotApplicable
    squared_flag = squared.pop() if squared else False

    N, C = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    # ---- target ----
    if mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool:
        t = target[:, 0] if (target.ndim == logits.ndim and target.shape[1] == 1) else target
        if tuple(t.shape) != (N, *spatial):
            raise _NotApplicable
        kind, tgt = "mc", (t.reshape(N, -1).long().contiguous(),)
    else:
        y = target.unsqueeze(1) if (mode == "binary" and target.ndim == logits.ndim - 1) else target
        if tuple(y.shape) != tuple(logits.shape) or (mode == "multiclass" and y.dtype == torch.bool):
            raise _NotApplicable
        cd = eager._cd(logits)
        y = y.to(cd)
        if mode == "multiclass":
            valid = None
            if ignore is not None:
                ign = (y == ignore).any(1)
                if bool(ign.any()):
                    valid = ~ign
                    y = y.masked_fill(ign.unsqueeze(1), 0.0)
            kind, tgt = "mcd", (y, valid)
        else:
            kind, tgt = "ml", (y,)
    # ---- kernel configuration ----
    pp = dict(parts)
    ce, fo = pp.get("ce"), pp.get("focal")
    cfg = KernelCfg(
        ignore_index=None if kind == "mcd" else ignore,
        squared=squared_flag,
        weight=_weight(ce.get("class_weights") if ce else None, C, logits),
        pos_weight=_weight(ce.get("pos_weight") if ce else None, C, logits),
        alpha=_weight(None, C, logits),
        alpha_neg=_weight(None, C, logits),
    )
    if ce is not None:
        eps = float(ce.get("label_smoothing", 0.0) or 0.0)
        if eps and mode != "multiclass":
            raise _NotApplicable
        if mode == "multiclass" and ce.get("pos_weight") is not None:
            raise _NotApplicable
        cfg.label_smoothing = eps
    if fo is not None:
        cfg.focal = True
        cfg.gamma = float(fo.get("gamma", 2.0))
        a = fo.get("alpha")
        if a is not None:
            cfg.alpha = _weight(a, C, logits)
            if mode != "multiclass":
                cfg.alpha_neg = 1.0 - cfg.alpha
    return mode, kind, tgt, cfg


def try_fused(parts: list[tuple[str, dict[str, Any]]], logits: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor] | None:
    if not _ENABLED or not parts:
        return None
    try:
        mode, kind, tgt, cfg = _plan(parts, logits, target)
    except _NotApplicable:
        return None
    backend = backend_for(logits, kind)
    if backend is None:
        return None
    stats64, scal64 = _FusedStats.apply(logits, backend, kind, cfg, *tgt)
    cd = eager._cd(logits)
    stats, scal = stats64.to(cd), scal64.to(cd)
    N, C = logits.shape[:2]
    S = logits[0, 0].numel()
    if kind == "mc":
        count = (stats64[:, 2].detach().sum() if cfg.ignore_index is not None else stats64.new_tensor(float(N * S))).to(cd)
    else:
        count = scal[1].detach()
    return [_head(name, p, mode, kind, stats, scal, count, C) for name, p in parts]


def _head(name, p, mode, kind, stats, scal, count, C):
    from seglab.losses._stats import Stats, drop_background
    from seglab.losses.dice import dice_head
    from seglab.losses.generalized_dice import generalized_dice_head
    from seglab.losses.jaccard import jaccard_head
    from seglab.losses.tversky import tversky_head

    red = p.get("reduction", "mean")
    tiny = torch.finfo(stats.dtype).tiny
    if name == "ce":
        if kind == "mc":
            eps = float(p.get("label_smoothing", 0.0) or 0.0)
            total = (1 - eps) * scal[0] + (eps / C) * scal[2] if eps else scal[0]
            return total if red == "sum" else total / scal[1].clamp_min(tiny)
        return scal[0] if red == "sum" else scal[0] / count.clamp_min(tiny)
    if name == "focal":
        return scal[3] if red == "sum" else scal[3] / count.clamp_min(tiny)
    # region losses
    tp, ps, ys = stats[:, 0], stats[:, 1], stats[:, 2]
    squared = bool(p.get("squared", False))
    if kind != "mc" and p.get("soft_targets", "semimetric") == "semimetric" and not squared:
        tp = 0.5 * (ps + ys - stats[:, 3])
    if p.get("batch", False):
        tp, ps, ys = tp.sum(0), ps.sum(0), ys.sum(0)
    st = Stats(tp, ps, ys)
    cw = p.get("class_weights")
    cw = None if cw is None else cw.to(device=stats.device, dtype=stats.dtype)
    st, w = drop_background(st, cw, bool(p.get("include_background", True)), mode)
    smooth = float(p.get("smooth", 1e-5))
    if name == "dice":
        return dice_head(st, w, smooth=smooth, log=bool(p.get("log", False)), reduction=red)
    if name == "jaccard":
        return jaccard_head(st, w, smooth=smooth, reduction=red)
    if name == "tversky":
        return tversky_head(st, w, alpha=float(p.get("alpha", 0.5)), beta=float(p.get("beta", 0.5)),
                            gamma=float(p.get("gamma", 1.0)), smooth=smooth, reduction=red)
    return generalized_dice_head(st, weighting=p.get("weighting", "square"), smooth=smooth, reduction=red)
