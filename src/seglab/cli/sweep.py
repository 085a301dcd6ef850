"""run a resumable grid of training runs

``seglab sweep``: run a grid of training runs into a resumable results folder.

Examples::

    seglab sweep --preset chlebus2018 --quick --out results/quick
    seglab sweep --preset chlebus2018 --out results/chlebus2018          # the study's 10,001 steps
    seglab sweep --losses study_cce,study_dice,study_dicefg --fg-ratios 0.05,0.95 --norms batch,none --seeds 0,1 --steps 2000 --out r/
    seglab sweep --config sweep.toml --out r/ --shard 3/8                 # one of 8 independent jobs
    seglab sweep --config sweep.toml --out r/ --run-index $SLURM_ARRAY_TASK_ID
    seglab sweep --config sweep.toml --list                                # runs with their indices
    seglab sweep --losses dice,ce --task-opt size=64 --models my_nets.py:make_net --out r/   # your own model
    seglab sweep --merge r_node1 r_node2 --out r/                          # merge folders of separate jobs
    seglab sweep --preset chlebus2018 --quick --engine ray --out r/        # runs as Ray tasks (local Ray)
    seglab sweep --config sweep.toml --engine ray --address auto --out r/  # on an existing Ray cluster
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from typing import Any

from seglab._extras import require
from seglab._options import parse_kv as _kv
from seglab.losses.registry import split_specs
from seglab.sweep.grid import SINGULAR, check_grid, expand, load_config, parse_shard
from seglab.data import list_tasks
from seglab.models import NORMS, list_models
from seglab.studies import STUDY_STEPS
from seglab.sweep.presets import PRESETS, get_preset
from seglab.sweep.runner import PROGRESS_EVERY_S, run_sweep
from seglab.results import ResultsError, check_out_dir, merge
from seglab.train import distributed as D
from seglab.train.config import GRAD_NORM_EVERY, OPTIMIZERS, ConfigError, validate_runs

from ._common import MONITORS_HELP

LIST_AXES = {  # cli flag dest -> grid key, converter
    "losses": ("losses", str),
    "tasks": ("tasks", str),
    "fg_ratios": ("fg_ratios", float),
    "models": ("models", str),
    "norms": ("norms", str),
    "optimizers": ("optimizers", str),
    "lrs": ("lrs", float),
    "momentums": ("momentums", float),
    "seeds": ("seeds", int),
    "monitors": ("monitors", str),
}


def _split(text: str, conv: Callable[[str], Any], flag: str = "") -> list:
    """The comma list ``text`` (loss specs keep their brackets) converted by ``conv``; ConfigError naming ``flag``."""
    out = []
    for part in split_specs(text):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(conv(part))
        except ValueError:
            what = {"float": "a number", "int": "an integer"}.get(conv.__name__, conv.__name__)
            raise ConfigError(f"{flag + ': ' if flag else ''}cannot read {part!r} as {what}") from None
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab sweep``; every default shown in the help is the constant the code uses."""
    src = p.add_argument_group("what to run")
    src.add_argument("--preset", help=f"built-in grid: {', '.join(PRESETS)}")
    src.add_argument("--quick", action="store_true", help="shrink the preset for a demo (1 seed, fewer losses and steps)")
    src.add_argument("--config", help="grid file (.toml, .yaml, .json); command-line lists override its fields")
    src.add_argument("--losses", help="comma list of seglab.get_loss specs, e.g. study_cce,study_dice,dicefg,'dice[batch=true]'")
    src.add_argument("--tasks", help=f"comma list of task names ({', '.join(list_tasks())})")
    src.add_argument("--task-opt", dest="task_opt", action="append", default=[], metavar="K=V",
                     help="task parameter for every run (repeatable), e.g. --task-opt size=64; set on top of the "
                          "grid's task_kw (a task entry's own options still win)")
    src.add_argument("--fg-ratios", dest="fg_ratios", help="comma list of foreground fractions in (0, 1) (threshold task)")
    src.add_argument("--models", help=f"comma list of model names ({', '.join(list_models())}) or your own factories "
                                       "(package.module:factory, path/to/file.py:factory)")
    src.add_argument("--norms", help="comma list: batch,none (tiny) or "
                                      f"{','.join(n or 'none' for n in NORMS)} (unet)")
    src.add_argument("--optimizers", help=f"comma list: {','.join(OPTIMIZERS)}")
    src.add_argument("--lrs", help="comma list of learning rates")
    src.add_argument("--momentums", help="comma list of SGD momentums")
    src.add_argument("--seeds", help="comma list of seeds")
    src.add_argument("--monitors", help=MONITORS_HELP)
    src.add_argument("--steps", type=int, help="training steps per run")
    src.add_argument("--study-steps", action="store_true", help=f"use the study's {STUDY_STEPS:,} iterations")
    src.add_argument("--batch-size", type=int)
    src.add_argument("--eval-every", type=int)
    every_step = [n for n in PRESETS if get_preset(n).get("grad_norm_every") == 1]
    src.add_argument("--grad-norm-every", type=int, metavar="K",
                     help="take every monitor loss's gradient norm at steps 0, K, 2K, ... (0 = off; default: the "
                          f"grid's grad_norm_every, else {GRAD_NORM_EVERY}"
                          + (f"; the presets {', '.join(every_step)} set 1)" if every_step else ")"))
    out = p.add_argument_group("where and how")
    out.add_argument("--out", "-o", help="results folder (resumed if it exists)")
    out.add_argument("--workers", "-j", type=int, default=2, help="parallel worker processes (default %(default)s; 0: one per CPU core)")
    out.add_argument("--threads", type=int, default=1, help="torch threads per worker (default %(default)s)")
    out.add_argument("--shard", help="i/n: run only runs[i::n] of the full run list (for independent jobs)")
    out.add_argument("--run-index", help="comma list of indices into the full run list (see --list)")
    out.add_argument("--list", action="store_true", help="print the runs with their indices and exit")
    out.add_argument("--merge", nargs="+", metavar="SRC", help="merge finished runs of these results folders into --out and exit")
    out.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this machine's worker processes (default); ray: Ray tasks (pip install "
                          "'seglab[ray]'), on a local Ray started for the sweep or on --address")
    out.add_argument("--address", help="with --engine ray: join an existing Ray cluster, auto (RAY_ADDRESS or "
                                       "the cluster started on this node) or HOST:PORT of its head")
    out.add_argument("--no-progress", action="store_true")
    out.add_argument("--progress-every", dest="progress_every", type=float, default=None, metavar="SECONDS",
                     help="when stderr is not a terminal (a log file, a batch job): one progress line every "
                          f"SECONDS (default {PROGRESS_EVERY_S:g})")
    out.add_argument("--no-pack", action="store_true",
                     help="train every run alone (default: runs of the tiny model on the threshold task that share "
                          "everything but loss, seed and fg ratio are trained together as one packed network)")


def _base_grid(args: argparse.Namespace) -> dict[str, Any]:
    """The grid of ``--preset`` or ``--config`` (empty with neither); ConfigError naming the option."""
    if args.preset and args.config:
        raise ConfigError("give --preset or --config, not both")
    if args.preset:
        grid = get_preset(args.preset, quick=args.quick)
    elif args.config:
        grid = load_config(args.config)
        check_grid(grid, str(args.config))
        if args.quick:
            raise ConfigError("--quick only applies to --preset")
    else:
        if not args.losses:
            raise ConfigError("nothing to run: give --preset, --config, or at least --losses")
        grid = {}
    return grid


def _add_task_opts(grid: dict[str, Any], task_opts: list[str]) -> None:
    """``--task-opt K=V``: set on top of the grid's task_kw and of each sub-grid's own task_kw."""
    try:
        topt = _kv(task_opts, "--task-opt")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(grid.get("task_kw") or {}, dict):
        raise ConfigError(f"--task-opt: the grid's task_kw must be a table, got {grid['task_kw']!r}")
    grid["task_kw"] = {**(grid.get("task_kw") or {}), **topt}
    for sub in grid.get("grids", []) or []:
        if isinstance(sub, dict) and isinstance(sub.get("task_kw"), dict):
            sub["task_kw"] = {**sub["task_kw"], **topt}


def build_grid(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's grid: ``--preset`` or ``--config``, with the command line's lists and values on top."""
    grid = _base_grid(args)
    overrides: dict[str, Any] = {}
    for dest, (key, conv) in LIST_AXES.items():
        v = getattr(args, dest, None)
        if v:
            overrides[key] = _split(v, conv, "--" + dest.replace("_", "-"))
    if args.study_steps:
        overrides["steps"] = STUDY_STEPS
    for k in ("steps", "batch_size", "eval_every", "grad_norm_every"):
        v = getattr(args, k, None)
        if v is not None:
            overrides[k] = v
    task_opts = getattr(args, "task_opt", None) or []
    if task_opts:
        _add_task_opts(grid, task_opts)
    if "steps" in overrides and "eval_every" not in overrides and "eval_every" in grid:
        overrides["eval_every"] = max(1, min(int(grid["eval_every"]), int(overrides["steps"])))
    for key, v in overrides.items():
        grid[key] = v
        singular = {pl: s for s, pl in SINGULAR.items()}.get(key)
        if singular:
            grid.pop(singular, None)
        for sub in grid.get("grids", []) or []:
            sub.pop(key, None)
            if singular:
                sub.pop(singular, None)
    return grid


def _report_config_error(console: Any, args: argparse.Namespace, e: ConfigError) -> None:
    """One line per problem, naming the option (or the grid field) it comes from."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    if getattr(e, "only_fields", False):  # only loss spec errors: one line each, naming the option
        flags = {"loss": "--losses" if args.losses else "losses", "monitors": "--monitors" if args.monitors else "monitors"}
        for fld, _spec, msg in getattr(e, "problems", ()):
            console.print(f"[red]error:[/red] {flags[fld]}: {escape(msg)}", soft_wrap=True)
    else:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)


def _sweep(args: argparse.Namespace, console: Any) -> Any:
    """Check the options, then merge, list or run the sweep; the :class:`SweepOutcome`, or the exit status 0 after
    ``--merge`` / ``--list``. Raises ConfigError / ResultsError naming the option."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    if args.threads is None or args.threads < 1:
        raise ConfigError(f"--threads must be an integer >= 1, got {args.threads}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0: one per CPU core), got {args.workers}")
    if args.out and not args.list and not args.merge:
        check_out_dir(args.out, "--out", create=False)  # created (and probed) after the grid is validated
    if args.merge:
        if not args.out:
            raise ConfigError("--merge needs --out (the destination folder)")
        added, skipped = merge(args.out, args.merge)
        console.print(escape(f"merged {added} run(s) into {args.out} ({skipped} already there)"), soft_wrap=True)
        return 0
    grid = build_grid(args)
    shard = parse_shard(args.shard) if args.shard else None
    run_index = _split(args.run_index, int, "--run-index") if args.run_index else None
    if args.list:
        for i, r in enumerate(validate_runs(expand(grid))):
            print(f"{i}\t{r.run_id}\t{r.label}")
        return 0
    if not args.out:
        raise ConfigError("--out RESULTS_FOLDER is required")
    return run_sweep(grid, args.out, workers=args.workers, threads=args.threads, shard=shard, run_index=run_index,
                     show_progress=not args.no_progress, console=console, pack=not args.no_pack, engine=args.engine,
                     address=args.address, progress_every=args.progress_every)


def run(args: argparse.Namespace) -> int:
    """``seglab sweep``: exit status 0 when every run has its result, 1 failed or missing runs, 2 bad input,
    128 + the signal when interrupted (docs/cli.md)."""
    require("rich", "seglab sweep")
    from rich.console import Console  # optional extra (rich), checked above
    from rich.markup import escape  # optional extra (rich), checked by run()

    console = Console(stderr=True)
    try:
        outcome = _sweep(args, console)
    except ResultsError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        return 2
    except ConfigError as e:
        _report_config_error(console, args, e)
        return 2
    if isinstance(outcome, int):
        return outcome
    if D.launched_by_torchrun() and int(os.environ.get("RANK", "0")) != 0:  # (its group is shut down by now)
        return 0
    msg = (f"{outcome.finished} run(s) done, {outcome.skipped} already finished, {outcome.diverged} diverged, "
           f"{len(outcome.failed)} failed")
    if outcome.elsewhere:
        msg += f", {outcome.elsewhere} trained by another process"
    if outcome.interrupted:
        sig = outcome.signal or int(signal.SIGINT)
        name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
        console.print(f"[yellow]interrupted by {name}: {escape(msg)}; finished runs are kept in {escape(str(args.out))}, "
                      "re-run the same command to resume[/yellow]", soft_wrap=True)
        return 128 + sig
    console.print(f"{escape(msg)}; {outcome.wall_s:.1f} s -> {escape(str(args.out))}", soft_wrap=True)
    missing = [rid for rid in outcome.unfinished if rid not in set(outcome.failed)]
    if missing:  # e.g. a run another process held was left unfinished and could not be redone here
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        console.print(f"[red]error: the grid is incomplete: {len(missing)} run(s) have no result ({escape(shown)}); "
                      "re-run the same command to finish them[/red]", soft_wrap=True)
    return 0 if outcome.ok else 1
