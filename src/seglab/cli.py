"""The one command-line entry point: ``seglab {demo,advise,train,sweep,compare,evaluate,report,bench,info}``, ``seglab --version``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them, importing a subcommand's module when that subcommand is used. A subcommand whose
optional dependency is missing (:class:`seglab._extras.MissingExtraError`) prints one line naming the extra
to install and exits 2.

A closed output pipe (``seglab sweep --list | head -1``) ends every command quietly with exit status 1, the
recipe of the Python documentation (``signal`` module, "Note on SIGPIPE") and what ``rich`` does itself: the
rest of the output is sent to ``/dev/null`` and no traceback is printed. (1, not 141: the process is not
killed by SIGPIPE, it notices the closed pipe and stops; under ``set -o pipefail`` either status fails.)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from seglab._extras import MissingExtraError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("seglab.demo", "run the quick loss-comparison sweep on built-in data and write its report"),
    "advise": ("seglab.advise.cli", "read masks and recommend activation, loss and class weights"),
    "train": ("seglab.train.cli", "train one model with one loss (works under torchrun)"),
    "sweep": ("seglab.sweep.cli", "run a resumable grid of training runs"),
    "compare": ("seglab.compare.cli", "train the advised loss and alternatives with paired seeds; paired differences with intervals"),
    "evaluate": ("seglab.evaluate.cli", "score prediction folders against ground truth (named metrics, empty-mask conventions)"),
    "report": ("seglab.report.cli", "render figures, HTML and tables from a results folder"),
    "bench": ("seglab.bench", "time losses (fwd+bwd) and peak memory against F.cross_entropy, MONAI, smp"),
    "info": ("seglab.info", "versions, devices, the active fused loss backend (or why none) and installed extras"),
}


class _Version(argparse.Action):
    """``--version``: imports seglab only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from seglab._version import __version__

        print(f"seglab {__version__}")
        parser.exit()


def _quiet_broken_pipe() -> int:
    """After a BrokenPipeError on stdout: send whatever is still buffered to /dev/null (so that flushing at
    exit raises nothing more) and return the exit status 1."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, closed)
        pass
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run ``seglab ARGV``; returns the exit status (a closed output pipe: 1, quietly; see the module docstring)."""
    try:
        rc = _main(argv)
        sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="seglab", description="seglab: losses, activations, advice and experiments for segmentation")
    parser.add_argument("--version", "-V", action=_Version, help="print the seglab version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == chosen:
            try:
                importlib.import_module(module).add_arguments(p)
            except MissingExtraError as e:
                print(e, file=sys.stderr)
                return 2
    args = parser.parse_args(argv)
    try:
        rc = int(importlib.import_module(args._module).run(args) or 0)
        if rc == 0 and args.command == "advise" and getattr(args, "compare", False):
            from seglab.compare.cli import run_advised

            rc = run_advised(args)
        return rc
    except MissingExtraError as e:
        print(e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
