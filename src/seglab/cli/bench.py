"""time losses (fwd+bwd) and peak memory against F.cross_entropy, MONAI, smp

``seglab bench``: the measurements are :mod:`seglab.bench`'s; this module checks the options, runs them and prints.

Every argument is checked before any work: a bad one prints one line on stderr naming the option
(``error: --rounds must be an integer >= 1, got 0``) and exits 2, like ``seglab train`` and ``seglab sweep``.

Loaded machine (:func:`seglab.bench.untrusted_reason`): when the 1-minute load average exceeds the number of CPU
cores at the start or at the end of the timing, the raw timings are printed but every ratio (× F.cross_entropy,
speed-up vs a peer) is replaced by ``not trusted: load X on N cores``, and the command exits 1 (docs/cli.md: the
result asked for is incomplete). ``--force`` prints the ratios anyway, marked untrusted, and exits 0. The JSON
file is written either way, with ``load.trusted`` and ``load.untrusted_reason``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from seglab import _checks
from seglab import bench as B
from seglab._extras import require
from seglab.kernels import dispatch
from seglab.losses import get_loss
from seglab.results import ResultsError, TextTable, check_out_dir

from ._common import check_device


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab bench``; every default shown is the constant :mod:`seglab.bench` uses."""
    p.add_argument("--shapes", default=B.DEFAULT_SHAPES,
                   help=f"comma-separated logits shapes NxCxD1[xD2[xD3]] (default {B.DEFAULT_SHAPES})")
    p.add_argument("--against", default="", help=f"peer libraries to include: {','.join(B.PEER_LIBS)} (skipped if not installed)")
    p.add_argument("--losses", default=",".join(B.SEGLAB_LOSSES),
                   help="seglab loss specs to time (default: " + ",".join(B.SEGLAB_LOSSES) + "); 'structure' adds "
                        + ",".join(B.STRUCTURE_LOSSES) + " (target maps computed inside the timed call), 'all' both")
    # integers and choices are checked in run() (one line, exit 2) rather than by argparse (usage + error)
    p.add_argument("--rounds", default=7, help="timed rounds, >= 1 (median and spread reported; default %(default)s)")
    p.add_argument("--warmup", default=2, help="untimed rounds first, >= 0 (default %(default)s)")
    p.add_argument("--dtype", default=B.DTYPES[0], help=f"one of {', '.join(B.DTYPES)} (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N for one GPU)")
    p.add_argument("--threads", default=None, help="torch threads, >= 1 (default: torch's default)")
    p.add_argument("--validate", action="store_true", help="keep seglab's input validation on while timing")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--out", default="bench_losses.json", help="JSON results file (default: %(default)s in the current "
                   "folder, so the committed benchmarks/ files are never overwritten by accident; '' to skip)")
    p.add_argument("--repeat", default=1,
                   help="whole runs, >= 1, each in a fresh process; with R > 1 the spread of every loss's ratio to "
                        "F.cross_entropy across the runs is reported (min, quartiles, IQR, max; default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help=f"print the ratios even on a loaded machine, marked untrusted, and exit 0. Loaded: {B.LOAD_RULE}; "
                        "otherwise the timings are printed, every ratio is replaced by 'not trusted: load X on N cores' "
                        "and the exit status is 1")


def _int_arg(value: Any, flag: str, minimum: int) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise B.BenchArgError(f"{flag} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise B.BenchArgError(f"{flag} must be an integer >= {minimum}, got {v}")
    return v


def _check_losses(text: str) -> list[str]:
    """The loss specs of ``--losses`` (groups expanded, each one built once); BenchArgError naming the option."""
    try:
        names = B.split_names(text)
    except ValueError as e:
        raise B.BenchArgError(f"--losses: {e}") from None
    if not names:
        raise B.BenchArgError(f"--losses: no loss given (e.g. {','.join(B.SEGLAB_LOSSES[:3])})")
    for n in names:
        _check_loss(n)
    return list(dict.fromkeys(names))


def _check_loss(spec: str) -> None:
    """BenchArgError naming ``--losses`` unless ``spec`` builds a multiclass loss."""
    try:
        get_loss(spec, mode="multiclass")
    except (TypeError, ValueError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise B.BenchArgError(f"--losses: {msg}") from None


def _check_out(text: str) -> None:
    out = Path(text)
    if out.is_dir():
        raise B.BenchArgError(f"--out {str(out)!r} is a folder; give a JSON file path")
    try:
        check_out_dir(out.parent, "--out", create=False)
    except ResultsError as e:
        raise B.BenchArgError(f"--out {str(out)!r}: its folder cannot be written ({e})") from None


def check_args(args: argparse.Namespace) -> dict:
    """Check every argument before any work; the parsed values, or BenchArgError (a ValueError) naming the option."""
    v: dict = {"shapes": B.parse_shapes(args.shapes), "rounds": _int_arg(args.rounds, "--rounds", 1),
               "warmup": _int_arg(args.warmup, "--warmup", 0),
               "threads": None if args.threads is None else _int_arg(args.threads, "--threads", 1),
               "repeat": _int_arg(getattr(args, "repeat", 1), "--repeat", 1)}
    if args.dtype not in B.DTYPES:
        raise B.BenchArgError(f"--dtype {args.dtype!r}: unsupported; use one of {', '.join(B.DTYPES)}")
    v["dtype"] = getattr(B.torch, args.dtype)
    check_device(args.device)  # ValueError naming --device
    v["device"] = B.torch.device(args.device)
    B.check_memory(v["shapes"], v["device"], v["dtype"])
    against = [a.strip().lower() for a in str(args.against).split(",") if a.strip()]
    unknown = [a for a in against if a not in B.PEER_LIBS]
    if unknown:
        raise B.BenchArgError(f"--against: unknown library {', '.join(map(repr, unknown))} (known: {', '.join(B.PEER_LIBS)})")
    v["against"] = list(dict.fromkeys(against))
    v["names"] = _check_losses(args.losses)
    if args.out:
        _check_out(args.out)
    return v


def child_command(args: argparse.Namespace, v: dict, out: Path, memory: bool) -> list[str]:
    """The command line of one whole run (``--repeat 1``, a fresh process) with the checked settings. It carries
    ``--force``: the parent judges the load over all runs itself."""
    cmd = [sys.executable, "-m", "seglab", "bench", "--shapes", ",".join("x".join(map(str, s)) for s in v["shapes"]),
           "--losses", ",".join(v["names"]), "--rounds", str(v["rounds"]), "--warmup", str(v["warmup"]),
           "--dtype", args.dtype, "--device", str(args.device), "--repeat", "1", "--out", str(out), "--force"]
    if v["against"]:
        cmd += ["--against", ",".join(v["against"])]
    if v["threads"]:
        cmd += ["--threads", str(v["threads"])]
    if args.validate:
        cmd.append("--validate")
    if not memory:
        cmd.append("--no-memory")
    return cmd


def _trust(results: dict, err: Any, force: bool) -> bool:
    """Set ``results["load"]``'s verdict (:func:`seglab.bench.untrusted_reason`) and say it on stderr; whether
    the ratios are printed."""
    load = results["load"]
    why = B.untrusted_reason(load["load_1min_start"], load["load_1min_end"], load["cores"])
    load["overloaded"] = why is not None
    load["trusted"], load["untrusted_reason"] = why is None, why
    if why is None:
        return True
    if force:
        err.print(f"[yellow]warning:[/yellow] --force: ratios printed although not trusted ({why})", soft_wrap=True,
                  highlight=False)
        return True
    err.print(f"[red]ratios not trusted: {why}[/red]; the timings above are raw; rerun on a quiet machine or pass "
              f"--force (rule: {B.LOAD_RULE})", soft_wrap=True, highlight=False)
    return False


def _write(results: dict, args: argparse.Namespace, console: Any) -> None:
    from rich.markup import escape  # optional extra (rich), checked by run()

    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        console.print(escape(f"results written to {out}"), soft_wrap=True)


def _exit(results: dict, args: argparse.Namespace) -> int:
    """0, or 1 when the ratios were withheld (a loaded machine without ``--force``)."""
    return 0 if results["load"]["trusted"] or args.force else 1


def run_repeated(args: argparse.Namespace, v: dict, console: Any, err: Any) -> int:
    """``--repeat R`` (R > 1): R whole runs one after another, each a fresh ``seglab bench`` process (new
    allocator state, thread pool and kernel caches: what varied between runs), then the spread of the ratios
    across runs. Only the first run measures memory. Loaded: at the start or end of this command or of any run."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    R, cores = v["repeat"], os.cpu_count() or 1
    load_start = B.load_average()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="seglab-bench-") as tmp:
        for i in range(R):
            out = Path(tmp) / f"run{i}.json"
            console.print(f"run {i + 1}/{R} (a fresh process) ...")
            r = subprocess.run(child_command(args, v, out, memory=(i == 0 and not args.no_memory)),
                               capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
            for line in r.stderr.splitlines():  # the load verdict is given once below
                if line.startswith("warning:") and "load" not in line:
                    err.print(escape(f"{line} (run {i + 1})"), soft_wrap=True, highlight=False)
            if r.returncode != 0 or not out.exists():
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                err.print(f"[red]error:[/red] bench run {i + 1}/{R} failed (exit code {r.returncode}): {escape(last)}",
                          soft_wrap=True, highlight=False)
                return 1
            runs.append(json.loads(out.read_text()))
    def worst(*xs: float | None) -> float | None:
        return max((x for x in xs if x is not None), default=None)

    load_end = B.load_average()
    results = {"machine": runs[0]["machine"], "settings": dict(runs[0]["settings"], repeat=R),
               # the worst load at the start of this command or of any run, and at the end of either
               "load": {"cores": cores, "load_1min_start": worst(load_start, *(r["load"]["load_1min_start"] for r in runs)),
                        "load_1min_end": worst(load_end, *(r["load"]["load_1min_end"] for r in runs))},
               "shapes": B.combine_runs(runs), "runs": runs}
    load = results["load"]
    shown = _trust(results, err, args.force)
    heads = ["loss", "ms (median of runs)", "× F.cross_entropy", "× CE min", "× CE max", "× CE IQR", "× CE per run"]
    heads = heads if shown else heads[:2]
    for label, res in results["shapes"].items():
        table = TextTable(f"{label} ({args.dtype}, fwd+bwd): {R} whole runs x {v['rounds']} rounds; per run the "
                          "median over rounds, then the spread across runs" + _mark(load, shown),
                          [(h, "left" if h in ("loss", "× CE per run") else "right", h == "loss") for h in heads])
        for k, e in res.items():
            table.add_row([k, f"{e['ms']:.1f}", f"{e['ratio_ce']:.2f}", f"{e['runs_ratio_ce_min']:.2f}",
                           f"{e['runs_ratio_ce_max']:.2f}", f"{e['runs_ratio_ce_iqr']:.2f}",
                           " ".join(f"{x:.2f}" for x in e["runs_ratio_ce"])][:len(heads)])
        console.print(table)
    _write(results, args, console)
    return _exit(results, args)


def _mark(load: dict, shown: bool) -> str:
    """The table title's mark of untrusted ratios: printed with --force, or left out."""
    if load["trusted"]:
        return ""
    return f" — UNTRUSTED ratios ({load['untrusted_reason']})" if shown else f" — ratios not trusted: {load['untrusted_reason']}"


def _time_shapes(args: argparse.Namespace, v: dict, results: dict, console: Any, err: Any) -> int | None:
    """Time every shape into ``results["shapes"]``; an exit status to end with (out of memory), or None."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    for shape in v["shapes"]:
        fns, missing = _losses(v, shape)
        for lib, why in missing.items():
            console.print(f"[yellow]{escape(lib)} skipped[/]: {escape(why)}", soft_wrap=True)
        label = "x".join(map(str, shape))
        console.print(escape(f"timing {label} ({len(fns) + 1} losses x {v['rounds']} rounds) ..."))
        try:
            res = B.bench_shape(shape, fns, v["rounds"], v["warmup"], v["device"], v["dtype"])
        except (RuntimeError, MemoryError) as e:
            return _out_of_memory(e, err, label, v["device"], "while timing; give smaller shapes")
        B.add_speedups(res)
        results["shapes"][label] = res
    if args.no_memory:
        return None
    console.print("peak memory ...")
    for shape in v["shapes"]:
        label = "x".join(map(str, shape))
        try:
            B.memory_shape(shape, _losses(v, shape)[0], v["device"], v["dtype"], results["shapes"][label])
        except (RuntimeError, MemoryError) as e:
            return _out_of_memory(e, err, label, v["device"],
                                  "while measuring peak memory; give smaller shapes or --no-memory")
    return None


def _losses(v: dict, shape: tuple[int, ...]) -> tuple[dict, dict[str, str]]:
    """The loss functions timed at ``shape``: seglab's and the peers' (fresh modules), and the peers left out (why)."""
    fns = B.seglab_losses(v["names"])
    peers, missing = B.peer_losses(v["against"], shape[1], v["names"])
    fns.update(peers)
    return fns, missing


def _out_of_memory(e: BaseException, err: Any, label: str, device: str, what: str) -> int:
    """Exit status 2 with one line naming the shape when ``e`` is an out-of-memory error; any other error re-raised."""
    if not B.is_oom(e):
        raise e
    err.print(f"[red]error:[/red] --shapes {label}: out of memory on {device} {what}", soft_wrap=True, highlight=False)
    return 2


def _print_tables(results: dict, args: argparse.Namespace, v: dict, console: Any, shown: bool) -> None:
    """One table per shape: the timings, and the ratio columns when ``shown`` (else the title says why not)."""
    heads = ["loss", "ms", "min ms", "IQR ms", "× F.cross_entropy", "× CE IQR", "peak extra mem (× logits)",
             "seglab speed-up vs peer"]
    ratio_heads = {"× F.cross_entropy", "× CE IQR", "seglab speed-up vs peer"}
    heads = [h for h in heads if shown or h not in ratio_heads]
    for label, res in results["shapes"].items():
        table = TextTable(f"{label} ({args.dtype}, fwd+bwd, {v['rounds']} interleaved rounds: median, min, IQR)"
                          + _mark(results["load"], shown),
                          [(h, "left" if h in ("loss", "seglab speed-up vs peer") else "right", h == "loss")
                           for h in heads])
        for k, r in res.items():
            mem = r.get("peak_extra_x_logits")
            cells = {"loss": k, "ms": f"{r['ms']:.1f}", "min ms": f"{r['min_ms']:.1f}", "IQR ms": f"{r['iqr_ms']:.1f}",
                     "× F.cross_entropy": f"{r['ratio_ce']:.2f}", "× CE IQR": f"{r['ratio_ce_iqr']:.2f}",
                     "peak extra mem (× logits)": "-" if mem is None else f"{mem:.2f}",
                     "seglab speed-up vs peer": ", ".join(f"{x:.1f}× vs {p}" for p, x in r.get("speedup_vs", {}).items())}
            table.add_row([cells[h] for h in heads])
        console.print(table)


def _warn_load(err: Any, when: str, load: float | None, cores: int) -> None:
    if load is not None and load > cores:
        err.print(f"[yellow]warning:[/yellow] 1-minute load average {load:.2f} exceeds the {cores} cores at "
                  f"{when}: the timings are unreliable", soft_wrap=True, highlight=False)


def run(args: argparse.Namespace) -> int:
    """``seglab bench``: 0 done, 1 ratios withheld on a loaded machine (or a ``--repeat`` run failed), 2 bad input
    or out of memory (docs/cli.md)."""
    require("rich", "seglab bench")
    from rich.console import Console  # optional extra (rich), checked above
    from rich.markup import escape

    err = Console(stderr=True)
    try:
        v = check_args(args)
    except ValueError as e:  # BenchArgError, and check_device's ValueError naming --device
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
        return 2
    console = Console(width=max(120, Console().width))
    if v["repeat"] > 1:
        return run_repeated(args, v, console, err)
    if v["threads"]:
        B.torch.set_num_threads(v["threads"])
    device, dtype = v["device"], v["dtype"]
    if device.type == "cpu" and not args.no_memory:
        B.cpu_memory_setup()  # the command's own process only (see cpu_memory_setup), before any tensor
    cores = os.cpu_count() or 1
    load_start = B.load_average()  # before fused_backend(), which may compile the C++ kernels
    _warn_load(err, "start", load_start, cores)
    backend, why = B.fused_backend(device, dtype)
    results: dict = {"machine": B.machine(),
                     "settings": {"rounds": v["rounds"], "warmup": v["warmup"], "dtype": args.dtype, "device": str(device),
                                  "validate": bool(args.validate), "fused": dispatch.fused_enabled(),
                                  "fused_backend": backend, "cpp_unavailable_reason": why},
                     "load": {"cores": cores, "load_1min_start": load_start, "load_1min_end": None},
                     "shapes": {}}
    m = results["machine"]
    console.print(f"[bold]seglab bench[/] — {m['cpu_model']}, {m['cpu_cores']} cores, torch {B.torch.__version__}, "
                  f"{device}, {args.dtype}, fused={dispatch.fused_enabled()} ({backend})")
    if why is not None:
        console.print(f"[yellow]C++ kernels unavailable[/]: {escape(why)}", highlight=False)
    with _checks.validation(bool(args.validate)):
        rc = _time_shapes(args, v, results, console, err)
    if rc is not None:
        return rc
    results["load"]["load_1min_end"] = B.load_average()
    _warn_load(err, "end", results["load"]["load_1min_end"], cores)
    shown = _trust(results, err, args.force)
    _print_tables(results, args, v, console, shown)
    _write(results, args, console)
    return _exit(results, args)
