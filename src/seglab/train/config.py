"""One run's configuration (:class:`RunSpec`), its stable id, and validation before anything runs."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable

from .specs import canonical_spec as _canonical_spec
from .specs import run_converge, run_monitors

OPTIMIZERS = ("adam", "sgd")
CONVERGE_METRICS = ("mean_dice", "fg_dice", "accuracy")
CONVERGE_KEYS = ("metric", "threshold")
GRAD_NORM_EVERY = 50  # default: monitor gradient norms at steps 0, 50, 100, ... (a preset may set 1)
#: the most training steps (and ``eval_every`` / ``grad_norm_every``) a run accepts: far beyond any real run
#: (the study: 10,001), it catches a typo such as ``--steps 100000000000000000000`` before anything is built
MAX_STEPS = 10**9


def check_loss_channels(spec: str, mode: str, channels: int) -> None:
    """Raise ValueError when a per-class option of the loss ``spec`` (``class_weights``, ``pos_weight``,
    focal ``alpha``: the ``weight_options`` of each part) does not have one entry per output channel of a task
    with ``channels`` channels (its number of classes); found before training, not at its first step."""
    from seglab.losses.base import Loss
    from seglab.losses.registry import get_loss

    loss = get_loss(spec, mode)
    for part in loss.modules():
        term = getattr(part, "term", None)
        if not isinstance(part, Loss) or term is None:
            continue
        o = part.options()
        for name in term.weight_options:
            w = o.get(name)
            if w is None or getattr(w, "ndim", 1) == 0:  # 0-dim (sigmoid focal alpha): one value for all
                continue
            n = int(w.shape[0]) if w.ndim == 1 else None
            if n != channels:
                got = f"{n} entries" if n is not None else f"shape {tuple(w.shape)}"
                raise ValueError(f"{part.name}: {name} has {got} but the task has {channels} classes (output "
                                 f"channels); give one entry per class")


def user_model(name: str) -> bool:
    """Whether a run's ``model`` is a user's factory (``package.module:factory``, ``file.py:factory``)."""
    from seglab.models.registry import is_external_model

    return bool(is_external_model(name))


def check_model_contract(model: Any, task: Any, x: Any) -> None:
    """One dry forward of ``model`` on the images ``x`` (a validation batch of ``task``), in eval mode without
    gradients: raise ValueError naming the problem when the model has no trainable parameters, its ``forward``
    raises, or its output is not a tensor ``(N, task.num_classes, *S)`` with the spatial shape ``S`` of ``x``."""
    import torch

    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters (nothing to train)")
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(dev))
    except Exception as e:  # the user's code: any error
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"forward on a validation batch of shape {tuple(x.shape)} raised "
                         f"{type(e).__name__}{': ' + first if first else ''}") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"forward returned {type(out).__name__}, not a tensor of logits (N, {task.num_classes}, "
                         f"*spatial)")
    want = (x.shape[0], task.num_classes, *x.shape[2:])
    if out.ndim != x.ndim:
        raise ValueError(f"forward returned shape {tuple(out.shape)} for input {tuple(x.shape)}; expected logits "
                         f"{want}")
    if out.shape[1] != task.num_classes:
        raise ValueError(f"forward returned {out.shape[1]} output channels but the task has {task.num_classes} "
                         f"classes (the factory is called with out_channels={task.num_classes})")
    if tuple(out.shape) != want:
        raise ValueError(f"forward returned shape {tuple(out.shape)} for input {tuple(x.shape)}; expected logits "
                         f"{want} (same batch and spatial size as the input)")
    if not out.is_floating_point():
        raise ValueError(f"forward returned {out.dtype} logits; expected a floating-point tensor")


def measures_grad_norms(step: int, every: int) -> bool:
    """Whether step ``step`` (0-based) takes the gradient of every monitor loss for its norm:
    ``every > 0 and step % every == 0``; ``every == 0`` switches monitor gradients off."""
    return every > 0 and step % every == 0


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _task_error(name: str, e: Exception) -> str:
    """A task constructor's error, in the words of the configuration (``missing ... argument: 'path'`` ->
    the task needs option 'path')."""
    msg = str(e)
    m = re.search(r"missing \d+ required (?:positional |keyword-only )?arguments?: (.*)$", msg)
    if isinstance(e, TypeError) and m:
        opts = re.findall(r"'([^']+)'", m.group(1))
        first = opts[0] if opts else "..."
        return (f"task {name!r} needs the option(s) {', '.join(map(repr, opts))} "
                f"(task_kw = {{{first} = ...}} in a grid, --task-opt {first}=... on the command line)")
    m = re.search(r"got an unexpected keyword argument '([^']+)'", msg)
    if isinstance(e, TypeError) and m:
        return f"task {name!r} has no option {m.group(1)!r}"
    return msg


#: the trainer options of :class:`RunSpec` and their defaults (off): augmentation (names of
#: :data:`seglab.train.augment.AUGMENTS`), the learning-rate schedule (``cosine``, ``poly``; ``warmup`` steps of
#: linear warm-up), weight decay (decoupled, AdamW, for adam; L2 for sgd), gradient clipping (the global norm),
#: mixed precision (``bf16``: CPU or CUDA autocast; ``fp16``: CUDA with a gradient scaler). At their defaults they
#: are left out of the run id.
TRAINER_DEFAULTS: dict[str, Any] = {"augment": None, "schedule": None, "warmup": 0, "weight_decay": 0.0,
                                    "grad_clip": None, "amp": None}
SCHEDULES = ("cosine", "poly")
AMP_DTYPES = ("bf16", "fp16")


def _trainer_option_errors(cfg: RunSpec) -> list[str]:
    from .augment import check_augment

    out = []
    if cfg.augment is not None:
        if not (isinstance(cfg.augment, (list, tuple)) and all(isinstance(a, str) for a in cfg.augment)):
            out.append(f"augment must be a list of transform names, got {cfg.augment!r}")
        else:
            try:
                check_augment(cfg.augment)
            except ValueError as e:
                out.append(str(e))
    if cfg.schedule is not None and cfg.schedule not in SCHEDULES:
        out.append(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    w = cfg.warmup
    if not (isinstance(w, int) and not isinstance(w, bool) and 0 <= w <= MAX_STEPS):
        out.append(f"warmup must be an integer number of steps >= 0, got {w!r}")
    if not (_real(cfg.weight_decay) and float(cfg.weight_decay) >= 0):
        out.append(f"weight_decay must be a number >= 0, got {cfg.weight_decay!r}")
    if cfg.grad_clip is not None and not (_real(cfg.grad_clip) and float(cfg.grad_clip) > 0):
        out.append(f"grad_clip must be a number > 0 (the largest global gradient norm), got {cfg.grad_clip!r}")
    if cfg.amp is not None and cfg.amp not in AMP_DTYPES:
        out.append(f"unknown amp {cfg.amp!r}; choose one of {', '.join(AMP_DTYPES)}")
    return out


def lr_factor(cfg: RunSpec, step: int) -> float:
    """The learning rate of step ``step`` (0-based) over ``cfg.lr``: linear warm-up over ``cfg.warmup`` steps
    (``(step + 1) / warmup``), then 1 (no schedule), ``(1 + cos(pi t)) / 2`` (cosine) or ``(1 - t) ** 0.9``
    (poly), ``t`` the fraction of the steps after the warm-up done.

    >>> c = RunSpec(loss="ce", steps=10, schedule="cosine", warmup=2)
    >>> [round(lr_factor(c, k), 3) for k in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.schedule is None:
        return 1.0
    span = max(1, cfg.steps - cfg.warmup)
    t = min(1.0, (step - cfg.warmup) / span)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return (1.0 - t) ** 0.9


class ConfigError(ValueError):
    """A run or sweep configuration that cannot run (raised before any run starts).

    ``problems``: the distinct ``(field, value, message)`` of errors tied to one field (``"loss"``,
    ``"monitors"``), so that a command line can name its option (``--loss``); ``only_fields``: whether every
    error found is one of them."""

    def __init__(self, message: str, problems: list[tuple[str, Any, str]] | None = None,
                 only_fields: bool = False) -> None:
        super().__init__(message)
        self.problems = list(problems or [])
        self.only_fields = bool(only_fields and self.problems)
        self.model_problem: str | None = None  # the one error found, when it is the model's (``--model``)


@dataclass(frozen=True)
class TaskFacts:
    """What a run needs to know of its task, read once from the constructed task (:meth:`of`): its mode, classes,
    channels, spatial dims, void label, the spatial shape of one sample, and its configuration. Trainer
    strategies, monitor defaults and reports read these facts instead of building the task again."""

    mode: str
    num_classes: int
    class_names: tuple[str, ...]
    in_channels: int
    spatial_dims: int
    ignore_index: int | None = None
    sample_shape: tuple[int, ...] = ()

    @classmethod
    def of(cls, task: Any) -> TaskFacts:
        """The facts of a constructed task (one validation sample gives the spatial shape)."""
        xv = task.validation()[0]
        return cls(mode=str(task.mode), num_classes=int(task.num_classes), class_names=tuple(task.class_names),
                   in_channels=int(task.in_channels), spatial_dims=int(task.spatial_dims),
                   ignore_index=getattr(task, "ignore_index", None), sample_shape=tuple(int(n) for n in xv.shape[2:]))


@dataclass(frozen=True)
class RunSpec:
    """One run, frozen and typed: model × task × loss × optimizer × seed × steps × batch size (+ monitoring and convergence settings).

    ``loss`` and ``monitors`` are :func:`seglab.get_loss` specs; :func:`resolve` records each as
    :func:`~seglab.losses.registry.canonical_spec` writes it (a bare name such as ``study_dice`` as given, any
    other spec in :func:`seglab.format_loss`'s canonical form), a string that pastes into ``get_loss``.
    ``monitors=None`` means the default monitor set (:func:`~seglab.train.specs.run_monitors`: a study's set on
    its built-in tasks, the trained loss and its parts on user data); :func:`resolve` fills it in.
    ``converge=None`` means the default rule (:func:`~seglab.train.specs.run_converge`: a study's on its tasks,
    no verdict, ``converged`` None, on user data); otherwise
    ``converge``: ``{"metric": "mean_dice"|"fg_dice"|"accuracy", "threshold": t}``;
    a run has converged when the metric at the final validation is >= t (for ``accuracy`` the criterion is
    ``acc >= majority + t * (1 - majority)``, i.e. a fraction t of the way from the majority-class rate to 1).
    ``grad_norm_every``: the gradient of every monitor loss (one extra backward pass each) is taken at the steps
    ``k`` with ``k % grad_norm_every == 0`` (:func:`measures_grad_norms`), 0 = never; the training loss's
    gradient norm is recorded at every step (it comes with the training backward pass). Default
    :data:`GRAD_NORM_EVERY` (50); a preset may set 1 (figures that plot every step).
    ``augment``, ``schedule``, ``warmup``, ``weight_decay``, ``grad_clip``, ``amp``: the trainer options
    (:data:`TRAINER_DEFAULTS`, all off by default and then left out of :attr:`run_id`).
    """

    loss: str
    task: str = "threshold"
    task_kw: dict[str, Any] = field(default_factory=dict)
    model: str = "tiny"
    model_kw: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    seed: int = 0
    steps: int = 1000
    batch_size: int = 2
    eval_every: int = 100
    monitors: list[str] | None = None
    converge: dict[str, Any] | None = None
    grad_norm_every: int = GRAD_NORM_EVERY
    augment: list[str] | None = None
    schedule: str | None = None
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    amp: str | None = None
    #: the task's facts, filled in by :func:`resolve` (not part of the run's id or its written configuration)
    facts: TaskFacts | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as written (``config.json``, ``summary.json``, checkpoints): every field but
        :attr:`facts`; :meth:`from_dict` reads it back."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "facts"}

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` (the spec is frozen); the task's facts are kept unless the task changes."""
        if {"task", "task_kw"} & set(changes):
            changes.setdefault("facts", None)
        return dataclasses.replace(self, **changes)

    def trainer_options(self) -> dict[str, Any]:
        """The trainer options (:data:`TRAINER_DEFAULTS`) that are set, i.e. not at their defaults."""
        d = self.to_dict()
        return {k: d[k] for k, v in TRAINER_DEFAULTS.items() if d[k] != v and d[k] != []}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        """A spec from its written configuration (:meth:`to_dict`); unknown fields raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"facts"}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown run field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @property
    def run_id(self) -> str:
        """Stable 12-hex-digit hash of the configuration (resume and merge key)."""
        d = self.to_dict()
        for k, v in TRAINER_DEFAULTS.items():  # options at their defaults leave the id of earlier runs unchanged
            if d[k] == v or d[k] == []:
                del d[k]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        t = self.task + "".join(f" {k}={v}" for k, v in sorted(self.task_kw.items()))
        m = self.model + "".join(f" {k}={v}" for k, v in sorted(self.model_kw.items()))
        opt = f"{self.optimizer} lr={self.lr:g}" + (f" mom={self.momentum:g}" if self.optimizer == "sgd" else "")
        extra = "".join(f" {k}={','.join(v) if isinstance(v, list) else v}" for k, v in self.trainer_options().items())
        return f"{self.loss} | {t} | {m} | {opt}{extra} | seed={self.seed}"


@functools.lru_cache(maxsize=4096)
def _check_loss_channels(spec: str, mode: str, channels: int) -> None:
    """:func:`check_loss_channels`, cached (a sweep repeats the same few specs); errors are not cached."""
    check_loss_channels(spec, mode, channels)


@functools.lru_cache(maxsize=4096)
def canonical_spec(spec: str, mode: str) -> str:
    """:func:`seglab.losses.registry.canonical_spec`, cached (a sweep repeats the same few specs)."""
    return _canonical_spec(spec, mode)


def _task_cache_key(cfg: RunSpec) -> str:
    return json.dumps([cfg.task, cfg.task_kw], sort_keys=True, default=str)


def resolve(cfg: RunSpec, task: Any = None) -> RunSpec:
    """Canonicalise names and fill in what depends on the task: its facts (:class:`TaskFacts`, read from
    ``task``, else kept from ``cfg.facts``; the task is constructed only when neither is there) and the monitor
    set. Resolving a resolved spec gives it back unchanged.

    Raises ValueError for a loss or monitor spec that is malformed or does not apply to the task's mode."""
    facts = TaskFacts.of(task) if task is not None else cfg.facts
    if facts is None:
        from seglab.data import create_task

        facts = TaskFacts.of(create_task(cfg.task, **cfg.task_kw))
    d = cfg.to_dict()
    d["loss"] = canonical_spec(cfg.loss, facts.mode)
    mons = cfg.monitors if cfg.monitors is not None else run_monitors(cfg.task, cfg.loss, facts.mode)
    d["monitors"] = list(dict.fromkeys(canonical_spec(m, facts.mode) for m in mons))
    if cfg.converge is None:
        d["converge"] = run_converge(cfg.task)
    d["optimizer"] = cfg.optimizer.lower()
    d["lr"] = float(cfg.lr)
    d["momentum"] = float(cfg.momentum)
    d["augment"] = list(cfg.augment) if cfg.augment else None
    d["weight_decay"] = float(cfg.weight_decay)
    d["grad_clip"] = float(cfg.grad_clip) if cfg.grad_clip is not None else None
    return RunSpec(**d, facts=facts)


def validate_runs(runs: Iterable[RunSpec], *, build: bool = True) -> list[RunSpec]:
    """Check every run (names, ranges, loss/task compatibility) and return them resolved.

    Raises :class:`ConfigError` listing every problem found, before any run starts. Every loss and monitor
    spec is built once per task mode (names, options, mode rules, constructor checks, per-class option lengths
    against the task's classes); with ``build=True`` each distinct task and model is actually constructed once
    too (cheap for the built-in ones). Building draws from torch's CPU generator; the caller's state is restored.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        return _validate_runs(runs, build=build)


def _field_errors(cfg: RunSpec) -> list[str]:
    """The problems of a spec's own fields (names, types, ranges), before any task or loss is built. The task's
    options are its constructor's to check (:func:`_task_error`)."""
    out: list[str] = []
    if cfg.optimizer.lower() not in OPTIMIZERS:
        out.append(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (_real(cfg.lr) and cfg.lr > 0):
        out.append(f"learning rate must be a number > 0, got {cfg.lr!r}")
    if not (_real(cfg.momentum) and 0.0 <= float(cfg.momentum) < 1.0):
        out.append(f"momentum must be a number in [0, 1), got {cfg.momentum!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, numbers.Integral):
        out.append(f"seed must be an integer, got {cfg.seed!r}")
    for name in ("steps", "batch_size", "eval_every", "grad_norm_every"):
        v = getattr(cfg, name)
        low = 0 if name == "grad_norm_every" else 1
        if not (isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_STEPS):
            out.append(f"{name} must be an integer >= {low}{' (0 = off)' if low == 0 else ''} and <= {MAX_STEPS:,}, "
                       f"got {v!r}")
    out += _trainer_option_errors(cfg)
    return out + _converge_errors(cfg.converge)


def _converge_errors(converge: Any) -> list[str]:
    """The problems of a ``converge`` setting (None, or ``{metric, threshold}``)."""
    if converge is None:
        return []
    if not isinstance(converge, dict):
        return [f"converge must be a mapping {{metric, threshold}}, got {converge!r}"]
    out = []
    unknown = sorted(set(converge) - set(CONVERGE_KEYS))
    if unknown:
        out.append(f"converge: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(CONVERGE_KEYS)}")
    cm = converge.get("metric", "mean_dice")
    if cm not in CONVERGE_METRICS:
        out.append(f"unknown convergence metric {cm!r}; choose one of {', '.join(CONVERGE_METRICS)}")
    t = converge.get("threshold", 0.0)
    if not (_real(t) and 0.0 <= float(t) <= 1.0):
        out.append(f"converge threshold must be a number in [0, 1] ({cm} lies in [0, 1]), got {t!r}")
    return out


class _Checker:
    """The state of one :func:`validate_runs` call: the errors found (each line once), the field-tied problems,
    and the tasks and models built so far (each distinct one once)."""

    def __init__(self, build: bool) -> None:
        self.build = build
        self.errors: list[str] = []
        self.problems: list[tuple[str, Any, str]] = []
        self.unfielded = 0
        self.model_problems: list[str] = []
        self.tasks: dict[str, Any] = {}
        self.facts: dict[int, TaskFacts] = {}  # id(task) -> its facts, read once per distinct task
        self.models: set[str] = set()

    def err(self, cfg: RunSpec, msg: str, problem: tuple[str, Any, str] | None = None) -> None:
        line = f"[{cfg.label}] {msg}"
        if line in self.errors:
            return
        self.errors.append(line)
        if problem is None:
            self.unfielded += 1
        elif problem not in self.problems:
            self.problems.append(problem)

    def task(self, cfg: RunSpec) -> Any:
        """The run's task, constructed once per distinct (name, options); the constructor's error otherwise."""
        from seglab.data import create_task

        key = json.dumps([cfg.task, cfg.task_kw], sort_keys=True, default=str)
        if key not in self.tasks:
            try:
                self.tasks[key] = create_task(cfg.task, **cfg.task_kw)
            except (ValueError, TypeError) as e:
                self.tasks[key] = e
        return self.tasks[key]

    def losses_ok(self, cfg: RunSpec, task: Any) -> bool:
        """Build the loss and every monitor on the task (names, options, mode rules, per-class lengths, void)."""
        mons = cfg.monitors if cfg.monitors is not None else run_monitors(cfg.task, cfg.loss, task.mode)
        specs = [("loss", cfg.loss), *(("monitors", m) for m in mons)]
        void = getattr(task, "ignore_index", None)
        for stage in (0, 1):  # first every spec's own checks, then the checks against the task
            ok = True
            for fld, spec in specs:
                try:
                    if stage == 0:
                        canonical_spec(spec, task.mode)
                    else:
                        _check_loss_channels(spec, task.mode, task.num_classes)
                        if void is not None:
                            from .specs import build_loss

                            build_loss(spec, task.mode, ignore_index=void)
                except (ValueError, TypeError) as e:  # noqa: PERF203 (each spec's error is reported, once per task)
                    what = "training loss" if fld == "loss" else f"monitor {spec!r}"
                    self.err(cfg, f"{what}: {e}", (fld, spec, str(e)))
                    ok = False
            if not ok:
                return False
        return True

    def model_ok(self, cfg: RunSpec, task: Any) -> bool:
        """Construct the run's model once per distinct (model, options, task shape); a user's model also gets
        one dry forward (:func:`check_model_contract`)."""
        from seglab.models import create_model

        k = json.dumps([cfg.model, cfg.model_kw, task.in_channels, task.num_classes, task.spatial_dims],
                       sort_keys=True, default=str)
        if not self.build or k in self.models:
            return True
        self.models.add(k)
        try:
            net = create_model(cfg.model, in_channels=task.in_channels, out_channels=task.num_classes,
                               spatial_dims=task.spatial_dims, **cfg.model_kw)
        except (ValueError, TypeError) as e:
            self.err(cfg, f"model: {e}")
            self.model_problems.append(str(e))
            return False
        try:
            if user_model(cfg.model):
                check_model_contract(net, task, task.validation()[0][:1])
        except ValueError as e:
            self.err(cfg, f"model {cfg.model!r}: {e}")
            self.model_problems.append(f"{cfg.model}: {e}")
            return False
        return True

    def check(self, cfg: RunSpec) -> RunSpec | None:
        """The resolved spec, or None after recording its problems."""
        errs = _field_errors(cfg)
        for msg in errs:
            self.err(cfg, msg)
        if errs:
            return None
        task = self.task(cfg)
        if isinstance(task, Exception):
            self.err(cfg, f"task: {_task_error(cfg.task, task)}")
            return None
        if not self.losses_ok(cfg, task):
            return None
        if id(task) not in self.facts:
            self.facts[id(task)] = TaskFacts.of(task)
        rcfg = resolve(dataclasses.replace(cfg, facts=self.facts[id(task)]))
        return rcfg if self.model_ok(cfg, task) else None

    def raise_errors(self) -> None:
        """Raise the :class:`ConfigError` of the errors found (none: nothing happens)."""
        if not self.errors:
            return
        if len(self.errors) == 1:
            e = ConfigError(f"configuration error, nothing was run: {self.errors[0]}", self.problems,
                            only_fields=not self.unfielded)
            e.model_problem = self.model_problems[0] if self.model_problems else None
            raise e
        head = f"{len(self.errors)} configuration error(s); nothing was run:\n  "
        more = "\n  ..." if len(self.errors) > 50 else ""
        raise ConfigError(head + "\n  ".join(self.errors[:50]) + more, self.problems, only_fields=not self.unfielded)


def _validate_runs(runs: Iterable[RunSpec], *, build: bool) -> list[RunSpec]:
    checker = _Checker(build)
    out = [r for r in (checker.check(cfg) for cfg in runs) if r is not None]
    checker.raise_errors()
    return out

