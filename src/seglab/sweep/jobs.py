"""One job of a sweep, the seam every engine (local processes, Ray) shares: claim its runs in the results
store, train them with the one :class:`~seglab.train.trainer.Trainer`, account the entries in the
:class:`SweepOutcome`. The engines import this module; it imports neither of them."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from seglab.results import Claim, ResultsStore
from seglab.train.config import RunSpec
from seglab.train.trainer import Trainer


@dataclass
class SweepOutcome:
    total: int = 0
    skipped: int = 0
    finished: int = 0
    diverged: int = 0
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0
    elsewhere: int = 0  # runs skipped because another process was training them
    damaged: dict[str, str] = field(default_factory=dict)  # run id -> problem of damaged run folders (redone)
    signal: int | None = None  # the signal that interrupted the sweep (SIGINT for Ctrl-C, SIGTERM, ...)
    waiting: list[str] = field(default_factory=list)  # run ids another live process holds, not yet written
    unfinished: list[str] = field(default_factory=list)  # run ids of this sweep's grid with no result at its end

    @property
    def ok(self) -> bool:
        """The grid is complete: every run has its result (finished or diverged), none failed, no interruption."""
        return not self.failed and not self.interrupted and not self.unfinished


# A job returns one entry per run: ("trained", summary), ("done", summary) when it was already finished, or
# ("elsewhere", {"run_id": ..., "owner": pid}) when another process holds its claim.
Entry = tuple[str, dict[str, Any]]
ProgressFn = Callable[[int, int], None]


def claim_runs(store: ResultsStore, cfgs: list[RunSpec]) -> tuple[list[Entry], list[Claim], list[RunSpec]]:
    """Claim the runs of a job that are still to do: ``(entries, claims, todo)`` where ``entries`` are the
    runs already finished ("done") or claimed by another live process ("elsewhere"), ``claims`` the claims
    taken (release them once the runs are written) and ``todo`` the runs to train."""
    entries: list[Entry] = []
    claims: list[Claim] = []
    todo: list[RunSpec] = []
    try:
        for c in cfgs:
            if store.is_done(c.run_id):
                entries.append(("done", store.summary(c.run_id)))
                continue
            cl = store.claim(c.run_id)
            if cl is None:
                entries.append(("elsewhere", {"run_id": c.run_id, "owner": store.claim_owner(c.run_id)}))
            elif store.is_done(c.run_id):  # finished by another process between our check and our claim
                cl.release()
                entries.append(("done", store.summary(c.run_id)))
            else:
                claims.append(cl)
                todo.append(c)
    except BaseException:
        for cl in claims:
            cl.release()
        raise
    return entries, claims, todo


def train_job(todo: list[RunSpec], *, packed: bool, progress: ProgressFn | None = None,
              on_result: Callable[[Any], Any] | None = None) -> list[Any]:
    """Train the runs of one job with the :class:`~seglab.train.trainer.Trainer` (vectorised when ``packed``
    and the runs share a pack, else one at a time). Returns the ``RunRecord`` s; ``on_result(record)`` is called
    as soon as each one is final. The one training path of every engine."""
    trainer = Trainer(progress=progress, progress_every=max(1, todo[0].steps // 50), pack=packed)
    return trainer.run_job(todo, on_record=on_result)


def job_id(job: list[RunSpec]) -> str:
    return job[0].run_id if len(job) == 1 else f"pack-{job[0].run_id}-{len(job)}"


def job_label(job: list[RunSpec]) -> str:
    if len(job) == 1:
        return job[0].label
    c = job[0]
    norm = c.model_kw.get("norm", "batch")
    opt = f"{c.optimizer} lr={c.lr:g}" + (f" mom={c.momentum:g}" if c.optimizer == "sgd" else "")
    return f"pack of {len(job)}: {c.model} norm={norm} | {opt}"


def interrupted(outcome: SweepOutcome, e: BaseException) -> None:
    outcome.interrupted = True
    outcome.signal = getattr(e, "signum", int(signal.SIGINT))


def account(outcome: SweepOutcome, entry: Entry) -> None:
    kind, summary = entry
    if kind == "elsewhere":
        outcome.elsewhere += 1
        outcome.waiting.append(str(summary.get("run_id")))
        return
    if kind == "done":
        outcome.skipped += 1
        return
    outcome.finished += 1
    if summary.get("status") == "diverged":
        outcome.diverged += 1


def account_entries(outcome: SweepOutcome, entries: list[Entry], console) -> None:
    """Count a finished job's entries; a diverged run gets one line."""
    from rich.markup import escape

    for kind, s in entries:
        account(outcome, (kind, s))
        if kind == "trained" and s.get("status") == "diverged":
            console.print(f"[yellow]diverged[/yellow] at step {s.get('diverged_step')}: " + escape(s.get("label", "")),
                          soft_wrap=True)


def report_failed(outcome: SweepOutcome, console) -> None:
    if outcome.failed and not outcome.interrupted:
        console.print(f"[red]{len(outcome.failed)} run(s) did not finish (a worker died or raised); "
                      "re-run the same command to redo them.[/red]")


