"""What several command modules share. (Not a command: the name starts with ``_``.)"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{parameter: default}`` of ``fn``'s parameters that have one: the defaults a command's options share with
    the function they call (one place for each default)."""
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not inspect.Parameter.empty}


def check_device(device: str | None) -> None:
    """Raise ValueError naming ``--device`` unless ``device`` is None, cpu, an available cuda[:N] or mps."""
    if device is None:
        return
    import torch  # lazy: `seglab COMMAND --help` does not import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r}: unknown device; use cpu or cuda (cuda:N for one GPU)") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {device!r}: CUDA is not available ({why}); use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device!r}: there are {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {device!r}: MPS is not available on this machine; use --device cpu")
        return
    raise ValueError(f"--device {device!r}: unsupported device type {dev.type!r}; use cpu or cuda")


#: ``--monitors`` of ``seglab train`` and ``seglab sweep``: the default is
#: :func:`seglab.train.specs.run_monitors` (the study's set on a study task, the trained loss and its parts on
#: user data); tests/test_cli_defaults.py checks this text against it
MONITORS_HELP = ("comma list of monitored losses (default: the study's set on the study's tasks, the trained loss "
                 "and its parts on user data)")

#: the results folder of ``seglab compare`` and ``seglab advise --compare`` when ``--out`` is not given
COMPARE_OUT = "results/compare"
