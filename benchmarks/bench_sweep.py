"""Size sweep (issue 23): seglab's losses against ``F.cross_entropy`` (or BCE-with-logits), MONAI and smp, by size.

Forward + backward, CPU. One *run* is one fresh process that times every loss at every shape in interleaved rounds
(each round times a block of calls of every function in turn, the baseline first), so that machine noise hits all
functions of a round alike; the run's ratio for a function is the median over rounds of its per-round ratio to the
baseline's block. Several runs (``--runs``, at least 5 for the committed numbers) give the median and the
interquartile range (IQR) of the runs' ratios per point.

Trust: the 1-min load average is read before and after each run. A run during which it exceeded ``--max-load``
(default: the number of cores) is *loaded*: its times are kept in the JSON, its ratios are not, and a point with no
unloaded run gets no ratio ("refused", and the summary says why). The JSON names the CPU model
(:func:`seglab.provenance.cpu_model`), the thread count and every load reading.

Besides the sweep (default torch threads), each run measures on 1 thread at 2x2x32x32 and 4x3x64x64: seglab dice+ce
against MONAI's DiceCELoss, and the per-call overhead, i.e. seglab dice+ce fwd+bwd minus its two kernel calls alone
(``cpu_ext.mc_forward`` + ``mc_backward_split`` through ctypes, the kernel's own cost) and seglab ``ce`` minus
``F.cross_entropy``.

    timeout 900 .venv/bin/python benchmarks/bench_sweep.py --runs 5 --out benchmarks/bench_sweep.json \\
        --png benchmarks/bench_sweep.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

SHAPES_MC = ["2x2x32x32", "4x3x64x64", "8x4x128x128", "16x4x256x256", "8x21x256x256", "2x3x64x64x64",
             "2x4x96x96x96", "2x4x128x128x128"]
SHAPES_ML = ["8x3x128x128"]
LOSSES = ["ce", "dice+ce", "tversky", "jaccard", "gdice", "focal", "dice+focal", "lovasz"]
SMALL = ["2x2x32x32", "4x3x64x64"]
BLOCK_S = 0.05  # each timed block lasts about this long (at least one call)


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split("x"))


def _quartiles(v: list[float]) -> tuple[float, float, float]:
    s = sorted(v)
    if len(s) == 1:
        return s[0], s[0], s[0]
    q = statistics.quantiles(s, n=4, method="inclusive")
    return q[0], q[1], q[2]


def _functions(shape: tuple[int, ...], multilabel: bool) -> dict[str, Callable[[], None]]:
    """Name -> one forward+backward call; the first entry is the baseline."""
    import torch
    import torch.nn.functional as F

    import seglab

    n, c = shape[:2]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).requires_grad_()
    mode = "multilabel" if multilabel else "multiclass"
    if multilabel:
        t = (torch.rand(*shape, generator=g) > 0.7).float()
        fns = {"F.binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(x, t).backward()}
    else:
        t = torch.randint(0, c, (n, *shape[2:]), generator=g)
        fns = {"F.cross_entropy": lambda: F.cross_entropy(x, t).backward()}
    for name in LOSSES:
        loss = seglab.get_loss(name, mode=mode)
        fns[f"seglab {name}"] = lambda loss=loss: loss(x, t).backward()
    try:
        from monai.losses import DiceCELoss

        if multilabel:
            m = DiceCELoss(sigmoid=True)
            fns["monai DiceCELoss"] = lambda: m(x, t).backward()
        else:
            m, t1 = DiceCELoss(to_onehot_y=True, softmax=True), t[:, None]
            fns["monai DiceCELoss"] = lambda: m(x, t1).backward()
    except ImportError:
        pass
    try:
        from seglab.bench import _import_smp_losses  # smp's losses without its package __init__ (timm)

        d = _import_smp_losses().DiceLoss(mode)
        fns["smp DiceLoss"] = lambda: d(x, t).backward()
    except ImportError:
        pass
    return fns


def _interleaved(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each function, one value per round (blocks of calls timed in turn)."""
    calls = {}
    for k, f in fns.items():  # warm-up, and the block size
        f()
        t0 = time.perf_counter()
        f()
        calls[k] = max(1, int(BLOCK_S / max(time.perf_counter() - t0, 1e-7)))
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls[k]):
                f()
            out[k].append((time.perf_counter() - t0) / calls[k])
    return out


def _small(rounds: int) -> dict[str, Any]:
    """1 thread: dice+ce against MONAI, and the per-call overhead (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from monai.losses import DiceCELoss

    import seglab
    from seglab.kernels import cpu_ext, dispatch, ops
    from seglab.kernels.plan import KernelCall

    torch.set_num_threads(1)
    res = {}
    for text in SMALL:
        shape = _shape(text)
        n, c = shape[:2]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(*shape, generator=g).requires_grad_()
        t = torch.randint(0, c, (n, *shape[2:]), generator=g)
        ours, ce, monai = seglab.get_loss("dice+ce", mode="multiclass"), seglab.get_loss("ce", mode="multiclass"), \
            DiceCELoss(to_onehot_y=True, softmax=True)
        t1, tf = t[:, None], t.reshape(n, -1)
        ones = torch.ones(c, dtype=torch.float64)
        cfg = ops.kernel_cfg(KernelCall(x=x, target=tf, valid=None, weight=ones, pos_weight=ones, alpha=ones,
                                        alpha_neg=ones, kind="mc", backend="cpu", ignore_index=None, squared=False,
                                        label_smoothing=0.0, focal=False, gamma=0.0))
        gtp = torch.ones(n, c)

        def kernels() -> None:  # the two ctypes kernel calls of a dice+ce fwd+bwd, nothing else
            cpu_ext.mc_forward(x.detach(), tf, cfg, True)
            cpu_ext.mc_backward_split(x.detach(), tf, cfg, gtp, gtp, [1.0, 0.0, 0.0, 0.0])

        fns = {"monai DiceCELoss": lambda: monai(x, t1).backward(), "seglab dice+ce": lambda: ours(x, t).backward(),
               "F.cross_entropy": lambda: F.cross_entropy(x, t).backward(), "seglab ce": lambda: ce(x, t).backward(),
               "kernels alone": kernels}
        assert dispatch.backend_name(x, "mc") == "cpu"
        times = _interleaved(fns, rounds)
        res[text] = {
            "us_median": {k: statistics.median(v) * 1e6 for k, v in times.items()},
            "dice+ce_over_monai": statistics.median(
                [a / b for a, b in zip(times["seglab dice+ce"], times["monai DiceCELoss"])]),
            "dice+ce_overhead_us": statistics.median(
                [(a - b) * 1e6 for a, b in zip(times["seglab dice+ce"], times["kernels alone"])]),
            "ce_overhead_us": statistics.median(
                [(a - b) * 1e6 for a, b in zip(times["seglab ce"], times["F.cross_entropy"])]),
        }
    return res


def one_run(rounds: int, shapes_mc: list[str], shapes_ml: list[str]) -> dict[str, Any]:
    """One process's measurements (the child of :func:`main`)."""
    import torch

    threads = torch.get_num_threads()
    points = {}
    for text in shapes_mc + shapes_ml:
        fns = _functions(_shape(text), text in shapes_ml)
        base = next(iter(fns))
        times = _interleaved(fns, rounds)
        points[text] = {
            "baseline": base,
            "ms_median": {k: statistics.median(v) * 1e3 for k, v in times.items()},
            "ratio": {k: statistics.median([a / b for a, b in zip(v, times[base])]) for k, v in times.items()
                      if k != base},
        }
    small = _small(rounds)
    return {"threads": threads, "points": points, "small_1thread": small}


def _load() -> float:
    return os.getloadavg()[0]


def summarise(runs: list[dict[str, Any]], max_load: float) -> dict[str, Any]:
    """Per point and function: median and IQR of the unloaded runs' ratios (None and a reason when there is none)."""
    trusted = [r for r in runs if max(r["load_before"], r["load_after"]) <= max_load]
    out: dict[str, Any] = {"trusted_runs": len(trusted), "points": {}, "small_1thread": {}}
    if not runs:
        return out
    for text, p in runs[0]["points"].items():
        row = {}
        for k in p["ratio"]:
            vals = [r["points"][text]["ratio"][k] for r in trusted]
            row[k] = _stat(vals, len(runs), max_load)
        out["points"][text] = {"baseline": p["baseline"], "ratio": row,
                               "ms_median_all_runs": {k: statistics.median(r["points"][text]["ms_median"][k]
                                                                          for r in runs)
                                                      for k in p["ms_median"]}}
    for text in runs[0]["small_1thread"]:
        out["small_1thread"][text] = {
            key: _stat([r["small_1thread"][text][key] for r in trusted], len(runs), max_load)
            for key in ("dice+ce_over_monai", "dice+ce_overhead_us", "ce_overhead_us")}
        out["small_1thread"][text]["us_median_all_runs"] = {
            k: statistics.median(r["small_1thread"][text]["us_median"][k] for r in runs)
            for k in runs[0]["small_1thread"][text]["us_median"]}
    return out


def _stat(vals: list[float], n_runs: int, max_load: float) -> dict[str, Any]:
    if not vals:
        return {"median": None, "refused": f"all {n_runs} runs had a 1-min load average above {max_load:g}"}
    q1, med, q3 = _quartiles(vals)
    return {"median": med, "q1": q1, "q3": q3, "runs": len(vals)}


def loaded_reading(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the loaded runs say, for a figure labelled as such: per run, each function's median time over the
    baseline's (both medians of interleaved rounds), then the median and IQR over all runs, loaded or not."""
    points = {}
    for text, p0 in runs[0]["points"].items():
        base = p0["baseline"]
        row = {}
        for k in p0["ms_median"]:
            if k != base:
                vals = [r["points"][text]["ms_median"][k] / r["points"][text]["ms_median"][base] for r in runs]
                q1, med, q3 = _quartiles(vals)
                row[k] = {"median": med, "q1": q1, "q3": q3, "runs": len(vals)}
        points[text] = {"baseline": base, "ratio": row}
    return {"points": points, "trusted_runs": 0}


def plot(summary: dict[str, Any], meta: dict[str, Any], path: Path, loaded: bool = False) -> None:
    """Ratio to the baseline against the number of logits, one line per function, IQR as error bars
    (``loaded``: the figure of :func:`loaded_reading`, titled as not trusted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    pts = summary["points"]
    names = sorted({k for p in pts.values() for k in p["ratio"]})
    for k in names:
        color = None
        for sigmoid in (False, True):  # softmax shapes as a line; the sigmoid shape (BCE baseline) as lone crosses
            xs, ys, lo, hi = [], [], [], []
            for text, p in pts.items():
                st = p["ratio"].get(k)
                if st is None or st["median"] is None or (p["baseline"] != "F.cross_entropy") != sigmoid:
                    continue
                xs.append(_numel(text))
                ys.append(st["median"])
                lo.append(st["median"] - st["q1"])
                hi.append(st["q3"] - st["median"])
            if xs:
                order = sorted(range(len(xs)), key=xs.__getitem__)
                bars = ax.errorbar([xs[i] for i in order], [ys[i] for i in order],
                                   yerr=[[lo[i] for i in order], [hi[i] for i in order]], capsize=3, color=color,
                                   marker="x" if sigmoid else "o", ls="none" if sigmoid else "-",
                                   label=None if sigmoid else k)
                color = bars.lines[0].get_color()
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("logits per call (N*C*spatial); crosses: multilabel shapes, ratio to BCE-with-logits")
    ax.set_ylabel("time / F.cross_entropy (fwd+bwd, median of runs, IQR bars)")
    title = f"seglab size sweep: {meta['cpu_model']}, {meta['threads']} threads, {summary['trusted_runs']} unloaded runs"
    if loaded:
        title = (f"LOADED runs (1-min load above {meta['cores']} cores in every run): NOT TRUSTED\n"
                 f"{meta['cpu_model']}, {meta['threads']} thread(s), per-run time ratios, median and IQR of "
                 f"{meta['runs']} runs")
    elif summary["trusted_runs"] == 0:
        title += "\nNO RATIOS: every run had a 1-min load average above the cores"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _numel(text: str) -> int:
    n = 1
    for s in _shape(text):
        n *= s
    return n


def table(doc: dict[str, Any]) -> str:
    """A markdown table of a sweep JSON: per shape, each function's ratio (median [q1, q3] of unloaded runs) or,
    where ratios were refused, its median time in ms over all runs."""
    pts = doc["summary"]["points"]
    names = sorted({k for p in pts.values() for k in p["ratio"]})
    lines = ["| shape (baseline ms) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for text, p in pts.items():
        ms = p["ms_median_all_runs"]
        cells = []
        for k in names:
            st = p["ratio"].get(k)
            if st is None:
                cells.append("")
            elif st["median"] is None:
                cells.append(f"({ms[k]:.3g} ms)")
            else:
                cells.append(f"{st['median']:.2f} [{st['q1']:.2f}, {st['q3']:.2f}]")
        lines.append(f"| {text} ({ms[p['baseline']]:.3g} ms) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(runs: list[dict[str, Any]], a: argparse.Namespace, torch_version: str, cpu: str, commit: str | None) -> None:
    """The JSON (and PNG) of the runs so far; a loaded run's ratios are left out (its times are kept)."""
    meta = {"cpu_model": cpu, "cores": os.cpu_count(), "threads": runs[0]["threads"], "torch": torch_version,
            "commit": commit, "runs": len(runs), "runs_asked": a.runs, "rounds": a.rounds, "max_load": a.max_load,
            "loads": [(r["load_before"], r["load_after"]) for r in runs],
            "method": "fwd+bwd; interleaved rounds per process, per-round ratio to the baseline, median over rounds; "
                      "median and IQR over runs (processes) with load <= max_load"}
    summary = summarise(runs, a.max_load)
    if summary["trusted_runs"] == 0:
        print(f"REFUSED: every run had a 1-min load average above {a.max_load:g} (the cores): no ratios written",
              file=sys.stderr)
    kept = json.loads(json.dumps(runs))
    for r in kept:
        if max(r["load_before"], r["load_after"]) > a.max_load:
            for p in r["points"].values():
                p.pop("ratio")
            for sm in r["small_1thread"].values():
                sm.pop("dice+ce_over_monai")
    text = json.dumps({"meta": meta, "summary": summary, "runs": kept}, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    else:
        print(text)
    if a.png:
        plot(summary, meta, Path(a.png))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-load", type=float, default=float(os.cpu_count() or 1),
                    help="1-min load average above which a run's ratios are not used (default: the cores)")
    ap.add_argument("--shapes", default=",".join(SHAPES_MC), help="multiclass shapes, comma-separated")
    ap.add_argument("--ml-shapes", default=",".join(SHAPES_ML), help="multilabel shapes, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the sweep (default: torch's)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--png", default=None)
    ap.add_argument("--table", default=None, metavar="JSON", help="print a markdown table of a sweep JSON and exit")
    ap.add_argument("--plot-loaded", nargs=2, default=None, metavar=("JSON", "PNG"),
                    help="draw the loaded runs' time ratios of a sweep JSON, titled as not trusted, and exit")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.table:
        print(table(json.loads(Path(a.table).read_text())))
        return 0
    if a.plot_loaded:
        doc = json.loads(Path(a.plot_loaded[0]).read_text())
        plot(loaded_reading(doc["runs"]), doc["meta"], Path(a.plot_loaded[1]), loaded=True)
        return 0
    shapes_mc = [s for s in a.shapes.split(",") if s]
    shapes_ml = [s for s in a.ml_shapes.split(",") if s]
    if a.child:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        json.dump(one_run(a.rounds, shapes_mc, shapes_ml), sys.stdout)
        return 0
    import torch

    from seglab.provenance import cpu_model, git_commit

    runs: list[dict[str, Any]] = []
    for i in range(a.runs):  # the files are rewritten after each run: a time-boxed sweep keeps what it measured
        before = _load()
        cmd = [sys.executable, __file__, "--child", "--rounds", str(a.rounds), "--shapes", a.shapes,
               "--ml-shapes", a.ml_shapes] + (["--threads", str(a.threads)] if a.threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        run = json.loads(proc.stdout)
        run.update(load_before=before, load_after=_load())
        runs.append(run)
        flag = "" if max(before, run["load_after"]) <= a.max_load else "  (loaded: ratios not used)"
        print(f"run {i + 1}/{a.runs}: load {before:.2f} -> {run['load_after']:.2f}{flag}", file=sys.stderr)
        write(runs, a, torch.__version__, cpu_model(), git_commit())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
