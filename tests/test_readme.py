"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i, capsys):
    exec(compile(BLOCKS[i], f"README.md[python block {i}]", "exec"), {})
    if "# 200.0, not 16.1" in BLOCKS[i]:
        assert capsys.readouterr().out.strip() == "200.0"


def _text_block(path: Path, first_line: str) -> list[str]:
    """The lines of the ```text block of ``path`` whose first line starts with ``first_line``."""
    text = path.read_text()
    start = text.index("```text\n" + first_line) + len("```text\n")
    return text[start:text.index("\n```", start)].split("\n")


def test_advise_output_in_the_docs_is_what_the_command_prints(capsys):
    """README.md quotes a verbatim excerpt of ``seglab advise --task brain-tissue`` (sections cut at ``[…]``) and
    docs/brain_tissue.md the whole output: both must be what the command prints now (rerun it and paste when
    advise's output changes)."""
    from seglab.cli import main

    assert main(["advise", "--task", "brain-tissue"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").split("\n")
    assert _text_block(README.parent / "docs" / "brain_tissue.md", "seglab advise —") == printed
    excerpt = _text_block(README, "$ seglab advise --task brain-tissue")[1:]
    lines = iter(printed)  # the excerpt's lines are the output's, in order
    assert all(ln == "[…]" or any(ln == out for out in lines) for ln in excerpt)
    assert "loss = seglab.get_loss(" in "\n".join(excerpt)
