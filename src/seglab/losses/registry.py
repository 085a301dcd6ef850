"""The loss vocabulary: one grammar and one name table for Python, the CLI, config files and reports.

A *loss spec* is a string::

    spec  := term ('+' term)*
    term  := [weight '*'] name ['[' key=value (',' key=value)* ']']
    value := true | false | null | none | number | [number, ...] | identifier | "json string"

e.g. ``"0.5*dice[batch=true,include_background=false] + ce[class_weights=[1,2,3]]"``. ``name`` is a loss
(``ce``, ``focal``, ``dice``, ``gdice``, ``tversky``, ``jaccard``, ``lovasz``) or an entry of :data:`NAMES`
(aliases and presets: a base loss with fixed options, e.g. ``dicefg`` = ``dice[include_background=false]``,
``study_dice`` = ``dice[batch=true,smooth=1e-07]``). Options in brackets override a preset's.

:func:`get_loss` builds a spec, :func:`format_loss` writes the canonical spec of a built loss, so that
``get_loss(format_loss(loss), mode=loss.mode)`` rebuilds an equal loss.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seglab._registry import check_kwargs, unknown_name_message
from seglab.losses.base import LOSSES, CompositeLoss, Loss


def _import_loss_modules() -> list[str]:
    """Import every public module of :mod:`seglab.losses` (``@LOSSES.register`` runs where each loss is defined):
    a new loss file is found with no list to keep. Modules named ``_*`` are helpers and are not imported here."""
    package = __name__.rpartition(".")[0]  # seglab.losses: its search path, read without importing the package
    paths = getattr(sys.modules.get(package), "__path__", None) or [str(Path(__file__).parent)]
    found = []
    for info in pkgutil.iter_modules(list(paths)):
        if not info.name.startswith("_") and info.name != "registry":
            importlib.import_module(f"{package}.{info.name}")
            found.append(info.name)
    return found


_import_loss_modules()


def describe_loss_class(cls: type[Loss]) -> str:
    """One line saying what a base loss is: its ``description``, else its class docstring's first line."""
    own = cls.__dict__.get("description")
    if isinstance(own, str) and own.strip():
        return own.strip()
    doc = (cls.__dict__.get("__doc__") or "").strip()
    return doc.splitlines()[0].strip() if doc else cls.__name__


#: the Chlebus (2018) study's Dice: sums over batch and spatial axes, smooth=1e-7
STUDY_DICE: dict[str, Any] = {"batch": True, "smooth": 1e-7}

SIGMOID = ("binary", "multilabel")
SOFTMAX = ("multiclass",)
WITH_BACKGROUND = ("multiclass", "multilabel")  # modes with a channel to drop (fg variants)


@dataclass(frozen=True)
class Name:
    """A vocabulary entry: ``base`` loss with ``options`` fixed, valid for ``modes`` (None: any)."""

    base: str
    options: Mapping[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] | None = None
    meaning: str = ""

    @property
    def spec(self) -> str:
        """The entry as a spec of its base loss, e.g. ``dice[include_background=false]``."""
        return self.base + format_options(dict(self.options))


#: aliases and presets (one table): name -> Name
NAMES: dict[str, Name] = {
    # aliases
    "bce": Name("ce", {}, SIGMOID, "binary cross-entropy with logits (sigmoid tasks: binary/multilabel)"),
    "cce": Name("ce", {}, SOFTMAX, "categorical cross-entropy (softmax tasks: multiclass)"),
    "cross_entropy": Name("ce", {}, None, "alias of ce"),
    "crossentropy": Name("ce", {}, None, "alias of ce"),
    "generalized_dice": Name("gdice", {}, None, "alias of gdice"),
    "iou": Name("jaccard", {}, None, "alias of jaccard"),
    # presets
    "focal_tversky": Name("tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}, None,
                          "focal Tversky loss (Abraham & Khan 2019): alpha=0.3, beta=0.7, gamma=0.75"),
    "dicefg": Name("dice", {"include_background": False}, WITH_BACKGROUND, "per-sample Dice without the background channel"),
    "dice_sq": Name("dice", {"squared": True}, None, "per-sample Dice with squared denominator (Milletari 2016)"),
    "dicefg_sq": Name("dice", {"include_background": False, "squared": True}, WITH_BACKGROUND,
                      "per-sample squared Dice without the background channel"),
    # the Chlebus (2018) study's losses
    "study_cce": Name("ce", {}, SOFTMAX, "the study's CCE: softmax cross-entropy"),
    "study_cce_clip": Name("ce", {"clip_eps": 1e-7}, SOFTMAX,
                           "the study's CCE as its code computes it: probabilities clipped to [1e-7, 1 - 1e-7]"),
    "study_dice": Name("dice", dict(STUDY_DICE), None, "the study's DICE: batch Dice (sums over batch and space), smooth=1e-7"),
    "study_dicefg": Name("dice", dict(STUDY_DICE, include_background=False), WITH_BACKGROUND,
                         "the study's DICEFG: batch Dice without the background channel, smooth=1e-7"),
    "study_dice_sq": Name("dice", dict(STUDY_DICE, squared=True), None,
                          "the study's DICE_SQUARE: batch Dice with squared denominator, smooth=1e-7"),
    "study_dicefg_sq": Name("dice", dict(STUDY_DICE, include_background=False, squared=True), WITH_BACKGROUND,
                            "the study's DICEFG_SQUARE: batch squared Dice without the background channel, smooth=1e-7"),
}

#: the study's five training losses in its column order, with the study's labels
STUDY_LABELS: dict[str, str] = {
    "study_cce": "CCE", "study_dice": "DICE", "study_dicefg": "DICEFG", "study_dice_sq": "DICE_SQUARE",
    "study_dicefg_sq": "DICEFG_SQUARE",
}
STUDY_LOSSES: list[str] = list(STUDY_LABELS)

_NOT_IN_SPEC = ("mode", "process_group")  # constructor arguments a spec string never carries


def list_losses() -> list[str]:
    """Names accepted by :func:`get_loss` (base losses, aliases, presets), sorted."""
    return sorted([*LOSSES, *NAMES])


def describe_losses() -> dict[str, tuple[str, str]]:
    """name -> (its spec in base-loss terms, one-line meaning), for every name of :func:`list_losses`."""
    out = {n: (n, describe_loss_class(cls)) for n, cls in LOSSES.items()}
    for n, e in NAMES.items():
        modes = f" [{'/'.join(e.modes)} only]" if e.modes else ""
        out[n] = (e.spec, e.meaning + modes)
    return dict(sorted(out.items()))


def display_label(spec: str) -> str:
    """How reports label a recorded loss: the study's label for its presets (``study_dice`` -> ``DICE``)."""
    return STUDY_LABELS.get(spec, spec)


# ---------------------------------------------------------------------------------------------------- grammar

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_KEYWORDS = {"true": True, "false": False, "null": None, "none": None}
_NON_FINITE = {"inf", "infinity", "nan"}


@dataclass
class Term:
    """One parsed term of a spec: ``weight * name[options]``; ``text`` is its source."""

    weight: float
    name: str
    options: dict[str, Any]
    text: str


class _Parser:
    def __init__(self, spec: str) -> None:
        self.s, self.i = spec, 0

    def fail(self, what: str) -> ValueError:
        got = self.s[self.i:self.i + 12] or "the end"
        return ValueError(f"loss spec {self.s!r}: {what} at position {self.i} (at {got!r}); "
                          "expected [weight*]name[key=value,...] terms joined by '+', e.g. '0.5*dice[batch=true]+ce'")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def match(self, rx: re.Pattern) -> str | None:
        m = rx.match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        return m.group(0)

    def spec(self) -> list[Term]:
        terms = [self.term()]
        while True:
            self.ws()
            if self.i == len(self.s):
                return terms
            if self.peek() != "+":
                raise self.fail("expected '+' or the end of the spec")
            self.i += 1
            terms.append(self.term())

    def number(self, what: str) -> int | float:
        start = self.i
        text = self.match(_NUMBER)
        if text is None:
            raise self.fail(f"expected {'a ' if what == 'weight' else ''}{what}")
        nxt = self.peek()
        if nxt and (nxt.isalnum() or nxt in "_."):
            self.i = start
            raise self.fail(f"malformed number in {what}")
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        value = float(text)
        if not math.isfinite(value):
            self.i = start
            raise self.fail(f"{what} {text!r} is not a finite {'positive ' if what == 'weight' else ''}number")
        return value

    def term(self) -> Term:
        self.ws()
        start = self.i
        weight: float = 1.0
        if self.peek() and (self.peek().isdigit() or self.peek() in "+-."):
            w = self.number("weight")
            if not w > 0:
                self.i = start
                raise self.fail(f"weight {w!r} is not a finite positive number")
            weight = float(w)
            self.ws()
            if self.peek() != "*":
                raise self.fail("expected '*' after the weight")
            self.i += 1
            self.ws()
        name = self.match(_NAME)
        if name is None:
            raise self.fail("expected a loss name" if self.peek() not in ("", "+") else "empty term")
        self.ws()
        options: dict[str, Any] = {}
        if self.peek() == "[":
            options = self.options()
        return Term(weight, name, options, self.s[start:self.i].strip())

    def options(self) -> dict[str, Any]:
        self.i += 1  # '['
        out: dict[str, Any] = {}
        while True:
            self.ws()
            if self.i == len(self.s):
                raise self.fail("unbalanced '[': missing ']'")
            key = self.match(_IDENT)
            if key is None:
                raise self.fail("empty option name" if self.peek() in ("=", ",", "]") else "expected an option name")
            if key in out:
                self.i -= len(key)
                raise self.fail(f"duplicate option {key!r}")
            self.ws()
            if self.peek() != "=":
                raise self.fail(f"expected '=' after option {key!r}")
            self.i += 1
            self.ws()
            out[key] = self.value(key)
            if self.list_end(f"expected ',' or ']' after the value of {key!r}", "unbalanced '[': missing ']'"):
                return out

    def list_end(self, expected: str, unbalanced: str) -> bool:
        """After an item of a bracketed list: consume ',' (False: more items) or ']' (True: the list is closed)."""
        self.ws()
        c = self.peek()
        if c in (",", "]"):
            self.i += 1
            return c == "]"
        raise self.fail(expected if c else unbalanced)

    def value(self, key: str) -> Any:
        c = self.peek()
        if c == "[":
            self.i += 1
            items: list[int | float] = []
            self.ws()
            if self.peek() == "]":
                self.i += 1
                return items
            while True:
                self.ws()
                if self.i == len(self.s):
                    raise self.fail(f"unbalanced '[' in the value of {key!r}")
                items.append(self.number(f"a number in the list of {key!r}"))
                if self.list_end(f"expected ',' or ']' in the list of {key!r}", f"unbalanced '[' in the value of {key!r}"):
                    return items
        if c == '"':
            text = self.match(_JSON_STRING)
            if text is None:
                raise self.fail(f"unterminated string in the value of {key!r}")
            return json.loads(text)
        if c and (c.isdigit() or c in "+-."):
            return self.number(f"the value of {key!r}")
        word = self.match(_IDENT)
        if word is None:
            raise self.fail(f"expected a value for {key!r} (true, false, null, a number, a list of numbers or a word)")
        if word.lower() in _NON_FINITE:
            self.i -= len(word)
            raise self.fail(f"the value of {key!r} is not a finite number")
        return _KEYWORDS.get(word.lower(), word)


def parse_loss_spec(spec: str) -> list[Term]:
    """Parse ``spec`` into its terms (syntax only; names are not resolved). Raises ValueError naming the problem."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string like 'dice+ce', got {spec!r}")
    return _Parser(spec).spec()


def split_specs(text: str) -> list[str]:
    """Split a comma list of specs outside brackets: ``"dice[a=1,b=[1,2]],ce" -> ["dice[a=1,b=[1,2]]", "ce"]``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


# ------------------------------------------------------------------------------------------------- resolution

def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def lookup(name: str) -> tuple[str, Name | None]:
    """``name`` -> (its normalised form, its :data:`NAMES` entry or None for a base loss); ValueError if unknown."""
    key = _key(name)
    if key in NAMES:
        return key, NAMES[key]
    if key in LOSSES:
        return key, None
    raise ValueError(unknown_name_message("loss", name, list_losses()))


def _params(cls: type[Loss]) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(cls.__init__).parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _accepts(cls: type[Loss]) -> set[str]:
    return set(_params(cls)) - {"mode"}


def _check_modes(term: Term, key: str, entry: Name | None, mode: str) -> None:
    if entry is None or entry.modes is None or mode in entry.modes:
        return
    kind = {SIGMOID: "sigmoid (binary/multilabel)", SOFTMAX: "softmax (multiclass)"}.get(entry.modes, "/".join(entry.modes))
    hint = ""
    if entry.modes == SIGMOID:
        hint = ("; use 'cce' or 'ce' (softmax cross-entropy) for multiclass tasks, or 'onehot_bce' for one sigmoid per "
                "channel on the one-hot masks")
    elif entry.modes == SOFTMAX:
        hint = "; use 'bce' or 'ce' (BCE-with-logits) for binary/multilabel tasks"
    elif entry.modes == WITH_BACKGROUND:
        hint = " (it drops channel 0, the only channel of a binary task)"
    raise ValueError(f"loss {term.text!r} is a {kind} loss and does not apply to a {mode} task{hint}")


def _check_options(term: Term, base: str, cls: type[Loss], mode: str) -> None:
    if "mode" in term.options:
        raise ValueError(f"loss {term.text!r}: 'mode' cannot be set in a loss spec; it comes from the task or "
                         f"get_loss(mode=...) (here {mode}), got mode={term.options['mode']!r}")
    check_kwargs("loss", term.text, cls, {k: v for k, v in term.options.items()})
    params = _params(cls)
    for k, v in term.options.items():
        default = params[k].default
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"loss {term.text!r}: option {k!r} of {base} expects true or false, got {v!r}")


def get_loss(spec: str, mode: str, **kwargs: Any) -> Loss:
    """Build a loss (or a weighted sum of losses) from a spec string.

    ``spec`` is ``+``-separated terms ``[weight*]name[key=value,...]``, e.g. ``"dice"``, ``"dice+ce"``,
    ``"0.5*dice[include_background=false] + focal"``, ``"study_dice"``. Names: :func:`list_losses`
    (:func:`describe_losses` says what each means); ``dice`` is the per-sample soft Dice with ``smooth=1e-5``
    everywhere (Python, CLI, sweeps); the Chlebus (2018) study's batch Dice is ``study_dice``. Values in
    brackets: ``true``/``false``, ``null``/``none``, numbers, lists of numbers, words (strings).

    Each keyword argument goes to every term whose constructor accepts it (``class_weights`` to CE and Dice,
    ``include_background`` to Dice, ...); one that no term accepts raises ``TypeError``, one that a term also
    sets in brackets raises ``ValueError``. A single unweighted term returns that loss's module, otherwise a
    :class:`CompositeLoss`. :func:`format_loss` writes the spec back.

    Example:
        >>> loss = get_loss("dice+ce", mode="multiclass", include_background=False, class_weights=[0.2, 1.0, 5.0])
        >>> get_loss("0.5*dice[batch=true] + ce[label_smoothing=0.1]", mode="multiclass")
    """
    terms = parse_loss_spec(spec)
    resolved: list[tuple[Term, str, type[Loss], dict[str, Any]]] = []
    for term in terms:
        key, entry = lookup(term.name)
        base = entry.base if entry is not None else key
        cls = LOSSES[base]
        _check_modes(term, key, entry, mode)
        _check_options(term, base, cls, mode)
        resolved.append((term, base, cls, dict(entry.options) if entry is not None else {}))
    used: set[str] = set()
    built: list[tuple[float, Loss]] = []
    for term, _base, cls, fixed in resolved:
        accepted = _accepts(cls)
        kw = {k: v for k, v in kwargs.items() if k in accepted}
        both = sorted(set(kw) & set(term.options))
        if both:
            raise ValueError(f"loss {term.text!r}: option(s) {both} given both in brackets and as keyword arguments")
        used |= kw.keys()
        try:
            module = cls(mode, **{**fixed, **term.options, **kw})
        except (TypeError, ValueError) as e:
            raise ValueError(f"loss {term.text!r}: {e}") from e
        built.append((term.weight, module))
    unused = set(kwargs) - used
    if unused:
        raise TypeError(
            f"argument(s) {sorted(unused)} not accepted by any loss in {spec!r} "
            f"(accepted: {sorted(set().union(*(_accepts(c) for _, _, c, _ in resolved)))})"
        )
    if len(built) == 1 and built[0][0] == 1.0:
        return built[0][1]
    return CompositeLoss(built)


def resolve_term(spec: str, mode: str) -> tuple[str, dict[str, Any]] | None:
    """A single unweighted term -> ``(base loss, its options: preset's and bracketed)``, checked for ``mode``;
    None for weighted or composite specs. ``"study_dice"`` -> ``("dice", {"batch": True, "smooth": 1e-7})``."""
    terms = parse_loss_spec(spec)
    if len(terms) != 1 or terms[0].weight != 1.0:
        return None
    term = terms[0]
    key, entry = lookup(term.name)
    base = entry.base if entry is not None else key
    _check_modes(term, key, entry, mode)
    _check_options(term, base, LOSSES[base], mode)
    return base, {**(dict(entry.options) if entry is not None else {}), **term.options}


# ----------------------------------------------------------------------------------------------- formatting

def _fmt_float(v: float, dtype: torch.dtype | None = None) -> str:
    if dtype is None or dtype == torch.float64:
        return repr(float(v))
    for p in range(1, 18):  # shortest text that reads back to the same value in ``dtype``
        s = f"{v:.{p}g}"
        if torch.tensor(float(s), dtype=dtype).item() == v:
            return repr(float(s))
    return repr(float(v))


def _fmt_value(v: Any, dtype: torch.dtype | None = None) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _fmt_float(v, dtype)
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu()
        if t.dim() > 1:
            raise ValueError(f"cannot write a {t.dim()}-d tensor option in a loss spec")
        if t.dtype.is_floating_point:
            vals = [_fmt_float(x, t.dtype) for x in t.reshape(-1).tolist()]
        else:
            vals = [str(int(x)) for x in t.reshape(-1).tolist()]
        return vals[0] if t.dim() == 0 else "[" + ",".join(vals) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt_value(x, dtype) for x in v) + "]"
    if isinstance(v, str):
        if _IDENT.fullmatch(v) and v.lower() not in _KEYWORDS and v.lower() not in _NON_FINITE:
            return v
        return json.dumps(v)
    raise ValueError(f"cannot write option value {v!r} ({type(v).__name__}) in a loss spec")


def format_options(opts: dict[str, Any]) -> str:
    """A spec's option brackets: ``{"batch": True}`` -> ``"[batch=true]"`` (sorted keys; empty -> "")."""
    if not opts:
        return ""
    return "[" + ",".join(f"{k}={_fmt_value(v)}" for k, v in sorted(opts.items())) + "]"


def loss_options(loss: Loss) -> dict[str, Any]:
    """The constructor arguments (all but ``mode``) of a built base loss, read back from the module."""
    cls = type(loss)
    opts = loss.options()
    out: dict[str, Any] = {}
    for n in _params(cls):
        if n == "mode":
            continue
        if n in opts:
            out[n] = opts[n]
        elif hasattr(loss, n):
            out[n] = getattr(loss, n)
        else:
            raise ValueError(f"cannot read option {n!r} back from {cls.__name__}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if a is None or b is None:
            return False
        return torch.equal(torch.as_tensor(a).cpu().double(), torch.as_tensor(b).cpu().double())
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _base_name(loss: Loss) -> str:
    for n, cls in LOSSES.items():
        if type(loss) is cls:
            return n
    raise ValueError(f"format_loss: {type(loss).__name__} is not a loss of the vocabulary ({', '.join(LOSSES)})")


def format_loss(loss: Loss) -> str:
    """The canonical spec of a built loss: ``get_loss(format_loss(l), mode=l.mode)`` builds an equal loss.

    Each part is its base loss name with its non-default options in brackets (sorted keys, tensors as lists);
    weights other than 1 prefix the part (``0.5*``), parts are joined by ``" + "``. ``mode`` and
    ``process_group`` are not written (the task gives the mode; a process group is not a string).

    Example:
        >>> format_loss(get_loss("study_dicefg", mode="multiclass") + 0.5 * get_loss("cce", mode="multiclass"))
        'dice[batch=true,include_background=false,smooth=1e-07] + 0.5*ce'
    """
    if isinstance(loss, CompositeLoss):
        return " + ".join(_format_term(w, p) for w, p in loss.terms)
    if not isinstance(loss, Loss):
        raise TypeError(f"format_loss expects a seglab loss module, got {type(loss).__name__}")
    return _format_term(1.0, loss)


def _format_term(w: float, loss: Loss) -> str:
    if isinstance(loss, CompositeLoss):
        raise ValueError("format_loss: nested composite losses are not supported")
    base = _base_name(loss)
    params = _params(type(loss))
    opts = {k: v for k, v in loss_options(loss).items()
            if k not in _NOT_IN_SPEC and not _same(v, params[k].default)}
    prefix = "" if w == 1.0 else _fmt_float(float(w)) + "*"
    return prefix + base + format_options(opts)


def canonical_spec(spec: str, mode: str) -> str:
    """The string a run records for ``spec`` on a ``mode`` task (checked by building it): a bare vocabulary
    name as given (lower case: ``"study_dice"``, ``"dicefg"``), anything else as :func:`format_loss` writes it."""
    loss = get_loss(spec, mode)
    terms = parse_loss_spec(spec)
    if len(terms) == 1 and terms[0].weight == 1.0 and not terms[0].options:
        return lookup(terms[0].name)[0]
    return format_loss(loss)
