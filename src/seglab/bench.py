"""The measurements of ``seglab bench`` (the command: :mod:`seglab.cli.bench`): forward+backward time and peak
extra memory of the losses, against ``F.cross_entropy``.

Every loss runs on the same tensors, interleaved in one process: each round times the baseline
(``F.cross_entropy``, index target) and every loss once, in a rotating order; the ratio of a loss to the
baseline is taken within each round and the median over rounds is reported (robust to other load on the
machine). MONAI / segmentation_models_pytorch losses join with ``--against monai,smp`` when installed
(the optional ``bench`` extra); smp is imported without its package ``__init__`` (which needs timm/torchvision).

Peak extra memory (CPU): glibc is told to serve large blocks with mmap (``mallopt(M_MMAP_THRESHOLD)``),
the process peak RSS is reset (``/proc/self/clear_refs``) and ``VmHWM - VmRSS`` after one fwd+bwd is the
peak of memory allocated beyond what existed before (the logits' gradient included). On CUDA:
``torch.cuda.max_memory_allocated``. Reported as a multiple of the logits' size.

seglab's input validation (on by default in the losses) is switched off while timing, since the baselines
validate nothing; ``--validate`` keeps it.

Each loss's spread over rounds (min, quartiles, IQR, max of the time and of the ratio to the baseline) is in the
table and the JSON; the 1-minute load average at start and end is recorded. A run on a loaded machine
(:func:`untrusted_reason`: the 1-minute load average above the number of cores at start or at end) does not
print its ratios: see ``seglab bench --help`` and docs/cli.md.

``--repeat R`` runs the whole benchmark R times, each in a fresh process, and reports the spread of every
loss's ratio to ``F.cross_entropy`` across the runs (the per-run medians, their min, quartiles, IQR and max):
one median from one process cannot carry a claim when the baseline itself varies between processes.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import gc
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from seglab.kernels import cpu_ext, dispatch
from seglab.losses import get_loss
from seglab.losses.registry import split_specs
from seglab.provenance import cpu_model

DEFAULT_SHAPES = "16x4x256x256,2x4x96x96x96,8x21x256x256"
DTYPES = ("float32", "float64", "bfloat16")
PEER_LIBS = ("monai", "smp")
SEGLAB_LOSSES = ["ce", "dice", "dice+ce", "focal", "dice+focal", "tversky", "jaccard", "gdice", "lovasz", "mcc", "topk_ce"]
#: ``--losses structure``: the structure-aware losses; their target maps (distance transforms, skeletons) are
#: computed on the fly inside the timed call, so their cost is part of the figure
STRUCTURE_LOSSES = ["boundary", "hausdorff", "cldice", "skeleton_recall"]
GROUPS = {"structure": STRUCTURE_LOSSES, "all": SEGLAB_LOSSES + STRUCTURE_LOSSES}
# seglab loss -> (peer name) pairs whose speed-up is reported
PAIRS = [("dice+ce", "monai DiceCELoss"), ("dice+focal", "monai DiceFocalLoss"), ("dice", "monai DiceLoss"),
         ("dice", "smp DiceLoss"), ("lovasz", "smp LovaszLoss"), ("focal", "smp FocalLoss"),
         ("jaccard", "smp JaccardLoss"), ("tversky", "monai TverskyLoss"), ("gdice", "monai GeneralizedDiceLoss"),
         ("mcc", "monai MCCLoss"), ("boundary", "monai BoundaryLoss"), ("hausdorff", "monai HausdorffDTLoss"),
         ("cldice", "monai SoftclDiceLoss")]


class BenchArgError(ValueError):
    """A bad ``seglab bench`` argument; the message names the option."""


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    """``NxCxD1[xD2[xD3]]`` comma list -> shapes; BenchArgError naming ``--shapes`` when malformed."""
    parts = [s.strip() for s in str(text).split(",")]
    if not any(parts):
        raise BenchArgError("--shapes: no shape given; expected e.g. 2x4x64x64 (NxCxD1[xD2[xD3]])")
    shapes = []
    for s in parts:
        if not s:
            raise BenchArgError(f"--shapes {text!r}: empty shape in the comma list")
        try:
            shape = tuple(int(v) for v in s.lower().split("x"))
        except ValueError:
            raise BenchArgError(f"--shapes: cannot read {s!r} as NxCxD1[xD2[xD3]] (integers joined by 'x')") from None
        if not 3 <= len(shape) <= 5:
            raise BenchArgError(f"--shapes: {s!r} has {len(shape)} dimension(s); expected 3 to 5 (NxCxD1[xD2[xD3]])")
        if any(v < 1 for v in shape):
            raise BenchArgError(f"--shapes: {s!r} has a size < 1")
        if shape[1] < 2:
            raise BenchArgError(f"--shapes: {s!r} has C={shape[1]} class(es); multiclass losses need C >= 2")
        shapes.append(shape)
    return shapes


def available_memory(device: torch.device) -> int | None:
    """Bytes that an allocation on ``device`` can use now: MemAvailable (Linux) or the physical memory on the CPU,
    the free memory of the GPU on CUDA; None when unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            try:
                for line in Path("/proc/meminfo").read_text().splitlines():
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
            except OSError:
                pass
            return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, RuntimeError, AttributeError):
        return None
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_memory(shapes: Sequence[tuple[int, ...]], device: torch.device, dtype: torch.dtype) -> None:
    """Raise BenchArgError naming ``--shapes`` when a shape cannot fit: the least a timing round holds at once is
    the float32 logits drawn, their copy in ``dtype`` and its gradient, and the int64 labels (the losses' own
    intermediates come on top). An allocator traceback is never the answer to an impossible shape."""
    free = available_memory(device)
    if free is None:
        return
    item = torch.empty(0, dtype=dtype).element_size()
    for shape in shapes:
        logits = math.prod(shape)
        need = logits * 4 + 2 * logits * item + (logits // shape[1]) * 8
        if need > free:
            label = "x".join(map(str, shape))
            raise BenchArgError(f"--shapes {label}: needs at least {_gib(need)} (logits, their gradient and the "
                                f"labels), more than the {_gib(free)} available on {device}; give smaller shapes")


def is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def split_names(text: str) -> list[str]:
    out = []
    for n in (n.strip() for n in split_specs(str(text))):
        if n:
            out += GROUPS.get(n.lower(), [n])  # a group name (structure, all) or one loss spec
    return out


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of sorted values; works for one value."""
    pos = q * (len(sorted_vals) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def spread(vals: list[float]) -> dict[str, float]:
    """min, q1, median, q3, iqr, max of ``vals`` (at least one value)."""
    s = sorted(vals)
    q1, q3 = _quantile(s, 0.25), _quantile(s, 0.75)
    return {"min": s[0], "q1": q1, "median": statistics.median(s), "q3": q3, "iqr": q3 - q1, "max": s[-1]}


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


#: the rule of :func:`untrusted_reason`, as ``seglab bench --help`` and docs/cli.md state it
LOAD_RULE = ("ratios are trusted only when the 1-minute load average is at most the number of CPU cores both when "
             "the timing starts and when it ends")


def untrusted_reason(load_start: float | None, load_end: float | None, cores: int) -> str | None:
    """Why the ratios of a timing cannot be trusted (:data:`LOAD_RULE`: the 1-minute load average above ``cores``
    at the start or at the end; other processes then took turns with the timed calls, and one slow round of
    either side of a ratio is enough to make it meaningless), or None when they can. An unknown load average
    (None: no ``os.getloadavg``) does not count against the timing."""
    over = [(when, x) for when, x in (("start", load_start), ("end", load_end)) if x is not None and x > cores]
    if not over:
        return None
    worst = max(x for _, x in over)
    return f"load {worst:.2f} on {cores} cores (at {' and '.join(w for w, _ in over)})"


# ---------------------------------------------------------------- peers
def _import_smp_losses() -> types.ModuleType:
    if "segmentation_models_pytorch.losses" in sys.modules:
        return sys.modules["segmentation_models_pytorch.losses"]
    spec = importlib.util.find_spec("segmentation_models_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("segmentation_models_pytorch is not installed")
    if "segmentation_models_pytorch" not in sys.modules:
        stub = types.ModuleType("segmentation_models_pytorch")  # skip the package __init__ (timm, torchvision)
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["segmentation_models_pytorch"] = stub
    import segmentation_models_pytorch.losses as smp_losses  # optional extra (bench)

    return smp_losses


_STRUCTURE_PEERS = {"monai MCCLoss": "mcc", "monai BoundaryLoss": "boundary", "monai HausdorffDTLoss": "hausdorff",
                    "monai SoftclDiceLoss": "cldice"}


def _with_channel_axis(loss: Callable) -> Callable:
    """``loss(x, t)`` with the index target given a channel axis, as MONAI's losses take it."""
    return lambda x, t: loss(x, t.unsqueeze(1))


def peer_losses(against: list[str], C: int, names: Sequence[str] = ()) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> fn(logits, index_target); and library -> reason for libraries that could not be loaded."""
    out: dict[str, Callable] = {}
    missing: dict[str, str] = {}
    if "monai" in against:
        try:
            import monai.losses as ml  # optional extra (bench)

            kw: dict[str, Any] = dict(softmax=True, to_onehot_y=True)
            mons = {
                "monai DiceCELoss": ml.DiceCELoss(**kw),
                "monai DiceFocalLoss": ml.DiceFocalLoss(**kw),
                "monai DiceLoss": ml.DiceLoss(**kw),
                "monai TverskyLoss": ml.TverskyLoss(**kw),
                "monai GeneralizedDiceLoss": ml.GeneralizedDiceLoss(**kw),
                "monai MCCLoss": ml.MCCLoss(**kw),
                "monai BoundaryLoss": ml.BoundaryLoss(**kw),
                "monai HausdorffDTLoss": ml.HausdorffDTLoss(include_background=True, **kw),
                "monai SoftclDiceLoss": ml.SoftclDiceLoss(**kw),
            }
            # structure peers are timed only when their seglab counterpart is (they are slow on large shapes)
            mons = {k: m for k, m in mons.items() if k not in _STRUCTURE_PEERS or _STRUCTURE_PEERS[k] in names}
            out.update({k: _with_channel_axis(m) for k, m in mons.items()})
        except Exception as exc:  # not installed or broken install
            missing["monai"] = f"{type(exc).__name__}: {exc}"
    if "smp" in against:
        try:
            sl = _import_smp_losses()
            smps = {
                "smp DiceLoss": sl.DiceLoss("multiclass"),
                "smp JaccardLoss": sl.JaccardLoss("multiclass"),
                "smp FocalLoss": sl.FocalLoss("multiclass"),
                "smp LovaszLoss": sl.LovaszLoss("multiclass"),
            }
            out.update(smps)  # smp's losses take the index target as it is
        except Exception as exc:
            missing["smp"] = f"{type(exc).__name__}: {exc}"
    for lib in against:
        if lib not in ("monai", "smp"):
            missing[lib] = "unknown library (known: monai, smp)"
    return out, missing


def seglab_losses(names: list[str]) -> dict[str, Callable]:
    """name -> the multiclass seglab loss of that spec."""
    return {n: get_loss(n, mode="multiclass") for n in names}


# ---------------------------------------------------------------- measurement
_LIBC = None


def cpu_memory_setup() -> bool:
    """Serve large blocks with mmap (returned to the OS on free) so that RSS tracks live tensors.

    This changes the process's allocator for good, so only the ``seglab bench`` command calls it (:func:`run`,
    in its own process), never a library function: without it, CPU peak memory is not measured (None). Called
    before any tensor is made: afterwards glibc's dynamic threshold would keep freed blocks in the heap.
    """
    global _LIBC
    if _LIBC is not None:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB, fixed
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _LIBC = libc
        return True
    except Exception:
        return False


class _Mem:
    def __init__(self, device: torch.device):
        self.device = device
        # CPU: only in a process where the bench command set the allocator up (cpu_memory_setup)
        self.ok = device.type == "cuda" or (device.type == "cpu" and _LIBC is not None)

    @staticmethod
    def _status() -> dict[str, int]:
        d = {}
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM")):
                    k, v = line.split(":")
                    d[k] = int(v.split()[0]) * 1024
        return d

    def peak_extra(self, fn: Callable[[], None]) -> float | None:
        if not self.ok:
            return None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - base)
        assert _LIBC is not None  # self.ok on the CPU means cpu_memory_setup() succeeded
        _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = self._status()["VmRSS"]
        fn()
        return float(self._status()["VmHWM"] - base)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine() -> dict:
    info = {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")(),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _tensors(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    return x, t


def _fwd_bwd(fn: Callable, x: torch.Tensor, t: torch.Tensor) -> None:
    fn(x, t).backward()


def memory_shape(shape: tuple[int, ...], fns: dict[str, Callable], device: torch.device, dtype: torch.dtype,
                 res: dict) -> None:
    """Peak extra memory of one fwd+bwd of each loss (after all timing: the allocator setting slows allocation)."""
    x, t = _tensors(shape, device, dtype)
    mem = _Mem(device)
    nbytes = x.numel() * x.element_size()
    allf = {"F.cross_entropy": lambda a, b: F.cross_entropy(a, b), **fns}
    for k, fn in allf.items():
        fn(x, t).backward()  # warm
        x.grad = None
        v = mem.peak_extra(functools.partial(_fwd_bwd, fn, x, t))
        x.grad = None
        res[k]["peak_extra_x_logits"] = None if v is None else v / nbytes


def bench_shape(shape: tuple[int, ...], fns: dict[str, Callable], rounds: int, warmup: int, device: torch.device,
                dtype: torch.dtype) -> dict:
    """Time one fwd+bwd of ``F.cross_entropy`` and of each of ``fns`` on the same tensors of ``shape``: ``warmup``
    untimed rounds, then ``rounds`` timed ones, interleaved in a rotating order. Per loss: the median time, the
    median of the per-round ratios to ``F.cross_entropy`` and their spread (:func:`spread`)."""
    x, t = _tensors(shape, device, dtype)

    def step(fn: Callable) -> Callable[[], None]:
        def run() -> None:
            x.grad = None
            fn(x, t).backward()
        return run

    runs = {"F.cross_entropy": step(lambda a, b: F.cross_entropy(a, b))}
    runs.update({k: step(f) for k, f in fns.items()})
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            _sync(device)
            t0 = time.perf_counter()
            runs[k]()
            _sync(device)
            if r >= warmup:
                times[k].append(time.perf_counter() - t0)
    base = times["F.cross_entropy"]
    res = {}
    for k in names:
        ratios = [a / b for a, b in zip(times[k], base, strict=True)]
        ms = spread([1e3 * v for v in times[k]])
        rs = spread(ratios)
        res[k] = {"ms": 1e3 * statistics.median(times[k]), "ratio_ce": statistics.median(ratios),
                  "times_ms": [round(1e3 * v, 3) for v in times[k]],
                  **{f"{s}_ms": ms[s] for s in ("min", "q1", "median", "q3", "iqr", "max")},
                  **{f"ratio_ce_{s}": rs[s] for s in ("min", "q1", "q3", "iqr", "max")}}
    x.grad = None
    return res


def add_speedups(res: dict) -> None:
    """Add ``speedup_vs`` (peer -> the median over rounds of peer time / seglab time) to each seglab loss of one
    shape's results that has a timed peer in :data:`PAIRS`."""
    for a, b in PAIRS:
        if a in res and b in res:
            res[a].setdefault("speedup_vs", {})[b] = statistics.median(
                [tb / ta for ta, tb in zip(res[a]["times_ms"], res[b]["times_ms"], strict=True)])


def fused_backend(device: torch.device, dtype: torch.dtype) -> tuple[str, str | None]:
    """The backend the multiclass losses run on (``cpu_ext``, ``eager`` or ``reference``) and, on CPU, why the
    C++ kernels are unavailable (None when they are available)."""
    why = None
    if device.type == "cpu" and not cpu_ext.available():
        why = cpu_ext.unavailable_reason()
    if not dispatch.fused_enabled():
        return "reference", why
    mod = dispatch.backend_for(torch.empty(0, device=device, dtype=dtype), "mc")
    return ("reference" if mod is None else mod.__name__.rsplit(".", 1)[-1]), why


# ---------------------------------------------------------------- repeated runs
def combine_runs(runs: list[dict]) -> dict:
    """Per shape and loss, the spread across whole runs of each run's median ratio to ``F.cross_entropy`` (and
    of its median time): ``ratio_ce`` / ``ms`` are the medians over runs, ``runs_ratio_ce`` / ``runs_ms`` the
    per-run values, ``runs_ratio_ce_<s>`` / ``runs_ms_<s>`` their min, q1, median, q3, iqr, max
    (:func:`spread`). The peak memory is the first run's; ``speedup_vs`` is the median over runs."""
    out: dict = {}
    for label in runs[0]["shapes"]:
        out[label] = {}
        for k in runs[0]["shapes"][label]:
            per = [r["shapes"][label][k] for r in runs if k in r["shapes"].get(label, {})]
            ratios, ms = [e["ratio_ce"] for e in per], [e["ms"] for e in per]
            rs, mss = spread(ratios), spread(ms)
            e = {"ms": mss["median"], "ratio_ce": rs["median"], "runs_ratio_ce": ratios, "runs_ms": ms,
                 **{f"runs_ratio_ce_{q}": rs[q] for q in rs}, **{f"runs_ms_{q}": mss[q] for q in mss},
                 "peak_extra_x_logits": per[0].get("peak_extra_x_logits")}
            peers = {p for x in per for p in x.get("speedup_vs", {})}
            if peers:
                e["speedup_vs"] = {p: statistics.median([x["speedup_vs"][p] for x in per if p in x.get("speedup_vs", {})])
                                   for p in sorted(peers)}
            out[label][k] = e
    return out
