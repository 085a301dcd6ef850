"""advise/evidence.py: each rule's evidence status, recomputed from the committed compare results with scipy,
and carried by advise's text and JSON."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from seglab.advise import advise
from seglab.advise.evidence import APPLIED, RULES, STATUSES, arm_pair, build, decision, load, rule_status, status_of

ROOT = Path(__file__).resolve().parents[2]


def _brute_signflip(d):
    d = np.asarray(d)
    obs = abs(d.sum())
    hits = sum(abs((np.array(s) * d).sum()) >= obs - 1e-12 for s in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def _holm(ps):
    order = np.argsort(ps)
    m, out, run = len(ps), [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * ps[i]))
        out[i] = run
    return out


def test_committed_table_is_what_the_data_give():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "advise_evidence.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr


def test_every_row_recomputed_with_scipy():
    table = load()
    assert set(table["rules"]) == set(RULES)
    data = {f.stem: json.loads(f.read_text()) for d in ("compare", "evidence") for f in (ROOT / "data" / d).glob("*.json")}
    checked = 0
    for rid, entry in table["rules"].items():
        rows = entry["rows"]
        for fam in ("foreground mean", "rarest"):
            famrows = [r for r in rows if (r["endpoint"] == "foreground mean") == (fam == "foreground mean")]
            if not famrows:
                continue
            assert [r["p_holm"] for r in famrows] == pytest.approx(_holm([r["p_raw"] for r in famrows]))
        for r in rows:
            arms = {a["label"]: a for a in data[r["task"]]["losses"]}
            endpoint = r["endpoint"]
            pick = (lambda a: a["fg_dice"]) if endpoint == "foreground mean" else (lambda a, e=endpoint: a["per_class"][e])
            declared = data[r["task"]].get("evidence", {}).get("arms")  # a --losses task's declared pairs
            with_rule, without = declared[rid] if declared else ("full", RULES[rid].ablation)
            d = np.subtract(pick(arms[with_rule])["per_seed"], pick(arms[without])["per_seed"])
            assert r["mean"] == pytest.approx(d.mean())
            assert r["p_raw"] == pytest.approx(_brute_signflip(d))
            if np.ptp(d) == 0:  # every seed the same difference (e.g. a class both arms never learn): scipy gives NaN
                assert (r["low"], r["high"]) == pytest.approx((d[0], d[0]))
                assert r["tost_p"] == (0.0 if abs(d[0]) < 0.01 else 1.0)
                checked += 1
                continue
            lo, hi = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
            assert (r["low"], r["high"]) == pytest.approx((lo, hi))
            tost = max(sps.ttest_1samp(d, -0.01, alternative="greater").pvalue,
                       sps.ttest_1samp(d, 0.01, alternative="less").pvalue)
            assert r["tost_p"] == pytest.approx(tost)
            checked += 1
    assert checked >= 20  # five ablated rules x two tasks x two endpoints


@pytest.mark.parametrize(("verdicts", "status"), [
    (["better", "inconclusive"], "measured benefit"), (["worse"], "measured harm"), (["better", "worse"], "inconclusive"),
    (["equivalent", "equivalent"], "equivalent within the margin"), (["equivalent", "inconclusive"], "inconclusive"),
    ([], "convention without evidence")])
def test_status_rule(verdicts, status):
    assert status_of(verdicts) == status and status in STATUSES


def test_build_on_a_made_up_result_gives_better():
    seeds = list(range(10))
    full = {"label": "full", "seeds": seeds, "fg_dice": {"per_seed": [0.9 + 0.001 * s for s in seeds]}, "per_class": {}}
    wo = {"label": "without CE weights", "seeds": seeds, "fg_dice": {"per_seed": [0.8 + 0.002 * s for s in seeds]},
          "per_class": {}}
    table = build({"t": {"losses": [full, wo]}}, rarest={})
    assert table["rules"]["ce_class_weights"]["status"] == "measured benefit"
    assert table["rules"]["dice_class_weights"]["status"] == "convention without evidence"


def test_the_ce_weights_arm_is_pos_weight_in_sigmoid_tasks():
    seeds = list(range(6))
    full = {"label": "full", "seeds": seeds, "fg_dice": {"per_seed": [0.9] * 6}, "per_class": {}}
    wo = {"label": "without CE weights", "seeds": seeds, "fg_dice": {"per_seed": [0.8 + 0.01 * s for s in seeds]},
          "per_class": {}}
    table = build({"t": {"setup": {"mode": "multilabel"}, "losses": [full, wo]}}, rarest={})
    assert table["rules"]["pos_weight"]["status"] == "measured benefit"
    assert table["rules"]["ce_class_weights"]["status"] == "convention without evidence"


def test_declared_arm_pairs_measure_their_rules_only():
    seeds = list(range(10))
    ce = {"label": "ce", "seeds": seeds, "fg_dice": {"per_seed": [0.7 + 0.001 * s for s in seeds]}, "per_class": {}}
    both = {"label": "dice + ce", "seeds": seeds, "fg_dice": {"per_seed": [0.9 + 0.002 * s for s in seeds]},
            "per_class": {}}
    full = dict(both, label="full")
    wo = dict(ce, label="without CE weights")
    result = {"losses": [ce, both, full, wo], "evidence": {"arms": {"dice_term": ["dice + ce", "ce"]}}}
    assert arm_pair(result, "dice_term") == ("dice + ce", "ce") and arm_pair(result, "ce_class_weights") is None
    table = build({"t": result}, rarest={})
    assert table["rules"]["dice_term"]["status"] == "measured benefit"
    assert table["rules"]["dice_term"]["rows"][0]["mean"] == pytest.approx(0.2 + 0.001 * 4.5)
    assert table["rules"]["ce_class_weights"]["status"] == "convention without evidence"  # its arms are not declared
    assert arm_pair({"losses": []}, "ce_class_weights") == ("full", "without CE weights")


def test_unmeasured_rule_is_a_convention():
    assert rule_status("structure_losses")["status"] == "convention without evidence"
    with pytest.raises(KeyError, match="unknown advise rule"):
        rule_status("nope")


def test_advise_states_the_evidence_of_each_rule_applied():
    masks = [np.zeros((24, 24), np.uint8) for _ in range(6)]
    for i, m in enumerate(masks):
        m[2:14, 2:14] = 1
        if i < 2:
            m[4:6, 4:6] = 2
    adv = advise(masks)
    rules = [e["rule"] for e in adv.evidence]
    assert rules[:3] == ["softmax_or_sigmoid", "dice_term", "ce_term"]
    assert {"ce_class_weights", "background_exclusion", "batch_dice"} <= set(rules)
    assert "dice_class_weights" not in rules  # dropped from the default (analysis plan, amendment 6)
    assert all(e["pointer"].startswith("docs/advise_evidence.md#") for e in adv.evidence)
    text = str(adv)
    ce_w = rule_status("ce_class_weights")
    assert "evidence for each rule" in text and f"{ce_w['title']}: {ce_w['status']}" in text
    dropped = next(r for r in adv.reasons if r.startswith("class weights by"))
    assert "in the CE term only" in dropped and "dropped from the default" in dropped
    assert f"{rule_status('dice_class_weights')['status']}, docs/advise_evidence.md#dice-class-weights" in dropped
    assert json.loads(adv.to_json())["evidence"] == adv.evidence
    half = np.zeros((8, 8), np.uint8)
    half[:4] = 1
    balanced = advise([half] * 3)
    assert balanced.loss == "ce" and [e["rule"] for e in balanced.evidence] == ["softmax_or_sigmoid"]


def test_an_applied_decision_is_marked_and_re_read_when_its_status_changes():
    rid, (applied_on, where) = next(iter(APPLIED.items()))
    assert decision(rid, applied_on) == f"drop from the default: applied ({where})"
    assert "to be re-read" in decision(rid, "measured benefit") and decision("batch_dice", "inconclusive") == \
        "documented option only"
    entry = load()["rules"]["dice_class_weights"]
    assert entry["applied"] and entry["status"] == "measured harm" and entry["decision"].endswith("applied (" + where + ")")
    assert not load()["rules"]["background_exclusion"]["applied"]  # provisional: advise does not apply it where worse


def test_a_rule_dropped_from_the_default_is_not_applied_by_advise():
    rng = np.random.default_rng(0)
    m = (rng.random((4, 16, 16)) < 0.05).astype(np.int64) * rng.integers(1, 4, (4, 16, 16))
    adv = advise(list(m))
    assert "class_weights" in adv.loss and adv.class_weights  # imbalanced: advise weights the classes ...
    dropped = {r for r, (on, _) in APPLIED.items() if on == "measured harm"}
    assert dropped and not dropped & {e["rule"] for e in adv.evidence}  # ... but not where the rule was dropped
