"""The test tree mirrors the package; pytest imports test modules by basename (rootdir on sys.path, so that
``from conftest import ...`` works), hence two test files may not share a name."""

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique():
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert not [n for n, k in names.items() if k > 1], sorted(n for n, k in names.items() if k > 1)
