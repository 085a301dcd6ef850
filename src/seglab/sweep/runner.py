"""Run a sweep: validate everything first, skip finished runs, fan the rest out to worker processes."""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglab.train.config import RunConfig, validate_runs

from .grid import expand, select
from seglab.results import ResultsStore


@dataclass
class SweepOutcome:
    total: int = 0
    skipped: int = 0
    finished: int = 0
    diverged: int = 0
    failed: list[str] = field(default_factory=list)
    interrupted: bool = False
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


_QUEUE = None


def _init_worker(queue, threads: int) -> None:
    global _QUEUE
    import torch

    torch.set_num_threads(threads)
    _QUEUE = queue


def _run_one(cfg_dict: dict[str, Any], out: str) -> dict[str, Any]:
    from seglab.train.loop import train_run

    cfg = RunConfig.from_dict(cfg_dict)
    rid = cfg.run_id
    store = ResultsStore(out)
    if store.is_done(rid):
        return store.summary(rid)
    q = _QUEUE

    def progress(done: int, total: int) -> None:
        if q is not None:
            try:
                q.put_nowait((rid, done, total))
            except Exception:
                pass

    res = train_run(cfg, progress=progress, progress_every=max(1, cfg.steps // 50))
    store.write_run(res)
    return res.summary


def _job_id(job: list[RunConfig]) -> str:
    return job[0].run_id if len(job) == 1 else f"pack-{job[0].run_id}-{len(job)}"


def _job_label(job: list[RunConfig]) -> str:
    if len(job) == 1:
        return job[0].label
    c = job[0]
    norm = c.model_kw.get("norm", "batch")
    opt = f"{c.optimizer} lr={c.lr:g}" + (f" mom={c.momentum:g}" if c.optimizer == "sgd" else "")
    return f"pack of {len(job)}: {c.model} norm={norm} | {opt}"


def _run_pack(cfg_dicts: list[dict[str, Any]], out: str) -> list[dict[str, Any]]:
    """Train a pack of runs together (seglab.train.packed); each run is written as soon as it is final."""
    from seglab.train.packed import train_pack

    store = ResultsStore(out)
    cfgs = [RunConfig.from_dict(d) for d in cfg_dicts]
    done = [c for c in cfgs if store.is_done(c.run_id)]
    todo = [c for c in cfgs if not store.is_done(c.run_id)]
    summaries = [store.summary(c.run_id) for c in done]
    if not todo:
        return summaries
    q = _QUEUE
    jid = _job_id(cfgs)

    def progress(d: int, total: int) -> None:
        if q is not None:
            try:
                q.put_nowait((jid, d, total))
            except Exception:
                pass

    results = train_pack(todo, progress=progress, progress_every=max(1, todo[0].steps // 50),
                         on_result=store.write_run)
    return summaries + [r.summary for r in results]


def _run_job(job: list[RunConfig], out: str) -> list[dict[str, Any]]:
    if len(job) == 1:
        return [_run_one(job[0].to_dict(), out)]
    return _run_pack([c.to_dict() for c in job], out)


def make_jobs(pending: list[RunConfig], workers: int, pack: bool = True) -> list[list[RunConfig]]:
    """Units of work: packs of runs trained together (``pack=True``, packable runs, see
    :mod:`seglab.train.packed`) or single runs. Packs are capped at two thirds of one worker's share,
    ``ceil(len(pending) / workers) * 2 // 3`` runs, so that no job is more than 2/3 of a worker's work (balance; a
    killed or interrupted worker loses at most one pack); the largest jobs come first. (The chlebus2018 preset's
    packs, 45 Adam and 75 SGD runs per norm, are below the cap of 80.)"""
    if not pack:
        return [[r] for r in pending]
    from seglab.train.packed import group_packs

    cap = max(1, -(-len(pending) // max(1, workers)) * 2 // 3)
    jobs = group_packs(pending, max_size=cap)
    return sorted(jobs, key=len, reverse=True)


def plan(grid: dict[str, Any], *, shard=None, run_index=None) -> list[RunConfig]:
    """Expand, validate (raises ConfigError before anything runs) and select this invocation's runs."""
    runs = validate_runs(expand(grid))
    return select(runs, shard=shard, run_index=run_index)


def run_sweep(grid: dict[str, Any], out: str | Path, *, workers: int = 2, threads: int = 1, shard=None,
              run_index=None, show_progress: bool = True, console=None, pack: bool = True) -> SweepOutcome:
    """Run the sweep ``grid`` into results folder ``out`` (resumable: finished run ids are skipped).

    Under ``torchrun`` (WORLD_SIZE > 1) the runs are executed one after the other in this process, each one
    data-parallel over all ranks, and only rank 0 writes; otherwise ``workers`` processes run runs in parallel.
    With ``pack=True`` (default) runs that can share a packed network (tiny model on the threshold task, see
    :mod:`seglab.train.packed`) are trained together, one pack per worker task; ``pack=False`` trains each run alone.
    """
    from seglab.train import distributed as D

    t0 = time.perf_counter()
    runs = plan(grid, shard=shard, run_index=run_index)
    store = ResultsStore(out)
    if D.launched_by_torchrun():
        return _run_distributed(grid, runs, store, t0, console=console)
    store.root.mkdir(parents=True, exist_ok=True)
    store.write_config(grid, runs)
    store.clean_tmp()
    done = store.done_ids()
    pending = [r for r in runs if r.run_id not in done]
    outcome = SweepOutcome(total=len(runs), skipped=len(runs) - len(pending))
    if not pending:
        store.write_summary_table()
        outcome.wall_s = time.perf_counter() - t0
        return outcome
    if workers <= 0:
        workers = max(1, os.cpu_count() or 1)
    jobs = make_jobs(pending, workers, pack)
    workers = min(workers, len(jobs))
    if workers == 1 and not show_progress:
        _run_inline(jobs, store, outcome, threads)
    else:
        _run_pool(jobs, store, outcome, workers, threads, show_progress, console)
    store.write_summary_table()
    outcome.wall_s = time.perf_counter() - t0
    return outcome


def _account(outcome: SweepOutcome, summary: dict[str, Any]) -> None:
    outcome.finished += 1
    if summary.get("status") == "diverged":
        outcome.diverged += 1


def _run_inline(jobs: list[list[RunConfig]], store: ResultsStore, outcome: SweepOutcome, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        for job in jobs:
            for s in _run_job(job, str(store.root)):
                _account(outcome, s)
    except KeyboardInterrupt:
        outcome.interrupted = True


def _run_pool(jobs, store, outcome, workers, threads, show_progress, console) -> None:
    import multiprocessing as mp

    from seglab._extras import require

    require("rich", "the sweep progress bar")
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    console = console or Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=not show_progress, transient=False)
    overall = progress.add_task("runs", total=sum(len(j) for j in jobs))
    slots: dict[str, Any] = {}
    labels = {_job_id(j): _job_label(j) for j in jobs}
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, threads))
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
                    if rid not in slots:
                        slots[rid] = progress.add_task(f"  {labels.get(rid, rid)[:60]}", total=tot)
                    progress.update(slots[rid], completed=d)
                for f in finished:
                    job = futures[f]
                    jid = _job_id(job)
                    if jid in slots:
                        progress.remove_task(slots.pop(jid))
                    try:
                        ss = f.result()
                    except BrokenProcessPool:
                        outcome.failed.extend(r.run_id for r in job if not store.is_done(r.run_id))
                        continue
                    except Exception as e:  # a bug in one run must not take the sweep down
                        outcome.failed.extend(r.run_id for r in job if not store.is_done(r.run_id))
                        console.print(f"[red]{escape(jid)} failed:[/red] " + escape(f"{type(e).__name__}: {e}"))
                        continue
                    for s in ss:
                        _account(outcome, s)
                        progress.advance(overall)
                        if s.get("status") == "diverged":
                            console.print(f"[yellow]diverged[/yellow] at step {s.get('diverged_step')}: " + escape(s.get("label", "")))
    except KeyboardInterrupt:
        outcome.interrupted = True
        for p in list(getattr(ex, "_processes", {}).values()):
            try:
                p.terminate()
            except Exception:
                pass
    finally:
        ex.shutdown(wait=not outcome.interrupted, cancel_futures=True)
    if outcome.failed:
        console.print(f"[red]{len(outcome.failed)} run(s) did not finish (a worker died or raised); "
                      "re-run the same command to redo them.[/red]")


def _run_distributed(grid, runs: list[RunConfig], store: ResultsStore, t0: float, console=None) -> SweepOutcome:
    from seglab.train import distributed as D
    from seglab.train.loop import train_run

    info = D.setup()
    if info.is_main:
        store.root.mkdir(parents=True, exist_ok=True)
        store.write_config(grid, runs)
        store.clean_tmp()
        done = store.done_ids()
    else:
        done = None
    done = D.broadcast_object(done, info)
    pending = [r for r in runs if r.run_id not in done]
    outcome = SweepOutcome(total=len(runs), skipped=len(runs) - len(pending))
    for i, r in enumerate(pending):
        res = train_run(r, info=info)
        if info.is_main:
            store.write_run(res)
            print(f"[{i + 1}/{len(pending)}] {res.summary['status']} converged={res.summary['converged']} {r.label}", flush=True)
        _account(outcome, res.summary)
        D.barrier(info)
    if info.is_main:
        store.write_summary_table()
    outcome.wall_s = time.perf_counter() - t0
    return outcome
