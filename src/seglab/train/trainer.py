"""The one trainer: :class:`Trainer` runs :class:`~seglab.train.config.RunSpec` s and returns
:class:`~seglab.train.record.RunRecord` s.

It has two execution strategies with the same records (equal in float64, tests/train/test_packed.py):

* one run at a time (:func:`seglab.train.loop.train_run`): any task, model and trainer option, data parallel
  under torchrun, checkpoints, resume, progress lines, TensorBoard;
* vectorised runs (:mod:`seglab.train.packed`): several small runs that share a pack key
  (:func:`~seglab.train.packed.pack_key`) trained as the groups of one network, their losses through the public
  loss API (:class:`~seglab.train.packed.PackedLosses`).

:meth:`Trainer.plan` groups specs into jobs (packs where they can share one); :meth:`Trainer.run_job` runs a
job with the strategy that fits it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .config import RunSpec
from .distributed import DistInfo
from .loop import ProgressFn, ScalarWriter, StopFn, train_run
from .packed import group_packs, pack_key, packable, train_pack
from .record import RunRecord

RecordFn = Callable[[RunRecord], Any]


class Trainer:
    """Runs specs; ``info`` (torchrun's process group, :class:`~seglab.train.distributed.DistInfo`), ``progress``
    (``progress(done, total)`` every ``progress_every`` steps and at the end) and ``pack`` (whether jobs of
    several packable specs train together) apply to every run it trains."""

    def __init__(self, *, info: DistInfo | None = None, progress: ProgressFn | None = None,
                 progress_every: int = 100, pack: bool = True) -> None:
        self.info, self.progress, self.progress_every, self.pack = info, progress, progress_every, pack

    def run(self, spec: RunSpec, *, run_dir: str | Path | None = None, resume: dict[str, Any] | None = None,
            printer: Any = None, tensorboard: ScalarWriter | None = None,
            should_stop: StopFn | None = None) -> RunRecord:
        """Train one run alone (see :func:`seglab.train.loop.train_run` for checkpoints, resume and stopping)."""
        return train_run(spec, info=self.info, progress=self.progress, progress_every=self.progress_every,
                         run_dir=run_dir, resume=resume, printer=printer, tensorboard=tensorboard,
                         should_stop=should_stop)

    def plan(self, specs: Iterable[RunSpec], *, max_pack: int | None = None) -> list[list[RunSpec]]:
        """Jobs: packs of specs with one pack key (at most ``max_pack`` runs each, balanced) when packing, else
        one spec per job."""
        specs = list(specs)
        if not self.pack:
            return [[s] for s in specs]
        return group_packs(specs, max_size=max_pack)

    def run_job(self, job: list[RunSpec], *, on_record: RecordFn | None = None) -> list[RunRecord]:
        """Train a job: vectorised when it holds several packable specs of one pack key, else each alone.
        ``on_record(record)`` is called as soon as a run's record is final (a diverged run of a pack: at once)."""
        if self.pack and len(job) > 1 and all(packable(s) for s in job) and len({pack_key(s) for s in job}) == 1:
            return train_pack(job, progress=self.progress, progress_every=self.progress_every, on_result=on_record)
        out = []
        for spec in job:
            rec = self.run(spec)
            if on_record is not None:
                on_record(rec)
            out.append(rec)
        return out
