"""The ``seglab`` command line as a package (seglab/cli/): a new command is one module there, found without a list,
shown in ``seglab --help`` and run; only the chosen command's module is imported; ``import seglab`` imports none."""

from __future__ import annotations

import subprocess
import sys

import pytest

import seglab.cli
from seglab.cli import commands, main

TOY = '''"""say hello to NAME (a toy command)

Only for tests/test_cli_commands.py.
"""

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--times", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    print(("hello " + args.name + " ") * args.times)
    return 3
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A temporary folder on the package's search path holding one more command module, ``seglab_toy_hello``."""
    (tmp_path / "seglab_toy_hello.py").write_text(TOY)
    monkeypatch.setattr(seglab.cli, "__path__", [*seglab.cli.__path__, str(tmp_path)])
    yield "seglab_toy_hello"
    sys.modules.pop("seglab.cli.seglab_toy_hello", None)


def test_a_new_command_is_one_module(toy, capsys):
    assert commands()[toy] == "say hello to NAME (a toy command)"  # the docstring's first line
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert toy in out and "say hello to NAME (a toy command)" in out
    assert main([toy, "you", "--times", "2"]) == 3  # its exit status is the command's
    assert capsys.readouterr().out.split() == ["hello", "you", "hello", "you"]
    with pytest.raises(SystemExit) as e:
        main([toy, "you", "--times", "two"])  # argparse's own checks: usage and exit 2
    assert e.value.code == 2 and "--times" in capsys.readouterr().err


def test_every_command_has_a_help_line_and_its_functions():
    import importlib

    found = commands()
    assert {"advise", "bench", "compare", "demo", "evaluate", "info", "report", "sweep", "train"} <= set(found)
    for name, help_text in found.items():
        assert help_text and not help_text.endswith("."), name
        mod = importlib.import_module(f"seglab.cli.{name}")
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_only_the_chosen_command_is_imported():
    code = ("import sys\nfrom seglab.cli import main\nrc = main(['info', '--json'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('seglab.cli.')), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "['seglab.cli.info']"


def test_import_seglab_imports_no_command():
    code = "import sys, seglab\nprint([m for m in sys.modules if m == 'seglab.cli' or m.startswith('seglab.cli.')])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_python_m_seglab_runs_the_same_entry_point():
    r = subprocess.run([sys.executable, "-m", "seglab", "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and all(name in r.stdout for name in commands())
