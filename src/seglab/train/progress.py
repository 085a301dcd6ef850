"""Progress lines of a training run, at a steady rate in time (for logs of batch jobs as much as terminals).

One line every ``interval`` seconds of wall time and one at the end, e.g.::

    step 400/1500 (27%)  loss 0.4127  val Dice 0.812 @300  elapsed 41s  ETA 1m53s

``loss`` is the training loss of the last step, ``val Dice`` the mean Dice of the latest validation (and its
step), ``ETA`` the remaining steps at the mean rate since training (re)started.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    """``5s``, ``2m05s``, ``1h02m`` (``?`` when not finite)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class ProgressPrinter:
    """Prints progress lines to ``stream`` (default ``sys.stderr``) at most every ``interval`` seconds
    (``interval=0``: every step) and always at the last step.

    Call :meth:`start` when training (re)starts at step ``start_step`` and :meth:`update` after each step with
    the number of steps done. ``clock`` is injectable for tests (default ``time.monotonic``).

    Example::

        >>> import io
        >>> out = io.StringIO()
        >>> p = ProgressPrinter(total=2, interval=0, stream=out)
        >>> p.start(0); p.update(1, loss=0.5); p.update(2, loss=0.25, dice=0.9, dice_step=2)
        >>> out.getvalue().splitlines()[-1].startswith("step 2/2 (100%)  loss 0.2500  val Dice 0.900 @2")
        True
    """

    def __init__(self, total: int, *, interval: float = 10.0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, prefix: str = "") -> None:
        if not (isinstance(interval, (int, float)) and not isinstance(interval, bool)
                and math.isfinite(interval) and interval >= 0):
            raise ValueError(f"interval must be a finite number of seconds >= 0, got {interval!r}")
        self.total, self.interval, self.prefix = int(total), float(interval), prefix
        self.stream = stream
        self.clock = clock
        self.elapsed_before = 0.0
        self._t0 = self._last = clock()
        self._start_step = 0

    def start(self, step: int, *, elapsed_before: float = 0.0) -> None:
        """Training (re)starts at ``step`` after ``elapsed_before`` seconds spent in earlier parts of the run."""
        self._t0 = self._last = self.clock()
        self._start_step = int(step)
        self.elapsed_before = float(elapsed_before)

    def line(self, done: int, *, loss: float = math.nan, dice: float = math.nan,
             dice_step: int | None = None) -> str:
        now = self.clock()
        ran = now - self._t0
        rate_steps = done - self._start_step
        eta = (self.total - done) * ran / rate_steps if rate_steps > 0 else math.nan
        pct = 100.0 * done / self.total if self.total else 100.0
        parts = [f"{self.prefix}step {done}/{self.total} ({pct:.0f}%)", f"loss {loss:.4f}"]
        if dice_step is not None:
            parts.append(f"val Dice {dice:.3f} @{dice_step}")
        parts.append(f"elapsed {format_duration(self.elapsed_before + ran)}")
        parts.append("ETA " + (format_duration(eta) if done < self.total else "0s"))
        return "  ".join(parts)

    def update(self, done: int, *, loss: float = math.nan, dice: float = math.nan,
               dice_step: int | None = None, force: bool = False) -> bool:
        """Print a line if ``interval`` seconds have passed since the last one, at the last step, or with
        ``force``; returns whether it printed."""
        now = self.clock()
        if not (force or done >= self.total or now - self._last >= self.interval):
            return False
        self._last = now
        stream = self.stream if self.stream is not None else sys.stderr
        print(self.line(done, loss=loss, dice=dice, dice_step=dice_step), file=stream, flush=True)
        return True
