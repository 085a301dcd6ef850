"""run the quick loss-comparison sweep on built-in data and write its report

``seglab demo`` (``make demo``): the quick Chlebus (2018) preset into ``results/demo``, then its report.

Resumable like any sweep: an interrupted demo continues where it stopped when run again.
"""

from __future__ import annotations

import argparse
import signal
import time

from seglab._extras import require
from seglab.results import ResultsError, check_out_dir
from seglab.sweep.presets import get_preset
from seglab.sweep.runner import run_sweep


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab demo``."""
    p.add_argument("--out", "-o", default="results/demo", help="results folder (default %(default)s)")
    p.add_argument("--workers", "-j", type=int, default=2, help="worker processes (default %(default)s)")
    p.add_argument("--steps", type=int, help="override the quick preset's step count")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """``seglab demo``: the quick preset's sweep, then its report; exit 2 bad input, 1 a run failed, 128 + the signal
    when interrupted."""
    for mod in ("rich", "pyarrow", "matplotlib"):
        require(mod, "seglab demo")
    from rich.console import Console  # optional extra (rich), checked above
    from rich.markup import escape  # optional extra (rich), checked by run()

    from seglab.report.render import render_report, terminal_table  # optional extras (matplotlib), checked above

    console = Console(width=max(140, Console().width))
    err = Console(stderr=True)
    t0 = time.perf_counter()
    try:
        if args.workers < 0:
            raise ResultsError(f"--workers must be >= 0 (0: one per CPU core), got {args.workers}")
        if args.steps is not None and args.steps < 1:
            raise ResultsError(f"--steps must be an integer >= 1, got {args.steps}")
        check_out_dir(args.out, "--out", create=False)
        grid = get_preset("chlebus2018", quick=True, steps=args.steps)
        console.print(escape(f"seglab demo: quick Chlebus (2018) sweep -> {args.out} ({args.workers} workers)"), soft_wrap=True)
        outcome = run_sweep(grid, args.out, workers=args.workers, show_progress=not args.no_progress)
        if outcome.interrupted:
            sig = outcome.signal or int(signal.SIGINT)
            name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
            err.print(f"[yellow]interrupted by {name}: {outcome.finished} run(s) finished and kept in "
                      f"{escape(str(args.out))}; run `make demo` again to resume[/yellow]", soft_wrap=True)
            return 128 + sig
        rep = render_report(args.out)
    except ResultsError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        return 2
    console.print(terminal_table(rep["agg"], title="seglab demo (quick chlebus2018 preset)"))
    console.print(escape(f"{outcome.finished} run(s) trained, {outcome.skipped} reused; report: {rep['html']} "
                         f"({len(rep['pngs'])} PNGs) in {time.perf_counter() - t0:.0f} s"), soft_wrap=True)
    return 0 if outcome.ok else 1
