"""The loss-module contract and composition.

A seglab loss is a plain function (the maths) plus an :class:`Loss` module that only holds configuration.
Modules compose: ``a + b`` and ``w * a`` build a :class:`CompositeLoss`, a weighted sum that reports the
value of each part after every call in ``last_parts``. Every module takes ``loss(logits, target, mask=None)``.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch import nn

from seglab import _checks
from seglab._registry import Registry
from seglab.losses._pipeline import Term, mask_options, run_terms
from seglab.targets import Target, canonical_target, compute_dtype, plain, prepare_target


def check_call(logits: Any, target: Any, mode: str, *, ignore_index: int | None, mask: Any = None,
               validate: bool) -> tuple[torch.Tensor, torch.Tensor, int | None, Target]:
    """The input checks of one call, whichever path computes it: logits, then the canonical target (MetaTensors,
    label maps, ``mask`` written in as ignored pixels; :func:`~seglab.targets.canonical_target`), then the target
    against the logits. Returns ``(logits, canonical target, its ignore_index, prepared Target)``."""
    logits = plain(logits)
    _checks.check_logits(logits, mode, validate=validate)
    target, ign = canonical_target(logits, target, mode, ignore_index=ignore_index, mask=mask, validate=validate)
    return logits, target, ign, prepare_target(logits, target, mode, ignore_index=ign, validate=validate)


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
    logits, _, _, tgt = check_call(logits, target, mode, ignore_index=ignore_index, validate=v)
    return logits.to(compute_dtype(logits.dtype)), tgt, v


#: the base losses by name (``@LOSSES.register("dice")`` where each loss is defined: the decorator is the whole
#: registration; :mod:`seglab.losses.registry` imports every module of the package, and adds aliases and presets)
LOSSES: Registry[type[Loss]] = Registry("loss")


def to_device(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if w is None else w.to(device=like.device, dtype=like.dtype)


def _no_mask(name: str) -> TypeError:
    return TypeError(f"mask is not supported by the loss {name!r}: it has no ignore_index (ignored pixels)")


def call_unchecked(p: Loss, logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None,
                   overrides: dict[str, Any] | None = None) -> torch.Tensor:
    """One loss on inputs already checked and made canonical (:func:`check_call`), without checking again.

    ``ignore_index``: the value ignored pixels hold in ``target`` (the loss's own, or the one a mask wrote);
    ``overrides``: options replaced for this call (e.g. ``reduction``).
    """
    o = p.options()
    if ignore_index != o.get("ignore_index"):
        if "ignore_index" not in o:
            raise _no_mask(p.name)
        o = {**o, "ignore_index": ignore_index}
    if overrides:
        o = {**o, **overrides}
    if p.term is not None:
        return run_terms([(p.term, o)], logits, target, validate=False)[0]
    fn = getattr(type(p), "fn", None)
    if fn is not None:
        return fn(logits, target, **o, validate=False)
    if overrides or ignore_index != p.options().get("ignore_index"):
        raise TypeError(f"the loss {p.name!r} has neither a pipeline term nor a plain function (fn): it cannot be "
                        "called with a mask or inside a per-sample (reduction='none') composite")
    return p(logits, target)


class Loss(nn.Module):
    """Base class of seglab losses: a module that only holds configuration.

    Subclasses set ``name`` (the registry name), ``description`` (one line for :func:`~seglab.describe_losses`;
    default: the class docstring's first line) and, for losses that run through the shared pipeline, ``term``
    (a :class:`~seglab.losses._pipeline.Term`), or else ``fn`` (their plain function); their constructor checks
    its options with the same function the plain function uses and stores them with :meth:`_configure` (tensors
    become buffers, so ``.to()`` moves them). ``forward`` is one call into the pipeline (or ``fn``) with the stored
    options.

    ``forward(logits, target, mask=None)``: ``mask`` ``(N, 1, *spatial)`` or ``(N, *spatial)`` (bool or 0/1; a
    batch dim of 1 broadcasts) keeps the pixels where it is True; the others contribute to no statistic, exactly
    as pixels equal to ``ignore_index`` (MONAI's ``MaskedLoss`` convention, without its zeroed logits). Losses
    without an ``ignore_index`` option refuse a mask (TypeError).
    """

    name: str = "loss"
    #: one line saying what the loss is (:func:`~seglab.describe_losses`); empty: its class docstring's first line
    description: str = ""
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
        d, buffers = self.__dict__, self._buffers  # read directly: nn.Module.__getattr__ is slow on every call
        return {k: d[k] if k in d else buffers[k] if k in buffers else getattr(self, k) for k in self._option_names}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.term is not None:
            o = self.options()
            if mask is not None and "ignore_index" not in o:
                raise _no_mask(self.name)
            return run_terms([(self.term, o)], logits, target, validate=None, mask=mask)[0]
        fn = getattr(type(self), "fn", None)
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} must define forward, term or fn")
        if mask is None:
            return fn(logits, target, **self.options())
        v = _checks.resolve(None)  # a loss with its own function: check here once, the mask as ignored pixels
        logits, target, ign, _ = check_call(logits, target, self.mode, ignore_index=self.options().get("ignore_index"),
                                            mask=mask, validate=v)
        return call_unchecked(self, logits, target, ign)

    def __add__(self, other: Loss) -> CompositeLoss:
        return CompositeLoss._terms_of(self) + CompositeLoss._terms_of(other)

    def __mul__(self, w: float) -> CompositeLoss:
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

    Reductions: the parts share one. ``"mean"``: the weighted sum of the parts' scalars. ``"none"`` (two parts
    or more): the per-sample losses, shape ``(N,)`` — entry ``i`` is the composite's ``"mean"`` value on sample
    ``i`` alone (``loss_mean(logits[i:i+1], target[i:i+1])``), so parts whose unreduced shapes differ (Dice
    ``(N, C)``, CE ``(N, *spatial)``) still add up; ``batch=True`` parts give the Dice of each sample. It runs
    one pipeline call per sample (inputs checked once). A single weighted part keeps that part's own
    ``"none"`` shape. ``"sum"`` applies to single parts only.

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
        if len(terms) > 1 and reductions not in ({"mean"}, {"none"}):
            raise ValueError(f"the parts of a composite loss must share reduction='mean' (a scalar) or 'none' "
                             f"(per-sample losses, shape (N,)), got {sorted(reductions)}")
        if reductions == {"none"} and len(terms) > 1:
            grouped = [t.name for _, t in terms if t.options().get("process_group") is not None]
            if grouped:
                raise ValueError(f"reduction='none' gives per-sample losses; the part(s) {grouped} sum statistics "
                                 "across processes (process_group): use reduction='mean' with them")
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
        return list(zip(self.weights, self.losses, strict=True))

    @staticmethod
    def _terms_of(x: Loss) -> CompositeLoss:
        if isinstance(x, CompositeLoss):
            return x
        if not isinstance(x, Loss):
            raise TypeError(f"can only combine seglab losses, got {type(x).__name__}")
        return CompositeLoss([(1.0, x)])

    def __add__(self, other: Loss) -> CompositeLoss:
        return CompositeLoss(self.terms + CompositeLoss._terms_of(other).terms)

    def options(self) -> dict[str, Any]:
        return {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        parts = self.losses
        if mask is not None:
            for p in parts:
                if "ignore_index" not in p.options():
                    raise _no_mask(p.name)
        if self.reduction == "none" and len(parts) > 1:
            values = self._per_sample(logits, target, mask)
        elif all(p.term is not None for p in parts):
            terms = [(p.term, p.options()) for p in parts]
            values = run_terms(terms, logits, target, validate=None, mask=mask)  # type: ignore[arg-type]
        else:  # a part outside the shared pipeline (e.g. Lovász): check once, then each part on its own
            logits, target, ign = self._checked(logits, target, mask)
            values = [call_unchecked(p, logits, target, ign) for p in parts]
        total = values[0] if self.weights[0] == 1.0 else self.weights[0] * values[0]
        for w, v in zip(self.weights[1:], values[1:], strict=True):
            total = total + v if w == 1.0 else total + w * v
        self.last_parts = {n: v.detach() for n, v in zip(self.part_names, values, strict=True)}
        return total  # type: ignore[return-value]

    def _checked(self, logits: Any, target: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """The inputs checked once (validation on) and made canonical for unchecked calls of the parts."""
        v = _checks.resolve(None)
        if v:
            logits, target, ign, _ = check_call(logits, target, self.mode, ignore_index=self.ignore_index, mask=mask,
                                                validate=True)
            return logits, target, ign
        logits = plain(logits)
        _checks.check_logits(logits, self.mode, validate=False)
        target, ign = canonical_target(logits, target, self.mode, ignore_index=self.ignore_index, mask=mask,
                                       validate=False)
        return logits, target, ign

    def _per_sample(self, logits: Any, target: Any, mask: Any) -> list[torch.Tensor]:
        """``reduction="none"``: each part's ``"mean"`` value on each sample alone, ``(N,)`` per part."""
        logits, target, ign = self._checked(logits, target, mask)
        parts, mean = self.losses, {"reduction": "mean"}
        n = logits.shape[0]
        if n == 0:
            empty = logits.flatten(1).sum(1)  # (0,), attached to the graph
            return [empty for _ in parts]
        rows: list[list[torch.Tensor]] = []
        for i in range(n):
            x, t = logits[i:i + 1], target[i:i + 1]
            if all(p.term is not None for p in parts):  # one pipeline call (one fused kernel) per sample
                terms: list[tuple[Term, dict[str, Any]]] = [(p.term, {**p.options(), **mean}) for p in parts
                                                            if p.term is not None]
                if ign != self.ignore_index:
                    terms = mask_options(terms, self.part_names, ign)
                rows.append(run_terms(terms, x, t, validate=False))
            else:
                rows.append([call_unchecked(p, x, t, ign, mean) for p in parts])
        return [torch.stack([r[k] for r in rows]) for k in range(len(parts))]

    def extra_repr(self) -> str:
        return " + ".join(f"{w:g}*{n}" for w, n in zip(self.weights, self.part_names, strict=True))
