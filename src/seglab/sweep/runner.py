"""Run a sweep: validate everything first, skip finished runs, fan the rest out to worker processes.

Process hygiene: every worker dies with the sweep process, however that ends (SIGKILL, SIGTERM, the OOM
killer), also while it is still starting: on Linux through a parent-death signal (``prctl(PR_SET_PDEATHSIG,
SIGKILL)``, armed by the first lines the spawned interpreter runs, before it imports seglab or torch: see
:mod:`seglab.sweep._spawn`), everywhere through a watch thread in the worker that exits as soon as its lifeline pipe from the
parent reaches end-of-file (the parent's end is closed by the kernel when the parent dies) or its parent pid
changes. SIGTERM in the sweep process is handled like Ctrl-C: finished runs are kept, the workers are stopped,
and the outcome says which signal ended it (the command line exits 143, or 130 for Ctrl-C).

Several processes may run sweeps into one results folder: each run is claimed (:meth:`ResultsStore.claim`)
before it is trained, and a run claimed by another live process is skipped, not trained twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any
from collections.abc import Callable

from seglab.train.config import ConfigError, RunSpec, validate_runs
from seglab.train.trainer import Trainer

from .grid import expand, select
from seglab.results import ResultsStore

from .jobs import (  # noqa: F401  (SweepOutcome, claim_runs, train_job: re-exported, the sweep's public names)
    Entry,
    ProgressFn,
    SweepOutcome,
    account,
    account_entries,
    claim_runs,
    interrupted,
    job_id,
    job_label,
    report_failed,
    train_job,
)


_QUEUE = None
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Linux: ask the kernel to send ``sig`` to this process when its parent dies. False elsewhere/on failure."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except Exception:
        return False


def _watch_parent(parent_pid: int, lifeline) -> None:
    """Worker thread: exit the worker at once when the parent is gone (lifeline EOF or a new parent pid)."""
    while True:
        try:
            if lifeline is not None:
                if lifeline.poll(1.0):
                    lifeline.recv()  # the parent never sends: data or not, EOF raises here
            else:
                time.sleep(1.0)
        except (EOFError, OSError):
            os._exit(1)
        except Exception:
            pass
        if os.getppid() != parent_pid:
            os._exit(1)


def _die_with_parent(parent_pid: int, lifeline) -> None:
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, lifeline), daemon=True, name="seglab-parent-watch").start()


def _init_worker(queue, threads: int, parent_pid: int | None = None, lifeline=None) -> None:
    global _QUEUE
    if parent_pid is not None:
        _die_with_parent(parent_pid, lifeline)
    import torch

    torch.set_num_threads(threads)
    _QUEUE = queue


def _queue_progress(jid: str) -> ProgressFn:
    q = _QUEUE

    def progress(done: int, total: int) -> None:
        if q is not None:
            with contextlib.suppress(Exception):  # progress is a nicety: a full or closed queue is ignored
                q.put_nowait((jid, done, total))

    return progress


def _run_job(job: list[RunSpec], out: str) -> list[Entry]:
    """A local worker's task: claim, train (each run written as soon as it is final), release. A pack (a job
    of several runs) trains the runs not claimed elsewhere together."""
    store = ResultsStore(out)
    entries, claims, todo = claim_runs(store, job)
    try:
        if todo:
            results = train_job(todo, packed=len(job) > 1, progress=_queue_progress(job_id(job)),
                                on_result=store.write_run)
            entries += [("trained", r.summary) for r in results]
        return entries
    finally:
        for cl in claims:
            cl.release()


def make_jobs(pending: list[RunSpec], workers: int, pack: bool = True) -> list[list[RunSpec]]:
    """Units of work (:meth:`seglab.train.trainer.Trainer.plan`): packs of runs trained together (``pack=True``,
    packable runs, see :mod:`seglab.train.packed`) or single runs. Packs are capped at two thirds of one worker's
    share, ``ceil(len(pending) / workers) * 2 // 3`` runs, so that no job is more than 2/3 of a worker's work
    (balance; a killed or interrupted worker loses at most one pack); the largest jobs come first."""
    cap = max(1, -(-len(pending) // max(1, workers)) * 2 // 3)
    jobs = Trainer(pack=pack).plan(pending, max_pack=cap)
    return sorted(jobs, key=len, reverse=True)


def plan(grid: dict[str, Any], *, shard=None, run_index=None) -> list[RunSpec]:
    """Expand, validate (raises ConfigError before anything runs) and select this invocation's runs."""
    runs = validate_runs(expand(grid))
    return select(runs, shard=shard, run_index=run_index)


ENGINES = ("local", "ray")


def run_sweep(grid: dict[str, Any], out: str | Path, *, workers: int = 2, threads: int = 1, shard=None,
              run_index=None, show_progress: bool = True, console=None, pack: bool = True, engine: str = "local",
              address: str | None = None, progress_every: float | None = None) -> SweepOutcome:
    """Run the sweep ``grid`` into results folder ``out`` (resumable: finished run ids are skipped).

    Under ``torchrun`` (WORLD_SIZE > 1) the runs are executed one after the other in this process, each one
    data-parallel over all ranks, and only rank 0 writes; otherwise ``workers`` processes run runs in parallel
    (``engine="local"``), or Ray tasks of ``threads`` CPUs each do (``engine="ray"``, see
    :mod:`seglab.sweep.ray_engine`; ``address`` None starts a local Ray of ``workers`` × ``threads`` CPUs).
    With ``pack=True`` (default) runs that can share a packed network (tiny model on the threshold task, see
    :mod:`seglab.train.packed`) are trained together, one pack per worker task; ``pack=False`` trains each run alone.
    Progress: a progress bar on a terminal, else one line every ``progress_every`` seconds (default
    :data:`PROGRESS_EVERY_S`); ``show_progress=False`` shows none.
    """
    from seglab.train import distributed as D

    from seglab.results import check_out_dir

    t0 = time.perf_counter()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be an integer >= 1, got {threads!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"--workers must be an integer >= 0 (0: one per CPU core), got {workers!r}")
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if progress_every is not None and not (isinstance(progress_every, (int, float)) and progress_every > 0):
        raise ConfigError(f"--progress-every must be a number of seconds > 0, got {progress_every!r}")
    if engine == "ray":
        from . import ray_engine

        address = ray_engine.parse_address(address)
        ray_engine.require_ray()
        ray_engine.check_reachable(address)
    elif address is not None:
        raise ConfigError("--address applies to --engine ray only")
    runs = plan(grid, shard=shard, run_index=run_index)
    store = ResultsStore(out)
    if D.launched_by_torchrun():
        if engine != "local":
            raise ConfigError("--engine ray does not run under torchrun (each run there is one data-parallel job)")
        return _run_distributed(grid, runs, store, t0, console=console)
    check_out_dir(store.root)
    store.write_config(grid, runs)
    store.clean_tmp()
    done, damaged = store.scan()
    outcome = SweepOutcome(total=len(runs))
    for rid, why in sorted(damaged.items()):
        moved = store.quarantine(rid)
        outcome.damaged[rid] = why
        _warn(console, f"warning: damaged run {rid}: {why}; it will be redone"
                       + (f" (old folder moved to {moved})" if moved else ""))
    pending = [r for r in runs if r.run_id not in done]
    outcome.skipped = len(runs) - len(pending)
    if not pending:
        store.write_summary_table()
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    if workers <= 0:
        workers = max(1, os.cpu_count() or 1)

    def execute(todo: list[RunSpec]) -> None:
        if engine == "ray":
            _run_ray(todo, store, outcome, workers=workers, threads=threads, pack=pack, address=address,
                     show_progress=show_progress, console=console, progress_every=progress_every)
            return
        jobs = make_jobs(todo, workers, pack)
        n = min(workers, len(jobs))
        with _signals_interrupt(outcome):
            if n == 1 and not show_progress:
                _run_inline(jobs, store, outcome, threads)
            else:
                _run_pool(jobs, store, outcome, n, threads, show_progress, console, progress_every)

    execute(pending)
    _wait_for_others(runs, store, outcome, execute, console)
    outcome.unfinished = [r.run_id for r in runs if not store.is_done(r.run_id)]
    store.write_summary_table()
    outcome.wall_s = time.perf_counter() - t0
    return outcome


WAIT_POLL_S = 1.0  # how often a sweep checks the runs another process holds


def _held_elsewhere(store: ResultsStore, run_id: str) -> bool:
    """Another live process holds run ``run_id``'s claim (probed by taking it, and releasing it at once)."""
    cl = store.claim(run_id)
    if cl is None:
        return True
    cl.release()
    return False


def _wait_for_others(runs: list[RunSpec], store: ResultsStore, outcome: SweepOutcome,
                     execute: Callable[[list[RunSpec]], None], console) -> None:
    """Concurrent sweeps (or compares) on one results folder: the runs another live process held when this one
    reached them (``outcome.waiting``) are waited for, never counted as failed. Each one is named once on
    stderr; a run whose holder ends without writing it (killed, interrupted) is trained here. Ctrl-C/SIGTERM
    end the wait like they end the runs."""
    by_id = {r.run_id: r for r in runs}
    told: set[str] = set()
    while outcome.waiting and not outcome.interrupted:
        try:
            with _signals_interrupt(outcome):
                while True:
                    new = [rid for rid in outcome.waiting if rid not in told]
                    if new:
                        owners = sorted({str(store.claim_owner(rid) or "?") for rid in new})
                        shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
                        _warn(console, f"waiting for {len(new)} run(s) that another process (pid "
                                       f"{', '.join(owners)}) is training in {store.root}: {shown}")
                        told.update(new)
                    free = [rid for rid in outcome.waiting if not _held_elsewhere(store, rid)]
                    if free:
                        break
                    time.sleep(WAIT_POLL_S)
        except KeyboardInterrupt as e:
            interrupted(outcome, e)
            return
        if outcome.interrupted:
            return
        outcome.waiting = [rid for rid in outcome.waiting if rid not in free]
        orphans = [rid for rid in free if not store.is_done(rid) and rid in by_id]
        if orphans:  # its holder ended without a result: train it here (it may be held again: waited for again)
            outcome.elsewhere -= len(orphans)
            _warn(console, f"{len(orphans)} run(s) left unfinished by another process; training them here")
            execute([by_id[rid] for rid in orphans])


def _run_ray(pending, store, outcome, *, workers, threads, pack, address, show_progress, console,
             progress_every) -> None:
    from rich.console import Console

    from . import ray_engine

    console = console or Console(stderr=True)
    try:
        with ray_engine.session(address, workers * threads) as ray:
            jobs = make_jobs(pending, ray_engine.slots(ray, threads), pack)
            progress = SweepProgress(jobs, console, show=show_progress, every_s=progress_every)
            with _signals_interrupt(outcome):
                ray_engine.run_jobs(ray, jobs, store, outcome, threads=threads, progress=progress, console=console)
    except KeyboardInterrupt as e:  # during Ray's start or shutdown
        interrupted(outcome, e)


def _warn(console, line: str) -> None:
    if console is not None:
        from rich.markup import escape

        console.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)
    else:
        print(line, file=sys.stderr, flush=True)


class SweepInterrupted(KeyboardInterrupt):
    """Raised in the sweep's main thread by a handled termination signal (SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt(outcome: SweepOutcome):
    """While the runs execute: SIGTERM and SIGHUP interrupt the sweep like Ctrl-C (once; repeats of the signal
    during the cleanup are ignored). Only possible in the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise SweepInterrupted(signum)

    old = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            with contextlib.suppress(ValueError, OSError):
                old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if fired:  # the signal that came, even where a library turned our exception into a KeyboardInterrupt (Ray)
            outcome.interrupted, outcome.signal = True, fired[0]


def _run_inline(jobs: list[list[RunSpec]], store: ResultsStore, outcome: SweepOutcome, threads: int) -> None:
    """The jobs one after the other in this process, with ``threads`` torch threads; the caller's thread count
    and CPU random generator state are restored however this ends (a library call leaves no process-global
    state changed)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):  # packed runs seed torch's CPU generator: the caller's is kept
            for job in jobs:
                for entry in _run_job(job, str(store.root)):
                    account(outcome, entry)
    except KeyboardInterrupt as e:
        interrupted(outcome, e)
    finally:
        torch.set_num_threads(before)


def _fmt_s(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def _short_label(label: str, width: int = 60) -> str:
    """A run label for a progress bar: at most ``width`` characters, but the loss (its first field) is never cut."""
    if len(label) <= width:
        return label
    head, sep, rest = label.partition(" | ")
    room = width - len(head) - len(sep)
    return head if not sep or room <= 1 else head + sep + rest[:room - 1] + "…"


PROGRESS_EVERY_S = 20.0  # default interval of the plain progress lines when stderr is not a terminal


class SweepProgress:
    """Progress of a sweep, the same for every engine.

    On a terminal: a rich progress bar of all runs plus one bar per job in flight (per-step progress). Elsewhere
    (a log file, a pipe, a Slurm job): one plain line every ``every_s`` seconds (and a last one at the end)::

        sweep: 12/54 runs done, 2 running, 0 failed, elapsed 1m02s, ETA 3m40s

    "running" counts the runs of the jobs that have reported a step; the ETA extrapolates the fraction of all
    steps done (finished runs count whole, runs in flight by their step progress). Engines call
    :meth:`step` (per-step progress of a job), :meth:`job_done` (a job's runs are accounted) and :meth:`tick`
    (regularly, from the loop that waits for jobs).
    """

    def __init__(self, jobs: list[list[RunSpec]], console, *, show: bool = True,
                 every_s: float | None = None, terminal: bool | None = None) -> None:
        self.console, self.show = console, show
        self.every_s = PROGRESS_EVERY_S if every_s is None else float(every_s)
        self.terminal = bool(getattr(console, "is_terminal", False)) if terminal is None else terminal
        self.total = sum(len(j) for j in jobs)
        self.sizes = {job_id(j): len(j) for j in jobs}
        self.labels = {job_id(j): job_label(j) for j in jobs}
        self.done = 0
        self.failed = 0
        self.frac: dict[str, float] = {}  # job id -> fraction of its steps done (jobs in flight)
        self.t0 = time.monotonic()
        self.last_line = self.t0
        self._rich: Any = None
        self._slots: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SweepProgress:
        if self.show and self.terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._rich = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
            self._overall = self._rich.add_task("runs", total=self.total)
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
        elif self.show and (self.done or self.failed):
            self._line()

    # ------------------------------------------------------------------ events
    def step(self, jid: str, done: int, total: int) -> None:
        self.frac[jid] = done / max(1, total)
        if self._rich is not None:
            if jid not in self._slots:
                self._slots[jid] = self._rich.add_task(f"  {_short_label(self.labels.get(jid, jid))}", total=total)
            self._rich.update(self._slots[jid], completed=done)

    def job_done(self, jid: str, runs: int = 0, failed: int = 0) -> None:
        """Job ``jid`` ended: ``runs`` of its runs were accounted (trained, already done or left to another
        process), ``failed`` did not finish."""
        self.frac.pop(jid, None)
        self.done += runs
        self.failed += failed
        if self._rich is not None:
            if jid in self._slots:
                self._rich.remove_task(self._slots.pop(jid))
            self._rich.advance(self._overall, runs + failed)

    def tick(self) -> None:
        if self.show and self._rich is None and time.monotonic() - self.last_line >= self.every_s:
            self._line()

    # ------------------------------------------------------------------ the plain line
    @property
    def running(self) -> int:
        return sum(self.sizes.get(j, 1) for j in self.frac)

    def line(self) -> str:
        el = time.monotonic() - self.t0
        f = (self.done + self.failed + sum(self.sizes.get(j, 1) * x for j, x in self.frac.items())) / max(1, self.total)
        eta = _fmt_s(el * (1 - f) / f) if 0 < f < 1 else ("0s" if f >= 1 else "?")
        return (f"sweep: {self.done}/{self.total} runs done, {self.running} running, {self.failed} failed, "
                f"elapsed {_fmt_s(el)}, ETA {eta}")

    def _line(self) -> None:
        self.last_line = time.monotonic()
        print(self.line(), file=sys.stderr, flush=True)


def _run_pool(jobs, store, outcome, workers, threads, show_progress, console, progress_every=None) -> None:
    from seglab._extras import require

    require("rich", "the sweep progress bar")
    from rich.console import Console
    from rich.markup import escape

    from ._spawn import context

    ctx = context()  # spawn, with the parent-death signal armed before the child imports anything
    queue = ctx.Queue()
    lifeline_r, lifeline_w = ctx.Pipe(duplex=False)  # workers hold the read end; EOF there = this process died
    console = console or Console(stderr=True)
    progress = SweepProgress(jobs, console, show=show_progress, every_s=progress_every)
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(queue, threads, os.getpid(), lifeline_r))
    futures = {}
    try:
        with progress:
            for job in jobs:
                futures[ex.submit(_run_job, job, str(store.root))] = job
            remaining = set(futures)
            while remaining:
                finished, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:  # per-step progress of the runs in flight
                    try:
                        rid, d, tot = queue.get_nowait()
                    except Exception:
                        break
                    if any(job_id(futures[f]) == rid for f in remaining):  # not a late message of a finished job
                        progress.step(rid, d, tot)
                for f in finished:
                    job = futures[f]
                    jid = job_id(job)
                    try:
                        entries = f.result()
                    except BrokenProcessPool:
                        lost = [r.run_id for r in job if not store.is_done(r.run_id)]
                        outcome.failed.extend(lost)
                        progress.job_done(jid, len(job) - len(lost), len(lost))
                        continue
                    except Exception as e:  # a bug in one run must not take the sweep down
                        lost = [r.run_id for r in job if not store.is_done(r.run_id)]
                        outcome.failed.extend(lost)
                        progress.job_done(jid, len(job) - len(lost), len(lost))
                        console.print(f"[red]{escape(jid)} failed:[/red] " + escape(f"{type(e).__name__}: {e}"))
                        continue
                    account_entries(outcome, entries, console)
                    progress.job_done(jid, len(entries))
                progress.tick()
    except KeyboardInterrupt as e:
        interrupted(outcome, e)
        for p in list((getattr(ex, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                p.terminate()
    finally:
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=not outcome.interrupted, cancel_futures=True)
        if outcome.interrupted:  # terminated workers are gone within moments; do not leave zombies behind
            deadline = time.monotonic() + 5.0
            for p in procs:
                with contextlib.suppress(Exception):
                    p.join(max(0.0, deadline - time.monotonic()))
                    if p.is_alive():
                        p.kill()
        for c in (lifeline_w, lifeline_r):
            with contextlib.suppress(Exception):
                c.close()
    report_failed(outcome, console)


def _run_distributed(grid, runs: list[RunSpec], store: ResultsStore, t0: float, console=None) -> SweepOutcome:
    """Under torchrun: the runs one after the other, each data-parallel over all ranks; the process group is
    shut down cleanly (barrier, destroy) on every way out."""
    from seglab.train import distributed as D

    with D.process_group() as info:
        if info.is_main:
            store.root.mkdir(parents=True, exist_ok=True)
            store.write_config(grid, runs)
            store.clean_tmp()
            done, damaged = store.scan()
            for rid, why in sorted(damaged.items()):
                store.quarantine(rid)
                _warn(console, f"warning: damaged run {rid}: {why}; it will be redone")
        else:
            done = None
        done = D.broadcast_object(done, info)
        pending = [r for r in runs if r.run_id not in done]
        outcome = SweepOutcome(total=len(runs), skipped=len(runs) - len(pending))
        for i, r in enumerate(pending):
            res = Trainer(info=info).run(r)
            if info.is_main:
                store.write_run(res)
                print(f"[{i + 1}/{len(pending)}] {res.summary['status']} converged={res.summary['converged']} {r.label}",
                      flush=True)
            account(outcome, ("trained", res.summary))
            D.barrier(info)
        if info.is_main:
            store.write_summary_table()
    outcome.wall_s = time.perf_counter() - t0
    return outcome
