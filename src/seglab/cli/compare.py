"""train the advised loss and alternatives with paired seeds; paired differences with intervals

``seglab compare``: train the advised loss (or given losses) and alternatives with paired seeds, report
paired differences with intervals and the verdicts of docs/analysis_plan.md."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from typing import Any

from seglab._options import parse_kv as _kv
from seglab.compare.advised import advised_spec, say_advised
from seglab.compare.core import ablations, compare
from seglab.compare.fn import MODES, FnError, compare_fn, implied_mode, resolve_callable
from seglab.compare.lightning import lightning_fn
from seglab.data import create_task
from seglab.losses import format_loss, get_loss
from seglab.losses.registry import split_specs
from seglab.results import ResultsError, check_out_dir
from seglab.sweep.runner import SweepOutcome, _signals_interrupt
from seglab.train.config import OPTIMIZERS, ConfigError

from ._common import COMPARE_OUT, keyword_defaults

DEFAULT_ALTERNATIVES = ("dice + ce", "ce", "dice")


#: the defaults of a comparison (seglab.compare.compare's keyword arguments): the options' defaults
_CMP = keyword_defaults(compare)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab compare``; the training and statistics defaults are :func:`seglab.compare.compare`'s."""
    p.add_argument("path", nargs="?", help="a folder with images/ and masks/ (shortcut for --task folder --task-opt path=PATH)")
    p.add_argument("--task", help=f"a built-in task (shapes, threshold, ...) or folder; default {_CMP['task']} when no PATH")
    p.add_argument("--task-opt", action="append", default=[], metavar="K=V", help="task parameter (repeatable)")
    p.add_argument("--model", default=_CMP["model"], help="registered model (unet, tiny) or package.module:factory / file.py:factory")
    p.add_argument("--model-opt", action="append", default=[], metavar="K=V", help="model parameter (repeatable)")
    p.add_argument("--losses", help="comma list of loss specs, the baseline first (default: the advised loss, then "
                   + ", ".join(DEFAULT_ALTERNATIVES) + ")")
    p.add_argument("--ablate", metavar="SPEC|advised", help="compare SPEC with itself minus one factor at a time "
                   "(CE weights, Dice weights, background exclusion, batch Dice, the Dice or CE term)")
    p.add_argument("--seeds", type=int, default=_CMP["seeds"], help="paired seeds 0..N-1 (default %(default)s, at least 2)")
    p.add_argument("--steps", type=int, default=_CMP["steps"], help="training steps per run (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=_CMP["batch_size"], help="batch size (default %(default)s)")
    p.add_argument("--optimizer", default=_CMP["optimizer"], choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=_CMP["lr"], help="learning rate (default %(default)g)")
    p.add_argument("--momentum", type=float, default=_CMP["momentum"], help="SGD momentum (default %(default)g)")
    p.add_argument("--eval-every", type=int, help="validation interval (default: only at the end)")
    p.add_argument("--confidence", type=float, default=_CMP["confidence"],
                   help="interval confidence; alpha = 1 - confidence for the tests too (default %(default)s, the analysis plan's)")
    p.add_argument("--margin", type=float, default=_CMP["margin"],
                   help="equivalence margin in Dice: 'equivalent' only when TOST within +-margin passes (default %(default)s)")
    p.add_argument("--out", "-o", default=COMPARE_OUT, help="results folder (resumable; default %(default)s)")
    p.add_argument("--workers", "-j", type=int, default=_CMP["workers"], help="parallel worker processes (default %(default)s)")
    p.add_argument("--threads", type=int, default=_CMP["threads"], help="torch threads per worker (default %(default)s)")
    p.add_argument("--engine", default=_CMP["engine"], help="local (default) or ray")
    p.add_argument("--address", help="Ray address with --engine ray (default: a local Ray)")
    g = p.add_argument_group("your own training code (docs/compare.md)")
    g.add_argument("--fn", metavar="MOD:FUNC", help="call FUNC(loss, seed, **opts) from package.module:FUNC or "
                   "path/to/file.py:FUNC for every loss x seed instead of seglab's trainer; it returns {metric: float} "
                   "or {metric: {class: float}}")
    g.add_argument("--fn-opt", action="append", default=[], metavar="K=V", help="keyword option for --fn (repeatable; "
                   "with --lightning: module option, trainer.K=V for lightning.Trainer, data.K=V for the DataModule)")
    g.add_argument("--lightning", metavar="MOD:Module", help="a LightningModule class taking a loss= argument; "
                   "trained with lightning.Trainer, scored by trainer.validate (needs --datamodule)")
    g.add_argument("--datamodule", metavar="MOD:Data", help="the LightningDataModule class for --lightning")
    g.add_argument("--mode", choices=["multiclass", "binary", "multilabel"],
                   help="mode the losses are built for (seglab.get_loss(spec, mode)); default: the function's mode "
                   "attribute, the task's (PATH/--task), or the one mode the loss specs imply")
    g.add_argument("--metric", help="primary endpoint among the returned metrics (ranks the losses; "
                   "default dice); every returned metric is compared, each its own Holm family")
    g.add_argument("--lower-is-better", action="append", default=[], metavar="NAME",
                   help="a returned metric where smaller is better (repeatable; hd95, assd and names ending in 'loss' "
                   "are known)")
    g.add_argument("--metric-margin", action="append", default=[], metavar="NAME=V",
                   help="equivalence margin of one metric in its units, or none (default: --margin for "
                   "higher-is-better metrics, none for lower-is-better ones)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true")


def plan_losses(args: argparse.Namespace, task: str | None, task_kw: dict[str, Any], mode: str | None = None,
                quiet: bool = False) -> tuple[list[str], dict[str, str]]:
    """The losses to train (baseline first) and their display labels. ``task``: the task whose training masks
    the advised loss comes from (None with ``--fn`` and no PATH/--task: then there is no advised loss); ``mode``:
    the mode of ``--ablate SPEC`` (default the task's). The advised spec, its source and advise's reasons are
    printed (on stderr when ``quiet``, e.g. with ``--json``)."""
    def advised() -> str:
        if task is None:
            raise ConfigError("--fn: the advised loss needs masks to advise on: give PATH or --task (or --losses)")
        spec, adv, source = advised_spec(task, task_kw)
        say_advised(spec, adv, source, stream=sys.stderr if quiet else sys.stdout)
        return spec

    labels: dict[str, str] = {}
    if args.ablate:
        if args.losses:
            raise ConfigError("--ablate and --losses: give one of them")
        spec = args.ablate
        if spec.strip().lower() == "advised":
            spec = advised()
        if mode is None:
            if task is None:
                mode = implied_mode([spec])
                if mode is None:
                    raise ConfigError("--mode: give multiclass, binary or multilabel for --ablate with --fn")
            else:
                mode = create_task(task, **task_kw).mode
        variants = ablations(spec, mode)
        if not variants:
            raise ConfigError(f"--ablate: {spec!r} has no factor to remove (no weights, background exclusion, batch "
                              "Dice or second term)")
        labels[spec] = "full"
        specs = [spec]
        for factor, v in variants.items():
            if v not in specs:
                specs.append(v)
                labels[v] = f"without {factor}" if not factor.startswith("none") else "plain"
        return specs, labels
    if args.losses:
        specs = [s.strip() for s in split_specs(args.losses) if s.strip()]
        return specs, labels
    spec = advised()
    labels[spec] = f"advised: {spec}"
    specs = [spec] + [a for a in DEFAULT_ALTERNATIVES if a.replace(" ", "") != spec.replace(" ", "")]
    return specs, labels


def _margins(items: list[str]) -> dict[str, float | None]:
    """``--metric-margin NAME=V`` (V a number > 0, or none) -> ``{NAME: V}``."""
    out: dict[str, float | None] = {}
    for it in items:
        name, eq, v = it.partition("=")
        if not eq or not name.strip() or "[" in name:
            raise ConfigError(f"--metric-margin: expected NAME=V (V a number > 0 or none), got {it!r}")
        if v.strip().lower() in ("none", "null"):
            out[name.strip()] = None
            continue
        try:
            x = float(v)
        except ValueError:
            x = math.nan
        if not (math.isfinite(x) and x > 0):
            raise ConfigError(f"--metric-margin: {name.strip()}'s margin must be a finite number > 0 or none, got {v!r}")
        out[name.strip()] = x
    return out


def _interrupted(args: argparse.Namespace, e: BaseException) -> int:
    """One line; the exit status 128 + the signal: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    sig = int(getattr(e, "signum", signal.SIGINT))
    name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
    print(f"seglab compare: interrupted by {name}; finished runs are kept in {args.out}, re-run the same command "
          "to resume", file=sys.stderr)
    return 128 + sig


def run(args: argparse.Namespace) -> int:
    """``seglab compare``; exit status: 0 the comparison is complete (every run of its grid has its result), 1 a
    run failed or diverged (left out of the pairs, named), 2 bad input, 130 Ctrl-C, 143 SIGTERM (docs/cli.md)."""
    term = SweepOutcome()
    try:
        with _signals_interrupt(term):  # SIGTERM/SIGHUP, anywhere in the command, end it like Ctrl-C does
            return _run(args)
    except KeyboardInterrupt as e:
        return _interrupted(args, e)


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options' ranges; ConfigError naming the option."""
    for name, v, lo in (("--seeds", args.seeds, 2), ("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1),
                        ("--workers", args.workers, 0), ("--threads", args.threads, 1)):
        if v < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v}")
    if args.eval_every is not None and args.eval_every < 1:
        raise ConfigError(f"--eval-every must be an integer >= 1, got {args.eval_every}")
    if not 0.5 < args.confidence < 1.0:
        raise ConfigError(f"--confidence must lie in (0.5, 1), got {args.confidence}")
    if not (math.isfinite(args.margin) and args.margin > 0):
        raise ConfigError(f"--margin must be a finite number > 0 (Dice), got {args.margin}")


def _run(args: argparse.Namespace) -> int:
    """Check, plan and run the comparison (seglab's trainer, or the user's code); exit status."""
    def fail(msg: str) -> int:
        print(f"seglab compare: {msg}", file=sys.stderr)
        return 2

    user_code = bool(getattr(args, "fn", None) or getattr(args, "lightning", None))
    try:
        task_kw = _kv(args.task_opt, "--task-opt")
        model_kw = _kv(args.model_opt, "--model-opt")
        if args.path and args.task and args.task != "folder":
            raise ConfigError(f"give PATH or --task, not both (PATH {args.path!r} means --task folder)")
        task: str | None = "folder" if args.path else (args.task or (None if user_code else _CMP["task"]))
        if args.path:
            task_kw.setdefault("path", args.path)
        _check_numbers(args)
        check_out_dir(args.out, "--out", create=False)
        if user_code:
            return _run_user_code(args, task, task_kw)
        for flag in ("fn_opt", "datamodule", "mode", "metric", "lower_is_better", "metric_margin"):
            if getattr(args, flag, None):
                raise ConfigError(f"--{flag.replace('_', '-')} goes with --fn or --lightning (seglab's trainer takes the "
                                  "mode from the task and compares the Dice)")
        specs, labels = plan_losses(args, task, task_kw, quiet=args.json)
        assert task is not None
        cmp = compare(specs, out=args.out, task=task, task_kw=task_kw, model=args.model, model_kw=model_kw,
                      seeds=args.seeds, steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer,
                      lr=args.lr, momentum=args.momentum, eval_every=args.eval_every, workers=args.workers,
                      threads=args.threads, confidence=args.confidence, labels=labels,
                      show_progress=not args.no_progress and not args.json, engine=args.engine, address=args.address,
                      margin=args.margin)
    except KeyboardInterrupt as e:
        return _interrupted(args, e)
    except FnError as e:
        return fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except ConfigError as e:
        problems = getattr(e, "problems", None)
        if problems:  # per-run problems of the grid: one line per distinct problem, naming the option
            seen = dict.fromkeys(f"--{'losses' if fld == 'loss' else fld}: {msg}" for fld, _spec, msg in problems)
            for line in seen:
                print(f"seglab compare: {line}", file=sys.stderr)
            return 2
        return fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except (ResultsError, ValueError, TypeError, FileNotFoundError) as e:
        return fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    return _print(cmp, args)


def _print(cmp: Any, args: argparse.Namespace) -> int:
    if args.json:
        print(cmp.to_json())
    else:
        sys.stdout.write(cmp.text())
        print(f"written: {args.out}/compare.json, compare.txt, compare.html")
    if cmp.failed:  # the verdicts stand on fewer seeds than asked: never a silent exit 0
        shown = ", ".join(cmp.failed[:4]) + (f" and {len(cmp.failed) - 4} more" if len(cmp.failed) > 4 else "")
        print(f"seglab compare: incomplete: {len(cmp.failed)} run(s) left out of the pairs ({shown}); re-run the same "
              "command to redo them", file=sys.stderr)
        return 1
    return 0


def _run_user_code(args: argparse.Namespace, task: str | None, task_kw: dict[str, Any]) -> int:
    """``--fn`` / ``--lightning``: the user's training code for every loss x seed (exceptions go to :func:`run`)."""
    if args.fn and args.lightning:
        raise ConfigError("give --fn or --lightning, not both")
    if bool(args.lightning) != bool(args.datamodule):
        raise ConfigError("--lightning MODULE needs --datamodule DATA (and --datamodule goes with --lightning)")
    if args.engine != "local":
        raise ConfigError("--engine ray is not available with --fn/--lightning: the runs go one at a time in this process")
    fn_kw = _kv(args.fn_opt, "--fn-opt")
    mode = args.mode
    if args.fn and mode is None:  # the function may say which mode its losses are for: run.mode = "multiclass"
        own = getattr(resolve_callable(args.fn), "mode", None)
        if own is not None and own not in MODES:
            raise ConfigError(f"--fn {args.fn}: its mode attribute {own!r} is not one of {', '.join(MODES)}")
        mode = own
    task_mode = create_task(task, **task_kw).mode if task is not None else None
    if mode is not None and task_mode is not None and mode != task_mode:
        raise ConfigError(f"--mode {mode}: the task's masks are {task_mode}")
    mode = mode or task_mode
    specs, labels = plan_losses(args, task, task_kw, mode=mode, quiet=args.json)
    if mode is None:
        mode = implied_mode(specs)
        if mode is None:
            raise ConfigError(f"--mode: give multiclass, binary or multilabel (the losses {', '.join(specs)} "
                              "do not imply one mode)")
    fn: Any = args.fn
    name = None
    if args.lightning:
        fn = lightning_fn(args.lightning, args.datamodule)
        name = f"lightning:{args.lightning}|{args.datamodule}"
    # with --json, stdout carries the one JSON object: what the user's code prints goes to stderr
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with redirect:
        cmp = compare_fn(specs, fn=fn, fn_name=name, out=args.out, mode=mode, fn_kw=fn_kw, seeds=args.seeds,
                         metric=args.metric or "dice", lower_is_better=args.lower_is_better, margin=args.margin,
                         margins=_margins(args.metric_margin), confidence=args.confidence, labels=labels,
                         show_progress=not args.no_progress and not args.json)
    return _print(cmp, args)


def run_advised(args: argparse.Namespace, advice: Any, source: str | None) -> int:
    """``seglab advise --compare``: the advised loss (``advice``, the baseline, advised on ``source``: the training
    masks, as ``seglab compare --ablate advised`` advises) against the default alternatives, on ``--task`` or on
    PATH's images/ and masks/."""
    spec = format_loss(get_loss(advice.loss, advice.mode, **advice.loss_kwargs))
    losses = [spec] + [a for a in DEFAULT_ALTERNATIVES if a.replace(" ", "") != spec.replace(" ", "")]
    argv = ["--losses", ",".join(losses), "--seeds", str(args.seeds), "--steps", str(args.steps), "--out", args.out]
    if args.task:
        argv += ["--task", args.task, *(x for opt in args.task_opt for x in ("--task-opt", opt))]
    else:
        argv.append(args.path)
    parser = argparse.ArgumentParser(prog="seglab compare")
    add_arguments(parser)  # every other option at compare's own default
    ns = parser.parse_args(argv)
    if source:
        print(f"\nadvised on {source}, as seglab compare --ablate advised advises", flush=True)
    print(f"\nseglab advise --compare: {spec} against {', '.join(losses[1:])}, {args.seeds} paired seeds", flush=True)
    return run(ns)
