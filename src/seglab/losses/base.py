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
from seglab._registry import Registry
from seglab.losses._pipeline import Term, run_terms
from seglab.targets import Target, compute_dtype, prepare_target


def prologue(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    ignore_index: int | None,
    reduction: str,
    validate: bool | None,
) -> tuple[torch.Tensor, Target, bool]:
    """Validate a loss call outside the shared pipeline (Lovász) and return
    ``(logits in compute dtype, Target, validate_flag)``."""
    v = _checks.resolve(validate)
    _checks.check_mode(mode)
    _checks.check_reduction(reduction)
    _checks.check_logits(logits, mode, validate=v)
    tgt = prepare_target(logits, target, mode, ignore_index=ignore_index, validate=v)
    return logits.to(compute_dtype(logits.dtype)), tgt, v


#: the base losses by name (``@LOSSES.register("dice")`` where each loss is defined); the vocabulary in
#: :mod:`seglab.losses.registry` adds aliases and presets on top
LOSSES: Registry[type["Loss"]] = Registry("loss")


def to_device(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if w is None else w.to(device=like.device, dtype=like.dtype)


class Loss(nn.Module):
    """Base class of seglab losses: a module that only holds configuration.

    Subclasses set ``name`` (the registry name) and, for losses that run through the shared pipeline, ``term``
    (a :class:`~seglab.losses._pipeline.Term`); their constructor checks its options with the same function
    the plain function uses and stores them with :meth:`_configure` (tensors become buffers, so ``.to()`` moves
    them). ``forward`` is one call into the pipeline with the stored options.
    """

    name: str = "loss"
    term: Term | None = None

    def __init__(self, mode: str, reduction: str = "mean") -> None:
        super().__init__()
        self.mode = _checks.check_mode(mode)
        self.reduction = _checks.check_reduction(reduction)
        self._option_names: list[str] = []

    def _configure(self, options: dict[str, Any]) -> None:
        """Store checked options: tensors (or None weights) as buffers, the rest as attributes."""
        for k, v in options.items():
            if isinstance(v, torch.Tensor) or (v is None and k.endswith(("weights", "weight", "alpha"))):
                self.register_buffer(k, v)
            else:
                setattr(self, k, v)
        self._option_names = list(options)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of this loss's plain function (configuration + buffers)."""
        return {k: getattr(self, k) for k in self._option_names}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.term is None:
            raise NotImplementedError(f"{type(self).__name__} must define forward or term")
        return run_terms([(self.term, self.options())], logits, target, validate=None)[0]

    def __add__(self, other: "Loss") -> "CompositeLoss":
        return CompositeLoss._terms_of(self) + CompositeLoss._terms_of(other)

    def __mul__(self, w: float) -> "CompositeLoss":
        if not isinstance(w, numbers.Real) or isinstance(w, bool):
            return NotImplemented
        w = _checks.check_number("loss weight", w)
        return CompositeLoss([(float(w) * tw, t) for tw, t in CompositeLoss._terms_of(self).terms])

    __rmul__ = __mul__

    def extra_repr(self) -> str:
        opts = {k: v for k, v in self.options().items() if not isinstance(v, torch.Tensor) or v.numel() < 9}
        return ", ".join(f"{k}={v.tolist() if isinstance(v, torch.Tensor) else v!r}" for k, v in opts.items() if v is not None)


class CompositeLoss(Loss):
    """Weighted sum ``sum_i w_i * loss_i(logits, target)`` of losses that share mode, ignore_index and inputs.

    Built by ``a + b``, ``0.5 * a`` or :func:`seglab.get_loss` (``"dice+ce"``). After each call,
    ``last_parts`` maps each part's name to its (detached, unweighted) value, e.g.
    ``{"dice": tensor(0.41), "ce": tensor(0.69)}``. Inputs are checked once for all parts, and parts that
    run through the shared pipeline share one fused kernel call (one softmax, one sweep) where one applies.
    Parts must agree on ``ignore_index`` (a pixel cannot be ignored by one part and counted by another).

    Example:
        >>> loss = DiceLoss("multiclass") + 0.5 * CrossEntropyLoss("multiclass")
        >>> value = loss(logits, target); loss.last_parts
    """

    name = "composite"

    def __init__(self, terms: list[tuple[float, Loss]]) -> None:
        if not terms:
            raise ValueError("a composite loss needs at least one term")
        for _, t in terms:
            if not isinstance(t, Loss):
                raise TypeError(f"can only combine seglab losses, got {type(t).__name__}")
        modes = {t.mode for _, t in terms}
        if len(modes) != 1:
            raise ValueError(f"all parts of a composite loss must share one mode, got {sorted(modes)}")
        reductions = {t.reduction for _, t in terms}
        if reductions != {"mean"} and len(terms) > 1:
            raise ValueError(f"composite losses combine scalar losses (reduction='mean'), got {sorted(reductions)}")
        ignores = {t.name: t.options().get("ignore_index") for _, t in terms}
        if len(set(ignores.values())) > 1:
            raise ValueError(
                f"all parts of a composite loss must share one ignore_index, got {ignores}; pass the same "
                f"ignore_index to every part (e.g. get_loss('dice+ce', mode=..., ignore_index=255))")
        super().__init__(modes.pop(), terms[0][1].reduction)
        self.weights = [_checks.check_number("loss weight", w) for w, _ in terms]
        self.parts = nn.ModuleList([t for _, t in terms])
        names: list[str] = []
        for _, t in terms:
            base, k = t.name, 2
            n = base
            while n in names:
                n, k = f"{base}{k}", k + 1
            names.append(n)
        self.part_names = names
        self.ignore_index = next(iter(ignores.values()))
        self.last_parts: dict[str, torch.Tensor] = {}

    @property
    def losses(self) -> list[Loss]:
        """The parts, typed (``self.parts`` is the ModuleList that registers them)."""
        return [p for p in self.parts if isinstance(p, Loss)]

    @property
    def terms(self) -> list[tuple[float, Loss]]:
        return list(zip(self.weights, self.losses))

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
        parts = self.losses
        terms = [(p.term, p.options()) for p in parts if p.term is not None]
        if len(terms) == len(parts):
            values = run_terms(terms, logits, target, validate=None)
        else:  # a part outside the shared pipeline (e.g. Lovász): check once, then each part on its own
            if _checks.resolve(None):
                prologue(logits, target, self.mode, ignore_index=self.ignore_index, reduction="mean", validate=True)
            values = [self._part_unchecked(p, logits, target) for p in parts]
        total = values[0] if self.weights[0] == 1.0 else self.weights[0] * values[0]
        for w, v in zip(self.weights[1:], values[1:]):
            total = total + v if w == 1.0 else total + w * v
        self.last_parts = {n: v.detach() for n, v in zip(self.part_names, values)}
        return total  # type: ignore[return-value]

    @staticmethod
    def _part_unchecked(p: Loss, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if p.term is not None:
            return run_terms([(p.term, p.options())], logits, target, validate=False)[0]
        fn = getattr(type(p), "fn", None)
        return fn(logits, target, **p.options(), validate=False) if fn is not None else p(logits, target)

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for w, n in zip(self.weights, self.part_names))
