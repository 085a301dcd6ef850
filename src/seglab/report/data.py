"""Grouping of runs into configurations (runs that differ only in the seed) and aggregation."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

from seglab.results import ResultsStore, flatten_summary

#: fields that make a panel group (a figure) and a configuration (a figure panel / a table row)
FIGURE_KEYS = ("task", "fg_ratio", "model", "norm", "optimizer", "lr", "momentum")
CONFIG_KEYS = FIGURE_KEYS + ("loss",)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "none" if v is None else str(v)


def figure_title(key: tuple) -> str:
    d = dict(zip(FIGURE_KEYS, key, strict=True))
    parts = [str(d["task"])]
    if d.get("fg_ratio") is not None:
        parts.append(f"fg {100 * float(d['fg_ratio']):g}%")
    parts.append(f"{d['model']} norm={_fmt(d['norm'])}")
    opt = f"{d['optimizer']} lr={_fmt(d['lr'])}"
    if d["optimizer"] == "sgd":
        opt += f" momentum={_fmt(d['momentum'])}"
    parts.append(opt)
    return ", ".join(parts)


def figure_slug(key: tuple) -> str:
    d = dict(zip(FIGURE_KEYS, key, strict=True))
    s = f"{d['task']}"
    if d.get("fg_ratio") is not None:
        s += f"_fg{round(100 * float(d['fg_ratio']))}"
    s += f"_{d['model']}_{'bn' if d['norm'] == 'batch' else _fmt(d['norm'])}_{d['optimizer']}_lr{_fmt(d['lr'])}"
    if d["optimizer"] == "sgd":
        s += f"_m{_fmt(d['momentum'])}"
    return bounded_name(s.replace("/", "-").replace(" ", ""))


#: the longest figure name stem :func:`figure_slug` gives (file systems allow 255 bytes per name; the
#: figures add suffixes such as ``_dice_curves.png``)
MAX_SLUG = 100


def bounded_name(stem: str, limit: int = MAX_SLUG) -> str:
    """``stem`` if it has at most ``limit`` UTF-8 bytes, else a readable prefix, ``-`` and 12 hex digits of
    the SHA-1 of the whole ``stem`` (distinct stems stay distinct): a user model given by a long path would
    otherwise make a file name the file system refuses ("File name too long").

    >>> bounded_name("threshold_fg5_tiny_bn_adam_lr0.001")
    'threshold_fg5_tiny_bn_adam_lr0.001'
    >>> len(bounded_name("x" * 500))
    100
    """
    if len(stem.encode()) <= limit:
        return stem
    import hashlib

    digest = hashlib.sha1(stem.encode()).hexdigest()[:12]
    prefix = stem.encode()[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{prefix}-{digest}"


def default_norm(model: Any) -> str:
    """The normalisation of a registered model built without a ``norm`` option: the default of its factory's
    ``norm`` parameter (``"none"`` for ``None``); ``"unknown"`` for a user model (``module:factory``) or a
    factory without a ``norm`` parameter. Used only for runs that did not record ``model_norm``.

    Example::

        >>> default_norm("unet"), default_norm("mypkg.nets:make_net")
        ('batch', 'unknown')
    """
    import inspect

    from seglab.models import list_models  # registers the built-in models
    from seglab.models.registry import MODELS, is_external_model

    if not isinstance(model, str) or is_external_model(model) or model not in list_models():
        return "unknown"
    p = inspect.signature(MODELS[model]).parameters.get("norm")
    if p is None or p.default is inspect.Parameter.empty:
        return "unknown"
    return "none" if p.default is None else str(p.default)


def load_rows(store: ResultsStore) -> list[dict[str, Any]]:
    """One flat row per finished run (:func:`seglab.results.flatten_summary`); ``norm`` is the recorded
    ``model_norm``, else the configured ``model_kw.norm``, else the model factory's default
    (:func:`default_norm`), never a guess of ``"none"``. Runs of ``seglab compare --fn`` (``"kind": "fn"``: the
    user's own training function, no records) are left out."""
    rows = []
    for s in store.summaries():
        if s.get("kind") == "fn" or (s.get("config") or {}).get("kind") == "fn":
            continue  # a ``seglab compare --fn`` run: the user's own training, no curves (the comparison shows it)
        r = flatten_summary(s)
        r.setdefault("fg_ratio", None)
        if r.get("norm") is None:
            r["norm"] = default_norm(r.get("model"))
        rows.append(r)
    return rows


def loss_order(store: ResultsStore) -> list[str]:
    """The order of the losses in figures, from the runs alone: each run's recorded ``loss_order`` (its monitors,
    then its trained loss), else for runs written before it was recorded its configured monitors and loss;
    first seen first."""
    out: dict[str, None] = {}
    for s in store.summaries():
        c = s.get("config") or {}
        for n in s.get("loss_order") or [*(c.get("monitors") or []), c.get("loss")]:
            if isinstance(n, str):
                out.setdefault(n, None)
    return list(out)


def class_names(rows: list[dict[str, Any]]) -> list[str]:
    """Names of the classes with a final Dice in ``rows`` (``final_dice/<name>`` keys), in first-seen order."""
    names: list[str] = []
    for r in rows:
        for k in r:
            if k.startswith("final_dice/") and k[len("final_dice/"):] not in names:
                names.append(k[len("final_dice/"):])
    return names


def _class_dices(r: dict[str, Any]) -> list[float]:
    out = []
    for k, v in r.items():
        if k.startswith("final_dice/") and v is not None:
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if not math.isnan(x):
                out.append(x)
    return out


def _mean(xs: list) -> float:
    xs = [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration (seeds pooled): n, converged count, diverged count, means of final metrics."""
    groups: OrderedDict[tuple, list] = OrderedDict()
    for r in sorted(rows, key=lambda r: tuple(_fmt(r.get(k)) for k in CONFIG_KEYS) + (r.get("seed", 0),)):
        groups.setdefault(tuple(r.get(k) for k in CONFIG_KEYS), []).append(r)
    out = []
    for key, rs in groups.items():
        a = dict(zip(CONFIG_KEYS, key, strict=True))
        a["n"] = len(rs)
        a["seeds"] = sorted(r.get("seed") for r in rs)
        a["converged"] = sum(bool(r.get("converged")) for r in rs)
        # user data without --converge: no verdict (converged None), shown as such rather than as 0 converged
        a["verdict"] = any(r.get("converged") is not None for r in rs)
        a["diverged"] = sum(r.get("status") == "diverged" for r in rs)
        for k in ("final_accuracy", "majority", "final_fg_dice", "final_mean_dice", "final_train_loss", "converged_step",
                  "steps_done", "wall_s"):
            a[k] = _mean([r.get(k) for r in rs])
        keys = list(dict.fromkeys(k for r in rs for k in r))
        for k in keys:
            if k.startswith(("mean_gnorm/", "early_gnorm/", "max_gnorm/", "final_loss/", "final_dice/", "final_iou/")):
                a[k] = _mean([r.get(k) for r in rs])
        # the worst class of each run (its lowest final Dice), mean over seeds: a class that fails shows here
        a["final_min_dice"] = _mean([min(d) if d else None for d in map(_class_dices, rs)])
        a["run_ids"] = [r["run_id"] for r in rs]
        out.append(a)
    return out


def figure_groups(rows: list[dict[str, Any]]) -> OrderedDict[tuple, dict[str, list[str]]]:
    """figure key -> {training loss -> [run ids (seeds)]}."""
    out: OrderedDict[tuple, dict[str, list[str]]] = OrderedDict()
    for r in sorted(rows, key=lambda r: tuple(_fmt(r.get(k)) for k in FIGURE_KEYS)):
        out.setdefault(tuple(r.get(k) for k in FIGURE_KEYS), {}).setdefault(r["loss"], []).append(r["run_id"])
    return out
