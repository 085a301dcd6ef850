"""Import-cycle check: no module of a package imports itself back, at module level or inside a function.

The graph has one node per module of the package (``pkg/x/__init__.py`` is the node ``pkg.x``) and one edge per
``import`` statement that names a module of the package, wherever the statement sits: at module level, inside a
function, a method or a ``try``. ``from pkg.x import y`` is an edge to ``pkg.x.y`` when that is a module, else to
``pkg.x``. Importing ``pkg.x.y`` also runs ``pkg/x/__init__.py``; that implied edge is left out, since a package's
``__init__`` re-exporting its own modules would otherwise close a cycle with each of them. Imports under
``if TYPE_CHECKING:`` never run and are left out too.

Prints one line per elementary cycle (at most ``MAX_CYCLES_PER_GROUP`` per strongly connected group, then a count)
and exits 1 when there is any; exits 0 and prints nothing otherwise.

    python tools/check_cycles.py [PACKAGE_DIR]     # default: src/seglab
"""

from __future__ import annotations

import ast
import pathlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

MAX_CYCLES_PER_GROUP = 50


@dataclass(frozen=True)
class Edge:
    """One import statement from module ``source`` to module ``target`` of the package."""

    source: str
    target: str
    where: str  # "path:line", with " (in function f)" when the import sits inside a function


def module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every ``.py`` file under the package directory ``root``."""
    names = {}
    for f in sorted(root.rglob("*.py")):
        parts = [root.name, *f.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = f
    return names


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str | None]]:
    """Every import statement of ``tree`` that runs, with the name of the function it sits in (None: module level)."""
    def walk(node: ast.AST, function: str | None) -> Iterator[tuple[ast.Import | ast.ImportFrom, str | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(sub, function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, function
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            yield from walk(child, inner)
    yield from walk(tree, None)


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, pathlib.Path]) -> list[str]:
    """The package's modules that one import statement made in ``package`` (the importer's package) names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        name = ".".join(base + (node.module.split(".") if node.module else []))
    else:
        name = node.module or ""
    if name not in modules:
        return []
    submodules = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in modules]
    whole = any(f"{name}.{a.name}" not in modules for a in node.names)
    return submodules + ([name] if whole else [])


def import_edges(root: pathlib.Path) -> list[Edge]:
    """Every import edge between modules of the package directory ``root``."""
    modules = module_names(root)
    edges = []
    for name, f in modules.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node, function in _imports(ast.parse(f.read_text(), str(f))):
            where = f"{f}:{node.lineno}" + (f" (in function {function})" if function else "")
            edges.extend(Edge(name, target, where) for target in _targets(node, package, modules) if target != name)
    return edges


def strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def cycles_in(group: list[str], graph: dict[str, list[str]], limit: int) -> list[list[str]]:
    """Up to ``limit`` elementary cycles of one strongly connected group, each starting at its smallest module."""
    members = set(group)
    found: list[list[str]] = []
    for start in group:
        allowed = {m for m in members if m >= start}
        path = [start]
        work = [iter(sorted(set(graph[start]) & allowed))]
        while work and len(found) < limit:
            child = next(work[-1], None)
            if child is None:
                work.pop()
                path.pop()
            elif child == start:
                found.append([*path, start])
            elif child not in path:
                path.append(child)
                work.append(iter(sorted(set(graph[child]) & allowed)))
    return found


def find_cycles(root: pathlib.Path, limit: int = MAX_CYCLES_PER_GROUP) -> list[str]:
    """One line per import cycle of the package directory ``root`` (empty when there is none)."""
    edges = import_edges(root)
    graph: dict[str, list[str]] = {name: [] for name in module_names(root)}
    where: dict[tuple[str, str], str] = {}
    for e in edges:
        graph[e.source].append(e.target)
        where.setdefault((e.source, e.target), e.where)
    lines = []
    for group in strongly_connected(graph):
        cycles = cycles_in(group, graph, limit + 1)
        for cycle in cycles[:limit]:
            hops = "; ".join(where[(a, b)] for a, b in pairwise(cycle))
            lines.append(f"import cycle: {' -> '.join(cycle)}  [{hops}]")
        if len(cycles) > limit:
            lines.append(f"import cycle: more than {limit} cycles among {', '.join(group)}")
    return lines


def main(src: str = "src/seglab") -> int:
    """Print every import cycle of the package at ``src``; 1 when there is any, else 0."""
    root = pathlib.Path(src)
    if not (root / "__init__.py").is_file():
        print(f"check_cycles: {root} is not a package directory (no __init__.py)")
        return 2
    lines = find_cycles(root)
    for line in lines:
        print(line)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
