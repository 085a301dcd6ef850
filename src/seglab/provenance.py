"""Provenance of a run: what produced a result, recorded with it (runs, sweeps, compare, evaluate, bench).

:func:`provenance` gives the versions of seglab, torch, numpy and Python, the command line, the host, the
platform, the CPU model and the GPU (if CUDA is available), the git commit of the current working directory
(where it is a git checkout; ``None`` otherwise) and the time. Nothing in it changes any state.

>>> p = provenance()
>>> sorted(k for k in ("seglab", "torch", "numpy", "python", "argv", "host", "cpu_model", "git_commit") if k in p)
['argv', 'cpu_model', 'git_commit', 'host', 'numpy', 'python', 'seglab', 'torch']
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import socket
import subprocess
import sys
from typing import Any

from seglab._version import __version__


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(cwd: str | None = None) -> str | None:
    """The commit of the git checkout at ``cwd`` (default: the working directory), with ``+dirty`` when it has
    uncommitted changes; ``None`` outside a checkout or without git (2 s timeout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=2)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True,
                               text=True, timeout=2)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(**extra: Any) -> dict[str, Any]:
    """The provenance fields (module docstring) plus ``extra`` (seeds, wall time, ...)."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "seglab": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "argv": list(sys.argv), "cwd": os.getcwd(), "host": socket.gethostname(),
        "platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_commit": git_commit(), "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    info.update(extra)
    return info
