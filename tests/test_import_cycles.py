"""tools/check_cycles.py: finds import cycles through module-level and function-level imports, and src/seglab has none."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("seglab_check_cycles", ROOT / "tools" / "check_cycles.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


cycles = _tool()


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under tmp_path with the given modules (relative path -> source)."""
    root = tmp_path / "pkg"
    for rel, source in {"__init__.py": "", **files}.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(source))
    return root


def test_planted_function_level_cycle_fires(tmp_path):
    root = _package(tmp_path, {
        "a.py": "from pkg.b import g\n\ndef f():\n    return g()\n",
        "b.py": "def g():\n    from pkg import a  # hidden inside a function\n    return a\n",
        "c.py": "import pkg.a\n",  # reaches the cycle but is not part of it
    })
    lines = cycles.find_cycles(root)
    assert len(lines) == 1, lines
    assert "pkg.a -> pkg.b -> pkg.a" in lines[0]
    assert "b.py:2 (in function g)" in lines[0]
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_cycles.py"), str(root)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert run.stdout.strip() == lines[0]


def test_relative_imports_and_three_module_cycle(tmp_path):
    root = _package(tmp_path, {
        "sub/__init__.py": "",
        "sub/x.py": "from . import y\n",
        "sub/y.py": "from .z import thing\n",
        "sub/z.py": "class K:\n    def m(self):\n        from ..sub.x import __name__ as n\n        return n\nthing = 1\n",
    })
    assert [line.split("  [")[0] for line in cycles.find_cycles(root)] == [
        "import cycle: pkg.sub.x -> pkg.sub.y -> pkg.sub.z -> pkg.sub.x"]


def test_acyclic_package_type_checking_and_own_package_init_pass(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "from pkg.a import f\n",  # a package re-exporting its module is no cycle
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import G\n\ndef f():\n    return 1\n",
        "b.py": "from pkg.a import f\nG = f\n",
    })
    assert cycles.find_cycles(root) == []
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_cycles.py"), str(root)],
                         capture_output=True, text=True, check=False)
    assert (run.returncode, run.stdout) == (0, "")


def test_not_a_package_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_cycles.py"), str(tmp_path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2
    assert "not a package directory" in run.stdout


def test_seglab_has_no_import_cycle():
    found = cycles.find_cycles(ROOT / "src" / "seglab")
    print("\n".join(found))
    assert found == []
