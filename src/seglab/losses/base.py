"""The loss-module contract and composition.

A seglab loss is a plain function (the maths) plus an :class:`Loss` module that only holds configuration.
Modules compose: ``a + b`` and ``w * a`` build a :class:`CompositeLoss`, a weighted sum that reports the
value of each part after every call in ``last_parts``.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from seglab import _checks
from seglab.targets import Target, compute_dtype, prepare_target


def prologue(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    ignore_index: int | None,
    reduction: str,
    validate: bool | None,
    weights: dict[str, torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, Target, bool]:
    """Validate a loss call and return ``(logits in compute dtype, Target, validate_flag)``."""
    v = _checks.resolve(validate)
    _checks.check_mode(mode)
    _checks.check_reduction(reduction)
    _checks.check_logits(logits, mode, validate=v)
    for name, w in (weights or {}).items():
        _checks.check_weight(w, logits.shape[1], name)
    tgt = prepare_target(logits, target, mode, ignore_index=ignore_index, validate=v)
    return logits.to(compute_dtype(logits.dtype)), tgt, v


def to_device(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if w is None else w.to(device=like.device, dtype=like.dtype)


class Loss(nn.Module):
    """Base class of seglab losses: holds ``mode``, ``reduction`` and per-channel weights as buffers.

    Subclasses set ``name`` (the registry name) and implement :meth:`forward` by calling their plain
    function with :meth:`options`. ``fused_spec()`` tells the fused-kernel dispatcher what the loss is.
    """

    name: str = "loss"

    def __init__(self, mode: str, reduction: str = "mean") -> None:
        super().__init__()
        self.mode = _checks.check_mode(mode)
        self.reduction = _checks.check_reduction(reduction)

    def _weight(self, name: str, value: Any) -> None:
        self.register_buffer(name, _checks.as_weight(value, name))

    def options(self) -> dict[str, Any]:
        """The keyword arguments of this loss's plain function (configuration + buffers)."""
        raise NotImplementedError

    def fused_spec(self) -> tuple[str, dict[str, Any]] | None:
        return None

    def __add__(self, other: "Loss") -> "CompositeLoss":
        return CompositeLoss._terms_of(self) + CompositeLoss._terms_of(other)

    def __mul__(self, w: float) -> "CompositeLoss":
        if not isinstance(w, numbers.Real):
            return NotImplemented
        return CompositeLoss([(float(w) * tw, t) for tw, t in CompositeLoss._terms_of(self).terms])

    __rmul__ = __mul__

    def extra_repr(self) -> str:
        opts = {k: v for k, v in self.options().items() if not isinstance(v, torch.Tensor) or v.numel() < 9}
        return ", ".join(f"{k}={v.tolist() if isinstance(v, torch.Tensor) else v!r}" for k, v in opts.items() if v is not None)


class CompositeLoss(Loss):
    """Weighted sum ``sum_i w_i * loss_i(logits, target)`` of losses that share mode and inputs.

    Built by ``a + b``, ``0.5 * a`` or :func:`seglab.get_loss` (``"dice+ce"``). After each call,
    ``last_parts`` maps each part's name to its (detached, unweighted) value, e.g.
    ``{"dice": tensor(0.41), "ce": tensor(0.69)}``. Inputs are validated once for all parts.

    Example:
        >>> loss = DiceLoss("multiclass") + 0.5 * CrossEntropyLoss("multiclass")
        >>> value = loss(logits, target); loss.last_parts
    """

    name = "composite"

    def __init__(self, terms: list[tuple[float, Loss]]) -> None:
        if not terms:
            raise ValueError("a composite loss needs at least one term")
        modes = {t.mode for _, t in terms}
        if len(modes) != 1:
            raise ValueError(f"all parts of a composite loss must share one mode, got {sorted(modes)}")
        reductions = {t.reduction for _, t in terms}
        if reductions != {"mean"} and len(terms) > 1:
            raise ValueError(f"composite losses combine scalar losses (reduction='mean'), got {sorted(reductions)}")
        super().__init__(modes.pop(), terms[0][1].reduction)
        self.weights = [float(w) for w, _ in terms]
        self.parts = nn.ModuleList([t for _, t in terms])
        names: list[str] = []
        for t in self.parts:
            base, k = t.name, 2
            n = base
            while n in names:
                n, k = f"{base}{k}", k + 1
            names.append(n)
        self.part_names = names
        self.last_parts: dict[str, torch.Tensor] = {}

    @property
    def terms(self) -> list[tuple[float, Loss]]:
        return list(zip(self.weights, self.parts))

    @staticmethod
    def _terms_of(x: Loss) -> "CompositeLoss":
        if isinstance(x, CompositeLoss):
            return x
        if not isinstance(x, Loss):
            raise TypeError(f"can only combine seglab losses, got {type(x).__name__}")
        return CompositeLoss([(1.0, x)])

    def __add__(self, other: Loss) -> "CompositeLoss":
        return CompositeLoss(self.terms + CompositeLoss._terms_of(other).terms)

    def options(self) -> dict[str, Any]:
        return {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from seglab.kernels.dispatch import try_fused

        if _checks.validation_enabled():  # validate once for all parts
            ignore = self.parts[0].options().get("ignore_index")
            prologue(logits, target, self.mode, ignore_index=ignore, reduction="mean", validate=True)
        with _checks.validation(False):
            specs = [p.fused_spec() for p in self.parts]
            values = try_fused(specs, logits, target) if all(s is not None for s in specs) else None  # type: ignore[arg-type]
            if values is None:
                values = [p(logits, target) for p in self.parts]
        total = sum(w * v for w, v in zip(self.weights, values))
        self.last_parts = {n: v.detach() for n, v in zip(self.part_names, values)}
        return total  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for w, n in zip(self.weights, self.part_names))
