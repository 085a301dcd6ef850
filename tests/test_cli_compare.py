"""``seglab compare``'s options take their defaults from :func:`seglab.compare.compare`, the function they call."""

from __future__ import annotations

import argparse
import inspect

from seglab.cli.compare import add_arguments
from seglab.compare import compare


def test_option_defaults_are_the_functions():
    p = argparse.ArgumentParser()
    add_arguments(p)
    defaults = {a.dest: a.default for a in p._actions}
    fn = {k: v.default for k, v in inspect.signature(compare).parameters.items() if v.default is not inspect.Parameter.empty}
    shared = sorted(set(defaults) & set(fn))
    assert {"model", "seeds", "steps", "batch_size", "optimizer", "lr", "momentum", "confidence", "margin",
            "workers", "threads", "engine"} <= set(shared)
    for k in shared:
        if k != "task":  # --task has no default: PATH means folder, else the function's default (its help says which)
            assert defaults[k] == fn[k], k


def test_advise_compare_defaults_are_compares():
    from seglab.cli.advise import add_arguments as advise_arguments

    a, c = argparse.ArgumentParser(), argparse.ArgumentParser()
    advise_arguments(a)
    add_arguments(c)
    for k in ("seeds", "steps", "out"):
        assert a.get_default(k) == c.get_default(k), k
