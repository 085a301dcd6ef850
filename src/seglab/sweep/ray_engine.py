"""The Ray engine of ``seglab sweep --engine ray``: a sweep's jobs (packs of runs, or single runs) as Ray tasks.

Where the local engine hands jobs to its own worker processes, this one submits each job as a Ray task that
asks for ``num_cpus=threads`` (``--threads``) and is retried when its worker dies (``max_retries``). Without
``--address`` a local Ray is started in this process (``ray.init(address="local")``, as many CPUs as
``--workers`` × ``--threads``, no dashboard) and stopped when the sweep ends; ``--address auto`` or
``HOST:PORT`` joins an existing cluster (``RAY_ADDRESS`` is honoured by ``auto``).

What stays the same as the local engine, by construction:

* the jobs (:func:`seglab.sweep.runner.make_jobs`, sized for the cluster's CPU slots) and the training
  (:func:`seglab.sweep.jobs.train_job`): a run's summary does not depend on the engine;
* the results store: this process claims every run it hands out (:func:`seglab.sweep.jobs.claim_runs`, the
  per-run ``flock``), and writes each result it gets back with :meth:`ResultsStore.write_run` (atomic), so
  resume, ``--merge`` and concurrent sweeps into one folder work unchanged, and the cluster's nodes need no
  shared file system. A task retried after a worker died trains its runs again from the start; nothing was
  written for them, so nothing is lost or written twice;
* progress (:class:`seglab.sweep.runner.SweepProgress`): per-step progress goes from the tasks to a small
  actor (no CPU reserved) that this process polls;
* process hygiene: Ctrl-C and SIGTERM cancel the tasks and shut Ray down; the processes of a local Ray share
  the fate of this one: Ray's parent-death signal ends its GCS and raylet, and a watchdog process (stdlib
  only, :func:`start_watchdog`) kills every process that carries the session's token in its environment (the
  agents, the workers) as soon as this process ends, however it ends: a SIGKILL leaves none behind either.

Test hook (tests only): ``SEGLAB_TEST_RAY_EXIT_ONCE=<file>`` makes the first task that renames ``<file>``
(to ``<file>.fired``) end its worker with ``os._exit(1)`` after its first progress report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import uuid
from typing import Any
from collections.abc import Iterator

from seglab.train.config import ConfigError, RunSpec

from .jobs import account_entries, claim_runs, interrupted, job_id, report_failed, train_job

EXIT_HOOK_ENV = "SEGLAB_TEST_RAY_EXIT_ONCE"
MAX_RETRIES = 3  # retries of a task whose worker died (a raised exception is a bug: not retried)
CONNECT_TIMEOUT_S = 5.0


def parse_address(text: str | None) -> str | None:
    """``None`` (a local Ray started in this process), ``"auto"``, ``"ray://HOST:PORT"`` (Ray Client) or
    ``"HOST:PORT"``; raises :class:`ConfigError` naming ``--address`` otherwise."""
    if text is None:
        return None
    t = text.strip()
    if t == "auto" or t.startswith("ray://"):
        return t
    host, sep, port = t.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {text!r}")
    return t


def _host_port(address: str) -> tuple[str, int] | None:
    a = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = a.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one :class:`ConfigError`) when ``HOST:PORT`` accepts no TCP connection, before Ray's own
    connection attempts (which retry for a long time)."""
    hp = _host_port(address) if address not in (None, "auto") else None
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=timeout).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(f"--address {address}: no Ray cluster reachable there ({why})") from None


def require_ray():
    from seglab._extras import require

    return require("ray", "seglab sweep --engine ray")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


@contextlib.contextmanager
def session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """Ray, ready to take tasks: an already initialised Ray as it is (left running), else a new connection
    (``address``) or a local Ray with ``num_cpus`` CPUs, shut down on the way out (also on Ctrl-C/SIGTERM).
    The SIGTERM handler that ``ray.init`` installs is removed again afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    old_term = signal.getsignal(signal.SIGTERM)
    check_reachable(address)
    kw: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    token = f"{SESSION_ENV}={uuid.uuid4().hex}" if address is None else None
    watchdog = None
    try:
        if address is None:
            # the local Ray's processes (GCS, raylet, its agents and workers) inherit the token: the watchdog
            # finds them by it. It stays set for the whole session (removed after ray.shutdown): Ray may start its
            # agents after ray.init returns, and an agent started without it outlived a SIGKILL of the sweep
            os.environ[SESSION_ENV] = token.split("=", 1)[1]  # type: ignore[union-attr]
            watchdog = start_watchdog(token)  # type: ignore[arg-type]
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:  # ConnectionError, RuntimeError, ...: one line naming the option
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop_watchdog(watchdog)
        _restore_sigterm(old_term)
        if token is not None:
            os.environ.pop(SESSION_ENV, None)
        where = f"--address {address}" if address else "--engine ray"
        raise ConfigError(f"{where}: cannot start or join Ray: {_first_line(e)}") from None
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        _stop_watchdog(watchdog)
        _restore_sigterm(old_term)
        if token is not None:
            os.environ.pop(SESSION_ENV, None)


SESSION_ENV = "SEGLAB_RAY_SESSION"
WATCHDOG_SWEEP_S = 1.0  # after the driver ends: how long the watchdog keeps killing the session's processes

# The watchdog of a local Ray (stdlib only). Ray's own fate sharing ends the GCS and the raylet with the driver,
# but its agents (ray::DashboardAgent, ray::RuntimeEnvAgent) notice their raylet's death by polling and lived
# about 60 s after a SIGKILL of the sweep, and a task's worker about 3 s. The watchdog waits for end-of-file on
# its stdin (the driver's end of the pipe is closed by the kernel however the driver ends) and then SIGKILLs every
# process whose environment holds this session's token, and every descendant of those it has seen (Ray starts its
# agents without the driver's environment), for WATCHDOG_SWEEP_S seconds (stragglers being spawned). While it
# waits it records the session's process tree every 0.5 s, because a killed raylet's children lose their parent.
_WATCHDOG = r"""
import os, select, signal, sys, time
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)  # a Ctrl-C or a group's SIGTERM must not end it before it has done its job
token = sys.argv[1].encode()
me = os.getpid()


def stat(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
        return int(rest[1]), rest[19]  # parent pid, start time
    except (OSError, ValueError, IndexError):
        return None


def marked(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return token in f.read().split(b"\0")
    except OSError:
        return False


def session():
    # the processes carrying the token and all their descendants (Ray starts its agents without the token)
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me:
            st = stat(int(d))
            if st:
                procs[int(d)] = st
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = set(), [p for p in procs if marked(p)]
    while todo:
        pid = todo.pop()
        if pid not in procs or (pid, procs[pid][1]) in out:
            continue
        out.add((pid, procs[pid][1]))
        todo.extend(kids.get(pid, []))
    return out


seen = set()
fd = sys.stdin.fileno()
while True:  # until end-of-file on stdin: remember the session's processes every half second
    try:
        ready = select.select([fd], [], [], 0.5)[0]
        if ready and not os.read(fd, 65536):
            break
    except OSError:
        break
    if not ready:
        seen |= session()
deadline = time.monotonic() + float(sys.argv[2])
while True:
    for pid, start in seen | session():
        st = stat(pid)
        if st and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if time.monotonic() > deadline:
        break
    time.sleep(0.1)
"""


def start_watchdog(token: str):
    """Start the watchdog of a local Ray session marked by the environment entry ``token`` (Linux, /proc);
    None elsewhere. Its stdin is a pipe whose only writer is this process."""
    import subprocess
    import sys

    if not os.path.isdir("/proc") or not sys.platform.startswith("linux"):
        return None
    env = {k: v for k, v in os.environ.items() if k != SESSION_ENV}
    try:
        return subprocess.Popen([sys.executable, "-c", _WATCHDOG, token, str(WATCHDOG_SWEEP_S)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, close_fds=True)
    except OSError:
        return None


def _stop_watchdog(watchdog) -> None:
    """After ``ray.shutdown()``: close the pipe, so the watchdog kills whatever of the session is left and exits."""
    if watchdog is None:
        return
    with contextlib.suppress(Exception):
        watchdog.stdin.close()


def _restore_sigterm(handler) -> None:
    with contextlib.suppress(ValueError, TypeError, OSError):
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)


def slots(ray, threads: int) -> int:
    """How many tasks of ``threads`` CPUs the cluster runs at once (at least 1)."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus // max(1, threads)))


class _ProgressSink:
    """Actor: the latest ``(done, total)`` step count of each job in flight, taken by the driver."""

    def __init__(self) -> None:
        self.latest: dict[str, tuple[int, int]] = {}

    def put(self, jid: str, done: int, total: int) -> None:
        self.latest[jid] = (done, total)

    def take(self) -> dict[str, tuple[int, int]]:
        out, self.latest = self.latest, {}
        return out


def _task(cfgs: list[RunSpec], packed: bool, threads: int, jid: str, sink, exit_hook: str | None):
    """One job in a Ray worker: train, return the ``RunRecord`` s (the driver writes them)."""
    import torch

    torch.set_num_threads(threads)

    def progress(done: int, total: int) -> None:
        if exit_hook and done > 0:
            try:
                os.rename(exit_hook, exit_hook + ".fired")
            except OSError:
                pass
            else:
                os._exit(1)  # the test's dying worker
        if sink is not None:
            with contextlib.suppress(Exception):
                sink.put.remote(jid, done, total)

    return train_job(cfgs, packed=packed, progress=progress)


@contextlib.contextmanager
def _released_on_error(claims: list[Any]) -> Iterator[None]:
    """Release ``claims`` when the block raises (the runs were not handed out), and re-raise."""
    try:
        yield
    except BaseException:
        for cl in claims:
            cl.release()
        raise


def _collect(ray, ref: Any, job: list[RunSpec], n_pre: int, store, outcome, progress, console) -> None:
    """A finished task: write its records and account them, or count its runs as failed (one line why)."""
    from rich.markup import escape

    jid = job_id(job)
    try:
        results = ray.get(ref)
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None)
        why = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else _first_line(e)
        lost = [r.run_id for r in job if not store.is_done(r.run_id)]
        outcome.failed.extend(lost)
        progress.job_done(jid, len(job) - len(lost), len(lost))
        console.print(f"[red]{escape(jid)} failed:[/red] " + escape(why), soft_wrap=True)
        return
    for res in results:
        store.write_run(res)
    account_entries(outcome, [("trained", r.summary) for r in results], console)
    progress.job_done(jid, n_pre + len(results))


def run_jobs(ray, jobs: list[list[RunSpec]], store, outcome, *, threads: int, progress,
             console, max_retries: int = MAX_RETRIES) -> None:
    """Submit every job as a task, write the results as they come back, account them in ``outcome``."""
    task = ray.remote(_task).options(num_cpus=threads, max_retries=max_retries, retry_exceptions=False)
    try:
        sink = ray.remote(_ProgressSink).options(num_cpus=0).remote()
    except Exception:  # progress is a nicety: the sweep runs without it
        sink = None
    exit_hook = os.environ.get(EXIT_HOOK_ENV) or None
    inflight: dict[Any, tuple[list[RunSpec], list[Any], int]] = {}
    live: set[str] = set()
    try:
        with progress:
            for job in jobs:
                entries, claims, todo = claim_runs(store, job)
                account_entries(outcome, entries, console)
                if not todo:
                    progress.job_done(job_id(job), len(entries))
                    continue
                with _released_on_error(claims):
                    ref = task.remote(list(todo), len(job) > 1, threads, job_id(job), sink, exit_hook)
                inflight[ref] = (job, claims, len(entries))
                live.add(job_id(job))
            taking = sink.take.remote() if sink is not None else None
            while inflight:
                ray.wait(list(inflight), num_returns=1, timeout=0.5)
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
                if taking is not None and ray.wait([taking], timeout=0)[0]:
                    with contextlib.suppress(Exception):
                        for jid, (d, tot) in ray.get(taking).items():
                            if jid in live:
                                progress.step(jid, d, tot)
                    taking = sink.take.remote()
                for ref in ready:
                    job, claims, n_pre = inflight.pop(ref)
                    live.discard(job_id(job))
                    try:
                        _collect(ray, ref, job, n_pre, store, outcome, progress, console)
                    finally:
                        for cl in claims:
                            cl.release()
                progress.tick()
    except KeyboardInterrupt as e:
        interrupted(outcome, e)
        for ref in inflight:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
    finally:
        for _job, claims, _n in inflight.values():
            for cl in claims:
                cl.release()
        if sink is not None:
            with contextlib.suppress(Exception):
                ray.kill(sink)
    report_failed(outcome, console)
