"""Import-direction check: lower rooms of the house never import higher ones (run by ``make lint``).

Every module of ``src/seglab`` belongs to a room (its first package level); each room has a rank. A module may
import its own room and rooms of lower rank, at module level or inside functions alike. ``from seglab import x``
counts as importing the public API (the package ``__init__``, the top rank) unless ``x`` is a room.
Also: only the command line (``seglab/cli/``) imports ``argparse``.
Exit status 1 with one line per violation.
"""

from __future__ import annotations

import ast
import pathlib
import sys

RANK = {
    # foundations: checks, optional-dependency helper, name registries
    "_checks": 0, "_extras": 0, "_registry": 0, "_version": 0, "_options": 0,
    "provenance": 1,
    "targets": 1, "regions": 1,
    # statistics kernels (never the losses), activations, metrics
    "kernels": 2, "activations": 2, "metrics": 2, "stats": 2,
    # target transforms (distance maps, skeletons) that losses compute on the fly and DataLoaders precompute
    "transforms": 2,
    # the loss core; models, data and the results store beside it
    "losses": 3, "models": 3, "data": 3, "results": 3,
    # the studies (seglab/studies/: the Chlebus 2018 presets, their losses and tasks), built on the loss vocabulary
    "studies": 4,
    # what uses losses, models, data and the studies' settings
    "advise": 5, "train": 5,
    "sweep": 6, "report": 7, "compare": 7, "evaluate": 7,
    # what the commands measure and report: loss timings, the installation
    "bench": 8, "info": 8,
    # the command line (seglab/cli/, the only argparse user: one module per command), the top below the entry points
    "cli": 9, "__main__": 10,
    "__init__": 11,  # the public API (seglab/__init__.py) re-exports everything
}


def room_of(parts: list[str]) -> str:
    return parts[1] if len(parts) > 1 else "__init__"


def imported_rooms(node: ast.AST, package: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [room_of(a.name.split(".")) for a in node.names if a.name.split(".")[0] == "seglab"]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package[: len(package) - node.level + 1]
            name = base + (node.module.split(".") if node.module else [])
        else:
            name = (node.module or "").split(".")
        if name[0] != "seglab":
            return []
        if len(name) == 1:
            return [a.name if a.name in RANK else "__init__" for a in node.names]
        return [room_of(name)]
    return []


def imported_modules(node: ast.AST) -> list[str]:
    """The top-level names of the modules an import statement imports (absolute imports only)."""
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level and node.module:
        return [node.module.split(".")[0]]
    return []


def main(src: str = "src/seglab") -> int:
    root = pathlib.Path(src)
    problems = []
    for f in sorted(root.rglob("*.py")):
        parts = ["seglab", *f.relative_to(root).with_suffix("").parts]
        package = parts if f.name == "__init__.py" else parts[:-1]
        if f.name == "__init__.py":
            parts = parts[:-1]
        room = room_of(parts)
        if room not in RANK:
            problems.append(f"{f}: room {room!r} has no rank in tools/check_imports.py")
            continue
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            lineno = getattr(node, "lineno", 0)
            if room != "cli" and any(n == "argparse" for n in imported_modules(node)):
                problems.append(f"{f}:{lineno}: imports argparse; command-line parsing lives in seglab/cli/")
            for target in imported_rooms(node, package):
                if target == room:
                    continue
                if target not in RANK:
                    problems.append(f"{f}:{lineno}: imports unknown room {target!r}")
                elif RANK[target] >= RANK[room]:
                    problems.append(f"{f}:{lineno}: {room} (rank {RANK[room]}) imports {target} "
                                    f"(rank {RANK[target]}): upward import")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
