"""``seglab report RESULTS [--out DIR]``: PNG figures, a self-contained HTML page and a terminal table."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results folder written by seglab sweep / seglab train --out")
    p.add_argument("--out", "-o", help="report folder (default RESULTS/report)")
    p.add_argument("--no-curves", action="store_true", help="skip the per-configuration training-curve figures")
    p.add_argument("--no-table", action="store_true", help="do not print the terminal table")


def run(args: argparse.Namespace) -> int:
    from seglab._extras import require

    for mod in ("rich", "pyarrow") if args.no_curves else ("rich", "pyarrow", "matplotlib"):
        require(mod, "seglab report")
    from rich.console import Console

    from .render import render_report, terminal_table

    console = Console(width=max(140, Console().width))
    try:
        rep = render_report(args.results, args.out, figures=not args.no_curves)
    except (FileNotFoundError, ValueError) as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return 2
    if not args.no_table:
        console.print(terminal_table(rep["agg"]))
    console.print(f"report: {rep['html']} ({len(rep['pngs'])} PNG figures in {rep['html'].parent})")
    return 0
