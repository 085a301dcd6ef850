"""Results folder: resumable, crash-safe, mergeable.

Layout::

    RESULTS/
      config.json              resolved sweep: the grid as given + every run's full config and id (written first)
      runs/<run_id>/           one folder per *finished* run (appears atomically, by a directory rename)
          steps.parquet        one row per step: step, train_loss, loss/<name>, gnorm/<name> for every monitor
          evals.parquet        one row per validation: step, accuracy, majority, mean/fg Dice, dice/<class>, iou/<class>
          summary.json         one summary row (config, status, convergence, final metrics, mean gradient norms)
      summary.parquet, summary.csv   all summaries, flattened (rebuilt after a sweep and by ``seglab report``)

A run is written into ``runs/.tmp-<run_id>-<pid>-<n>/`` and renamed to ``runs/<run_id>/`` only when complete,
so a crash or Ctrl-C never leaves a half-written run that looks finished; re-running skips exactly the run ids
whose folder exists and is complete. Run ids are hashes of the full run configuration, so several shards (or
machines) writing into one folder, or :func:`merge` of several folders, can neither lose nor duplicate a run.

Concurrency: ``config.json`` and the summary tables are rewritten under an exclusive lock on ``RESULTS/.lock``
(``fcntl.flock``) and replaced atomically, so concurrent processes never lose each other's entries. A process
training a run holds a claim, ``RESULTS/.claims/<run_id>.lock`` (an ``flock`` on the file, which the kernel
releases when the process ends however it ends: a claim of a dead process is free again), and another sweep
on the same folder skips runs claimed by someone else instead of training them twice.

Damage: a run folder whose ``summary.json`` does not parse (or is not a summary of that run) or whose Parquet
files are truncated is *damaged*: :meth:`ResultsStore.scan` names the file and the problem, it does not count
as finished, and :meth:`ResultsStore.quarantine` moves it to ``RESULTS/.damaged/`` so that the run is redone.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import itertools
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator

try:
    import fcntl
except ImportError:  # not POSIX: lock files fall back to O_EXCL creation with the owner's pid
    fcntl = None  # type: ignore[assignment]

from seglab._extras import require

_counter = itertools.count()


class ResultsError(ValueError):
    """A results folder (or an output folder) that cannot be used: not creatable, not writable, not a
    results folder, or a damaged file. The message names the path."""


def check_out_dir(path: str | Path, option: str = "--out", *, create: bool = True) -> Path:
    """Make sure ``path`` is (or can become) a writable folder, before any work is done.

    Creates it (``create=True``) and writes and removes a probe file in it, so that a read-only file system
    or a missing permission is found now and not after training. Raises :class:`ResultsError` naming
    ``option`` and the path."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ResultsError(f"{option} {str(p)!r} exists and is not a folder")
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise ResultsError(f"{option} {str(p)!r} cannot be created: {str(anc)!r} is not a folder")
    if not create:
        if not os.access(anc, os.W_OK | os.X_OK):
            raise ResultsError(f"{option} {str(p)!r} cannot be created: {str(anc)!r} is not writable")
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write-probe-{os.getpid()}-{next(_counter)}"
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as e:
        raise ResultsError(f"{option} {str(p)!r} is not a writable folder: {e.strerror or e}") from None
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def file_lock(path: str | Path, *, timeout: float = 600.0) -> Iterator[None]:
    """An exclusive lock between processes on the lock file ``path`` (``fcntl.flock``; released by the kernel
    if the holder dies). Without ``fcntl``: an ``O_EXCL`` lock file holding the pid, taken over when that pid
    is dead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is not None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
        return
    deadline = time.monotonic() + timeout
    while True:  # pragma: no cover - non-POSIX fallback
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            break
        except FileExistsError:
            try:
                owner = int(path.read_text() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner and not _pid_alive(owner):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if time.monotonic() > deadline:
                raise ResultsError(f"timed out waiting for the lock {str(path)!r} (held by pid {owner})") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


class Claim:
    """A held claim of one run (see :meth:`ResultsStore.claim`); :meth:`release` it when the run is written."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # before the unlock: a waiting claimer then sees a new file (inode check)
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.path, self.fd = None, None  # type: ignore[assignment]

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{next(_counter)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _clean(o: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(_clean(obj), indent=1, default=_json_default, sort_keys=False).encode())


def _write_parquet(path: Path, columns: dict[str, list]) -> None:
    pa = require("pyarrow", "the results store")
    pq = require("pyarrow.parquet", "the results store")

    table = pa.table({k: pa.array(v, type=pa.int64() if k == "step" else pa.float64()) for k, v in columns.items()})
    pq.write_table(table, path)


def _read_parquet(path: Path) -> dict[str, list]:
    pq = require("pyarrow.parquet", "the results store")

    return pq.read_table(path).to_pydict()


#: the scalar metrics of every validation (besides ``step``) and the per-class ones, unless a run's summary names
#: its own (``metric_names``, ``class_metric_names``: what :class:`~seglab.train.record.RunRecord` records)
EVAL_METRICS = ("accuracy", "majority", "mean_dice", "fg_dice", "mean_iou")
CLASS_METRICS = ("dice", "iou")


def eval_columns(evals: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, list]:
    """The columns of ``evals.parquet``: ``step``, each scalar metric, and ``<metric>/<class name>`` per class
    (class names from the summary when there is one per class, else the class indices)."""
    scalars = list(summary.get("metric_names") or EVAL_METRICS)
    per_class = list(summary.get("class_metric_names") or CLASS_METRICS)
    names = summary.get("class_names") or []
    C = len(evals[0][per_class[0]]) if evals and per_class else 0
    names = names if len(names) == C else [str(c) for c in range(C)]
    cols: dict[str, list] = {k: [e[k] for e in evals] for k in ("step", *scalars)}
    for c, n in enumerate(names):
        for m in per_class:
            cols[f"{m}/{n}"] = [e[m][c] for e in evals]
    return cols


class ResultsStore:
    """Reader/writer of one results folder (see module docstring)."""

    def __init__(self, root: str | Path):
        require("pyarrow", "the results store")  # fail before any run is trained, not when it is written
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    # ---------------------------------------------------------------- config
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    def locked(self):
        """Exclusive lock of this folder's shared files (``config.json``, ``summary.*``) between processes."""
        return file_lock(self.lock_path)

    def read_config(self) -> dict[str, Any] | None:
        if not self.config_path.exists():
            return None
        try:
            cfg = json.loads(self.config_path.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ResultsError(f"damaged {str(self.config_path)!r}: {e}") from None
        if not isinstance(cfg, dict):
            raise ResultsError(f"damaged {str(self.config_path)!r}: not a JSON object")
        return cfg

    def write_config(self, grid: dict[str, Any], runs: Iterable[Any]) -> None:
        """Write/extend ``config.json``: the runs of this invocation are added to any already recorded
        (so a folder can hold several sweeps, shards, or merged folders). Read, update and atomic replace
        happen under :meth:`locked`, so concurrent writers never drop each other's entries."""
        runs = list(runs)
        with self.locked():
            self._write_config_locked(grid, runs)

    def _write_config_locked(self, grid: dict[str, Any], runs: list[Any]) -> None:
        old = self.read_config() or {}
        by_id: dict[str, Any] = {r["run_id"]: r for r in old.get("runs", [])}
        for r in runs:
            d = r.to_dict() if hasattr(r, "to_dict") else dict(r)
            rid = r.run_id if hasattr(r, "run_id") else d["run_id"]
            by_id.setdefault(rid, {"run_id": rid, "label": getattr(r, "label", d.get("label", "")), **{k: v for k, v in d.items() if k not in ("run_id", "label")}})
        grids = old.get("grids", [])
        if grid not in grids:
            grids = grids + [grid]
        from seglab._version import __version__

        atomic_write_json(self.config_path, {
            "seglab_version": __version__,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "provenance": run_provenance(),  # of the latest invocation that wrote this file
            "grids": grids,
            "runs": list(by_id.values()),
        })

    # ---------------------------------------------------------------- runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def run_problem(self, run_id: str) -> str | None:
        """None when run ``run_id`` is complete and readable; otherwise what is wrong, naming the file
        (``"missing"`` when there is no such run folder)."""
        d = self.run_dir(run_id)
        if not d.is_dir():
            return "missing"
        f = d / "summary.json"
        if not f.exists():
            return f"{str(f)!r} is missing"
        try:
            s = json.loads(f.read_bytes().decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return f"{str(f)!r} is unreadable: {e}"
        if not isinstance(s, dict) or s.get("run_id") != run_id or "status" not in s:
            return f"{str(f)!r} is not the summary of run {run_id} (no matching run_id/status)"
        pq = require("pyarrow.parquet", "the results store")
        for name in ("steps.parquet", "evals.parquet"):
            p = d / name
            try:
                pq.read_metadata(p)
            except FileNotFoundError:
                return f"{str(p)!r} is missing"
            except Exception as e:  # truncated / not Parquet: ArrowInvalid, OSError
                return f"{str(p)!r} is unreadable (truncated?): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        return None

    def is_done(self, run_id: str) -> bool:
        return self.run_problem(run_id) is None

    def scan(self) -> tuple[set[str], dict[str, str]]:
        """``(finished run ids, {damaged run id: problem})`` of the run folders present."""
        done: set[str] = set()
        damaged: dict[str, str] = {}
        if not self.runs_dir.exists():
            return done, damaged
        for p in self.runs_dir.iterdir():
            if p.name.startswith(".") or not p.is_dir():
                continue
            why = self.run_problem(p.name)
            if why is None:
                done.add(p.name)
            elif why != "missing":  # "missing": removed meanwhile (e.g. quarantined by another process)
                damaged[p.name] = why
        return done, damaged

    def done_ids(self) -> set[str]:
        return self.scan()[0]

    def quarantine(self, run_id: str) -> Path | None:
        """Move a damaged run folder to ``RESULTS/.damaged/`` (kept for inspection) so that the run is redone.
        Returns the new place, or None if the folder was gone (another process moved it)."""
        dst_dir = self.root / ".damaged"
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / f"{run_id}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(_counter)}"
        try:
            os.rename(self.run_dir(run_id), dst)
        except FileNotFoundError:
            return None
        return dst

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str) -> Claim | None:
        """Claim run ``run_id`` for this process: a :class:`Claim`, or None when another live process holds it.

        The claim is an ``flock`` on ``RESULTS/.claims/<run_id>.lock``: the kernel drops it when the holder
        exits, however it exits, so a claim left by a killed process is taken over. (Without ``fcntl``: an
        ``O_EXCL`` file with the pid, taken over when that pid is dead.)"""
        d = self.root / ".claims"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{run_id}.lock"
        stamp = f"{os.getpid()} {socket.gethostname()}\n".encode()
        if fcntl is None:  # pragma: no cover - non-POSIX fallback
            for _ in range(3):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    owner = self.claim_owner(run_id)
                    if owner is not None and owner != os.getpid() and _pid_alive(owner):
                        return None
                    with contextlib.suppress(OSError):
                        path.unlink()
                    continue
                os.write(fd, stamp)
                os.close(fd)
                return Claim(path, None)
            return None
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return None
                raise
            try:  # the holder we waited for may have unlinked the file: only the current file counts
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, stamp)
            return Claim(path, fd)

    def claim_owner(self, run_id: str) -> int | None:
        """The pid written in run ``run_id``'s claim file, if any (informative; the lock is what counts)."""
        try:
            return int((self.root / ".claims" / f"{run_id}.lock").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def write_run(self, result: Any) -> bool:
        """Write a finished run (a :class:`~seglab.train.record.RunRecord`: ``steps``, ``evals``, ``summary``)
        atomically. Returns False when the run already existed (kept as is)."""
        rid = result.summary["run_id"]
        final = self.run_dir(rid)
        if final.exists():
            return False
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_dir / f".tmp-{rid}-{os.getpid()}-{next(_counter)}"
        tmp.mkdir()
        try:
            _write_parquet(tmp / "steps.parquet", result.steps)
            _write_parquet(tmp / "evals.parquet", eval_columns(result.evals, result.summary))
            atomic_write_json(tmp / "summary.json", result.summary)
            for f in tmp.iterdir():  # durable before the rename publishes the run
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(tmp, final)
            except OSError:  # another process published the same run meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            return True
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def clean_tmp(self) -> None:
        """Remove leftovers of runs interrupted while being written (safe: they were never published)."""
        if self.runs_dir.exists():
            for p in self.runs_dir.glob(".tmp-*"):
                try:
                    pid = int(p.name.split("-")[-2])
                except (ValueError, IndexError):
                    pid = -1
                if pid > 0 and _pid_alive(pid) and pid != os.getpid():
                    continue
                shutil.rmtree(p, ignore_errors=True)

    def summary(self, run_id: str) -> dict[str, Any]:
        f = self.run_dir(run_id) / "summary.json"
        try:
            s = json.loads(f.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ResultsError(f"damaged {str(f)!r}: {e}") from None
        if not isinstance(s, dict) or "run_id" not in s:
            raise ResultsError(f"damaged {str(f)!r}: not a run summary")
        return s

    def summaries(self) -> list[dict[str, Any]]:
        return [self.summary(r) for r in sorted(self.done_ids())]

    def steps(self, run_id: str) -> dict[str, list]:
        return _read_parquet(self.run_dir(run_id) / "steps.parquet")

    def evals(self, run_id: str) -> dict[str, list]:
        return _read_parquet(self.run_dir(run_id) / "evals.parquet")

    # ---------------------------------------------------------------- tables
    def summary_rows(self) -> list[dict[str, Any]]:
        return [flatten_summary(s) for s in self.summaries()]

    def write_summary_table(self) -> int:
        """Rebuild ``summary.parquet`` and ``summary.csv`` from the finished runs (under :meth:`locked`)."""
        with self.locked():
            return self._write_summary_table_locked()

    def _write_summary_table_locked(self) -> int:
        rows = self.summary_rows()
        if not rows:
            return 0
        import csv
        import io

        pa = require("pyarrow", "the results store")
        pq = require("pyarrow.parquet", "the results store")

        keys: list[str] = []
        for r in rows:
            for k in r:
                if k not in keys:
                    keys.append(k)
        cols = {k: [r.get(k) for r in rows] for k in keys}
        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        tmp = self.root / f".summary.parquet.tmp-{os.getpid()}-{next(_counter)}"
        pq.write_table(table, tmp)
        os.replace(tmp, self.root / "summary.parquet")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        atomic_write_bytes(self.root / "summary.csv", buf.getvalue().encode())
        return len(rows)


def flatten_summary(s: dict[str, Any]) -> dict[str, Any]:
    """One flat row: config fields (``task_kw.fg_ratio`` -> ``fg_ratio``, ``model_kw.norm`` -> ``norm``...),
    status, convergence, final metrics, gradient norms."""
    cfg = s.get("config", {})
    row: dict[str, Any] = {"run_id": s["run_id"]}
    for k in ("loss", "task", "model", "optimizer", "lr", "momentum", "seed", "steps", "batch_size"):
        row[k] = cfg.get(k)
    for k, v in (cfg.get("task_kw") or {}).items():
        row[k if k not in row else f"task_{k}"] = v
    for k, v in (cfg.get("model_kw") or {}).items():
        row[k if k not in row else f"model_{k}"] = "none" if (k == "norm" and v is None) else v
    # the normalisation the built network really has (recorded by training from its modules) wins over the
    # configured value: a model whose factory defaults to batch norm has no "norm" in its config
    if s.get("model_norm"):
        row["norm"] = str(s["model_norm"])
    elif "norm" not in row and cfg.get("model") == "tiny":
        row["norm"] = "batch"
    names = s.get("class_names") or []
    for k, v in s.items():
        if k in ("config", "run_id", "label", "class_names", "model_norm", "provenance"):
            continue
        if k in ("final_dice", "final_iou"):
            for c, x in enumerate(v or []):
                row[f"{k}/{names[c] if c < len(names) else c}"] = x
            continue
        row[k] = v
    row["label"] = s.get("label", "")
    return row


def merge(dst: str | Path, sources: Iterable[str | Path]) -> tuple[int, int]:
    """Copy finished runs of ``sources`` into ``dst`` (atomically per run; existing run ids are kept) and
    union their ``config.json`` run lists. Returns ``(added, skipped)``.

    Raises :class:`ResultsError` before copying anything when a source is not a results folder (missing,
    not a folder, or without ``config.json`` and ``runs/``) or ``dst`` cannot be written."""
    sources = list(sources)
    for src in sources:
        sp = Path(src)
        if not sp.exists():
            raise ResultsError(f"--merge {str(sp)!r} does not exist")
        if not sp.is_dir():
            raise ResultsError(f"--merge {str(sp)!r} is not a folder")
        if not (sp / "config.json").exists() and not (sp / "runs").is_dir():
            raise ResultsError(f"--merge {str(sp)!r} is not a results folder (no config.json, no runs/)")
    d = ResultsStore(dst)
    check_out_dir(d.root)
    added = skipped = 0
    for src in sources:
        s = ResultsStore(src)
        cfg = s.read_config()
        if cfg:
            for g in cfg.get("grids", []) or [{}]:
                d.write_config(g, cfg.get("runs", []))
        for rid in sorted(s.done_ids()):
            if d.run_dir(rid).exists():
                skipped += 1
                continue
            d.runs_dir.mkdir(parents=True, exist_ok=True)
            tmp = d.runs_dir / f".tmp-{rid}-{os.getpid()}-{next(_counter)}"
            shutil.copytree(s.run_dir(rid), tmp)
            try:
                os.rename(tmp, d.run_dir(rid))
                added += 1
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                skipped += 1
    d.write_summary_table()
    return added, skipped


# ---------------------------------------------------------------- provenance
@functools.lru_cache(maxsize=1)
def _process_provenance() -> tuple[tuple[str, Any], ...]:
    from seglab.provenance import provenance

    p = provenance()
    p.pop("time", None)
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in p.items())


def run_provenance(**extra: Any) -> dict[str, Any]:
    """What produced a result, for its JSON (each run's ``summary.json``, a sweep's ``config.json``): the
    versions of seglab, torch, numpy and Python, the command line (``argv``), working directory, host, platform,
    CPU model and count, GPU name (when CUDA is available), the git commit of the working directory (``None``
    outside a checkout; :func:`seglab.provenance.provenance`), torch's thread count and the time, plus ``extra``
    (``seed``, ``device``, ``wall_s``, ...). The parts that cannot change within a process (the git commit
    included) are collected once per process.

    >>> sorted(k for k in run_provenance(seed=0) if k in ("seglab", "torch", "argv", "git_commit", "seed"))
    ['argv', 'git_commit', 'seed', 'seglab', 'torch']
    """
    import datetime as _dt

    import torch

    out: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in _process_provenance()}
    out["torch_threads"] = torch.get_num_threads()
    out["time"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    out.update(extra)
    return out


# ---------------------------------------------------------------- terminal tables
def escape_markup(text: Any) -> str:
    """``text`` (any value; ``str()`` of it) with rich markup escaped, for a string that ``rich`` will parse
    (``console.print``, a table cell): ``dice[include_background=false]``, a class named ``[/]`` or
    ``[link=x]y`` print literally instead of being read as markup (or raising ``MarkupError``)."""
    from rich.markup import escape

    return escape(str(text))


class TextTable:
    """A terminal table that shows every cell whole: a ``rich`` renderable (``console.print(t)``).

    Every title, caption, header and cell is plain text (never read as markup); nothing is cut with an
    ellipsis. ``key`` columns (configuration, loss) come first; when the table is wider than the console, the
    other columns are split over several tables that each fit and repeat the key columns. A cell wider than
    the console folds onto the next line (``overflow="fold"``). Rows may have a style, cells a style
    (``(text, style)``), given as rich style strings (never parsed from the text).

    >>> t = TextTable("losses", [("loss", "left", True), ("Dice", "right", False)])
    >>> t.add_row(["dice[batch=true]+ce", "0.910"])
    """

    def __init__(self, title: str | None, columns: list[tuple[str, str, bool]], caption: str | None = None):
        self.title, self.caption = title, caption
        self.columns = [(str(h), j, bool(k)) for h, j, k in columns]
        self.rows: list[tuple[list[Any], str | None]] = []

    def add_row(self, cells: Iterable[Any], style: str | None = None) -> None:
        cells = list(cells)
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(self.columns)} columns")
        self.rows.append((cells, style))

    def _table(self, idx: list[int], title: bool, caption: bool):
        from rich.table import Table
        from rich.text import Text

        t = Table(title=Text(self.title) if title and self.title else None,
                  caption=Text(self.caption) if caption and self.caption else None)
        for i in idx:
            head, justify, _ = self.columns[i]
            t.add_column(Text(head), justify=justify, overflow="fold")  # type: ignore[arg-type]
        for cells, style in self.rows:
            out = []
            for i in idx:
                c = cells[i]
                text, st = c if isinstance(c, tuple) else (c, "")
                out.append(Text("" if text is None else str(text), style=st or ""))
            t.add_row(*out, style=style)
        return t

    def tables(self, width: int) -> list:
        """The ``rich`` tables this table is shown as on a console ``width`` characters wide (and, when it is
        split, its caption as a line of text after them)."""
        from rich.console import Console
        from rich.measure import Measurement

        probe = Console(width=max(width, 1), file=io.StringIO())  # measures only: nothing is printed
        wide = probe.options.update_width(10**6)

        def natural(idx: list[int]) -> int:
            return Measurement.get(probe, wide, self._table(idx, False, False)).maximum

        try:
            keys = [i for i, c in enumerate(self.columns) if c[2]]
            rest = [i for i, c in enumerate(self.columns) if not c[2]]
            base = natural(keys) if keys else 1
            extra = {i: natural(keys + [i]) - (base if keys else 0) for i in rest}
            groups: list[list[int]] = []
            if base + sum(extra.values()) <= width:
                groups = [rest]
            else:  # the key columns take at most 60% (folding if they must), the rest is split to fit
                budget = width - min(base, int(width * 0.6))
                cur: list[int] = []
                used = 0
                for i in rest:
                    if cur and used + extra[i] > budget:
                        groups.append(cur)
                        cur, used = [], 0
                    cur.append(i)
                    used += extra[i]
                groups.append(cur)
        finally:
            probe.file.close()
        if len(groups) == 1:
            return [self._table(keys + groups[0], True, True)]
        from rich.text import Text

        # split: the caption (the columns equal in every row) under the last table, as wide as the console
        return ([self._table(keys + g, n == 0, False) for n, g in enumerate(groups)]
                + ([Text(self.caption)] if self.caption else []))

    def __rich_console__(self, console, options):
        yield from self.tables(options.max_width)
