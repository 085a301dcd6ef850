"""One run's configuration (:class:`RunConfig`), its stable id, and validation before anything runs."""

from __future__ import annotations

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
from .specs import STUDY_CONVERGE, run_monitors, study_task

OPTIMIZERS = ("adam", "sgd")
CONVERGE_METRICS = ("mean_dice", "fg_dice", "accuracy")
CONVERGE_KEYS = ("metric", "threshold")
GRAD_NORM_EVERY = 50  # default: monitor gradient norms at steps 0, 50, 100, ... (the study preset sets 1)
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


#: the trainer options of :class:`RunConfig` and their defaults (off): augmentation (names of
#: :data:`seglab.train.augment.AUGMENTS`), the learning-rate schedule (``cosine``, ``poly``; ``warmup`` steps of
#: linear warm-up), weight decay (decoupled, AdamW, for adam; L2 for sgd), gradient clipping (the global norm),
#: mixed precision (``bf16``: CPU or CUDA autocast; ``fp16``: CUDA with a gradient scaler). At their defaults they
#: are left out of the run id.
TRAINER_DEFAULTS: dict[str, Any] = {"augment": None, "schedule": None, "warmup": 0, "weight_decay": 0.0,
                                    "grad_clip": None, "amp": None}
SCHEDULES = ("cosine", "poly")
AMP_DTYPES = ("bf16", "fp16")


def _trainer_option_errors(cfg: RunConfig) -> list[str]:
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


def lr_factor(cfg: RunConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based) over ``cfg.lr``: linear warm-up over ``cfg.warmup`` steps
    (``(step + 1) / warmup``), then 1 (no schedule), ``(1 + cos(pi t)) / 2`` (cosine) or ``(1 - t) ** 0.9``
    (poly), ``t`` the fraction of the steps after the warm-up done.

    >>> c = RunConfig(loss="ce", steps=10, schedule="cosine", warmup=2)
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


@dataclass
class RunConfig:
    """model × task × loss × optimizer × seed × steps × batch size (+ monitoring and convergence settings).

    ``loss`` and ``monitors`` are :func:`seglab.get_loss` specs; :func:`resolve` records each as
    :func:`~seglab.losses.registry.canonical_spec` writes it (a bare name such as ``study_dice`` as given, any
    other spec in :func:`seglab.format_loss`'s canonical form), a string that pastes into ``get_loss``.
    ``monitors=None`` means the default monitor set (:func:`~seglab.train.specs.run_monitors`: the study's set of
    the task's mode on the study's tasks, the trained loss and its parts on user data); :func:`resolve` fills it
    in. ``converge=None`` means the study's rule (mean Dice >= 0.9) on the study's tasks
    (:data:`~seglab.train.specs.STUDY_TASKS`) and no verdict (``converged`` None) on user data; otherwise
    ``converge``: ``{"metric": "mean_dice"|"fg_dice"|"accuracy", "threshold": t}``;
    a run has converged when the metric at the final validation is >= t (for ``accuracy`` the criterion is
    ``acc >= majority + t * (1 - majority)``, i.e. a fraction t of the way from the majority-class rate to 1).
    ``grad_norm_every``: the gradient of every monitor loss (one extra backward pass each) is taken at the steps
    ``k`` with ``k % grad_norm_every == 0`` (:func:`measures_grad_norms`), 0 = never; the training loss's
    gradient norm is recorded at every step (it comes with the training backward pass). Default
    :data:`GRAD_NORM_EVERY` (50); the Chlebus (2018) study preset sets 1 (its figures plot every step).
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def trainer_options(self) -> dict[str, Any]:
        """The trainer options (:data:`TRAINER_DEFAULTS`) that are set, i.e. not at their defaults."""
        d = self.to_dict()
        return {k: d[k] for k, v in TRAINER_DEFAULTS.items() if d[k] != v and d[k] != []}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
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


def _task_cache_key(cfg: RunConfig) -> str:
    return json.dumps([cfg.task, cfg.task_kw], sort_keys=True, default=str)


def resolve(cfg: RunConfig, task=None) -> RunConfig:
    """Canonicalise names and fill in defaults that depend on the task (the monitor set).

    Raises ValueError for a loss or monitor spec that is malformed or does not apply to the task's mode."""
    if task is None:
        from seglab.data import create_task

        task = create_task(cfg.task, **cfg.task_kw)
    d = cfg.to_dict()
    d["loss"] = canonical_spec(cfg.loss, task.mode)
    mons = cfg.monitors if cfg.monitors is not None else run_monitors(cfg.task, cfg.loss, task.mode)
    d["monitors"] = list(dict.fromkeys(canonical_spec(m, task.mode) for m in mons))
    if cfg.converge is None and study_task(cfg.task):
        d["converge"] = dict(STUDY_CONVERGE)
    d["optimizer"] = cfg.optimizer.lower()
    d["lr"] = float(cfg.lr)
    d["momentum"] = float(cfg.momentum)
    d["augment"] = list(cfg.augment) if cfg.augment else None
    d["weight_decay"] = float(cfg.weight_decay)
    d["grad_clip"] = float(cfg.grad_clip) if cfg.grad_clip is not None else None
    return RunConfig(**d)


def validate_runs(runs: Iterable[RunConfig], *, build: bool = True) -> list[RunConfig]:
    """Check every run (names, ranges, loss/task compatibility) and return them resolved.

    Raises :class:`ConfigError` listing every problem found, before any run starts. Every loss and monitor
    spec is built once per task mode (names, options, mode rules, constructor checks, per-class option lengths
    against the task's classes); with ``build=True`` each distinct task and model is actually constructed once
    too (cheap for the built-in ones). Building draws from torch's CPU generator; the caller's state is restored.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        return _validate_runs(runs, build=build)


def _validate_runs(runs: Iterable[RunConfig], *, build: bool) -> list[RunConfig]:
    from seglab.data import create_task

    errors: list[str] = []
    problems: list[tuple[str, Any, str]] = []
    out: list[RunConfig] = []
    tasks: dict[str, Any] = {}
    checked: set[str] = set()

    unfielded = [0]
    model_problems: list[str] = []

    def err(cfg: RunConfig, msg: str, problem: tuple[str, Any, str] | None = None) -> None:
        line = f"[{cfg.label}] {msg}"
        if line not in errors:
            errors.append(line)
            if problem is None:
                unfielded[0] += 1
            elif problem not in problems:
                problems.append(problem)

    for cfg in runs:
        ok = True
        fg = cfg.task_kw.get("fg_ratio")
        if fg is not None and not (isinstance(fg, (int, float)) and 0.0 < float(fg) < 1.0):
            err(cfg, f"fg_ratio must lie in the open interval (0, 1), got {fg!r}")
            ok = False
        if cfg.optimizer.lower() not in OPTIMIZERS:
            err(cfg, f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
            ok = False
        if not (_real(cfg.lr) and cfg.lr > 0):
            err(cfg, f"learning rate must be a number > 0, got {cfg.lr!r}")
            ok = False
        if not (_real(cfg.momentum) and 0.0 <= float(cfg.momentum) < 1.0):
            err(cfg, f"momentum must be a number in [0, 1), got {cfg.momentum!r}")
            ok = False
        if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, numbers.Integral):
            err(cfg, f"seed must be an integer, got {cfg.seed!r}")
            ok = False
        for name in ("steps", "batch_size", "eval_every", "grad_norm_every"):
            v = getattr(cfg, name)
            low = 0 if name == "grad_norm_every" else 1
            if not (isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_STEPS):
                err(cfg, f"{name} must be an integer >= {low}{' (0 = off)' if low == 0 else ''} and <= {MAX_STEPS:,}, "
                    f"got {v!r}")
                ok = False
        for msg in _trainer_option_errors(cfg):
            err(cfg, msg)
            ok = False
        conv = cfg.converge if isinstance(cfg.converge, dict) else {}
        if cfg.converge is not None and not isinstance(cfg.converge, dict):
            err(cfg, f"converge must be a mapping {{metric, threshold}}, got {cfg.converge!r}")
            ok = False
        unknown = sorted(set(conv) - set(CONVERGE_KEYS))
        if unknown:
            err(cfg, f"converge: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(CONVERGE_KEYS)}")
            ok = False
        cm = conv.get("metric", "mean_dice")
        if cm not in CONVERGE_METRICS:
            err(cfg, f"unknown convergence metric {cm!r}; choose one of {', '.join(CONVERGE_METRICS)}")
            ok = False
        if "threshold" in conv and not (_real(conv["threshold"]) and 0.0 <= float(conv["threshold"]) <= 1.0):
            err(cfg, f"converge threshold must be a number in [0, 1] ({cm} lies in [0, 1]), got {conv['threshold']!r}")
            ok = False
        if not ok:
            continue
        key = _task_cache_key(cfg)
        if key not in tasks:
            try:
                tasks[key] = create_task(cfg.task, **cfg.task_kw)
            except (ValueError, TypeError) as e:
                tasks[key] = e
        task = tasks[key]
        if isinstance(task, Exception):
            err(cfg, f"task: {_task_error(cfg.task, task)}")
            continue
        mons = cfg.monitors if cfg.monitors is not None else run_monitors(cfg.task, cfg.loss, task.mode)
        for fld, spec in [("loss", cfg.loss), *(("monitors", m) for m in mons)]:
            try:  # builds the loss: names, options, mode rules and the constructor's checks
                canonical_spec(spec, task.mode)
            except (ValueError, TypeError) as e:
                what = "training loss" if fld == "loss" else f"monitor {spec!r}"
                err(cfg, f"{what}: {e}", (fld, spec, str(e)))
                ok = False
        if not ok:
            continue
        void = getattr(task, "ignore_index", None)
        for fld, spec in [("loss", cfg.loss), *(("monitors", m) for m in mons)]:
            try:
                _check_loss_channels(spec, task.mode, task.num_classes)
                if void is not None:
                    from .specs import build_loss

                    build_loss(spec, task.mode, ignore_index=void)
            except (ValueError, TypeError) as e:
                what = "training loss" if fld == "loss" else f"monitor {spec!r}"
                err(cfg, f"{what}: {e}", (fld, spec, str(e)))
                ok = False
        if not ok:
            continue
        rcfg = resolve(cfg, task)
        if build:
            from seglab.models import create_model

            k = json.dumps([cfg.model, cfg.model_kw, task.in_channels, task.num_classes, task.spatial_dims], sort_keys=True, default=str)
            if k not in checked:
                checked.add(k)
                try:
                    net = create_model(cfg.model, in_channels=task.in_channels, out_channels=task.num_classes,
                                       spatial_dims=task.spatial_dims, **cfg.model_kw)
                except (ValueError, TypeError) as e:
                    err(cfg, f"model: {e}")
                    model_problems.append(str(e))
                    ok = False
                else:
                    try:
                        if user_model(cfg.model):
                            check_model_contract(net, task, task.validation()[0][:1])
                    except ValueError as e:
                        err(cfg, f"model {cfg.model!r}: {e}")
                        model_problems.append(f"{cfg.model}: {e}")
                        ok = False
        if ok:
            out.append(rcfg)
    if len(errors) == 1:
        e = ConfigError(f"configuration error, nothing was run: {errors[0]}", problems, only_fields=not unfielded[0])
        e.model_problem = model_problems[0] if model_problems else None
        raise e
    if errors:
        head = f"{len(errors)} configuration error(s); nothing was run:\n  "
        raise ConfigError(head + "\n  ".join(errors[:50]) + ("\n  ..." if len(errors) > 50 else ""), problems,
                          only_fields=not unfielded[0])
    return out
