"""render figures, HTML and tables from a results folder

``seglab report RESULTS [--out DIR]``: PNG figures, a self-contained HTML page and a terminal table."""

from __future__ import annotations

import argparse
from pathlib import Path

from seglab._extras import require
from seglab.results import ResultsError, ResultsStore, check_out_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="results folder written by seglab sweep / seglab train --out")
    p.add_argument("--out", "-o", help="report folder (default RESULTS/report)")
    p.add_argument("--no-curves", action="store_true", help="skip the per-configuration figures (study-layout curves, Dice over steps)")
    p.add_argument("--no-table", action="store_true", help="do not print the terminal tables (summary, per-class Dice/IoU)")


def _check(args: argparse.Namespace) -> list[str]:
    """Checks before any rendering; raises ResultsError/FileNotFoundError naming the path. Returns one warning
    line per damaged run folder (left out of the report)."""
    res = Path(args.results)
    if not res.exists():
        raise FileNotFoundError(f"results folder {str(res)!r} does not exist")
    if not res.is_dir():
        raise ResultsError(f"results folder {str(res)!r} is not a folder")
    store = ResultsStore(res)
    store.read_config()  # a damaged config.json: named now
    check_out_dir(args.out if args.out else res / "report", "--out" if args.out else "report folder")
    _, damaged = store.scan()
    return [f"warning: damaged run {rid} left out of the report: {why}" for rid, why in sorted(damaged.items())]


def run(args: argparse.Namespace) -> int:
    """``seglab report``: exit 2 on a missing or damaged results folder."""
    for mod in ("rich", "pyarrow") if args.no_curves else ("rich", "pyarrow", "matplotlib"):
        require(mod, "seglab report")
    from rich.console import Console  # optional extra (rich), checked above
    from rich.markup import escape  # optional extra (rich), checked by run()

    from seglab.report.render import render_report, terminal_class_tables, terminal_table  # optional extras, checked above

    err = Console(stderr=True)
    console = Console(width=max(140, Console().width))
    try:
        for line in _check(args):
            err.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)
        rep = render_report(args.results, args.out, figures=not args.no_curves)
    except (FileNotFoundError, ValueError) as e:  # seglab.results.ResultsError is a ValueError
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        return 2
    if not args.no_table and rep["agg"]:
        console.print(terminal_table(rep["agg"]))
        for per_class in terminal_class_tables(rep["agg"]):
            console.print(per_class)
    console.print(escape(f"report: {rep['html']} ({len(rep['pngs'])} PNG figures in {rep['html'].parent})"), soft_wrap=True)
    return 0
