"""Sweep grids: from command-line lists, TOML/YAML files or presets, expanded into :class:`RunSpec` s.

A grid is a mapping; list-valued *axes* are crossed, scalar fields are shared::

    model = "tiny"              # or models = [...]
    task = "threshold"          # or tasks = ["threshold", {name = "shapes", num_classes = 4}]
    fg_ratios = [0.05, 0.5, 0.95]   # sets task_kw.fg_ratio
    norms = ["batch", "none"]       # sets model_kw.norm ("none" -> no normalisation)
    losses = ["study_cce", "study_dice", "dicefg"]   # seglab.get_loss specs
    optimizers = ["adam", "sgd"]    # or {name = "sgd", lr = 0.01, momentum = 0.9}
    lrs = [1e-3]
    momentums = [0.0]               # SGD only (Adam runs ignore it)
    seeds = [0, 1, 2]
    steps = 1000
    batch_size = 2
    eval_every = 100
    monitors = ["study_cce", "dice"]  # optional; default: the task mode's monitor set
    augment = ["flips", "rot90"]    # trainer options (optional, off by default): augment, schedule, warmup,
    schedule = "cosine"             # weight_decay, grad_clip, amp (seglab.train.config.TRAINER_DEFAULTS)
    converge = {metric = "mean_dice", threshold = 0.9}
    task_kw = {size = 32}
    model_kw = {width = 4}

    [[grids]]                   # optional: the sweep is the union of sub-grids, each merged over the base
    optimizers = [{name = "sgd", lr = 0.1}]
    seeds = [0]
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import numbers
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from seglab.train.config import CONVERGE_KEYS, CONVERGE_METRICS, TRAINER_DEFAULTS, ConfigError, RunSpec

AXES = ("tasks", "fg_ratios", "models", "norms", "losses", "optimizers", "lrs", "momentums", "seeds")
#: run fields a grid sets once for all its runs (the trainer options among them: :data:`TRAINER_DEFAULTS`)
SHARED = ("steps", "batch_size", "eval_every", "monitors", "converge", "grad_norm_every", *TRAINER_DEFAULTS)
SCALARS = (*SHARED, "task_kw", "model_kw", "task", "model", "loss", "optimizer", "lr", "momentum", "seed", "fg_ratio",
           "norm")
SINGULAR = {"task": "tasks", "model": "models", "loss": "losses", "optimizer": "optimizers", "lr": "lrs",
            "momentum": "momentums", "seed": "seeds", "fg_ratio": "fg_ratios", "norm": "norms"}
KNOWN = set(AXES) | set(SCALARS) | {"grids", "name", "description"}


def _norm_value(v: Any) -> Any:
    if isinstance(v, str) and v.lower() in ("none", "null", "off", "false", ""):
        return None
    return v


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON grid file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a folder")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
                          "save it as UTF-8") from None
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                from seglab._extras import require

                tomllib = require("tomli", "TOML sweep configs on Python 3.10")
            data = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            from seglab._extras import require

            data = require("yaml", "YAML sweep configs").safe_load(text)
        elif p.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(p)!r}: use .toml, .yaml/.yml or .json")
    except (ConfigError, ImportError):
        raise
    except Exception as e:  # parse errors of any of the three formats
        msg = " ".join(str(e).split())  # one line (YAML errors span several)
        raise ConfigError(f"cannot parse {str(p)!r}: {msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{str(p)!r} must hold a mapping of grid fields, got {type(data).__name__}")
    return data


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _check_keys(grid: dict[str, Any], where: str) -> None:
    unknown = sorted(set(grid) - KNOWN)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(KNOWN)}")
    _check_values(grid, where)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_values(grid: dict[str, Any], where: str) -> None:
    """Types of the grid's values, one error naming the field (before anything is expanded or run)."""
    _check_numbers(grid, where)
    for key in ("steps", "batch_size", "eval_every", "grad_norm_every"):
        low = 0 if key == "grad_norm_every" else 1  # grad_norm_every = 0: no monitor gradients
        if key in grid and not (_is_int(grid[key]) and grid[key] >= low):
            raise ConfigError(f"{where}: {key} must be an integer >= {low}, got {grid[key]!r}")
    for key in ("task_kw", "model_kw"):
        if key in grid and grid[key] is not None and not isinstance(grid[key], dict):
            raise ConfigError(f"{where}: {key} must be a mapping of options, got {grid[key]!r}")
    if "converge" in grid:
        _check_converge(grid["converge"], where)
    if "optimizers" in grid or "optimizer" in grid:
        _check_optimizers(grid.get("optimizers", grid.get("optimizer")), where)


def _check_numbers(grid: dict[str, Any], where: str) -> None:
    """Learning rates, momentums and foreground ratios are numbers, seeds integers (scalars or lists)."""
    for key in ("lr", "lrs", "momentum", "momentums", "seed", "seeds", "fg_ratio", "fg_ratios"):
        if key not in grid:
            continue
        v = grid[key]
        items = list(enumerate(v)) if isinstance(v, (list, tuple)) else [(None, v)]
        for i, x in items:
            at = f"{where}: {key}" + ("" if i is None else f"[{i}]")
            if key.startswith("seed"):
                if not _is_int(x):
                    raise ConfigError(f"{at}: a seed must be an integer, got {x!r}")
            elif not (_is_real(x) or (key.startswith("fg_ratio") and x is None)):
                what = {"lr": "a learning rate", "mo": "a momentum", "fg": "a foreground ratio"}[key[:2]]
                raise ConfigError(f"{at}: {what} must be a number, got {x!r}")


def _check_converge(c: Any, where: str) -> None:
    if not isinstance(c, dict):
        raise ConfigError(f"{where}: converge must be a mapping {{metric = ..., threshold = ...}}, got {c!r}")
    unknown = sorted(set(c) - set(CONVERGE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: converge: unknown option(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(CONVERGE_KEYS)}")
    if "metric" in c and c["metric"] not in CONVERGE_METRICS:
        raise ConfigError(f"{where}: converge.metric must be one of {', '.join(CONVERGE_METRICS)}, got {c['metric']!r}")
    if "threshold" in c and not _is_real(c["threshold"]):
        raise ConfigError(f"{where}: converge.threshold must be a number, got {c['threshold']!r}")


def _check_optimizers(v: Any, where: str) -> None:
    for i, o in enumerate(v if isinstance(v, (list, tuple)) else [v]):
        if isinstance(o, dict):
            for k, what in (("lr", "a learning rate"), ("momentum", "a momentum")):
                if k in o and not _is_real(o[k]):
                    raise ConfigError(f"{where}: optimizers[{i}].{k}: {what} must be a number, got {o[k]!r}")
        elif not isinstance(o, str):
            raise ConfigError(f"{where}: optimizers[{i}] must be a name or a mapping, got {o!r}")


def _optimizer(opt: Any, lr: Any, mom: Any) -> tuple[str, float, float]:
    """``(name, lr, momentum)`` of an optimizer axis entry (a name, or ``{name, lr, momentum}``) over the
    ``lrs`` / ``momentums`` axes (default lr 1e-3; momentum 0, and always 0 for Adam)."""
    if isinstance(opt, dict):
        o = dict(opt)
        oname = str(o.pop("name", "adam")).lower()
        olr = o.pop("lr", None)
        omom = o.pop("momentum", None)
        if o:
            raise ConfigError(f"optimizer entry has unknown field(s) {sorted(o)} (known: name, lr, momentum)")
    else:
        oname, olr, omom = str(opt).lower(), None, None
    the_lr = olr if olr is not None else (lr if lr is not None else 1e-3)
    the_mom = omom if omom is not None else (mom if mom is not None else 0.0)
    return oname, float(the_lr), float(the_mom) if oname == "sgd" else 0.0


def _expand_one(grid: dict[str, Any]) -> list[RunSpec]:
    g = dict(grid)
    for s, plural in SINGULAR.items():  # allow singular names for single values
        if s in g and plural not in g:
            g[plural] = _as_list(g.pop(s))
        elif s in g:
            raise ConfigError(f"give either {s!r} or {plural!r}, not both")
    if "losses" not in g:
        raise ConfigError("a grid needs at least one loss ('losses')")
    tasks = _as_list(g.get("tasks", ["threshold"]))
    fgs = _as_list(g.get("fg_ratios", [None]))
    models = _as_list(g.get("models", ["tiny"]))
    norms = [_norm_value(n) for n in _as_list(g.get("norms", ["__default__"]))]
    losses = _as_list(g["losses"])
    opts = _as_list(g.get("optimizers", ["adam"]))
    lrs = _as_list(g.get("lrs", [None]))
    moms = _as_list(g.get("momentums", [None]))
    seeds = _as_list(g.get("seeds", [0]))
    base_task_kw = dict(g.get("task_kw") or {})
    base_model_kw = dict(g.get("model_kw") or {})
    shared = {k: g[k] for k in SHARED if k in g}
    runs: list[RunSpec] = []
    for task, fg, model, norm, opt, lr, mom, loss, seed in itertools.product(tasks, fgs, models, norms, opts, lrs, moms, losses, seeds):
        if isinstance(task, dict):
            task = dict(task)
            tname = task.pop("name", None)
            if tname is None:
                raise ConfigError(f"task entry {task!r} needs a 'name'")
            tkw = {**base_task_kw, **task}
        else:
            tname, tkw = task, dict(base_task_kw)
        if fg is not None:
            tkw["fg_ratio"] = fg
        if isinstance(model, dict):
            model = dict(model)
            mname = model.pop("name", "tiny")
            mkw = {**base_model_kw, **model}
        else:
            mname, mkw = model, dict(base_model_kw)
        if norm != "__default__":
            mkw["norm"] = norm
        oname, the_lr, the_mom = _optimizer(opt, lr, mom)
        kw = dict(shared)
        for k in ("monitors", "augment"):  # a fresh list per run (TOML/YAML give lists, JSON may give tuples)
            if isinstance(kw.get(k), (list, tuple)):
                kw[k] = list(kw[k])
        runs.append(RunSpec(loss=str(loss), task=str(tname), task_kw=tkw, model=str(mname), model_kw=mkw,
                              optimizer=oname, lr=float(the_lr), momentum=float(the_mom), seed=int(seed), **kw))
    return runs


def check_grid(config: dict[str, Any], where: str = "grid") -> None:
    """Field names and value types of a grid and its sub-grids; raises :class:`ConfigError` naming ``where``."""
    _check_keys(config, where)
    subs = config.get("grids") or []
    if not isinstance(subs, list):
        raise ConfigError(f"{where}: grids must be a list of mappings ([[grids]] tables)")
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict):
            raise ConfigError(f"{where}: grids[{i}] must be a mapping")
        _check_keys(sub, f"{where}: grids[{i}]")


def expand(config: dict[str, Any]) -> list[RunSpec]:
    """All runs of a grid config (union of its sub-grids), de-duplicated by run id, in a stable order."""
    _check_keys(config, "grid")
    base = {k: v for k, v in config.items() if k not in ("grids", "name", "description")}
    subs = config.get("grids") or [{}]
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for i, sub in enumerate(subs):
        if not isinstance(sub, dict):
            raise ConfigError(f"grids[{i}] must be a mapping")
        _check_keys(sub, f"grids[{i}]")
        merged = copy.deepcopy(base)
        for k, v in sub.items():  # an axis given in the sub-grid replaces the base's (and its singular)
            for s, plural in SINGULAR.items():
                if k in (s, plural):
                    merged.pop(s, None)
                    merged.pop(plural, None)
            merged[k] = v
        for r in _expand_one(merged):
            if r.run_id not in seen:
                seen.add(r.run_id)
                runs.append(r)
    return runs


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 0 <= i < n."""
    try:
        a, b = text.split("/")
        i, n = int(a), int(b)
    except ValueError:
        raise ConfigError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


def select(runs: list[RunSpec], *, shard: tuple[int, int] | None = None, run_index: Iterable[int] | None = None) -> list[RunSpec]:
    """The runs of one shard (``runs[i::n]``) and/or the given indices into the full, stable run list."""
    out = runs
    if run_index is not None:
        idx = list(run_index)
        bad = [i for i in idx if not 0 <= i < len(runs)]
        if bad:
            raise ConfigError(f"--run-index {bad} out of range: the sweep has {len(runs)} runs (0..{len(runs) - 1})")
        out = [runs[i] for i in idx]
    if shard is not None:
        i, n = shard
        out = out[i::n]
    return out
