"""The fused statistics as a registered ``torch.library`` custom op: ``torch.ops.seglab.fused_stats``.

One op computes, for logits and a target, the statistics of :mod:`seglab.kernels.plan` (activation once, one
sweep); its gradient is a second op, ``torch.ops.seglab.fused_stats_backward``, that writes ``d/d logits`` in one
pass from the gradients of all statistics. Both have fake (meta) implementations, so ``torch.compile`` traces a
seglab loss without a graph break and ``torch.library.opcheck`` can check the registration.

``backend`` names the module that runs the kernels: ``"cpu"`` (C++, :mod:`seglab.kernels.cpu_ext`) or
``"eager"`` (torch ops, any device, :mod:`seglab.kernels.eager`). ``kind``: ``"mc"`` (multiclass, index target
``(N, S)`` int64), ``"mcd"`` (multiclass, dense target ``(N, C, S)`` with optional ``valid`` ``(N, S)``) or ``"ml"``
(sigmoid, dense target ``(N, C, S)``). Outputs: ``stats`` ``(N, K, C)`` float64 (K = 3 for ``mc``: tp, ps, ys;
4 otherwise: + sum |p - y|) and ``scal`` ``(4,)`` float64 (see the backends' docstrings).
"""

# no `from __future__ import annotations`: torch.library infers the op schema from these annotations
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from seglab.kernels.plan import KernelCall


@dataclass
class KernelCfg:
    """The scalar configuration the backend functions read; weights are ``(C,)`` float64 tensors."""

    ignore_index: Any
    squared: bool
    weight: Tensor
    alpha: Tensor
    alpha_neg: Tensor
    pos_weight: Tensor
    label_smoothing: float = 0.0
    focal: bool = False
    gamma: float = 0.0

    @property
    def smoothing(self) -> bool:
        return self.label_smoothing > 0


def backend_module(name: str) -> ModuleType:
    if name == "cpu":
        from seglab.kernels import cpu_ext

        return cpu_ext
    if name == "eager":
        from seglab.kernels import eager

        return eager
    if name == "triton":
        from seglab.kernels import triton_backend

        return triton_backend
    raise ValueError(f"unknown kernel backend {name!r}; expected 'cpu', 'eager' or 'triton'")


def kernel_cfg(call: KernelCall) -> KernelCfg:
    """The configuration the backend functions read, from a call."""
    return KernelCfg(ignore_index=call.ignore_index, squared=call.squared, weight=call.weight, alpha=call.alpha,
                     alpha_neg=call.alpha_neg, pos_weight=call.pos_weight, label_smoothing=call.label_smoothing,
                     focal=call.focal, gamma=call.gamma)


def op_args(call: KernelCall) -> tuple:
    """``call`` as the op's positional arguments: the one place a :class:`~seglab.kernels.plan.KernelCall` meets
    the op's schema (``tests/kernels/test_kernels.py`` checks the order against the registered schema)."""
    return (call.x, call.target, call.valid, call.weight, call.pos_weight, call.alpha, call.alpha_neg, call.kind,
            call.backend, call.ignore_index, call.squared, call.label_smoothing, call.focal, call.gamma)


def call_op(call: KernelCall) -> tuple[Tensor, Tensor]:
    """The registered op on ``call``: ``(stats (N, K, C), scal (4,))`` float64 (the path under ``torch.compile``)."""
    return torch.ops.seglab.fused_stats(*op_args(call))


def _call_of(x: Tensor, target: Tensor, valid: Tensor | None, weight: Tensor, pos_weight: Tensor, alpha: Tensor,
             alpha_neg: Tensor, kind: str, backend: str, ignore_index: int | None, squared: bool,
             label_smoothing: float, focal: bool, gamma: float) -> KernelCall:
    """The op's arguments (as its implementations receive them) back as a call, by name."""
    return KernelCall(x=x, target=target, valid=valid, weight=weight, pos_weight=pos_weight, alpha=alpha,
                      alpha_neg=alpha_neg, kind=kind, backend=backend, ignore_index=ignore_index, squared=squared,
                      label_smoothing=label_smoothing, focal=focal, gamma=gamma)


_FNS: dict = {}


def _backend_fn(backend: str, kind: str, what: str):
    """``<kind>_<what>`` of the backend module, looked up once (attribute patches on the module are honoured:
    the cache holds the module, the function is read from it on each call)."""
    mod = _FNS.get(backend)
    if mod is None:
        mod = _FNS[backend] = backend_module(backend)
    return getattr(mod, f"{kind}_{what}")


def _targets(call: KernelCall) -> tuple:
    return (call.target, call.valid) if call.kind == "mcd" else (call.target,)


def forward_impl(call: KernelCall) -> tuple[Tensor, Tensor]:
    """The statistics (see the module docstring): the one implementation behind the op and :class:`FusedStatsFunction`."""
    x = call.x
    stats, scal = _backend_fn(call.backend, call.kind, "forward")(x, *_targets(call), kernel_cfg(call))
    if stats.device != x.device:
        stats, scal = stats.to(x.device), scal.to(x.device)
    return stats, scal


def backward_impl(call: KernelCall, g_stats: Tensor, g_scal: Tensor) -> Tensor:
    """``d loss / d x`` from the gradients of the statistics, in one pass (the activation is recomputed)."""
    x = call.x
    bwd = _backend_fn(call.backend, call.kind, "backward")
    gx = bwd(x, *_targets(call), kernel_cfg(call), g_stats.contiguous(), g_scal.contiguous())
    gx = gx.to(device=x.device, dtype=x.dtype)
    return gx if gx.shape == x.shape else gx.reshape(x.shape)


@torch.library.custom_op("seglab::fused_stats", mutates_args=())
def fused_stats(
    x: Tensor, target: Tensor, valid: Tensor | None, weight: Tensor, pos_weight: Tensor, alpha: Tensor,
    alpha_neg: Tensor, kind: str, backend: str, ignore_index: int | None, squared: bool, label_smoothing: float,
    focal: bool, gamma: float,
) -> tuple[Tensor, Tensor]:
    return forward_impl(_call_of(x, target, valid, weight, pos_weight, alpha, alpha_neg, kind, backend, ignore_index,
                                 squared, label_smoothing, focal, gamma))


@fused_stats.register_fake
def _(x, target, valid, weight, pos_weight, alpha, alpha_neg, kind, backend, ignore_index, squared, label_smoothing,
      focal, gamma):
    k = 3 if kind == "mc" else 4
    return (x.new_empty((x.shape[0], k, x.shape[1]), dtype=torch.float64), x.new_empty((4,), dtype=torch.float64))


@torch.library.custom_op("seglab::fused_stats_backward", mutates_args=())
def fused_stats_backward(
    x: Tensor, target: Tensor, valid: Tensor | None, weight: Tensor, pos_weight: Tensor, alpha: Tensor,
    alpha_neg: Tensor, kind: str, backend: str, ignore_index: int | None, squared: bool, label_smoothing: float,
    focal: bool, gamma: float, g_stats: Tensor, g_scal: Tensor,
) -> Tensor:
    call = _call_of(x, target, valid, weight, pos_weight, alpha, alpha_neg, kind, backend, ignore_index, squared,
                    label_smoothing, focal, gamma)
    gx = backward_impl(call, g_stats, g_scal)
    return gx if gx.data_ptr() != x.data_ptr() else gx.clone()


@fused_stats_backward.register_fake
def _(x, target, valid, weight, pos_weight, alpha, alpha_neg, kind, backend, ignore_index, squared, label_smoothing,
      focal, gamma, g_stats, g_scal):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    call = _call_of(*inputs)
    ctx.save_for_backward(call.x, call.target, call.valid, call.weight, call.pos_weight, call.alpha, call.alpha_neg)
    ctx.call = call
    ctx.n_inputs = len(inputs)


def _backward(ctx, g_stats, g_scal):
    x, target, valid, weight, pos_weight, alpha, alpha_neg = ctx.saved_tensors
    call = replace(ctx.call, x=x, target=target, valid=valid, weight=weight, pos_weight=pos_weight, alpha=alpha,
                   alpha_neg=alpha_neg)
    if g_stats is None:
        g_stats = x.new_zeros((x.shape[0], call.stat_rows, x.shape[1]), dtype=torch.float64)
    if g_scal is None:
        g_scal = x.new_zeros((4,), dtype=torch.float64)
    gx = fused_stats_backward(*op_args(call), g_stats, g_scal)
    return (gx,) + (None,) * (ctx.n_inputs - 1)


fused_stats.register_autograd(_backward, setup_context=_setup_context)


class FusedStatsFunction(torch.autograd.Function):
    """The same computation as the op for eager calls, without the op's per-call dispatch cost (about 0.2 ms,
    measured with cProfile at 2x2x32x32: ``torch._library`` argument handling on every forward and backward).
    Under ``torch.compile`` the dispatcher uses the op; the numbers are identical (same implementation).
    Called through the public ``Function.apply``: calling torch's C++ ``apply`` directly (``torch._C`` internals)
    saved nothing distinguishable from noise (paired medians -0.03 to +0.34 ms per 1.4-2.6 ms Dice+CE fwd+bwd,
    IQRs 0.6-2 ms, over two runs on a shared 2-core machine; ``benchmarks/bench_fast_apply.py`` / ``.json``), so it
    is not done.

    ``apply(call.x, call)`` (a :class:`~seglab.kernels.plan.KernelCall`; the logits are passed on their own so that
    autograd tracks them) returns the statistics as separate tensors in the compute dtype (``x.dtype``; float32 for
    half inputs): ``stats[:, 0], ..., stats[:, K-1], scal[0], ..., scal[3]`` — what :func:`dispatch.fused_stats`
    uses, because slicing and converting the op's two packed float64 outputs costs ~15 small autograd ops per call
    (measured ~0.1 ms of a 2x2x32x32 fwd+bwd). ``stats[:, 2]`` (sum y) and ``scal[1]`` (the CE / count
    denominator) do not depend on the logits and are marked non-differentiable there. Only the logits get a
    gradient: the target and the weights are constants of the call (:func:`dispatch.fused_stats` declines a target
    that requires grad and detaches the weights).
    """

    @staticmethod
    def forward(ctx, x: Tensor, call: KernelCall):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        ctx.call = call
        if call.kind == "mc" and call.backend == "cpu":
            # the C++ kernel writes the fields in the compute dtype itself (no conversions, no unbind of copies);
            # the weights travel in ctx.cfg (detached constants), only x and target are saved
            ctx.save_for_backward(x, call.target)
            cfg = ctx.cfg = kernel_cfg(call)
            parts = _backend_fn("cpu", "mc", "forward")(x, call.target, cfg, True)
            ctx.mark_non_differentiable(parts[2], parts[4])
            return parts
        ctx.cfg = None
        ctx.save_for_backward(x, call.target, call.valid, call.weight, call.pos_weight, call.alpha, call.alpha_neg)
        stats, scal = forward_impl(call)
        cd = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        parts = stats.to(cd).unbind(1) + scal.to(cd).unbind(0)
        ctx.mark_non_differentiable(parts[2], parts[len(parts) - 3])
        return parts

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # type: ignore[override]
        if ctx.cfg is not None:  # C++ multiclass: the kernel reads the gradients as they come
            x, target = ctx.saved_tensors
            g_scal = [0.0 if g is None else g.item() for g in grads[3:]]
            gx = _backend_fn("cpu", "mc", "backward_split")(x, target, ctx.cfg, grads[0], grads[1], g_scal)
            return gx, None
        x, target, valid, weight, pos_weight, alpha, alpha_neg = ctx.saved_tensors
        call = replace(ctx.call, x=x, target=target, valid=valid, weight=weight, pos_weight=pos_weight, alpha=alpha,
                       alpha_neg=alpha_neg)
        k = call.stat_rows
        g_stats = _pack(grads[:k], (x.shape[0], x.shape[1]), x, 1)
        g_scal = _pack(grads[k:], (), x, 0)
        return backward_impl(call, g_stats, g_scal), None


def _pack(grads, shape, like: Tensor, dim: int) -> Tensor:
    """Per-field gradients as one float64 tensor (None = 0, as autograd passes with ``set_materialize_grads(False)``)."""
    if dim == 0 and like.device.type == "cpu":  # the 4 scalars: read on the host (cheaper than stacking tensors)
        return torch.tensor([0.0 if g is None else g.item() for g in grads], dtype=torch.float64)
    parts = list(grads)
    if any(g is None for g in parts):
        dt = next((g.dtype for g in parts if g is not None), torch.float64)
        key = (tuple(shape), dt, str(like.device))
        zero = _ZEROS.get(key)
        if zero is None:
            if len(_ZEROS) > 256:
                _ZEROS.clear()
            zero = _ZEROS[key] = torch.zeros(shape, dtype=dt, device=like.device)
        parts = [zero if g is None else g for g in parts]
    out = torch.stack(parts, dim)
    return out if out.dtype == torch.float64 else out.to(torch.float64)


_ZEROS: dict = {}
