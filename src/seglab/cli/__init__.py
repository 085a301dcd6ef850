"""The one command-line entry point: ``seglab COMMAND ...`` and ``seglab --version``.

Every module of this package whose name does not start with ``_`` is one command, named after the module
(``seglab/cli/train.py`` is ``seglab train``). A command module has

- a docstring whose first line is the command's one-line help (shown by ``seglab --help`` and as the
  description of ``seglab COMMAND --help``);
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``run(args: argparse.Namespace) -> int``, the exit status (docs/cli.md).

Adding a command is adding one such file: the commands are found by :func:`commands` (``pkgutil`` over this
package's ``__path__``), with no list to keep. Only the chosen command's module is imported; ``seglab --help`` reads
the others' docstrings from the first tokens of their files (about 3 ms for all), so both stay fast
(``import seglab`` never imports this package). A command whose optional dependency is missing (:class:`seglab._extras.MissingExtraError`) prints one
line naming the extra to install and exits 2.

A closed output pipe (``seglab sweep --list | head -1``) ends every command quietly with exit status 1, the recipe
of the Python documentation (``signal`` module, "Note on SIGPIPE") and what ``rich`` does itself: the rest of the
output is sent to ``/dev/null`` and no traceback is printed. (1, not 141: the process is not killed by SIGPIPE, it
notices the closed pipe and stops; under ``set -o pipefail`` either status fails.)
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import pkgutil
import sys
import tokenize
from typing import Any

from seglab._extras import MissingExtraError


def _modules() -> dict[str, str]:
    """``{command name: path of its source file}``: the modules of this package not starting with ``_``, by name."""
    found: dict[str, str] = {}
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("_") or m.name in found:
            continue
        spec = m.module_finder.find_spec(m.name, None)
        origin = getattr(spec, "origin", None)
        if origin is not None and origin.endswith(".py"):
            found[m.name] = origin
    return dict(sorted(found.items()))


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _help_line(path: str) -> str:
    """The first line of a module's docstring, read from its first tokens (the module is not imported)."""
    with open(path, "rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type in (tokenize.ENCODING, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT):
                continue
            return _first_line(ast.literal_eval(tok.string)) if tok.type == tokenize.STRING else ""
    return ""


def commands() -> dict[str, str]:
    """``{command name: one-line help}`` of every command module of this package, sorted by name.

    The help is the first line of the module's docstring, read from its source without importing it."""
    return {name: _help_line(path) for name, path in _modules().items()}


class _Version(argparse.Action):
    """``--version``: imports seglab only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from seglab._version import __version__  # lazy: only for --version

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
    names = list(_modules())
    chosen = argv[0] if argv and argv[0] in names else None
    # the one-line help of every command only where it is shown (seglab --help, a usage error): reading them costs
    # a file each; a chosen command's module is imported anyway and gives its own
    helps = commands() if chosen is None else {}
    for name in names:
        module = f"{__name__}.{name}"
        if name != chosen:
            sub.add_parser(name, help=helps.get(name), description=helps.get(name)).set_defaults(_module=module)
            continue
        try:
            mod = importlib.import_module(module)
            help_text = _first_line(mod.__doc__)
            p = sub.add_parser(name, help=help_text, description=help_text)
            p.set_defaults(_module=module)
            mod.add_arguments(p)
        except MissingExtraError as e:
            print(e, file=sys.stderr)
            return 2
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except MissingExtraError as e:
        print(e, file=sys.stderr)
        return 2


__all__ = ["commands", "main"]
