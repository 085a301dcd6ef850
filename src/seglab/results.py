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
whose folder exists. Run ids are hashes of the full run configuration, so several shards (or machines)
writing into one folder, or :func:`merge` of several folders, can neither lose nor duplicate a run.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from seglab._extras import require

_counter = itertools.count()


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

    def read_config(self) -> Optional[dict[str, Any]]:
        if not self.config_path.exists():
            return None
        return json.loads(self.config_path.read_text())

    def write_config(self, grid: dict[str, Any], runs: Iterable[Any]) -> None:
        """Write/extend ``config.json``: the runs of this invocation are added to any already recorded
        (so a folder can hold several sweeps, shards, or merged folders)."""
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
            "grids": grids,
            "runs": list(by_id.values()),
        })

    # ---------------------------------------------------------------- runs
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def is_done(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "summary.json").exists()

    def done_ids(self) -> set[str]:
        if not self.runs_dir.exists():
            return set()
        return {p.name for p in self.runs_dir.iterdir() if not p.name.startswith(".") and (p / "summary.json").exists()}

    def write_run(self, result: Any) -> bool:
        """Write a finished run atomically. Returns False when the run already existed (kept as is)."""
        rid = result.summary["run_id"]
        final = self.run_dir(rid)
        if final.exists():
            return False
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_dir / f".tmp-{rid}-{os.getpid()}-{next(_counter)}"
        tmp.mkdir()
        try:
            _write_parquet(tmp / "steps.parquet", result.steps)
            names = result.summary.get("class_names") or []
            cols: dict[str, list] = {k: [] for k in ("step", "accuracy", "majority", "mean_dice", "fg_dice", "mean_iou")}
            C = len(result.evals[0]["dice"]) if result.evals else 0
            names = names if len(names) == C else [str(c) for c in range(C)]
            for n in names:
                cols[f"dice/{n}"] = []
                cols[f"iou/{n}"] = []
            for e in result.evals:
                for k in ("step", "accuracy", "majority", "mean_dice", "fg_dice", "mean_iou"):
                    cols[k].append(e[k])
                for c, n in enumerate(names):
                    cols[f"dice/{n}"].append(e["dice"][c])
                    cols[f"iou/{n}"].append(e["iou"][c])
            _write_parquet(tmp / "evals.parquet", cols)
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
                if pid > 0 and _alive(pid) and pid != os.getpid():
                    continue
                shutil.rmtree(p, ignore_errors=True)

    def summary(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.run_dir(run_id) / "summary.json").read_text())

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
        tmp = self.root / f".summary.parquet.tmp-{os.getpid()}"
        pq.write_table(table, tmp)
        os.replace(tmp, self.root / "summary.parquet")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        atomic_write_bytes(self.root / "summary.csv", buf.getvalue().encode())
        return len(rows)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    if "norm" not in row and cfg.get("model") == "tiny":
        row["norm"] = "batch"
    names = s.get("class_names") or []
    for k, v in s.items():
        if k in ("config", "run_id", "label", "class_names"):
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
    union their ``config.json`` run lists. Returns ``(added, skipped)``."""
    d = ResultsStore(dst)
    d.root.mkdir(parents=True, exist_ok=True)
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
