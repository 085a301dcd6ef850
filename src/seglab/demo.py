"""``seglab demo`` (``make demo``): the quick Chlebus (2018) preset into ``results/demo``, then its report.

Resumable like any sweep: an interrupted demo continues where it stopped when run again.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", "-o", default="results/demo", help="results folder (default results/demo)")
    p.add_argument("--workers", "-j", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--steps", type=int, help="override the quick preset's step count")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from seglab._extras import require

    for mod in ("rich", "pyarrow", "matplotlib"):
        require(mod, "seglab demo")
    from rich.console import Console

    from seglab.report.render import render_report, terminal_table
    from seglab.sweep.presets import get_preset
    from seglab.sweep.runner import run_sweep

    console = Console(width=max(140, Console().width))
    t0 = time.perf_counter()
    grid = get_preset("chlebus2018", quick=True, steps=args.steps)
    console.print(f"seglab demo: quick Chlebus (2018) sweep -> {args.out} ({args.workers} workers)")
    outcome = run_sweep(grid, args.out, workers=args.workers, show_progress=not args.no_progress)
    if outcome.interrupted:
        console.print("[yellow]interrupted; run `make demo` again to resume[/yellow]")
        return 130
    rep = render_report(args.out)
    console.print(terminal_table(rep["agg"], title="seglab demo (quick chlebus2018 preset)"))
    console.print(f"{outcome.finished} run(s) trained, {outcome.skipped} reused; report: {rep['html']} "
                  f"({len(rep['pngs'])} PNGs) in {time.perf_counter() - t0:.0f} s")
    return 0 if outcome.ok else 1
