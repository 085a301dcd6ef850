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
    parser.add_argument("--ignore-index", type=_ignore_index, default="auto", metavar="N|auto|none",
                        help="label value to leave out of every count and to pass to the loss as ignore_index (e.g. 255 'void'); "
                             "auto (default): a value outside the palette, or 255 apart from the class labels, is void and the report "
                             "says so first; none: every value is a class")
    parser.add_argument("--max-weight", type=_max_weight, default=50.0, metavar="W",
                        help="cap on the emitted class weights and pos_weight (default 50; inf: no cap)")
    parser.add_argument("--weights", choices=METHODS, default="median",
                        help="class-weight method: median = median-frequency balancing (default), inverse = inverse frequency, "
                             "effective = effective number of samples (Cui et al. 2019)")
    parser.add_argument("--beta", type=float, default=0.9999, help="beta of --weights effective (default 0.9999)")
    parser.add_argument("--rgb-reading", choices=("multilabel", "classes"), default=None,
                        help="colour masks: R/G/B channels as labels (mixed colours = overlap) or each colour a class; "
                             "default: multilabel when some colours are sums of primaries, else classes")
    parser.add_argument("--task", default=None, metavar="NAME",
                        help="advise on the training masks of a built-in task instead of PATH (e.g. brain-tissue)")
    parser.add_argument("--task-opt", action="append", default=[], metavar="K=V",
                        help="with --task: task parameter (repeatable), e.g. --task-opt frequencies=[0.8,0.8,0.1]")
    parser.add_argument("--compare", action="store_true",
                        help="then train the advised loss and alternatives with paired seeds (seglab compare) on --task, "
                             "or on PATH when it holds images/ and masks/")
    parser.add_argument("--seeds", type=int, default=5, help="with --compare: paired seeds (default 5)")
    parser.add_argument("--steps", type=int, default=300, help="with --compare: training steps per run (default 300)")
    parser.add_argument("--out", default="results/compare", help="with --compare: results folder (default results/compare)")


def _ignore_index(text: str):
    t = text.strip().lower()
    if t in ("auto", "none"):
        return t
    try:
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer label, 'auto' or 'none', got {text!r}") from None


def _max_weight(text: str) -> float:
    try:
        w = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or inf, got {text!r}") from None
    if not w > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or inf, got {text!r}")
    return w


def run(args: argparse.Namespace) -> int:
    from seglab._extras import require

    from seglab.advise import advise
    from seglab.advise.recommend import SCHEMA_VERSION
    from seglab.advise.report import render, render_plain
    from seglab._version import __version__

    tty = sys.stdout.isatty()
    if tty and not args.json:
        require("rich", "seglab advise")

    if (args.path is None) == (args.task is None):
        print("seglab advise: give exactly one of PATH or --task NAME", file=sys.stderr)
        return 2
    if args.compare:
        if args.json:
            print("seglab advise: --compare prints its own report; use seglab compare --json for JSON", file=sys.stderr)
            return 2
        from pathlib import Path

        for name, v, lo in (("--seeds", args.seeds, 2), ("--steps", args.steps, 1)):
            if v < lo:
                print(f"seglab advise: {name} must be an integer >= {lo}, got {v}", file=sys.stderr)
                return 2
        if args.path and not (Path(args.path, "images").is_dir() and Path(args.path, "masks").is_dir()):
            print(f"seglab advise: --compare needs images to train on: {args.path!r} has no images/ and masks/ folders "
                  "(or use --task NAME)", file=sys.stderr)
            return 2
    kw = dict(format=args.format, ignore_index=args.ignore_index, weights=args.weights, beta=args.beta, rgb_reading=args.rgb_reading,
              max_weight=args.max_weight)
    try:
        if args.task:
            from seglab._options import parse_kv as _kv

            masks, names, fmt = task_masks(args.task, **_kv(args.task_opt, "--task-opt"))
            if args.format == "auto":
                kw["format"] = fmt
            advice = advise(masks, class_names=names, **kw)
        else:
            from pathlib import Path

            src = Path(args.path, "masks") if args.compare else args.path  # images/ + masks/: only the masks
            advice = advise(src, progress=not args.json and sys.stderr.isatty(), **kw)
    except (ValueError, TypeError, FileNotFoundError) as e:
        if args.json:
            print(json.dumps({"schema_version": SCHEMA_VERSION, "seglab_version": __version__, "error": str(e)}))
        else:
            print(f"seglab advise: {e}", file=sys.stderr)  # unwrapped: file paths stay copyable
        return 2
    if args.json:
        print(advice.to_json())
    elif tty:
        from rich.console import Console

        render(advice, Console())
    else:
        # piped or redirected: plain text, no colours, no box drawing, and no line is ever wrapped (the code
        # lines stay copyable, and grep sees whole sentences)
        sys.stdout.write(render_plain(advice))
    args.advice = advice  # with --compare, the command line runs seglab compare on it next (seglab.cli)
    return 0


def task_masks(name: str, **task_kw):
    """``(masks, class_names, format)`` for task ``name`` (options ``task_kw``): an iterator over its ``training_masks()`` if it
    has one (e.g. ``brain-tissue``), else over its validation targets; the format is ``"onehot"`` (channel
    first) for tasks whose targets have a channel axis, else ``"index"``."""
    from seglab.data import create_task

    task = create_task(name, **task_kw)
    if hasattr(task, "training_masks"):
        masks = task.training_masks()
    else:
        masks = (t.numpy() for t in task.validation()[1])
    fmt = "index" if task.mode == "multiclass" and not getattr(task, "soft", False) else "onehot"
    return masks, list(task.class_names), fmt
