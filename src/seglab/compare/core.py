"""The comparison with seglab's trainer: a losses × seeds sweep into a results folder, then paired differences per
class (:mod:`seglab.compare.analysis`); and the ablations of a loss spec (``seglab compare --ablate``)."""

from __future__ import annotations

import copy
import math
import signal
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from seglab.data import create_task
from seglab.losses.registry import Term, format_options, canonical_spec, lookup, parse_loss_spec
from seglab.results import ResultsStore

from .analysis import (
    DEFAULT_MARGIN, Comparison, Difference, LossResult, assess, check_common, config_error, paired, write_outputs,
)

#: ablation factors: (label, what is removed)
FACTORS = ("CE weights", "Dice weights", "background exclusion", "batch Dice", "Dice term", "CE term")
_CE_LIKE = ("ce", "focal", "topk_ce")
_WEIGHT_KEYS = ("class_weights", "pos_weight")


# ---------------------------------------------------------------- ablation
def _is_ce_like(name: str) -> bool:
    base, _ = lookup(name)
    return base in _CE_LIKE or name in _CE_LIKE


def _spec(terms: list[Term]) -> str:
    """Parsed terms written back as one spec string (weights other than 1 as ``w*``)."""
    parts = []
    for t in terms:
        w = "" if t.weight == 1.0 else f"{t.weight:g}*"
        parts.append(f"{w}{t.name}{format_options(t.options)}")
    return " + ".join(parts)


def ablations(spec: str, mode: str) -> dict[str, str]:
    """The loss ``spec`` with one factor removed at a time: ``{factor: spec without it}``.

    Factors (where present): CE weights (``class_weights``/``pos_weight`` of CE-like terms), Dice weights (of
    region terms), background exclusion (``include_background=false``), batch Dice (``batch=true``), the Dice
    term and the CE term of a composite. The key ``"none (plain)"`` holds the spec with every option factor
    removed (weights, background exclusion, batch), the terms kept. Raises ValueError for an invalid spec.

    >>> ablations("dice[include_background=false] + ce[class_weights=[0.5,2]]", "multiclass")["CE weights"]
    'dice[include_background=false] + ce'
    """
    canonical_spec(spec, mode)  # validates the spec for this mode
    terms = parse_loss_spec(spec)

    def without(pred: Callable[[Term], bool], keys: Sequence[str] = (), drop_term: bool = False) -> str | None:
        """The spec with the terms ``pred`` picks dropped (``drop_term``) or stripped of their factor options
        ``keys``; None when that changes nothing or leaves no term."""
        ts = copy.deepcopy(terms)
        changed = False
        kept = []
        for t in ts:
            if pred(t):
                if drop_term:
                    changed = True
                    continue
                for k in list(t.options):
                    if k in keys and _factor_on(k, t.options[k]):
                        del t.options[k]
                        changed = True
            kept.append(t)
        if not changed or not kept:
            return None
        return _spec(kept)

    cands = {
        "CE weights": without(lambda t: _is_ce_like(t.name), _WEIGHT_KEYS),
        "Dice weights": without(lambda t: not _is_ce_like(t.name), _WEIGHT_KEYS),
        "background exclusion": without(lambda t: not _is_ce_like(t.name), ("include_background",)),
        "batch Dice": without(lambda t: not _is_ce_like(t.name), ("batch",)),
        "Dice term": without(lambda t: not _is_ce_like(t.name), drop_term=True) if len(terms) > 1 else None,
        "CE term": without(lambda t: _is_ce_like(t.name), drop_term=True) if len(terms) > 1 else None,
    }
    out = {k: v for k, v in cands.items() if v is not None}
    plain = without(lambda t: True, _WEIGHT_KEYS + ("include_background", "batch"))
    if plain is not None and plain not in out.values():
        out["none (plain)"] = plain
    return out


def _factor_on(key: str, value: Any) -> bool:
    """Whether option ``key`` with ``value`` switches its ablation factor on (so removing it changes the loss)."""
    if key == "include_background":
        return value is False
    if key == "batch":
        return value is True
    return value is not None


# ---------------------------------------------------------------- the comparison
def compare(losses: Sequence[str], *, out: str | Path, task: str = "shapes", task_kw: dict | None = None,
            model: str = "unet", model_kw: dict | None = None, seeds: int | Sequence[int] = 5, steps: int = 300,
            batch_size: int = 8, optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.0,
            eval_every: int | None = None, workers: int = 2, threads: int = 1, confidence: float = 0.95,
            labels: dict[str, str] | None = None, show_progress: bool = False, engine: str = "local",
            address: str | None = None, margin: float = DEFAULT_MARGIN) -> Comparison:
    """Train every loss in ``losses`` with the same seeds and compare each with the first (the baseline).

    ``losses``: :func:`seglab.get_loss` specs, at least 2, baseline first. ``seeds``: a count (seeds 0..n-1) or
    the seeds, at least 2 for an interval. ``margin``: the equivalence margin in Dice (TOST). Verdicts follow
    docs/analysis_plan.md (:func:`assess`). The runs go into the results folder ``out`` (resumable: a rerun
    reuses finished runs; :func:`seglab.sweep.run_sweep`). Returns a :class:`Comparison`; also writes
    ``out/compare.json``. Raises ValueError (a :class:`~seglab.train.config.ConfigError` for the grid) on bad
    input, before any training.
    """
    # imported here: seglab.sweep and seglab.train run the trainer's package imports, 0.3-0.5 s measured after
    # seglab.compare is loaded, which `seglab compare --help` (it imports this module) would pay
    from seglab.sweep.grid import expand
    from seglab.sweep.runner import SweepInterrupted, run_sweep
    from seglab.train.config import validate_runs

    specs = [str(s).strip() for s in losses]
    seed_list = check_common(specs, seeds, confidence, margin)
    grid: dict[str, Any] = {
        "task": task, "task_kw": dict(task_kw or {}), "model": model, "model_kw": dict(model_kw or {}),
        "losses": specs, "seeds": seed_list, "steps": steps, "batch_size": batch_size,
        "optimizers": [{"name": optimizer, "lr": lr, "momentum": momentum}] if optimizer == "sgd" else [optimizer],
        "lrs": [lr], "eval_every": eval_every or steps, "monitors": [],
    }
    if optimizer == "sgd":
        grid.pop("lrs")
    runs = validate_runs(expand(grid))  # every spec, the task and the model are checked before training
    order = list(dict.fromkeys(r.loss for r in runs))  # canonical specs, in the given order
    if len(order) != len(specs):
        raise config_error(f"--losses: two of the given losses are the same loss: {specs}")
    outcome = run_sweep(grid, out, workers=workers, threads=threads, show_progress=show_progress, pack=False,
                        engine=engine, address=address)
    if outcome.interrupted:  # the signal that ended it travels with the exception (exit 130 or 128 + signum)
        sig = outcome.signal or int(signal.SIGINT)
        raise KeyboardInterrupt if sig == signal.SIGINT else SweepInterrupted(sig)
    by_id = {s["run_id"]: s for s in ResultsStore(out).summaries()}
    mode = create_task(task, **dict(task_kw or {})).mode
    seeds_of = {spec: sorted((r.seed, r.run_id) for r in runs if r.loss == spec) for spec in order}
    results, class_names, failed = _loss_results(order, specs, seeds_of, by_id, labels or {})
    n_cls = max((len(row) for r in results for row in r.class_dice), default=0)
    class_names = class_names or [f"class{c}" for c in range(n_cls)]
    for r in results:
        r.class_dice = [row if len(row) == n_cls else [math.nan] * n_cls for row in r.class_dice]
    fgc = [c for c in range(n_cls) if not (mode == "multiclass" and c == 0)] or list(range(n_cls))
    for i, r in enumerate(sorted(results, key=lambda r: r.rank_key), 1):  # best mean foreground Dice first
        r.rank = i
    base = results[0]
    diffs = _differences(results, class_names, n_cls, confidence)
    assess(diffs, margin)
    setup = {"task": task, "task_kw": dict(task_kw or {}), "model": model, "model_kw": dict(model_kw or {}),
             "seeds": seed_list, "steps": steps, "batch_size": batch_size, "optimizer": optimizer, "lr": lr,
             "momentum": momentum, "losses": [r.spec for r in results], "baseline": base.spec,
             "metric": "Dice per class on the task's fixed validation set at the last step", "mode": mode}
    cmp = Comparison(setup=setup, class_names=class_names, foreground=fgc, results=results, differences=diffs,
                     failed=failed, confidence=confidence, out=str(out), margin=float(margin))
    write_outputs(cmp, out)
    return cmp


def _loss_results(order: list[str], specs: list[str], seeds_of: dict[str, list[tuple[int, str]]],
                  by_id: dict[str, dict[str, Any]],
                  labels: dict[str, str]) -> tuple[list[LossResult], list[str], list[str]]:
    """``(results, class names, failed runs)``: each loss's per-seed Dice read from the run summaries (``by_id``),
    NaN where a run did not finish. ``order``: the canonical specs, one per given spec in ``specs``;
    ``seeds_of``: each canonical spec's ``(seed, run id)`` in seed order."""
    class_names: list[str] = []
    failed: list[str] = []
    results = []
    for spec, given in zip(order, specs, strict=True):  # one canonical spec per given one (checked by the caller)
        md: list[float] = []
        fg: list[float] = []
        cd: list[list[float]] = []
        used: list[int] = []
        for seed, run_id in seeds_of[spec]:
            s = by_id.get(run_id)
            used.append(seed)
            if s is None or s.get("status") != "finished":
                failed.append(f"{given} seed {seed}" + (f" ({s.get('status')})" if s else ""))
                md.append(math.nan)
                fg.append(math.nan)
                cd.append([])
                continue
            class_names = class_names or list(s.get("class_names") or [])
            md.append(float(s.get("final_mean_dice", math.nan)))
            fg.append(float(s.get("final_fg_dice", math.nan)))
            cd.append([float(x) if x is not None else math.nan for x in s.get("final_dice", [])])
        results.append(LossResult(spec=spec, label=labels.get(given, given), seeds=used, mean_dice=md, fg_dice=fg,
                                  class_dice=cd))
    return results, class_names, failed


def _differences(results: list[LossResult], class_names: list[str], n_cls: int, confidence: float) -> list[Difference]:
    """Each loss against the baseline (``results[0]``): the foreground Dice, then the Dice of each class."""
    base = results[0]
    diffs: list[Difference] = []
    for r in results[1:]:
        diffs.append(paired(r.label, base.label, "fg_dice", r.fg_dice, base.fg_dice, confidence))
        diffs += [paired(r.label, base.label, f"dice[{class_names[c]}]", [row[c] for row in r.class_dice],
                         [row[c] for row in base.class_dice], confidence) for c in range(n_cls)]
    return diffs
