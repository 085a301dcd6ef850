"""The evidence behind each rule of ``seglab advise``, read under the analysis plan (docs/analysis_plan.md).

Every rule that advise can apply has an id in :data:`RULES`. Its **evidence status** is one of
:data:`STATUSES`; it is computed, never written by hand:

* ``"measured benefit"``: the rule's family shows ``better`` on at least one task and ``worse`` on none;
* ``"measured harm"``: ``worse`` on at least one task and ``better`` on none;
* ``"equivalent within the margin"``: ``equivalent`` on every task tested;
* ``"inconclusive"``: tested, none of the above;
* ``"convention without evidence"``: no committed experiment tests the rule.

A rule's family holds one hypothesis per task and endpoint (the foreground mean Dice; the rarest class as a
second family), Holm-adjusted within the family; each verdict follows :func:`seglab.stats.plan_verdict` with the
exact sign-flip p, the 95 % t-interval and TOST at ``margin``. The difference is ``Dice(with the rule) − Dice
(without it)`` per paired seed.

:func:`build` turns committed ``seglab compare --json`` results into the table; ``tools/advise_evidence.py``
writes it to ``advise/evidence.json`` (package data, read by :func:`load`) and renders
docs/advise_evidence.md; ``make lint`` checks both against the data.

>>> rule_status("structure_losses")["status"]
'convention without evidence'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from seglab import stats as S

#: the statuses, strongest first; the plan's four plus "measured harm" (docs/analysis_plan.md, amendment 1)
STATUSES = ("measured benefit", "measured harm", "equivalent within the margin", "inconclusive",
            "convention without evidence")
#: the plan's decision rule (section 8) for each status: what happens to the rule's default once the suite's
#: families are complete (amendment 1: until then advise keeps its defaults, so each decision is provisional,
#: except those in :data:`APPLIED`)
DECISIONS = {STATUSES[0]: "keep as advice", STATUSES[1]: "drop from the default",
             STATUSES[2]: "documented option only", STATUSES[3]: "documented option only",
             STATUSES[4]: "not measured: stays a convention"}
#: the decisions applied to advise's defaults before the suite's families are complete: ``{rule: (the status the
#: decision was applied on, where it is recorded)}``. The lead applied the decision rule to a rule with a measured
#: harm on a task where advise applies it (docs/analysis_plan.md, amendment 6); if the data later give another
#: status, :func:`build` says the decision is to be re-read.
APPLIED = {"dice_class_weights": (STATUSES[1], "docs/analysis_plan.md, amendment 6")}
#: the docs page that holds every table (a rule's pointer is an anchor on it)
DOCS_PAGE = "docs/advise_evidence.md"
EVIDENCE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Rule:
    """One advise rule: a title, the ``seglab compare --ablate advised`` arm that removes it (``None``: no
    committed experiment removes it) and the task modes where that arm removes this rule (the arm "without CE
    weights" removes class weights from a softmax task and ``pos_weight`` from a sigmoid one)."""

    title: str
    ablation: str | None = None
    modes: tuple[str, ...] = ("multiclass", "binary", "multilabel")


RULES: dict[str, Rule] = {
    "softmax_or_sigmoid": Rule("softmax for exclusive classes, one sigmoid per channel for overlapping ones"),
    "dice_term": Rule("a Dice term beside CE (Dice + CE rather than CE alone)", "without Dice term"),
    "ce_term": Rule("a CE term beside Dice (Dice + CE rather than Dice alone)", "without CE term"),
    "ce_class_weights": Rule("class weights in the CE term", "without CE weights", ("multiclass",)),
    "dice_class_weights": Rule("class weights in the Dice term", "without Dice weights", ("multiclass",)),
    "background_exclusion": Rule("Dice without the background class", "without background exclusion"),
    "batch_dice": Rule("batch Dice (batch=True) rather than per-image Dice", "without batch Dice"),
    "pos_weight": Rule("pos_weight per channel (multi-label / binary)", "without CE weights", ("binary", "multilabel")),
    "weight_cap": Rule("the cap on class weights and pos_weight"),
    "structure_losses": Rule("a structure loss (skeleton recall, clDice) for thin classes"),
    "nested_regions": Rule("one sigmoid per nested region (region-based training) for channels that nest"),
}


def arm_pair(result: dict, rule_id: str) -> tuple[str, str] | None:
    """The labels ``(arm with the rule, arm without it)`` that measure ``rule_id`` in one compare result: the pair
    the evidence suite declared for a ``--losses`` task (``result["evidence"]["arms"]``, docs/analysis_plan.md,
    amendment 2), else ``("full", the rule's --ablate arm)``; None when the result does not test the rule."""
    declared = result.get("evidence", {}).get("arms")
    if declared is not None:
        pair = declared.get(rule_id)
        return (pair[0], pair[1]) if pair else None
    ablation = RULES[rule_id].ablation
    return ("full", ablation) if ablation else None


def _pairs(result: dict, pair: tuple[str, str], endpoint: str | None) -> tuple[list[float], list[float]] | None:
    """Per-seed Dice with and without the rule (the arms ``pair``), paired by seed (``endpoint``: a class name,
    None: the foreground mean); None when the result lacks either arm."""
    arms = {arm["label"]: arm for arm in result["losses"]}
    if pair[0] not in arms or pair[1] not in arms:
        return None
    full, without = arms[pair[0]], arms[pair[1]]

    def per_seed(arm: dict) -> dict[int, float]:
        """``{seed: Dice}`` of one arm at the endpoint."""
        vals = arm["fg_dice"] if endpoint is None else arm["per_class"][endpoint]
        return dict(zip(arm["seeds"], vals["per_seed"], strict=True))

    a, b = per_seed(full), per_seed(without)
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


def _family(rows: list[dict], margin: float) -> list[dict]:
    """Holm within the family, then each row's verdict (in place; returns ``rows``)."""
    for row, p_adj in zip(rows, S.holm([r["p_raw"] for r in rows]), strict=True):
        row["p_holm"] = p_adj
        row["verdict"] = S.plan_verdict(p_adj, row["low"], row["high"], row["tost_p"])
        row["disagreement"] = S.disagree(row["p_raw"], row["low"], row["high"])
        row["margin"] = margin
    return rows


def _row(task: str, endpoint: str, with_rule: list[float], without: list[float], margin: float) -> dict:
    """One unadjusted row of a rule family: the paired difference, its t-interval, sign-flip p and TOST p."""
    pd = S.paired_difference(with_rule, without)
    d = [x - y for x, y in zip(with_rule, without, strict=True)]
    return {"task": task, "endpoint": endpoint, "n": pd.n, "mean": pd.mean, "low": pd.low, "high": pd.high,
            "p_raw": pd.pvalue, "tost_p": S.tost_paired(d, margin).pvalue}


def status_of(verdicts: list[str]) -> str:
    """A rule's status from its family's verdicts (module docstring).

    >>> status_of(["better", "inconclusive"]), status_of([]), status_of(["equivalent", "equivalent"])
    ('measured benefit', 'convention without evidence', 'equivalent within the margin')
    """
    if not verdicts:
        return STATUSES[4]
    better, worse = "better" in verdicts, "worse" in verdicts
    if better and not worse:
        return STATUSES[0]
    if worse and not better:
        return STATUSES[1]
    if all(v == "equivalent" for v in verdicts):
        return STATUSES[2]
    return STATUSES[3]


def build(results: dict[str, dict], rarest: dict[str, str], margin: float = 0.01) -> dict[str, Any]:
    """The evidence table from committed compare results (``{task name: compare --json object}``) and the
    rarest class of each task (``{task name: class name}``): per rule, its status, the verdict rows of its two
    families (foreground mean; rarest class) and its docs pointer."""
    out: dict[str, Any] = {"schema_version": EVIDENCE_SCHEMA_VERSION, "margin": margin, "plan": "docs/analysis_plan.md",
                           "rules": {}}
    for rid, rule in RULES.items():
        fams: dict[str, list[dict]] = {"foreground mean": [], "rarest class": []}
        for task, res in sorted(results.items()):
            pair = arm_pair(res, rid)
            if pair is None or res.get("setup", {}).get("mode", "multiclass") not in rule.modes:
                continue
            for fam, endpoint in (("foreground mean", None), ("rarest class", rarest.get(task))):
                if fam == "rarest class" and endpoint is None:
                    continue
                pairs = _pairs(res, pair, endpoint)
                if pairs is not None and len(pairs[0]) >= 2:
                    fams[fam].append(_row(task, endpoint or "foreground mean", *pairs, margin))
        rows = [r for fam in fams.values() for r in _family(fam, margin)]
        primary = [r["verdict"] for r in fams["foreground mean"]]
        status = status_of(primary)
        out["rules"][rid] = {"title": rule.title, "status": status, "decision": decision(rid, status),
                             "applied": rid in APPLIED, "rows": rows, "pointer": f"{DOCS_PAGE}#{rid.replace('_', '-')}"}
    return out


def decision(rule_id: str, status: str) -> str:
    """The decision rule's outcome for a rule with ``status``; for a rule in :data:`APPLIED`, that it is applied
    (and where), or that it is to be re-read when the status is no longer the one it was applied on.

    >>> decision("dice_class_weights", "measured harm")
    'drop from the default: applied (docs/analysis_plan.md, amendment 6)'
    >>> decision("batch_dice", "inconclusive")
    'documented option only'
    """
    if rule_id not in APPLIED:
        return DECISIONS[status]
    applied_on, where = APPLIED[rule_id]
    if status != applied_on:
        return f"{DECISIONS[status]}: to be re-read (the default was changed on {applied_on!r}, {where})"
    return f"{DECISIONS[status]}: applied ({where})"


def load() -> dict[str, Any]:
    """The committed evidence table (package data ``seglab/advise/evidence.json``)."""
    text = resources.files("seglab.advise").joinpath("evidence.json").read_text(encoding="utf-8")
    return json.loads(text)


def _summary(rows: list[dict]) -> str:
    """The foreground-mean rows of a rule in one line: task, mean difference, interval, verdict."""
    prim = [r for r in rows if r["endpoint"] == "foreground mean"]
    return "; ".join(f"{r['task']}: {r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] {r['verdict']}" for r in prim)


def rule_status(rule_id: str, table: dict[str, Any] | None = None) -> dict[str, str]:
    """``{"rule", "title", "status", "detail", "pointer"}`` of one rule, from ``table`` (default: :func:`load`)."""
    if rule_id not in RULES:
        raise KeyError(f"unknown advise rule {rule_id!r}; known: {', '.join(RULES)}")
    entry = (table or load())["rules"].get(rule_id)
    if entry is None:
        return {"rule": rule_id, "title": RULES[rule_id].title, "status": STATUSES[4], "detail": "",
                "pointer": f"{DOCS_PAGE}#{rule_id.replace('_', '-')}"}
    return {"rule": rule_id, "title": entry["title"], "status": entry["status"], "detail": _summary(entry["rows"]),
            "pointer": entry["pointer"]}
