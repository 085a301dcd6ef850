"""The comparison: a losses × seeds sweep into a results folder, then paired differences per class."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from seglab.stats import PairedDifference, paired_difference

SCHEMA_VERSION = 1
RULE = ("paired by seed: d = Dice(loss) - Dice(baseline) per seed on the fixed validation set; mean of d with its "
        "two-sided Student-t {conf:.0%} interval and the exact sign-flip p-value (seglab.stats.paired_difference); "
        "'no evidence of a difference' when the interval contains 0. Intervals are per comparison, not adjusted "
        "for the number of comparisons.")

#: ablation factors: (label, what is removed)
FACTORS = ("CE weights", "Dice weights", "background exclusion", "batch Dice", "Dice term", "CE term")
_CE_LIKE = ("ce", "focal", "topk_ce")
_WEIGHT_KEYS = ("class_weights", "pos_weight")


# ---------------------------------------------------------------- ablation
def _is_ce_like(name: str) -> bool:
    from seglab.losses.registry import lookup

    base, _ = lookup(name)
    return base in _CE_LIKE or name in _CE_LIKE


def _spec(terms: list) -> str:
    from seglab.losses.registry import _format_options

    parts = []
    for t in terms:
        w = "" if t.weight == 1.0 else f"{t.weight:g}*"
        parts.append(f"{w}{t.name}{_format_options(t.options)}")
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
    import copy

    from seglab.losses.registry import canonical_spec, parse_loss_spec

    canonical_spec(spec, mode)  # validates the spec for this mode
    terms = parse_loss_spec(spec)
    out: dict[str, str] = {}

    def without(pred, keys=None, drop_term=False) -> Optional[str]:
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
    for k, v in cands.items():
        if v is not None:
            out[k] = v
    plain = without(lambda t: True, _WEIGHT_KEYS + ("include_background", "batch"))
    if plain is not None and plain not in out.values():
        out["none (plain)"] = plain
    return out


def _factor_on(key: str, value: Any) -> bool:
    if key == "include_background":
        return value is False
    if key == "batch":
        return value is True
    return value is not None


# ---------------------------------------------------------------- results
@dataclass
class LossResult:
    """One loss over the seeds: per-seed mean Dice and per-class Dice (nan: class absent and not predicted)."""

    spec: str
    label: str
    seeds: list[int]
    mean_dice: list[float]
    fg_dice: list[float]
    class_dice: list[list[float]]  # [seed][class]
    rank: int = 0

    @property
    def mean(self) -> float:
        return _nanmean(self.fg_dice)

    def as_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        per_class = {}
        for c, name in enumerate(class_names):
            vals = [row[c] for row in self.class_dice]
            per_class[name] = {"mean": _nanmean(vals), "sd": _nansd(vals), "per_seed": vals}
        return {"spec": self.spec, "label": self.label, "rank": self.rank, "seeds": self.seeds,
                "fg_dice": {"mean": self.mean, "sd": _nansd(self.fg_dice), "per_seed": self.fg_dice},
                "mean_dice": {"mean": _nanmean(self.mean_dice), "sd": _nansd(self.mean_dice), "per_seed": self.mean_dice},
                "per_class": per_class}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _nanmean(xs: Sequence[float]) -> float:
    v = [x for x in xs if _finite(x)]
    return sum(v) / len(v) if v else math.nan


def _nansd(xs: Sequence[float]) -> float:
    v = [x for x in xs if _finite(x)]
    if len(v) < 2:
        return math.nan
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass
class Difference:
    a: str
    b: str
    metric: str  # "fg_dice" or "dice[<class>]"
    result: Optional[PairedDifference]
    n_pairs: int
    note: str = ""

    def verdict(self) -> str:
        if self.result is None:
            return f"not tested: {self.note}"
        v = self.result.verdict(self.a, self.b)
        alpha = 1.0 - self.result.confidence
        if not self.result.contains_zero and self.result.min_pvalue > alpha:
            v += (f" (weak: with {self.result.n} pairs the sign-flip test cannot go below p = "
                  f"{self.result.min_pvalue:.3g}; use more seeds)")
        return v

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"a": self.a, "b": self.b, "metric": self.metric, "n_pairs": self.n_pairs,
                             "verdict": self.verdict()}
        if self.result is not None:
            d.update(self.result.as_dict())
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Comparison:
    """The outcome of :func:`compare`: per-loss results (ranked) and paired differences against the baseline."""

    setup: dict[str, Any]
    class_names: list[str]
    foreground: list[int]
    results: list[LossResult]
    differences: list[Difference]
    failed: list[str] = field(default_factory=list)
    confidence: float = 0.95
    out: Optional[str] = None

    @property
    def baseline(self) -> LossResult:
        return next(r for r in self.results if r.spec == self.setup["baseline"])

    def to_dict(self) -> dict[str, Any]:
        from seglab._version import __version__

        return {"schema_version": SCHEMA_VERSION, "seglab_version": __version__, "setup": self.setup,
                "rule": RULE.format(conf=self.confidence),
                "ranked_by": "mean foreground per-class Dice over seeds (all classes for multilabel/binary)",
                "class_names": self.class_names, "baseline": self.setup["baseline"],
                "losses": [r.as_dict(self.class_names) for r in sorted(self.results, key=lambda r: r.rank)],
                "differences": [d.as_dict() for d in self.differences], "failed_runs": self.failed,
                "out": self.out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default, allow_nan=True)

    def text(self) -> str:
        """Plain-text ranking and the paired differences (what the CLI prints)."""
        s = self.setup
        lines = [f"seglab compare: {len(self.results)} losses x {len(s['seeds'])} paired seeds on task {s['task']}"
                 f"{_kw(s.get('task_kw'))}, model {s['model']}, {s['steps']} steps ({s['optimizer']} lr {s['lr']:g})",
                 f"baseline: {s['baseline']}", ""]
        names = [self.class_names[c] for c in range(len(self.class_names))]
        head = ["rank", "loss", "fg Dice (mean ± sd)"] + names
        rows = []
        for r in sorted(self.results, key=lambda r: r.rank):
            cells = [str(r.rank), r.label, f"{_f(r.mean)} ± {_f(_nansd(r.fg_dice))}"]
            for c in range(len(names)):
                cells.append(_f(_nanmean([row[c] for row in r.class_dice])))
            rows.append(cells)
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        lines += ["", f"paired differences vs the baseline ({self.confidence:.0%} t-intervals, per seed pair):"]
        for d in self.differences:
            lines.append(f"  {d.metric:>24}: {d.verdict()}")
        if self.failed:
            lines.append(f"failed runs (left out of the pairs): {', '.join(self.failed)}")
        lines.append("rule: " + RULE.format(conf=self.confidence))
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """A self-contained HTML section (the report includes it when the results folder has compare.json)."""
        return render_html(self.to_dict())


def render_html(d: dict[str, Any]) -> str:
    """HTML section of a comparison dict (:meth:`Comparison.to_dict`, or compare.json read back)."""
    from html import escape

    names = d["class_names"]
    rows = []
    for r in d["losses"]:
        cells = [str(r["rank"]), escape(r["label"]), f"{_f(r['fg_dice']['mean'])} ± {_f(r['fg_dice']['sd'])}"]
        cells += [_f(r["per_class"][n]["mean"]) for n in names]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in ["rank", "loss", "fg Dice (mean ± sd)"] + list(names))
    diffs = []
    for x in d["differences"]:
        ci = (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" if "mean" in x else "—")
        diffs.append(f"<tr><td>{escape(x['a'])}</td><td>{escape(x['metric'])}</td><td>{ci}</td>"
                     f"<td>{x.get('pvalue', float('nan')):.3g}</td><td>{x['n_pairs']}</td>"
                     f"<td>{escape(x['verdict'])}</td></tr>")
    s = d["setup"]
    return (f"<section id='compare'><h2>Loss comparison (paired seeds)</h2>"
            f"<p>task {escape(str(s['task']))}{escape(_kw(s.get('task_kw')))}, model {escape(str(s['model']))}, "
            f"{s['steps']} steps, seeds {s['seeds']}; baseline <code>{escape(d['baseline'])}</code>.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h3>Differences from the baseline</h3><table><tr><th>loss</th><th>metric</th><th>mean difference "
            f"[95 % CI]</th><th>p (sign-flip)</th><th>pairs</th><th>verdict</th></tr>{''.join(diffs)}</table>"
            f"<p class='rule'>{escape(d['rule'])}</p></section>")


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _f(x: float) -> str:
    return "—" if not _finite(x) else f"{x:.3f}"


def _kw(kw: Optional[dict]) -> str:
    return "".join(f" {k}={v}" for k, v in sorted((kw or {}).items()))


# ---------------------------------------------------------------- the comparison
def compare(losses: Sequence[str], *, out: str | Path, task: str = "shapes", task_kw: Optional[dict] = None,
            model: str = "unet", model_kw: Optional[dict] = None, seeds: int | Sequence[int] = 5, steps: int = 300,
            batch_size: int = 8, optimizer: str = "adam", lr: float = 1e-3, momentum: float = 0.0,
            eval_every: Optional[int] = None, workers: int = 2, threads: int = 1, confidence: float = 0.95,
            labels: Optional[dict[str, str]] = None, show_progress: bool = False, engine: str = "local",
            address: Optional[str] = None) -> Comparison:
    """Train every loss in ``losses`` with the same seeds and compare each with the first (the baseline).

    ``losses``: :func:`seglab.get_loss` specs, at least 2, baseline first. ``seeds``: a count (seeds 0..n-1) or
    the seeds, at least 2 for an interval. The runs go into the results folder ``out`` (resumable: a rerun
    reuses finished runs; :func:`seglab.sweep.run_sweep`). Returns a :class:`Comparison`; also writes
    ``out/compare.json``. Raises ValueError (a :class:`~seglab.train.config.ConfigError` for the grid) on bad
    input, before any training.
    """
    from seglab._checks import check_number
    from seglab.sweep.runner import run_sweep
    from seglab.train.config import ConfigError

    specs = [str(s).strip() for s in losses]
    if len(specs) < 2:
        raise ConfigError(f"--losses: compare needs at least 2 losses (the baseline first), got {specs}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    if len(seed_list) < 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in seed_list):
        raise ConfigError(f"--seeds: at least 2 integer seeds are needed for a paired interval, got {seeds!r}")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"--seeds: seeds must be distinct, got {seed_list}")
    check_number("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    grid: dict[str, Any] = {
        "task": task, "task_kw": dict(task_kw or {}), "model": model, "model_kw": dict(model_kw or {}),
        "losses": specs, "seeds": seed_list, "steps": steps, "batch_size": batch_size,
        "optimizers": [{"name": optimizer, "lr": lr, "momentum": momentum}] if optimizer == "sgd" else [optimizer],
        "lrs": [lr], "eval_every": eval_every or steps, "monitors": [],
    }
    if optimizer == "sgd":
        grid.pop("lrs")
    from seglab.sweep.grid import expand
    from seglab.train.config import validate_runs

    runs = validate_runs(expand(grid))  # every spec, the task and the model are checked before training
    canon = {}
    for r in runs:
        canon.setdefault(r.loss, r)
    order = list(dict.fromkeys(r.loss for r in runs))  # canonical specs, in the given order
    if len(order) != len(specs):
        raise ConfigError(f"--losses: two of the given losses are the same loss: {specs}")
    outcome = run_sweep(grid, out, workers=workers, threads=threads, show_progress=show_progress, pack=False,
                        engine=engine, address=address)
    if outcome.interrupted:
        raise KeyboardInterrupt
    from seglab.results import ResultsStore

    store = ResultsStore(out)
    by_id = {s["run_id"]: s for s in store.summaries()}
    class_names: list[str] = []
    from seglab.data import create_task

    mode = create_task(task, **dict(task_kw or {})).mode
    failed = []
    results = []
    labels = labels or {}
    for spec, given in zip(order, specs):
        mine = [r for r in runs if r.loss == spec]
        md, fg, cd, used = [], [], [], []
        for r in sorted(mine, key=lambda r: r.seed):
            s = by_id.get(r.run_id)
            if s is None or s.get("status") != "finished":
                failed.append(f"{given} seed {r.seed}" + (f" ({s.get('status')})" if s else ""))
                md.append(math.nan)
                fg.append(math.nan)
                cd.append([])
                used.append(r.seed)
                continue
            class_names = class_names or list(s.get("class_names") or [])
            md.append(float(s.get("final_mean_dice", math.nan)))
            fg.append(float(s.get("final_fg_dice", math.nan)))
            cd.append([float(x) if x is not None else math.nan for x in s.get("final_dice", [])])
            used.append(r.seed)
        results.append(LossResult(spec=spec, label=labels.get(given, given), seeds=used, mean_dice=md, fg_dice=fg,
                                  class_dice=cd))
    n_cls = max((len(row) for r in results for row in r.class_dice), default=0)
    class_names = class_names or [f"class{c}" for c in range(n_cls)]
    for r in results:
        r.class_dice = [row if len(row) == n_cls else [math.nan] * n_cls for row in r.class_dice]
    fgc = [c for c in range(n_cls) if not (mode == "multiclass" and c == 0)] or list(range(n_cls))
    for i, r in enumerate(sorted(results, key=lambda r: -r.mean if _finite(r.mean) else math.inf), 1):
        r.rank = i
    base = results[0]
    diffs: list[Difference] = []
    for r in results[1:]:
        diffs.append(_difference(r, base, "fg_dice", r.fg_dice, base.fg_dice, confidence))
        for c in range(n_cls):
            diffs.append(_difference(r, base, f"dice[{class_names[c]}]", [row[c] for row in r.class_dice],
                                     [row[c] for row in base.class_dice], confidence))
    setup = {"task": task, "task_kw": dict(task_kw or {}), "model": model, "model_kw": dict(model_kw or {}),
             "seeds": seed_list, "steps": steps, "batch_size": batch_size, "optimizer": optimizer, "lr": lr,
             "momentum": momentum, "losses": [r.spec for r in results], "baseline": base.spec,
             "metric": "Dice per class on the task's fixed validation set at the last step", "mode": mode}
    cmp = Comparison(setup=setup, class_names=class_names, foreground=fgc, results=results, differences=diffs,
                     failed=failed, confidence=confidence, out=str(out))
    Path(out, "compare.json").write_text(cmp.to_json())
    return cmp


def _difference(r: LossResult, base: LossResult, metric: str, a: list[float], b: list[float],
                confidence: float) -> Difference:
    pairs = [(x, y) for x, y in zip(a, b) if _finite(x) and _finite(y)]
    if len(pairs) < 2:
        return Difference(r.label, base.label, metric, None, len(pairs),
                          note=f"{len(pairs)} seed pair(s) with a defined Dice (the class is absent and never predicted, "
                               "or runs failed); an interval needs 2")
    res = paired_difference([p[0] for p in pairs], [p[1] for p in pairs], confidence=confidence)
    return Difference(r.label, base.label, metric, res, len(pairs))
