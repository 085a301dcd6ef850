"""The paired analysis both comparisons share (``seglab compare`` and ``seglab compare --fn``): per-loss results,
paired differences under docs/analysis_plan.md, re-reading an older ``compare.json``, and the text, HTML and files
they are written as. Running the comparisons is :mod:`seglab.compare.core` (seglab's trainer) and
:mod:`seglab.compare.fn` (the user's function); both import this module, never each other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

from seglab._checks import check_number
from seglab._version import __version__
from seglab.stats import (
    DISAGREEMENT, PLAN_MAX_EXACT, VERDICTS, PLAN_RESAMPLES, PairedDifference, Tost, disagree, holm, paired_difference,
    plan_verdict, tost_paired,
)

SCHEMA_VERSION = 2  # 2: the analysis plan's verdicts (p_raw, p_holm, margin, tost_p, verdict, disagreement)
DEFAULT_MARGIN = 0.01  # equivalence margin in Dice (docs/analysis_plan.md section 4)
RULE = ("docs/analysis_plan.md: paired by seed, d = Dice(loss) - Dice(baseline) per seed on the fixed validation "
        "set. Primary test: the exact two-sided sign-flip test on d (all 2^n sign patterns up to 16 seeds), Holm-"
        "adjusted within each family (one per endpoint of this run: fg_dice over the losses; the per-class Dice over "
        "losses x classes); beside it the mean of d with its Student-t {conf:.0%} interval. better / worse: Holm p < "
        "{alpha:g} and the interval excludes 0 above / below; equivalent: otherwise, when TOST within +-{margin:g} "
        "Dice passes (two one-sided paired t-tests at {alpha:g}, the {tost:.0%} t-interval inside the margin); "
        "inconclusive: everything else. The output says when the t-interval and the sign-flip test disagree.")

RULE_FN = ("docs/analysis_plan.md: paired by seed, d = value(loss) - value(baseline) per seed, for every metric the "
           "user's function returned. Primary test: the exact two-sided sign-flip test on d (all 2^n sign patterns up "
           "to 16 seeds), Holm-adjusted within each family (one per metric: its value, or its mean over the returned "
           "classes, over the losses; its per-class values over losses x classes); beside it the mean of d with its "
           "Student-t {conf:.0%} interval. better / worse: Holm p < {alpha:g} and the interval excludes 0 on the "
           "better / worse side (above 0 where higher is better, below where lower is); equivalent: otherwise, when "
           "TOST within +-margin (default {margin:g}, in the metric's units; none for lower-is-better metrics unless "
           "given) passes (the {tost:.0%} t-interval inside the margin); inconclusive: everything else. The output "
           "says when the t-interval and the sign-flip test disagree.")


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
    #: ``--fn`` runs: per-seed values of every compared metric, keyed as the differences name them (``"dice"``: the
    #: mean over the returned classes, ``"dice[class]"``, a scalar metric's name); ``primary`` ranks the losses
    metrics: dict[str, list[float]] = field(default_factory=dict)
    primary: str = ""
    higher_is_better: bool = True

    @property
    def mean(self) -> float:
        if self.primary:
            return nanmean(self.metrics.get(self.primary, []))
        return nanmean(self.fg_dice)

    @property
    def rank_key(self) -> float:
        """Sort key of the ranking (best first): the mean of the ranking metric, negated when higher is better."""
        m = self.mean
        if not finite(m):
            return math.inf
        return -m if self.higher_is_better else m

    def as_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        if self.primary:  # a --fn run: the metrics the user's function returned, per seed
            return {"spec": self.spec, "label": self.label, "rank": self.rank, "seeds": self.seeds,
                    "primary": self.primary,
                    "metrics": {k: {"mean": nanmean(v), "sd": nansd(v), "per_seed": list(v)}
                                for k, v in self.metrics.items()}}
        per_class = {}
        for c, name in enumerate(class_names):
            vals = [row[c] for row in self.class_dice]
            per_class[name] = {"mean": nanmean(vals), "sd": nansd(vals), "per_seed": vals}
        return {"spec": self.spec, "label": self.label, "rank": self.rank, "seeds": self.seeds,
                "fg_dice": {"mean": self.mean, "sd": nansd(self.fg_dice), "per_seed": self.fg_dice},
                "mean_dice": {"mean": nanmean(self.mean_dice), "sd": nansd(self.mean_dice), "per_seed": self.mean_dice},
                "per_class": per_class}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def nanmean(xs: Sequence[float]) -> float:
    v = [x for x in xs if finite(x)]
    return sum(v) / len(v) if v else math.nan


def nansd(xs: Sequence[float]) -> float:
    v = [x for x in xs if finite(x)]
    if len(v) < 2:
        return math.nan
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def family_of(metric: str) -> str:
    """The Holm family (docs/analysis_plan.md section 3) a difference's metric belongs to: one per endpoint of one
    compare run, the foreground mean (``"fg_dice"``) or the per-class Dice (``"dice[class]"``, every class); for
    ``--fn`` metrics likewise ``"name"`` (a scalar, or the mean over classes) and ``"name[class]"``."""
    base, sep, rest = metric.partition("[")
    return f"{base}[class]" if sep and rest.endswith("]") else metric


def metric_base(metric: str) -> str:
    """``"hd95[tumour]"`` -> ``"hd95"``: the metric a difference's endpoint belongs to."""
    return metric.partition("[")[0]


@dataclass
class Difference:
    """One arm against the baseline on one metric: the paired difference, its plan verdict and the numbers behind it.

    ``p_holm`` (set by :func:`assess`) is the sign-flip p adjusted by Holm within ``family`` (``family_size``
    tests); ``tost`` the equivalence test within ``+-margin``.
    """

    a: str
    b: str
    metric: str  # "fg_dice" or "dice[<class>]"
    result: PairedDifference | None
    n_pairs: int
    note: str = ""
    pairs: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (loss, baseline) per seed
    margin: float | None = DEFAULT_MARGIN
    tost: Tost | None = None
    p_holm: float | None = None
    family: str = ""
    family_size: int = 0
    higher_is_better: bool = True  # False (e.g. a distance): ``better`` means a smaller value than the baseline's

    @property
    def alpha(self) -> float:
        return 1.0 - self.result.confidence if self.result is not None else 0.05

    @property
    def p_raw(self) -> float | None:
        return self.result.pvalue if self.result is not None else None

    @property
    def verdict(self) -> str:
        """``better``, ``worse``, ``equivalent`` or ``inconclusive`` (docs/analysis_plan.md section 5)."""
        if self.result is None:
            return "inconclusive"
        low, high = self.result.low, self.result.high
        if not self.higher_is_better:  # d = a - b < 0 is an improvement
            low, high = -high, -low
        return plan_verdict(self.p_holm, low, high, self.tost.pvalue if self.tost is not None else None, self.alpha)

    @property
    def disagreement(self) -> bool:
        """The t-interval (excludes 0 or not) and the unadjusted sign-flip test (p < alpha or not) disagree."""
        if self.result is None:
            return False
        return disagree(self.p_raw, self.result.low, self.result.high, self.alpha)

    def summary(self) -> str:
        """One line: the verdict word, then the numbers it rests on (what the CLI prints)."""
        head = f"{self.a} vs {self.b}: {self.verdict}"
        r = self.result
        if r is None:
            return f"{head} (not tested: {self.note})"
        ph = "—" if self.p_holm is None else f"{self.p_holm:.3g}"
        tp = "—" if self.tost is None else f"{self.tost.pvalue:.3g}"
        tost = f"TOST ±{self.margin:g} p = {tp}" if self.margin is not None else "no equivalence margin"
        lower = "" if self.higher_is_better else " (lower is better)"
        s = (f"{head}; {r.mean:+.3f} [{r.low:+.3f}, {r.high:+.3f}] ({r.confidence:.0%} t-interval){lower}, sign-flip "
             f"p = {r.pvalue:.3g}, Holm p = {ph} ({_tests(self.family_size)}), {tost}, n = {r.n}")
        if self.disagreement:
            s += f"; {DISAGREEMENT}"
        if r.min_pvalue >= self.alpha:
            s += (f"; with {r.n} pairs the sign-flip test cannot go below p = {r.min_pvalue:.3g}: use more seeds")
        return s

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"a": self.a, "b": self.b, "metric": self.metric, "n_pairs": self.n_pairs,
                             "verdict": self.verdict, "disagreement": self.disagreement, "p_raw": self.p_raw,
                             "p_holm": self.p_holm, "family": self.family, "family_size": self.family_size,
                             "margin": self.margin, "tost_p": self.tost.pvalue if self.tost is not None else None,
                             "summary": self.summary()}
        if not self.higher_is_better:
            d["higher_is_better"] = False
        if self.tost is not None:
            d["tost_low"], d["tost_high"] = self.tost.low, self.tost.high
        if self.result is not None:
            d.update(self.result.as_dict())
        if self.note:
            d["note"] = self.note
        return d


def _check_margin(margin: Any, what: str = "margin") -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {margin!r}")
    return float(margin)


def assess(diffs: Sequence[Difference], margin: float = DEFAULT_MARGIN,
           margins: dict[str, float | None] | None = None) -> list[Difference]:
    """Apply the analysis plan to the differences of one compare run (in place; returns them): TOST within
    ``+-margin`` for each, and Holm on the sign-flip p-values within each family (:func:`family_of`).

    ``margins``: per metric (:func:`metric_base`), a margin in that metric's units, or None for no equivalence
    test (then the verdict is better, worse or inconclusive); metrics not named use ``margin``."""
    _check_margin(margin, "margin (Dice)")
    margins = dict(margins or {})
    for k, v in margins.items():
        if v is not None:
            _check_margin(v, f"the margin of {k!r}")
    families: dict[str, list[Difference]] = {}
    for x in diffs:
        mg = margins.get(metric_base(x.metric), margin)
        x.margin = None if mg is None else float(mg)  # type: ignore[assignment]
        x.family = family_of(x.metric)
        families.setdefault(x.family, []).append(x)
        x.tost = None
        if x.result is not None and x.margin is not None:
            d = [p - q for p, q in x.pairs]
            x.tost = tost_paired(d, x.margin, alpha=x.alpha)
    for members in families.values():
        tested = [x for x in members if x.result is not None]
        for x, p in zip(tested, holm([x.p_raw for x in tested]), strict=True):
            x.p_holm = p
        for x in members:
            x.family_size = len(tested)
    return list(diffs)


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
    out: str | None = None
    margin: float = DEFAULT_MARGIN

    @property
    def baseline(self) -> LossResult:
        return next(r for r in self.results if r.spec == self.setup["baseline"])

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "seglab_version": __version__, "setup": self.setup,
                "rule": self.rule(), "margin": self.margin, "confidence": self.confidence,
                "families": _families(self.differences),
                "ranked_by": self.setup.get("ranked_by") or
                "mean foreground per-class Dice over seeds (all classes for multilabel/binary)",
                "class_names": self.class_names, "baseline": self.setup["baseline"],
                "losses": [r.as_dict(self.class_names) for r in sorted(self.results, key=lambda r: r.rank)],
                "differences": [d.as_dict() for d in self.differences], "failed_runs": self.failed,
                "out": self.out}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default, allow_nan=True)

    def rule(self) -> str:
        a = 1.0 - self.confidence
        rule = RULE_FN if self.setup.get("kind") == "fn" else RULE
        return rule.format(conf=self.confidence, alpha=a, margin=self.margin, tost=1.0 - 2.0 * a)

    def text(self) -> str:
        """Plain-text ranking and the paired differences (what the CLI prints)."""
        if self.setup.get("kind") == "fn":
            return fn_text(self)
        s = self.setup
        lines = [f"seglab compare: {len(self.results)} losses x {len(s['seeds'])} paired seeds on task {s['task']}"
                 f"{_kw(s.get('task_kw'))}, model {s['model']}, {s['steps']} steps ({s['optimizer']} lr {s['lr']:g})",
                 f"baseline: {s['baseline']}", ""]
        names = [self.class_names[c] for c in range(len(self.class_names))]
        head = ["rank", "loss", "fg Dice (mean ± sd)"] + names
        rows = []
        for r in sorted(self.results, key=lambda r: r.rank):
            cells = [str(r.rank), r.label, f"{fmt_value(r.mean)} ± {fmt_value(nansd(r.fg_dice))}"]
            cells += [fmt_value(nanmean([row[c] for row in r.class_dice])) for c in range(len(names))]
            rows.append(cells)
        lines += ranking_and_verdict_lines(self, head, rows, f"±{self.margin:g} Dice",
                                           "failed runs (left out of the pairs)")
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """A self-contained HTML section (the report includes it when the results folder has compare.json)."""
        return render_html(self.to_dict())


def render_html(d: dict[str, Any]) -> str:
    """HTML section of a comparison dict (:meth:`Comparison.to_dict`, or compare.json read back)."""
    d = upgrade(d)
    if (d.get("setup") or {}).get("kind") == "fn":
        return fn_html(d)
    names = d["class_names"]
    rows = []
    for r in d["losses"]:
        cells = [str(r["rank"]), escape(r["label"]), f"{fmt_value(r['fg_dice']['mean'])} ± {fmt_value(r['fg_dice']['sd'])}"]
        cells += [fmt_value(r["per_class"][n]["mean"]) for n in names]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in ["rank", "loss", "fg Dice (mean ± sd)"] + list(names))
    diffs = []
    for x in d["differences"]:
        ci = (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" if x.get("mean") is not None else "—")
        flag = f" ({DISAGREEMENT})" if x.get("disagreement") else ""
        diffs.append(f"<tr><td>{escape(x['a'])}</td><td>{escape(x['metric'])}</td><td>{ci}</td>"
                     f"<td>{_p(x.get('p_raw'))}</td><td>{_p(x.get('p_holm'))}</td><td>{_p(x.get('tost_p'))}</td>"
                     f"<td>{x['n_pairs']}</td><td class='verdict'>{escape(x['verdict'])}{escape(flag)}</td></tr>")
    s = d["setup"]
    conf = d.get("confidence", 0.95)
    return (f"<section id='compare'><h2>Loss comparison (paired seeds)</h2>"
            f"<p>task {escape(str(s['task']))}{escape(_kw(s.get('task_kw')))}, model {escape(str(s['model']))}, "
            f"{s['steps']} steps, seeds {s['seeds']}; baseline <code>{escape(d['baseline'])}</code>.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h3>Differences from the baseline</h3><table><tr><th>loss</th><th>metric</th><th>mean difference "
            f"[{conf:.0%} t-interval]</th><th>p (sign-flip)</th><th>p (Holm)</th><th>TOST p (±{d['margin']:g})</th>"
            f"<th>pairs</th><th>verdict</th></tr>{''.join(diffs)}</table>"
            f"<p class='rule'>{escape(d['rule'])}</p></section>")


def _tests(n: int) -> str:
    return f"{n} test" if n == 1 else f"{n} tests"


def _p(x: Any) -> str:
    return f"{x:.3g}" if finite(x) else "—"


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def fmt_value(x: float) -> str:
    return "—" if not finite(x) else f"{x:.3f}"


def _kw(kw: dict | None) -> str:
    return "".join(f" {k}={v}" for k, v in sorted((kw or {}).items()))


def config_error(message: str) -> ValueError:
    """A :class:`~seglab.train.config.ConfigError` (a ValueError): bad input to a comparison, before any run."""
    # imported here: seglab.train.config runs seglab/train/__init__ (the trainer), 0.37 s measured after
    # seglab.compare is loaded, which `seglab compare --help` (it imports this module) would pay
    from seglab.train.config import ConfigError

    return ConfigError(message)


def check_common(specs: list[str], seeds: int | Sequence[int], confidence: float, margin: float) -> list[int]:
    """Check what every comparison needs (2 losses, 2 distinct integer seeds, confidence, margin); the seeds."""
    if len(specs) < 2:
        raise config_error(f"--losses: compare needs at least 2 losses (the baseline first), got {specs}")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seed_list: list[Any] = list(range(seeds))
    else:  # a bool or another non-iterable is refused below, with the message, not a TypeError from list()
        seed_list = list(seeds) if isinstance(seeds, Iterable) else [seeds]
    if len(seed_list) < 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in seed_list):
        raise config_error(f"--seeds: at least 2 integer seeds are needed for a paired interval, got {seeds!r}")
    if len(set(seed_list)) != len(seed_list):
        raise config_error(f"--seeds: seeds must be distinct, got {seed_list}")
    check_number("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)
    if confidence <= 0.5:
        raise config_error(f"--confidence must be above 0.5 (TOST uses the 1 - 2 alpha interval), got {confidence}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin > 0):
        raise config_error(f"--margin must be a finite number > 0 (Dice), got {margin!r}")
    return seed_list


def write_outputs(cmp: Comparison, out: str | Path) -> None:
    """``OUT/compare.json``, ``OUT/compare.txt`` (the text the CLI prints) and ``OUT/compare.html`` (a page with the
    HTML section)."""
    out = Path(out)
    (out / "compare.json").write_text(cmp.to_json())
    (out / "compare.txt").write_text(cmp.text(), encoding="utf-8")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>seglab compare</title><style>body{font-family:"
            "sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:2px 6px}</style></head><body>" + cmp.html() + "</body></html>\n")
    (out / "compare.html").write_text(page, encoding="utf-8")


def paired(a_label: str, b_label: str, metric: str, a: Sequence[Any], b: Sequence[Any],
            confidence: float) -> Difference:
    if len(a) != len(b):  # one value per seed on each side: pairing by position needs as many
        raise ValueError(f"{metric}: {len(a)} per-seed values of {a_label!r} but {len(b)} of {b_label!r}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if finite(x) and finite(y)]
    if len(pairs) < 2:
        return Difference(a_label, b_label, metric, None, len(pairs),
                          note=f"{len(pairs)} seed pair(s) with a defined Dice (the class is absent and never predicted, "
                               "or runs failed); an interval needs 2")
    res = paired_difference([p[0] for p in pairs], [p[1] for p in pairs], confidence=confidence,
                            max_exact=PLAN_MAX_EXACT, n_resamples=PLAN_RESAMPLES)
    return Difference(a_label, b_label, metric, res, len(pairs), pairs=pairs)


def upgrade(d: dict[str, Any], margin: float | None = None) -> dict[str, Any]:
    """A comparison dict (``compare.json``, ``--json``, :meth:`Comparison.to_dict`) of any schema version under the
    current rules: the differences of an older schema are recomputed from the stored per-seed values (same pairs,
    same interval) and re-read under docs/analysis_plan.md (Holm families, TOST within ``margin``, default the
    stored one or 0.01). A current dict is returned unchanged when ``margin`` is None or its own.
    Raises ValueError when a difference names a loss or class the dict does not hold.
    """
    version = d.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"unknown compare schema_version {version!r} (this seglab reads 1 to {SCHEMA_VERSION})")
    stored = d.get("margin")
    if version == SCHEMA_VERSION and (margin is None or margin == stored):
        return d
    mg = float(margin if margin is not None else (stored if stored is not None else DEFAULT_MARGIN))
    by_label = {r["label"]: r for r in d["losses"]}
    base = next((r for r in d["losses"] if d["baseline"] in (r["spec"], r["label"])), None)
    if base is None:
        raise ValueError(f"the baseline {d['baseline']!r} is not among the losses")

    def values(r: dict[str, Any], metric: str) -> list[float]:
        if "metrics" in r:  # a --fn comparison: every endpoint's per-seed values by name
            if metric not in r["metrics"]:
                raise ValueError(f"difference {metric!r}: no such metric in the per-seed values")
            vals = r["metrics"][metric]["per_seed"]
        elif metric.startswith("dice[") and metric.endswith("]"):
            k = metric[len("dice["):-1]
            if k not in r["per_class"]:
                raise ValueError(f"difference {metric!r}: class {k!r} not in the per-class values")
            vals = r["per_class"][k]["per_seed"]
        else:
            vals = r[metric]["per_seed"]
        return [math.nan if v is None else float(v) for v in vals]

    diffs = []
    conf = 0.95
    for x in d["differences"]:
        if x["a"] not in by_label:
            raise ValueError(f"difference of {x['a']!r}: no such loss label")
        conf = float(x.get("confidence") or d.get("confidence") or 0.95)
        diffs.append(paired(x["a"], x["b"], x["metric"], values(by_label[x["a"]], x["metric"]),
                             values(base, x["metric"]), conf))
        diffs[-1].higher_is_better = bool(x.get("higher_is_better", True))
    # --fn: a metric keeps its own margin (or none) unless it had the run's margin, which ``margin`` replaces
    fn_metrics = {k: dict(v) for k, v in ((d.get("setup") or {}).get("metrics") or {}).items()}
    own = {k: v.get("margin") for k, v in fn_metrics.items() if v.get("margin") != stored}
    assess(diffs, mg, own if fn_metrics else None)
    for k, v in fn_metrics.items():
        v["margin"] = own.get(k, mg) if k in own else mg
    rule = RULE_FN if (d.get("setup") or {}).get("kind") == "fn" else RULE
    if fn_metrics:
        d = {**d, "setup": {**d["setup"], "metrics": fn_metrics}}
    out = {**d, "schema_version": SCHEMA_VERSION, "margin": mg, "confidence": conf,
           "rule": rule.format(conf=conf, alpha=1.0 - conf, margin=mg, tost=1.0 - 2.0 * (1.0 - conf)),
           "families": _families(diffs), "differences": [x.as_dict() for x in diffs]}
    if version < SCHEMA_VERSION:
        out["reread_from_schema_version"] = version
    return json.loads(json.dumps(out, default=_json_default, allow_nan=True))


def ranking_and_verdict_lines(cmp: Any, head: list[str], rows: list[list[str]], margin_text: str,
                               failed_label: str) -> list[str]:
    """The text both comparisons print after their header: the aligned ranking table, the paired differences with
    their Holm families, the verdict counts, the runs left out and the rule."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    fams = ", ".join(f"{k} ({_tests(v)})" for k, v in _families(cmp.differences).items())
    lines += ["", f"paired differences vs the baseline, verdicts per docs/analysis_plan.md (Holm families: {fams}; "
                  f"equivalence margin {margin_text}):"]
    lines += [f"  {d.metric:>24}: {d.summary()}" for d in cmp.differences]
    counts = {v: sum(d.verdict == v for d in cmp.differences) for v in VERDICTS}
    lines.append("  verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items())
                 + f"; {sum(d.disagreement for d in cmp.differences)} with the {DISAGREEMENT}")
    if cmp.failed:
        lines.append(f"{failed_label}: {', '.join(cmp.failed)}")
    lines.append("rule: " + cmp.rule())
    return lines


def _families(diffs: Sequence[Difference]) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in diffs:
        out[x.family] = x.family_size
    return out


# ---------------------------------------------------------------- text and HTML of a --fn comparison
def _columns(d_losses: list[dict[str, Any]], primary: str) -> list[str]:
    keys = list(d_losses[0]["metrics"]) if d_losses else []
    return [primary] + [k for k in keys if k != primary]


def fn_text(cmp: Comparison) -> str:
    """Plain-text ranking (every metric's mean over seeds) and the paired differences of a ``--fn`` comparison."""
    s = cmp.setup
    kw = "".join(f" {k}={v}" for k, v in sorted(s["fn_kw"].items()))
    lines = [f"seglab compare --fn: {len(cmp.results)} losses x {len(s['seeds'])} paired seeds, function {s['fn']}{kw}, "
             f"mode {s['mode']}", f"baseline: {s['baseline']}; ranked by {s['ranked_by']}", ""]
    ranked = sorted(cmp.results, key=lambda r: r.rank)
    cols = _columns([{"metrics": r.metrics} for r in ranked], s["primary"])
    head = ["rank", "loss", f"{cols[0]} (mean ± sd)"] + cols[1:]
    rows = []
    for r in ranked:
        cells = [str(r.rank), r.label, f"{fmt_value(r.mean)} ± {fmt_value(nansd(r.metrics[cols[0]]))}"]
        cells += [fmt_value(nanmean(r.metrics[k])) for k in cols[1:]]
        rows.append(cells)
    lines += ranking_and_verdict_lines(cmp, head, rows, f"±{cmp.margin:g} unless the metric sets its own",
                                       "not run (left out of the pairs)")
    return "\n".join(lines) + "\n"


def fn_html(d: dict[str, Any]) -> str:
    """HTML section of a ``--fn`` comparison dict (``compare.json``)."""
    s = d["setup"]
    cols = _columns(d["losses"], s["primary"])
    head = "".join(f"<th>{escape(h)}</th>" for h in ["rank", "loss", f"{cols[0]} (mean ± sd)"] + cols[1:])
    rows = []
    for r in d["losses"]:
        m = r["metrics"]
        cells = [str(r["rank"]), escape(r["label"]), f"{fmt_value(m[cols[0]]['mean'])} ± {fmt_value(m[cols[0]]['sd'])}"]
        cells += [fmt_value(m[k]["mean"]) for k in cols[1:]]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    conf = d.get("confidence", 0.95)
    diffs = []
    for x in d["differences"]:
        ci = (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" if x.get("mean") is not None else "—")
        flag = f" ({DISAGREEMENT})" if x.get("disagreement") else ""
        margin = "—" if x.get("margin") is None else f"±{x['margin']:g}"
        diffs.append(f"<tr><td>{escape(x['a'])}</td><td>{escape(x['metric'])}</td><td>{ci}</td>"
                     f"<td>{_p(x.get('p_raw'))}</td><td>{_p(x.get('p_holm'))}</td><td>{margin}</td>"
                     f"<td>{_p(x.get('tost_p'))}</td><td>{x['n_pairs']}</td>"
                     f"<td class='verdict'>{escape(x['verdict'])}{escape(flag)}</td></tr>")
    kw = "".join(f" {k}={v}" for k, v in sorted(s["fn_kw"].items()))
    return (f"<section id='compare'><h2>Loss comparison in your training code (paired seeds)</h2>"
            f"<p>function <code>{escape(s['fn'])}</code>{escape(kw)}, mode {escape(s['mode'])}, seeds {s['seeds']}; "
            f"baseline <code>{escape(d['baseline'])}</code>; ranked by {escape(s['ranked_by'])}.</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h3>Differences from the baseline</h3><table><tr><th>loss</th><th>metric</th><th>mean difference "
            f"[{conf:.0%} t-interval]</th><th>p (sign-flip)</th><th>p (Holm)</th><th>margin</th><th>TOST p</th>"
            f"<th>pairs</th><th>verdict</th></tr>{''.join(diffs)}</table>"
            f"<p class='rule'>{escape(d['rule'])}</p></section>")
