"""Checkpoints of one training run: the last state (to resume) and the best by validation mean Dice.

Where (``RESULTS`` is the ``--out`` folder of :mod:`seglab.results`)::

    RESULTS/runs/.partial-<run_id>/     while the run trains (hidden: never taken for a finished run)
        checkpoint_last.pt              after every validation, at the end, and when a signal stops the run
        checkpoint_best.pt              the state at the validation with the highest mean Dice so far
    RESULTS/runs/<run_id>/              once the run is written, both files move here beside its records

What a checkpoint holds (a plain ``dict``; tensors, numbers, strings, lists and dicts only, so that
``torch.load(path, weights_only=True)`` reads it)::

    format, seglab_version, run_id, config (RunSpec.to_dict()), step (optimizer steps taken),
    model (state_dict), optimizer (state_dict), rng (torch CPU/CUDA, Python, NumPy generator states),
    records (the per-step columns so far), evals (validations so far), best {step, mean_dice},
    elapsed_s (training time so far), model_norm, status ("running" | "finished" | "diverged")

Resuming from ``checkpoint_last.pt`` at step ``k`` restores every piece of state the loop reads, so the
resumed run takes the same steps as one that was never interrupted (tested bit for bit on CPU).

Files are written atomically (a temporary file, fsync, ``os.replace``): a run killed while writing leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_LAST = "checkpoint_last.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
FORMAT = 1
PARTIAL_PREFIX = ".partial-"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (unreadable, another format, another run); the message names the file."""


def partial_dir(root: str | Path, run_id: str) -> Path:
    """The folder a run's checkpoints live in while it trains: ``root/runs/.partial-<run_id>``."""
    return Path(root) / "runs" / f"{PARTIAL_PREFIX}{run_id}"


def rng_state() -> dict[str, Any]:
    """The global random generators a training step may draw from (torch CPU and CUDA, Python, NumPy), as
    tensors and plain values."""
    import numpy as np

    py = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encode(payload: dict[str, Any]) -> bytes:
    """``torch.save`` of ``payload`` into bytes (serialised once, written to several files)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save(data: bytes, path: str | Path) -> None:
    """Write encoded checkpoint bytes to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    from seglab.results import atomic_write_bytes

    atomic_write_bytes(Path(path), data)


def load(path: str | Path, *, run_id: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Raises :class:`CheckpointError` naming the file when it is unreadable (truncated, not a checkpoint), of
    another format, or (with ``run_id``) of another run.

    Example::

        ckpt = load("results/mine/runs/<run_id>/checkpoint_best.pt")
        model.load_state_dict(ckpt["model"]); ckpt["step"], ckpt["best"]["mean_dice"]
    """
    p = Path(path)
    import warnings

    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warning on a file that is no checkpoint
            warnings.simplefilter("ignore")
            d = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist") from None
    except Exception as e:  # truncated zip, pickle error, unsupported global
        raise CheckpointError(f"checkpoint {str(p)!r} is unreadable: {_load_error(e)}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT or "model" not in d:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a seglab training checkpoint (format {FORMAT})")
    if run_id is not None and d.get("run_id") != run_id:
        raise CheckpointError(f"checkpoint {str(p)!r} belongs to run {d.get('run_id')!r}, not {run_id!r}")
    return d


def _load_error(e: Exception) -> str:
    """What went wrong in ``torch.load``, without torch's advice to reload with ``weights_only=False`` (that runs
    code from the file: a checkpoint that needs it is not one of seglab's, whose files hold plain data only)."""
    import re

    text = str(e).strip()
    if "weights only load failed" not in text.lower():
        return text.splitlines()[0] if text else type(e).__name__
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    why = m.group(1).strip().splitlines()[0] if m else ""
    why = re.sub(r"\s*(Please|Check the|We intend)\b.*$", "", why).strip()
    why = "" if "weights_only" in why else why
    return ("not a seglab checkpoint: it holds something other than tensors and plain values "
            f"(seglab reads checkpoints as data only and never runs code from them){': ' + why if why else ''}")
