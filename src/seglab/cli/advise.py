"""read masks and recommend activation, loss and class weights

``seglab advise PATH``: read masks, print findings and the recommended activation, loss and weights.
``--compare`` then trains the advised loss against alternatives (``seglab compare``), advised on the same masks
that ``seglab compare --ablate advised`` trains on (the training cases; :mod:`seglab.compare.advised`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seglab._extras import require
from seglab._options import parse_kv as _kv
from seglab._version import __version__
from seglab.advise import advise
from seglab.advise.recommend import MAX_WEIGHT, SCHEMA_VERSION
from seglab.advise.report import render, render_plain
from seglab.advise.stats import FORMATS
from seglab.advise.weights import METHODS
from seglab.compare.core import compare

from ._common import COMPARE_OUT, keyword_defaults

#: the defaults of a comparison (``--seeds``, ``--steps`` with ``--compare``) are seglab compare's
_CMP = keyword_defaults(compare)
#: the defaults of the options that say how masks are read (with --compare, a given one overrides the task's)
READING_DEFAULTS = {"format": "auto", "ignore_index": "auto", "rgb_reading": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``seglab advise``."""
    parser.add_argument("path", nargs="?", help="a mask file or a folder of masks (read recursively)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of the report")
    parser.add_argument("--format", choices=FORMATS, default=READING_DEFAULTS["format"],
                        help="mask encoding; default: inferred per file")
    parser.add_argument("--ignore-index", type=_ignore_index, default=READING_DEFAULTS["ignore_index"], metavar="N|auto|none",
                        help="label value to leave out of every count and to pass to the loss as ignore_index (e.g. 255 'void'); "
                             "auto (default): a value outside the palette, or 255 apart from the class labels, is void and the report "
                             "says so first; none: every value is a class")
    parser.add_argument("--max-weight", type=_max_weight, default=MAX_WEIGHT, metavar="W",
                        help="cap on the emitted class weights and pos_weight (default %(default)g; inf: no cap)")
    parser.add_argument("--weights", choices=METHODS, default="median",
                        help="class-weight method: median = median-frequency balancing (default), inverse = inverse frequency, "
                             "effective = effective number of samples (Cui et al. 2019)")
    parser.add_argument("--beta", type=float, default=0.9999, help="beta of --weights effective (default %(default)s)")
    parser.add_argument("--rgb-reading", choices=("multilabel", "classes"), default=READING_DEFAULTS["rgb_reading"],
                        help="colour masks: R/G/B channels as labels (mixed colours = overlap) or each colour a class; "
                             "default: multilabel when some colours are sums of primaries, else classes")
    parser.add_argument("--task", default=None, metavar="NAME",
                        help="advise on the training masks of a built-in task instead of PATH (e.g. brain-tissue)")
    parser.add_argument("--task-opt", action="append", default=[], metavar="K=V",
                        help="with --task: task parameter (repeatable), e.g. --task-opt frequencies=[0.8,0.8,0.1]")
    parser.add_argument("--compare", action="store_true",
                        help="then train the advised loss and alternatives with paired seeds (seglab compare) on --task, "
                             "or on PATH when it holds images/ and masks/; the advice is then on the training masks "
                             "(the validation cases left out), the masks the runs train on")
    parser.add_argument("--seeds", type=int, default=_CMP["seeds"], help="with --compare: paired seeds (default %(default)s)")
    parser.add_argument("--steps", type=int, default=_CMP["steps"],
                        help="with --compare: training steps per run (default %(default)s)")
    parser.add_argument("--out", default=COMPARE_OUT, help="with --compare: results folder (default %(default)s)")


def _ignore_index(text: str) -> str | int:
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


def _check_compare(args: argparse.Namespace) -> str | None:
    """The problem with ``--compare``'s options (one line), or None."""
    if args.json:
        return "--compare prints its own report; use seglab compare --json for JSON"
    for name, v, lo in (("--seeds", args.seeds, 2), ("--steps", args.steps, 1)):
        if v < lo:
            return f"{name} must be an integer >= {lo}, got {v}"
    if args.path and not (Path(args.path, "images").is_dir() and Path(args.path, "masks").is_dir()):
        return (f"--compare needs images to train on: {args.path!r} has no images/ and masks/ folders "
                "(or use --task NAME)")
    return None


def compare_task(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``(task, task options)`` that ``seglab advise --compare`` trains on: ``--task`` or the folder PATH."""
    if args.task:
        return args.task, _kv(args.task_opt, "--task-opt")
    return "folder", {"path": args.path}


def _advice(args: argparse.Namespace, kw: dict[str, Any]) -> tuple[Any, str | None]:
    """``(advice, source)``; ``source`` names the masks read with ``--compare`` (None without)."""
    if args.compare:
        from seglab.compare.advised import advise_training_masks  # lazy: imports the trainer's tasks and data

        given = {k: v for k, v in kw.items() if k not in READING_DEFAULTS or v != READING_DEFAULTS[k]}
        task, task_kw = compare_task(args)
        return advise_training_masks(task, task_kw, **given)
    if args.task:
        from seglab.advise.tasks import task_masks  # lazy: imports the built-in tasks (torch)

        masks, names, fmt = task_masks(args.task, **_kv(args.task_opt, "--task-opt"))
        if args.format == "auto":
            kw["format"] = fmt
        return advise(masks, class_names=names, **kw), None
    return advise(args.path, progress=not args.json and sys.stderr.isatty(), **kw), None


def run(args: argparse.Namespace) -> int:
    """``seglab advise``: the report (or ``--json``), then with ``--compare`` the comparison; exit 2 on bad input."""
    tty = sys.stdout.isatty()
    if tty and not args.json:
        require("rich", "seglab advise")
    if (args.path is None) == (args.task is None):
        print("seglab advise: give exactly one of PATH or --task NAME", file=sys.stderr)
        return 2
    problem = _check_compare(args) if args.compare else None
    if problem:
        print(f"seglab advise: {problem}", file=sys.stderr)
        return 2
    kw = dict(format=args.format, ignore_index=args.ignore_index, weights=args.weights, beta=args.beta,
              rgb_reading=args.rgb_reading, max_weight=args.max_weight)
    try:
        advice, source = _advice(args, kw)
    except (ValueError, TypeError, FileNotFoundError) as e:
        if args.json:
            print(json.dumps({"schema_version": SCHEMA_VERSION, "seglab_version": __version__, "error": str(e)}))
        else:
            print(f"seglab advise: {e}", file=sys.stderr)  # unwrapped: file paths stay copyable
        return 2
    if args.json:
        print(advice.to_json())
    elif tty:
        from rich.console import Console  # optional extra (rich), checked above

        render(advice, Console())
    else:
        # piped or redirected: plain text, no colours, no box drawing, and no line is ever wrapped (the code
        # lines stay copyable, and grep sees whole sentences)
        sys.stdout.write(render_plain(advice))
    if not args.compare:
        return 0
    from .compare import run_advised  # lazy: only seglab advise --compare runs a comparison

    return run_advised(args, advice, source)
