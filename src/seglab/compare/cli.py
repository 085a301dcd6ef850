"""``seglab compare``: train the advised loss (or given losses) and alternatives with paired seeds, report
paired differences with intervals and the verdicts of docs/analysis_plan.md."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Optional

DEFAULT_ALTERNATIVES = ("dice + ce", "ce", "dice")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="a folder with images/ and masks/ (shortcut for --task folder --task-opt path=PATH)")
    p.add_argument("--task", help="a built-in task (shapes, threshold, ...) or folder; default shapes when no PATH")
    p.add_argument("--task-opt", action="append", default=[], metavar="K=V", help="task parameter (repeatable)")
    p.add_argument("--model", default="unet", help="registered model (unet, tiny) or package.module:factory / file.py:factory")
    p.add_argument("--model-opt", action="append", default=[], metavar="K=V", help="model parameter (repeatable)")
    p.add_argument("--losses", help="comma list of loss specs, the baseline first (default: the advised loss, then "
                   + ", ".join(DEFAULT_ALTERNATIVES) + ")")
    p.add_argument("--ablate", metavar="SPEC|advised", help="compare SPEC with itself minus one factor at a time "
                   "(CE weights, Dice weights, background exclusion, batch Dice, the Dice or CE term)")
    p.add_argument("--seeds", type=int, default=5, help="paired seeds 0..N-1 (default 5, at least 2)")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--eval-every", type=int, help="validation interval (default: only at the end)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="interval confidence; alpha = 1 - confidence for the tests too (default 0.95, the analysis plan's)")
    p.add_argument("--margin", type=float, default=0.01,
                   help="equivalence margin in Dice: 'equivalent' only when TOST within +-margin passes (default 0.01)")
    p.add_argument("--out", "-o", default="results/compare", help="results folder (resumable; default results/compare)")
    p.add_argument("--workers", "-j", type=int, default=2, help="parallel worker processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--engine", default="local", help="local (default) or ray")
    p.add_argument("--address", help="Ray address with --engine ray (default: a local Ray)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true")


def advised_spec(task: str, task_kw: dict[str, Any]) -> tuple[str, Any]:
    """The advised loss spec for a task's masks (``seglab advise`` on its training or validation masks)."""
    from seglab.advise import advise
    from seglab.advise.cli import task_masks
    from seglab.losses.registry import format_loss
    from seglab.losses import get_loss

    masks, names, fmt = task_masks(task, **task_kw)
    adv = advise(masks, class_names=names, format=fmt)
    return format_loss(get_loss(adv.loss, adv.mode, **adv.loss_kwargs)), adv


def plan_losses(args: argparse.Namespace, task: str, task_kw: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The losses to train (baseline first) and their display labels."""
    from seglab.losses.registry import split_specs
    from seglab.train.config import ConfigError

    from .core import ablations

    labels: dict[str, str] = {}
    if args.ablate:
        if args.losses:
            raise ConfigError("--ablate and --losses: give one of them")
        spec = args.ablate
        if spec.strip().lower() == "advised":
            spec, _ = advised_spec(task, task_kw)
        from seglab.data import create_task

        variants = ablations(spec, create_task(task, **task_kw).mode)
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
    spec, _ = advised_spec(task, task_kw)
    labels[spec] = f"advised: {spec}"
    specs = [spec] + [a for a in DEFAULT_ALTERNATIVES if a.replace(" ", "") != spec.replace(" ", "")]
    return specs, labels


def run(args: argparse.Namespace) -> int:
    from seglab.results import ResultsError, check_out_dir
    from seglab._options import parse_kv as _kv
    from seglab.train.config import ConfigError

    from .core import compare

    def fail(msg: str) -> int:
        print(f"seglab compare: {msg}", file=sys.stderr)
        return 2

    try:
        task_kw = _kv(args.task_opt, "--task-opt")
        model_kw = _kv(args.model_opt, "--model-opt")
        if args.path and args.task and args.task != "folder":
            raise ConfigError(f"give PATH or --task, not both (PATH {args.path!r} means --task folder)")
        task = "folder" if args.path else (args.task or "shapes")
        if args.path:
            task_kw.setdefault("path", args.path)
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
        check_out_dir(args.out, "--out", create=False)
        specs, labels = plan_losses(args, task, task_kw)
        cmp = compare(specs, out=args.out, task=task, task_kw=task_kw, model=args.model, model_kw=model_kw,
                      seeds=args.seeds, steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer,
                      lr=args.lr, momentum=args.momentum, eval_every=args.eval_every, workers=args.workers,
                      threads=args.threads, confidence=args.confidence, labels=labels,
                      show_progress=not args.no_progress and not args.json, engine=args.engine, address=args.address,
                      margin=args.margin)
    except KeyboardInterrupt:
        print(f"seglab compare: interrupted; finished runs are kept in {args.out}, re-run the same command to resume",
              file=sys.stderr)
        return 130
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
    if args.json:
        print(cmp.to_json())
    else:
        sys.stdout.write(cmp.text())
        print(f"written: {args.out}/compare.json")
    return 0


def run_advised(args: argparse.Namespace) -> int:
    """``seglab advise --compare``: the advised loss (``args.advice``, the baseline) against the default
    alternatives, on ``--task`` or on PATH's images/ and masks/."""
    from seglab.losses import format_loss, get_loss

    advice = args.advice
    spec = format_loss(get_loss(advice.loss, advice.mode, **advice.loss_kwargs))
    losses = [spec] + [a for a in DEFAULT_ALTERNATIVES if a.replace(" ", "") != spec.replace(" ", "")]
    ns = argparse.Namespace(path=args.path, task=args.task, task_opt=list(args.task_opt), model="unet", model_opt=[],
                            losses=",".join(losses), ablate=None, seeds=args.seeds, steps=args.steps, batch_size=8,
                            optimizer="adam", lr=1e-3, momentum=0.0, eval_every=None, confidence=0.95, margin=0.01, out=args.out,
                            workers=2, threads=1, engine="local", address=None, json=False, no_progress=False)
    print(f"\nseglab advise --compare: {spec} against {', '.join(losses[1:])}, {args.seeds} paired seeds", flush=True)
    return run(ns)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="seglab compare")
    add_arguments(p)
    return run(p.parse_args(argv))
