"""``seglab advise PATH``: read masks, print findings and the recommended activation, loss and weights."""

from __future__ import annotations

import argparse
import json
import sys

from seglab.advise.stats import FORMATS
from seglab.advise.weights import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="a mask file or a folder of masks (read recursively)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the report")
    parser.add_argument("--format", choices=FORMATS, default="auto", help="mask encoding; default: inferred per file")
    parser.add_argument("--ignore-index", type=int, default=None, metavar="N", help="label value to leave out (e.g. 255 'void')")
    parser.add_argument("--weights", choices=METHODS, default="median",
                        help="class-weight method: median = median-frequency balancing (default), inverse = inverse frequency, "
                             "effective = effective number of samples (Cui et al. 2019)")
    parser.add_argument("--beta", type=float, default=0.9999, help="beta of --weights effective (default 0.9999)")
    parser.add_argument("--rgb-reading", choices=("multilabel", "classes"), default=None,
                        help="colour masks: R/G/B channels as labels (mixed colours = overlap) or each colour a class; "
                             "default: multilabel when some colours are sums of primaries, else classes")
    parser.add_argument("--task", default=None, metavar="NAME",
                        help="advise on the training masks of a built-in task instead of PATH (e.g. brain-tissue)")


def run(args: argparse.Namespace) -> int:
    from seglab._extras import require

    require("rich", "seglab advise")
    from rich.console import Console

    from seglab.advise import advise
    from seglab.advise.report import render

    if (args.path is None) == (args.task is None):
        print("seglab advise: give exactly one of PATH or --task NAME", file=sys.stderr)
        return 2
    kw = dict(format=args.format, ignore_index=args.ignore_index, weights=args.weights, beta=args.beta, rgb_reading=args.rgb_reading)
    try:
        if args.task:
            masks, names, fmt = task_masks(args.task)
            if args.format == "auto":
                kw["format"] = fmt
            advice = advise(masks, class_names=names, **kw)
        else:
            advice = advise(args.path, progress=not args.json and sys.stderr.isatty(), **kw)
    except (ValueError, FileNotFoundError) as e:
        if args.json:
            print(json.dumps({"error": str(e)}))
        else:
            print(f"seglab advise: {e}", file=sys.stderr)  # unwrapped: file paths stay copyable
        return 2
    if args.json:
        print(advice.to_json())
    else:
        render(advice, Console())
    return 0


def task_masks(name: str):
    """``(masks, class_names, format)`` for task ``name``: an iterator over its ``training_masks()`` if it
    has one (e.g. ``brain-tissue``), else over its validation targets; the format is ``"onehot"`` (channel
    first) for tasks whose targets have a channel axis, else ``"index"``."""
    from seglab.data import create_task

    task = create_task(name)
    if hasattr(task, "training_masks"):
        masks = task.training_masks()
    else:
        masks = (t.numpy() for t in task.validation()[1])
    fmt = "index" if task.mode == "multiclass" and not getattr(task, "soft", False) else "onehot"
    return masks, list(task.class_names), fmt
