"""score prediction folders against ground truth (named metrics, empty-mask conventions)

``seglab evaluate``: score predictions against ground truth, or compare two prediction folders.

    seglab evaluate PRED GT --out DIR                 # per_case.csv, summary.json, index.html in DIR
    seglab evaluate A B --gt GT --out DIR             # both scored, then B vs A case by case (comparison.json)
    seglab advise masks/ --json | seglab evaluate PRED GT --metrics-from -

Bad input (unpaired cases, mismatched shapes, unknown metric): one line on stderr naming it, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seglab.evaluate.core import EvalOptions, evaluate_folders, print_progress, read_per_case
from seglab.evaluate.html import render_html
from seglab.evaluate.metrics import DEFAULT_METRICS, EMPTY_CONVENTIONS, resolve_metrics
from seglab.evaluate.paired import compare_rows
from seglab.metrics.surface import DEFINITIONS
from seglab.provenance import provenance

#: advise's metric names (Advice.metrics[i]["metric"], first word) -> evaluate's
ADVISE_NAMES = {"dice": "dice", "nsd": "nsd", "hd95": "hd95", "cldice": "cldice"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="PRED GT, or with --gt: one or two prediction folders")
    p.add_argument("--gt", help="ground-truth folder (then FOLDER is one prediction folder, or two to compare)")
    p.add_argument("--out", "-o", default="results/evaluate", help="output folder (resumable; default %(default)s)")
    p.add_argument("--metrics", help=f"comma list (default: {','.join(DEFAULT_METRICS)}); names: dice, iou, hd95, hd, "
                   "assd, nsd, cldice or any registered metric")
    p.add_argument("--metrics-from", metavar="ADVICE.json|-", help="take the metrics seglab advise --json recommends")
    p.add_argument("--definition", default="monai", choices=DEFINITIONS,
                   help="distance definition: monai (MONAI / Metrics Reloaded, default), pooled (medpy), "
                   "surface_weighted (DeepMind's surface-distance); docs/metrics.md")
    p.add_argument("--tolerance", type=float, default=1.0, help="NSD tolerance in units of spacing (default %(default)s)")
    p.add_argument("--empty", default="nan", choices=EMPTY_CONVENTIONS,
                   help="empty-mask convention (default %(default)s; docs/metrics.md)")
    p.add_argument("--num-classes", type=int, help="classes 0..N-1 (default: 1 + the largest label found)")
    p.add_argument("--include-background", action="store_true", help="also report class 0")
    p.add_argument("--spacing", help="comma list, one per spatial axis (default: the NIfTI header's, else 1)")
    p.add_argument("--class-names", help="comma list of class names, class 0 first (for the tables)")
    p.add_argument("--margin", type=float, default=0.01, help="equivalence margin for overlap metrics (default %(default)s)")
    p.add_argument("--workers", "-j", type=int, default=1, help="processes scoring cases in parallel (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print summary.json on stdout")
    p.add_argument("--no-progress", action="store_true")


def metrics_from_advice(source: str) -> list[str]:
    """evaluate's metric names from a ``seglab advise --json`` object (a file, or ``-`` for stdin)."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        advice = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--metrics-from {source}: not JSON ({e})") from None
    names = []
    for m in advice.get("metrics", []):
        key = str(m.get("metric", "")).split()[0].rstrip(",").lower()
        if key in ADVISE_NAMES and ADVISE_NAMES[key] not in names:
            names.append(ADVISE_NAMES[key])
    if not names:
        raise ValueError(f"--metrics-from {source}: no metric evaluate knows in the advice")
    return names


def _options(args: argparse.Namespace) -> EvalOptions:
    """The checked :class:`EvalOptions` of the command line; ValueError naming the option."""
    names = metrics_from_advice(args.metrics_from) if args.metrics_from else \
        [m.strip() for m in (args.metrics or ",".join(DEFAULT_METRICS)).split(",") if m.strip()]
    spacing = None
    if args.spacing:
        try:
            spacing = tuple(float(s) for s in args.spacing.split(","))
        except ValueError:
            raise ValueError(f"--spacing must be numbers separated by commas, got {args.spacing!r}") from None
        if any(not s > 0 for s in spacing):
            raise ValueError(f"--spacing must be positive, got {args.spacing!r}")
    if args.num_classes is not None and args.num_classes < 2:
        raise ValueError(f"--num-classes must be at least 2, got {args.num_classes}")
    if not args.tolerance >= 0:
        raise ValueError(f"--tolerance must be >= 0, got {args.tolerance}")
    return EvalOptions(metrics=tuple(resolve_metrics(names, args.tolerance, args.definition)), num_classes=args.num_classes,
                       include_background=args.include_background, empty=args.empty, spacing=spacing)


def _folders(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.gt:
        if len(args.folders) not in (1, 2):
            raise ValueError(f"with --gt, give one or two prediction folders, got {len(args.folders)}")
        return list(args.folders), args.gt
    if len(args.folders) != 2:
        raise ValueError("give PRED GT (two folders), or prediction folder(s) with --gt GT")
    return [args.folders[0]], args.folders[1]


def _run(args: argparse.Namespace) -> int:
    preds, gt = _folders(args)
    opts = _options(args)
    names = args.class_names.split(",") if args.class_names else None
    out = Path(args.out)
    prog = None if args.no_progress else print_progress
    outs = [out / ("A", "B")[i] if len(preds) == 2 else out for i in range(len(preds))]
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    summaries = [evaluate_folders(p, gt, o, opts, progress=prog, provenance=provenance(), workers=args.workers)
                 for p, o in zip(preds, outs, strict=True)]
    comparison = None
    if len(preds) == 2:
        comparison = compare_rows(read_per_case(outs[0] / "per_case.csv"), read_per_case(outs[1] / "per_case.csv"),
                                  opts.metrics, margin=args.margin)
        (out / "comparison.json").write_text(json.dumps({"schema_version": 1, "a": preds[0], "b": preds[1], "gt": gt,
                                                         "margin": args.margin, "rows": comparison}, indent=1) + "\n")
    for i, (s, o) in enumerate(zip(summaries, outs, strict=True)):
        page = render_html(s, read_per_case(o / "per_case.csv"), class_names=names,
                           comparison=comparison if i == len(outs) - 1 else None)
        (o / "index.html").write_text(page)
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else {"a": summaries[0], "b": summaries[1],
                                                                     "comparison": comparison}))
    else:
        print(f"wrote {', '.join(str(o) for o in outs)} (per_case.csv, summary.json, index.html)"
              + (f" and {out / 'comparison.json'}" if comparison else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    """``seglab evaluate``; bad input: one line on stderr, exit 2."""
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"seglab evaluate: {e}", file=sys.stderr)
        return 2
