"""A ``spawn`` multiprocessing context whose children die with their parent from their first instruction on.

multiprocessing's spawn start method runs ``python -c 'from multiprocessing.spawn import spawn_main; ...'`` in
the child, which then imports the parent's ``__main__`` (the ``seglab`` console script: ``import seglab``, that
is torch) and unpickles the worker's target and initializer (``seglab.sweep.runner``: torch again) before any
code of ours runs. An initializer that sets the parent-death signal therefore arms it only after several seconds
of imports (10-30 s on a loaded machine); a SIGKILL of the sweep in that window left the workers (and, through
their copy of its pipe, multiprocessing's resource tracker) running until their imports were done.

:func:`context` returns a spawn context whose children run a few lines of stdlib code at the very start of that
``-c`` program, before any import of seglab or torch: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux), then exit at
once if the parent is already gone (it died between the fork and the ``prctl``). The death signal is tied to the
thread that started the child; :class:`concurrent.futures.ProcessPoolExecutor` starts spawn workers from the
thread that calls ``submit`` (the sweep's thread), which outlives them. The resource tracker holds no
parent-death signal of its own but exits as soon as the last holder of its pipe (this process and the
workers) is gone. Elsewhere than on Linux the plain spawn context is returned (the workers' lifeline thread,
:func:`seglab.sweep.runner._die_with_parent`, is the fallback there).
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import sys
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def arm_code(parent_pid: int, sig: int = 9) -> str:
    """The Python statements that arm the death signal in a child of ``parent_pid`` (stdlib only)."""
    return (f"import ctypes as _c, os as _o\n"
            f"try:\n _c.CDLL(None).prctl({PR_SET_PDEATHSIG}, {int(sig)}, 0, 0, 0)\n"
            f"except Exception:\n pass\n"
            f"if _o.getppid() != {int(parent_pid)}:\n _o._exit(1)\n"
            f"del _c, _o\n")


def armed_command_line(cmd: list[str], parent_pid: int) -> list[str]:
    """``cmd`` (multiprocessing's spawn command line) with :func:`arm_code` run before its ``-c`` program."""
    out = list(cmd)
    i = out.index("-c")
    out[i + 1] = arm_code(parent_pid) + out[i + 1]
    return out


if sys.platform.startswith("linux"):
    from multiprocessing import context as _mpc
    from multiprocessing import popen_spawn_posix as _psp
    from multiprocessing import reduction as _reduction
    from multiprocessing import spawn as _mpspawn
    from multiprocessing import util as _util

    class ArmedPopen(_psp.Popen):
        """``popen_spawn_posix.Popen._launch`` (CPython 3.8-3.13) with the command line of
        :func:`armed_command_line`; nothing else differs."""

        def _launch(self, process_obj):
            from multiprocessing import resource_tracker

            tracker_fd = resource_tracker.getfd()
            self._fds.append(tracker_fd)
            prep_data = _mpspawn.get_preparation_data(process_obj._name)
            fp = io.BytesIO()
            _mpc.set_spawning_popen(self)
            try:
                _reduction.dump(prep_data, fp)
                _reduction.dump(process_obj, fp)
            finally:
                _mpc.set_spawning_popen(None)
            parent_r = child_w = child_r = parent_w = None
            try:
                parent_r, child_w = os.pipe()
                child_r, parent_w = os.pipe()
                cmd = _mpspawn.get_command_line(tracker_fd=tracker_fd, pipe_handle=child_r)
                cmd = armed_command_line(cmd, os.getpid())
                self._fds.extend([child_r, child_w])
                self.pid = _util.spawnv_passfds(_mpspawn.get_executable(), cmd, self._fds)
                self.sentinel = parent_r
                with open(parent_w, "wb", closefd=False) as f:
                    f.write(fp.getbuffer())
            finally:
                fds_to_close = [fd for fd in (parent_r, parent_w) if fd is not None]
                self.finalizer = _util.Finalize(self, _util.close_fds, fds_to_close)
                for fd in (child_r, child_w):
                    if fd is not None:
                        os.close(fd)

    class ArmedProcess(_mpc.SpawnProcess):
        _start_method = "spawn"

        @staticmethod
        def _Popen(process_obj):
            return ArmedPopen(process_obj)

    class ArmedContext(_mpc.SpawnContext):
        Process = ArmedProcess


_CONTEXT: Any = None


def context() -> Any:
    """The armed spawn context on Linux (see the module docstring), else ``multiprocessing.get_context("spawn")``."""
    global _CONTEXT
    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    if _CONTEXT is None:
        try:
            if not (hasattr(_psp.Popen, "_launch") and hasattr(_mpspawn, "get_command_line")):
                raise AttributeError("multiprocessing internals changed")
            _CONTEXT = ArmedContext()
        except Exception:  # another Python: the plain context (the initializer still arms the signal)
            _CONTEXT = mp.get_context("spawn")
    return _CONTEXT
