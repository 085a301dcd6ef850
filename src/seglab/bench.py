"""``seglab bench``: forward+backward time and peak extra memory of the losses, against ``F.cross_entropy``.

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

Every argument is checked before any work: a bad one prints one line on stderr naming the option
(``error: --rounds must be an integer >= 1, got 0``) and exits 2, like ``seglab train`` and ``seglab sweep``.
Each loss's spread over rounds (min, quartiles, IQR, max of the time and of the ratio to the baseline) is in the
table and the JSON; the 1-minute load average at start and end is recorded, with a warning when it exceeds the
number of cores (the figures are then unreliable).

``--repeat R`` runs the whole benchmark R times, each in a fresh process, and reports the spread of every
loss's ratio to ``F.cross_entropy`` across the runs (the per-run medians, their min, quartiles, IQR and max):
one median from one process cannot carry a claim when the baseline itself varies between processes.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path
from collections.abc import Callable

import torch
import torch.nn.functional as F

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes", default=DEFAULT_SHAPES,
                   help=f"comma-separated logits shapes NxCxD1[xD2[xD3]] (default {DEFAULT_SHAPES})")
    p.add_argument("--against", default="", help="peer libraries to include: monai,smp (skipped if not installed)")
    p.add_argument("--losses", default=",".join(SEGLAB_LOSSES),
                   help="seglab loss specs to time (default: " + ",".join(SEGLAB_LOSSES) + "); 'structure' adds "
                        + ",".join(STRUCTURE_LOSSES) + " (target maps computed inside the timed call), 'all' both")
    # integers and choices are checked in run() (one line, exit 2) rather than by argparse (usage + error)
    p.add_argument("--rounds", default=7, help="timed rounds, >= 1 (median and spread reported; default 7)")
    p.add_argument("--warmup", default=2, help="untimed rounds first, >= 0 (default 2)")
    p.add_argument("--dtype", default="float32", help=f"one of {', '.join(DTYPES)} (default float32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N for one GPU)")
    p.add_argument("--threads", default=None, help="torch threads, >= 1 (default: torch's default)")
    p.add_argument("--validate", action="store_true", help="keep seglab's input validation on while timing")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--out", default="bench_losses.json", help="JSON results file (default: bench_losses.json in the current folder, so the committed benchmarks/ files are never overwritten by accident; '' to skip)")
    p.add_argument("--repeat", default=1,
                   help="whole runs, >= 1, each in a fresh process; with R > 1 the spread of every loss's ratio to "
                        "F.cross_entropy across the runs is reported (min, quartiles, IQR, max; default 1)")


class BenchArgError(ValueError):
    """A bad ``seglab bench`` argument; the message names the option."""


def _int_arg(value, flag: str, minimum: int) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise BenchArgError(f"{flag} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise BenchArgError(f"{flag} must be an integer >= {minimum}, got {v}")
    return v


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


def available_memory(device) -> int | None:
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


def check_memory(shapes, device, dtype) -> None:
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


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def _split_names(text: str) -> list[str]:
    from seglab.losses.registry import split_specs

    out = []
    for n in (n.strip() for n in split_specs(str(text))):
        if n:
            out += GROUPS.get(n.lower(), [n])  # a group name (structure, all) or one loss spec
    return out


def check_args(args: argparse.Namespace) -> dict:
    """Check every argument before any work; the parsed values, or BenchArgError naming the option."""
    v: dict = {}
    v["shapes"] = parse_shapes(args.shapes)
    v["rounds"] = _int_arg(args.rounds, "--rounds", 1)
    v["warmup"] = _int_arg(args.warmup, "--warmup", 0)
    v["threads"] = None if args.threads is None else _int_arg(args.threads, "--threads", 1)
    v["repeat"] = _int_arg(getattr(args, "repeat", 1), "--repeat", 1)
    if args.dtype not in DTYPES:
        raise BenchArgError(f"--dtype {args.dtype!r}: unsupported; use one of {', '.join(DTYPES)}")
    v["dtype"] = getattr(torch, args.dtype)
    from seglab.train.cli import check_device

    check_device(args.device)  # ValueError naming --device
    v["device"] = torch.device(args.device)
    check_memory(v["shapes"], v["device"], v["dtype"])
    against = [a.strip().lower() for a in str(args.against).split(",") if a.strip()]
    unknown = [a for a in against if a not in PEER_LIBS]
    if unknown:
        raise BenchArgError(f"--against: unknown library {', '.join(map(repr, unknown))} (known: {', '.join(PEER_LIBS)})")
    v["against"] = list(dict.fromkeys(against))
    try:
        names = _split_names(args.losses)
    except ValueError as e:
        raise BenchArgError(f"--losses: {e}") from None
    if not names:
        raise BenchArgError(f"--losses: no loss given (e.g. {','.join(SEGLAB_LOSSES[:3])})")
    from seglab.losses import get_loss

    for n in names:
        try:
            get_loss(n, mode="multiclass")
        except (TypeError, ValueError, KeyError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise BenchArgError(f"--losses: {msg}") from None
    v["names"] = list(dict.fromkeys(names))
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise BenchArgError(f"--out {str(out)!r} is a folder; give a JSON file path")
        from seglab.results import ResultsError, check_out_dir

        try:
            check_out_dir(out.parent, "--out", create=False)
        except ResultsError as e:
            raise BenchArgError(f"--out {str(out)!r}: its folder cannot be written ({e})") from None
    return v


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


# ---------------------------------------------------------------- peers
def _import_smp_losses():
    import importlib.util

    if "segmentation_models_pytorch.losses" in sys.modules:
        return sys.modules["segmentation_models_pytorch.losses"]
    spec = importlib.util.find_spec("segmentation_models_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("segmentation_models_pytorch is not installed")
    if "segmentation_models_pytorch" not in sys.modules:
        stub = types.ModuleType("segmentation_models_pytorch")  # skip the package __init__ (timm, torchvision)
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["segmentation_models_pytorch"] = stub
    import segmentation_models_pytorch.losses as smp_losses

    return smp_losses


_STRUCTURE_PEERS = {"monai MCCLoss": "mcc", "monai BoundaryLoss": "boundary", "monai HausdorffDTLoss": "hausdorff",
                    "monai SoftclDiceLoss": "cldice"}


def peer_losses(against: list[str], C: int, names: list[str] = ()) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> fn(logits, index_target); and library -> reason for libraries that could not be loaded."""
    out: dict[str, Callable] = {}
    missing: dict[str, str] = {}
    if "monai" in against:
        try:
            import monai.losses as ml

            kw = dict(softmax=True, to_onehot_y=True)
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
            for k, m in mons.items():
                out[k] = (lambda m: lambda x, t: m(x, t.unsqueeze(1)))(m)
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
            for k, m in smps.items():
                out[k] = (lambda m: lambda x, t: m(x, t))(m)
        except Exception as exc:
            missing["smp"] = f"{type(exc).__name__}: {exc}"
    for lib in against:
        if lib not in ("monai", "smp"):
            missing[lib] = "unknown library (known: monai, smp)"
    return out, missing


def seglab_losses(names: list[str]) -> dict[str, Callable]:
    from seglab.losses import get_loss

    out = {}
    for n in names:
        try:
            out[n] = get_loss(n, mode="multiclass")
        except TypeError:
            out[n] = get_loss(n, "multiclass")
    return out


# ---------------------------------------------------------------- measurement
_LIBC = None


def _cpu_memory_setup() -> bool:
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
        # CPU: only in a process where the bench command set the allocator up (_cpu_memory_setup)
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
        _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = self._status()["VmRSS"]
        fn()
        return float(self._status()["VmHWM"] - base)


def _sync(device):
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


def _tensors(shape, device, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    return x, t


def memory_shape(shape, fns: dict[str, Callable], device, dtype, res: dict) -> None:
    """Peak extra memory of one fwd+bwd of each loss (after all timing: the allocator setting slows allocation)."""
    x, t = _tensors(shape, device, dtype)
    mem = _Mem(device)
    nbytes = x.numel() * x.element_size()
    allf = {"F.cross_entropy": lambda a, b: F.cross_entropy(a, b), **fns}
    for k, fn in allf.items():
        fn(x, t).backward()  # warm
        x.grad = None
        v = mem.peak_extra(lambda: fn(x, t).backward())
        x.grad = None
        res[k]["peak_extra_x_logits"] = None if v is None else v / nbytes


def bench_shape(shape, fns: dict[str, Callable], args, device, dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)

    def step(fn):
        def run():
            x.grad = None
            fn(x, t).backward()
        return run

    runs = {"F.cross_entropy": step(lambda a, b: F.cross_entropy(a, b))}
    runs.update({k: step(f) for k, f in fns.items()})
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.warmup + args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            _sync(device)
            t0 = time.perf_counter()
            runs[k]()
            _sync(device)
            if r >= args.warmup:
                times[k].append(time.perf_counter() - t0)
    base = times["F.cross_entropy"]
    res = {}
    for k in names:
        ratios = [a / b for a, b in zip(times[k], base)]
        ms = spread([1e3 * v for v in times[k]])
        rs = spread(ratios)
        res[k] = {"ms": 1e3 * statistics.median(times[k]), "ratio_ce": statistics.median(ratios),
                  "times_ms": [round(1e3 * v, 3) for v in times[k]],
                  **{f"{s}_ms": ms[s] for s in ("min", "q1", "median", "q3", "iqr", "max")},
                  **{f"ratio_ce_{s}": rs[s] for s in ("min", "q1", "q3", "iqr", "max")}}
    x.grad = None
    return res


def fused_backend(device: torch.device, dtype: torch.dtype) -> tuple[str, str | None]:
    """The backend the multiclass losses run on (``cpu_ext``, ``eager`` or ``reference``) and, on CPU, why the
    C++ kernels are unavailable (None when they are available)."""
    from seglab.kernels import dispatch

    why = None
    if device.type == "cpu":
        from seglab.kernels import cpu_ext

        if not cpu_ext.available():
            why = cpu_ext.unavailable_reason()
    if not dispatch.fused_enabled():
        return "reference", why
    mod = dispatch.backend_for(torch.empty(0, device=device, dtype=dtype), "mc")
    return ("reference" if mod is None else mod.__name__.rsplit(".", 1)[-1]), why


# ---------------------------------------------------------------- repeated runs
def child_command(args, v: dict, out: Path, memory: bool) -> list[str]:
    """The command line of one whole run (``--repeat 1``, a fresh process) with the checked settings."""
    cmd = [sys.executable, "-m", "seglab", "bench", "--shapes", ",".join("x".join(map(str, s)) for s in v["shapes"]),
           "--losses", ",".join(v["names"]), "--rounds", str(v["rounds"]), "--warmup", str(v["warmup"]),
           "--dtype", args.dtype, "--device", str(args.device), "--repeat", "1", "--out", str(out)]
    if v["against"]:
        cmd += ["--against", ",".join(v["against"])]
    if v["threads"]:
        cmd += ["--threads", str(v["threads"])]
    if args.validate:
        cmd.append("--validate")
    if not memory:
        cmd.append("--no-memory")
    return cmd


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


def run_repeated(args, v: dict, console, err) -> int:
    """``--repeat R`` (R > 1): R whole runs one after another, each a fresh ``seglab bench`` process (new
    allocator state, thread pool and kernel caches: what varied between runs), then the spread of the ratios
    across runs. Only the first run measures memory."""
    import subprocess
    import tempfile

    from rich.markup import escape

    from seglab.results import TextTable

    R = v["repeat"]
    cores = os.cpu_count() or 1
    load_start = load_average()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as tmp:
        for i in range(R):
            out = Path(tmp) / f"run{i}.json"
            console.print(f"run {i + 1}/{R} (a fresh process) ...")
            env = dict(os.environ, COLUMNS="200")
            r = subprocess.run(child_command(args, v, out, memory=(i == 0 and not args.no_memory)),
                               capture_output=True, text=True, env=env)
            for line in r.stderr.splitlines():  # the load warnings are summed up once below
                if line.startswith("warning:") and "load average" not in line:
                    err.print(escape(f"{line} (run {i + 1})"), soft_wrap=True, highlight=False)
            if r.returncode != 0 or not out.exists():
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                err.print(f"[red]error:[/red] bench run {i + 1}/{R} failed (exit code {r.returncode}): {escape(last)}",
                          soft_wrap=True, highlight=False)
                return 1
            runs.append(json.loads(out.read_text()))
    load_end = load_average()
    first = runs[0]
    results = {"machine": first["machine"], "settings": dict(first["settings"], repeat=R),
               "load": {"cores": cores, "load_1min_start": load_start, "load_1min_end": load_end,
                        "overloaded": any(r["load"]["overloaded"] for r in runs)
                        or any(x is not None and x > cores for x in (load_start, load_end))},
               "shapes": combine_runs(runs), "runs": runs}
    for label, res in results["shapes"].items():
        heads = ("loss", "ms (median of runs)", "× F.cross_entropy", "× CE min", "× CE max", "× CE IQR", "× CE per run")
        table = TextTable(f"{label} ({args.dtype}, fwd+bwd): {R} whole runs x {v['rounds']} rounds; per run the "
                          "median over rounds, then the spread across runs",
                          [(h, "left" if h in ("loss", "× CE per run") else "right", h == "loss") for h in heads])
        for k, e in res.items():
            table.add_row([k, f"{e['ms']:.1f}", f"{e['ratio_ce']:.2f}", f"{e['runs_ratio_ce_min']:.2f}",
                           f"{e['runs_ratio_ce_max']:.2f}", f"{e['runs_ratio_ce_iqr']:.2f}",
                           " ".join(f"{x:.2f}" for x in e["runs_ratio_ce"])])
        console.print(table)
    if results["load"]["overloaded"]:
        err.print(f"[yellow]warning:[/yellow] the 1-minute load average exceeded the {cores} cores during the runs: "
                  "the timings are unreliable", soft_wrap=True, highlight=False)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        console.print(escape(f"results written to {out}"), soft_wrap=True)
    return 0


def run(args) -> int:
    from seglab._extras import require

    require("rich", "seglab bench")
    from rich.console import Console

    from seglab import _checks
    from seglab.results import TextTable

    from rich.markup import escape

    err = Console(stderr=True)
    try:
        v = check_args(args)
    except ValueError as e:  # BenchArgError, and check_device's ValueError naming --device
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
        return 2
    args.rounds, args.warmup, args.threads = v["rounds"], v["warmup"], v["threads"]
    console = Console(width=max(120, Console().width))
    if v["repeat"] > 1:
        return run_repeated(args, v, console, err)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype, shapes, against, names = v["device"], v["dtype"], v["shapes"], v["against"], v["names"]
    if device.type == "cpu" and not args.no_memory:
        _cpu_memory_setup()  # the command's own process only (see _cpu_memory_setup), before any tensor
    from seglab.kernels import dispatch

    cores = os.cpu_count() or 1
    load_start = load_average()

    def warn_load(when: str, load: float | None) -> None:
        if load is not None and load > cores:
            err.print(f"[yellow]warning:[/yellow] 1-minute load average {load:.2f} exceeds the {cores} cores at "
                      f"{when}: the timings are unreliable", soft_wrap=True, highlight=False)

    warn_load("start", load_start)

    backend, why = fused_backend(device, dtype)
    results = {"machine": machine(), "settings": {"rounds": args.rounds, "warmup": args.warmup, "dtype": args.dtype,
                                                   "device": str(device), "validate": bool(args.validate),
                                                   "fused": dispatch.fused_enabled(), "fused_backend": backend,
                                                   "cpp_unavailable_reason": why},
               "load": {"cores": cores, "load_1min_start": load_start, "load_1min_end": None,
                        "overloaded": load_start is not None and load_start > cores},
               "shapes": {}}
    console.print(f"[bold]seglab bench[/] — {results['machine']['cpu_model']}, {results['machine']['cpu_cores']} cores, "
                  f"torch {torch.__version__}, {device}, {args.dtype}, fused={dispatch.fused_enabled()} ({backend})")
    if why is not None:
        console.print(f"[yellow]C++ kernels unavailable[/]: {escape(why)}", highlight=False)
    with _checks.validation(bool(args.validate)):
        for shape in shapes:
            C = shape[1]
            fns = seglab_losses(names)
            peers, missing = peer_losses(against, C, names)
            for lib, why in missing.items():
                console.print(f"[yellow]{escape(lib)} skipped[/]: {escape(why)}", soft_wrap=True)
            fns.update(peers)
            label = "x".join(map(str, shape))
            console.print(escape(f"timing {label} ({len(fns) + 1} losses x {args.rounds} rounds) ..."))
            try:
                res = bench_shape(shape, fns, args, device, dtype)
            except (RuntimeError, MemoryError) as e:
                if not _is_oom(e):
                    raise
                err.print(f"[red]error:[/red] --shapes {label}: out of memory on {device} while timing; give smaller "
                          "shapes", soft_wrap=True, highlight=False)
                return 2
            for a, b in PAIRS:
                if a in res and b in res:
                    res[a].setdefault("speedup_vs", {})[b] = statistics.median(
                        [tb / ta for ta, tb in zip(res[a]["times_ms"], res[b]["times_ms"])])
            results["shapes"][label] = res
        if not args.no_memory:
            console.print("peak memory ...")
            for shape in shapes:
                fns = seglab_losses(names)
                fns.update(peer_losses(against, shape[1], names)[0])
                try:
                    memory_shape(shape, fns, device, dtype, results["shapes"]["x".join(map(str, shape))])
                except (RuntimeError, MemoryError) as e:
                    if not _is_oom(e):
                        raise
                    err.print(f"[red]error:[/red] --shapes {'x'.join(map(str, shape))}: out of memory on {device} "
                              "while measuring peak memory; give smaller shapes or --no-memory", soft_wrap=True,
                              highlight=False)
                    return 2
        for label, res in results["shapes"].items():
            heads = ("loss", "ms", "min ms", "IQR ms", "× F.cross_entropy", "× CE IQR", "peak extra mem (× logits)",
                     "seglab speed-up vs peer")
            table = TextTable(f"{label} ({args.dtype}, fwd+bwd, {args.rounds} interleaved rounds: median, min, IQR)",
                              [(h, "left" if h in ("loss", "seglab speed-up vs peer") else "right", h == "loss")
                               for h in heads])
            for k, r in res.items():
                mem = r.get("peak_extra_x_logits")
                sp = ", ".join(f"{v:.1f}× vs {p}" for p, v in r.get("speedup_vs", {}).items())
                table.add_row([k, f"{r['ms']:.1f}", f"{r['min_ms']:.1f}", f"{r['iqr_ms']:.1f}", f"{r['ratio_ce']:.2f}",
                               f"{r['ratio_ce_iqr']:.2f}", "-" if mem is None else f"{mem:.2f}", sp])
            console.print(table)
    load_end = load_average()
    results["load"]["load_1min_end"] = load_end
    results["load"]["overloaded"] = bool(results["load"]["overloaded"] or (load_end is not None and load_end > cores))
    warn_load("end", load_end)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        console.print(escape(f"results written to {out}"), soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="seglab bench")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
