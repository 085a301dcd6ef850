"""The study's five published figures, redrawn from the faithful preset's runs with the study's smoothing and axes.

    python tools/study_figures.py --extract results/chlebus2018_faithful   # data/study/curves/*.csv (seed 0)
    python tools/study_figures.py                                          # docs/figures/study_*.png from them

Chlebus (2018) shows five figures in the post (Adam without BN at 5 / 50 / 95 % fg, Adam with BN at 95 % fg, SGD with
BN at 95 % fg), drawn by ``group_plot`` of the study's ``experiments.ipynb``: one column per training loss; on top the
global gradient norm of each monitored loss, smoothed by a centred moving average of 201 steps (``smooth1 = 200``,
edges padded with the first and last values), y from 0 to 4; below each monitored loss smoothed over 11 steps
(``smooth2 = 10``), y from 0 to 1, and the validation accuracy on a second axis from 0.9 to 1.012. This script draws
the same layout, limits and smoothing from the faithful preset's seed 0.

The committed curves (``data/study/curves/<cell>.csv``, one row per 10 steps) hold the mean of each 10-step block of
the per-step losses and gradient norms, so that the data stay small; the smoothing windows are then 21 and 1 blocks
(210 and 10 steps, against the study's 201 and 11). Validation accuracy is at the preset's evaluations (every 250
steps, 64 fixed images, BN in inference mode; the study's code: every 250 steps, 100 images drawn once per run, BN in
inference mode) — see docs/study_deviations.md.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "data" / "study" / "curves"
FIGURES = ROOT / "docs" / "figures"
BLOCK = 10  # steps per committed row
SMOOTH_GRAD, SMOOTH_LOSS = 200, 10  # the study's smooth1, smooth2 (in steps)
TRAIN_LOSSES = {"study_cce_clip": "CCE", "study_dice": "DICE", "study_dicefg": "DICEFG"}  # the study's column order
MONITOR_COLORS = {"study_cce_clip": "tab:blue", "study_dicefg": "tab:orange", "study_dice": "tab:green"}

#: the post's figures: (file stem of the study's PNG, optimizer, lr, norm, fg ratio)
CELLS = (
    ("ADAM-nconv2-batchsize2-batchnormFalse_5fg_run1", "adam", 1e-3, "none", 0.05),
    ("ADAM-nconv2-batchsize2-batchnormFalse_50fg_run1", "adam", 1e-3, "none", 0.5),
    ("ADAM-nconv2-batchsize2-batchnormFalse_95fg_run1", "adam", 1e-3, "none", 0.95),
    ("ADAM-nconv2-batchsize2-batchnormTrue_95fg_run0", "adam", 1e-3, "batch", 0.95),
    ("SGD-nconv2-batchsize2-batchnormTrue_95fg_run0", "sgd", 1e-3, "batch", 0.95),
)
STUDY_URL = "https://gchlebus.github.io/assets/semantic-segmentation-loss-functions/{}.png"
SEED = 0


def cell_name(opt: str, norm: str, fg: float) -> str:
    return f"{opt}_{'bn' if norm == 'batch' else 'nobn'}_fg{int(round(fg * 100))}"


# ------------------------------------------------------------------------------------------------ extraction
def _block_means(values: list[Any], block: int = BLOCK) -> list[float]:
    out = []
    for i in range(0, len(values), block):
        xs = [float(v) for v in values[i:i + block] if v is not None and math.isfinite(float(v))]
        out.append(sum(xs) / len(xs) if xs else math.nan)
    return out


def extract(results: Path, out: Path = CURVES) -> list[Path]:
    """``data/study/curves/<cell>.csv`` for every cell of :data:`CELLS` found in ``results`` (seed 0, SGD without
    momentum): per 10-step block, each training loss's monitored losses and gradient norms, and the validation
    accuracy where an evaluation falls on the block's first step."""
    sys.path.insert(0, str(ROOT / "src"))
    from seglab.results import ResultsStore

    store = ResultsStore(results)
    by_cell: dict[str, dict[str, str]] = {}
    for s in store.summaries():
        c = s["config"]
        if int(c["seed"]) != SEED or s["status"] != "finished" or float(c.get("momentum") or 0.0) != 0.0:
            continue
        norm = c["model_kw"].get("norm") or "none"
        for _, opt, lr, n, fg in CELLS:
            if (c["optimizer"], float(c["lr"]), norm, float(c["task_kw"]["fg_ratio"])) == (opt, lr, n, fg):
                by_cell.setdefault(cell_name(opt, n, fg), {})[c["loss"]] = s["run_id"]
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for name, runs in sorted(by_cell.items()):
        if set(runs) != set(TRAIN_LOSSES):
            continue
        cols: dict[str, list[float]] = {}
        acc: dict[str, dict[int, float]] = {}
        n_rows = 0
        for t, rid in runs.items():
            st, ev = store.steps(rid), store.evals(rid)
            for m in TRAIN_LOSSES:
                cols[f"{t}:loss:{m}"] = _block_means(st[f"loss/{m}"])
                cols[f"{t}:gnorm:{m}"] = _block_means(st[f"gnorm/{m}"])
            n_rows = max(n_rows, len(cols[f"{t}:loss:{t}"]))
            acc[t] = {int(k): float(a) for k, a in zip(ev["step"], ev["accuracy"], strict=True)}
        path = out / f"{name}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["step", *cols, *(f"{t}:accuracy" for t in TRAIN_LOSSES)])
            for i in range(n_rows):
                step = i * BLOCK
                row = [step] + [f"{v[i]:.5g}" if i < len(v) and math.isfinite(v[i]) else "" for v in cols.values()]
                row += [f"{acc[t][step]:.5g}" if step in acc[t] else "" for t in TRAIN_LOSSES]
                w.writerow(row)
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------------ drawing
def study_smooth(y: list[float], smooth: int) -> list[float]:
    """The study's smoothing (``experiments.ipynb``): pad ``smooth / 2`` copies of the first and last values, then a
    moving average of ``smooth + 1`` values (``np.convolve(..., mode='valid')``): same length as ``y``."""
    import numpy as np

    if not smooth:
        return list(y)
    assert smooth % 2 == 0
    pad = smooth // 2
    padded = [y[0]] * pad + list(y) + [y[-1]] * pad
    return list(np.convolve(padded, np.ones(smooth + 1) / (smooth + 1), mode="valid"))


def _blocks(steps: int) -> int:
    """The study's ``smooth`` of ``steps`` steps in 10-step blocks, made even as its code requires (200 -> 20,
    10 -> 0: the block mean itself is the 10-step average)."""
    b = int(round(steps / BLOCK))
    return b - (b % 2)


def load_curves(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) if r[k] != "" else math.nan for r in rows] for k in rows[0]}


def draw(path: Path, out: Path, title: str) -> Path:
    """One figure in the study's layout from one curves CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = load_curves(path)
    steps = d["step"]
    fig, axes = plt.subplots(2, len(TRAIN_LOSSES), figsize=(13, 7.5), sharex=True)
    for j, (t, label) in enumerate(TRAIN_LOSSES.items()):
        top, bottom = axes[0, j], axes[1, j]
        for m, mlabel in TRAIN_LOSSES.items():
            gx = [(s, v) for s, v in zip(steps, d[f"{t}:gnorm:{m}"], strict=True) if math.isfinite(v)]
            if gx:
                top.plot([s for s, _ in gx], study_smooth([v for _, v in gx], _blocks(SMOOTH_GRAD)),
                         color=MONITOR_COLORS[m], label=f"{mlabel.lower()}_grad")
            lx = [(s, v) for s, v in zip(steps, d[f"{t}:loss:{m}"], strict=True) if math.isfinite(v)]
            bottom.plot([s for s, _ in lx], study_smooth([v for _, v in lx], _blocks(SMOOTH_LOSS)),
                        color=MONITOR_COLORS[m], label=mlabel.lower())
        top.set_ylim(0, 4)
        top.set_title(label)
        top.grid(axis="y")
        bottom.set_ylim(0, 1)
        bottom.set_xlabel("iteration")
        ax2 = bottom.twinx()
        ax2.grid()
        ev = [(s, a) for s, a in zip(steps, d[f"{t}:accuracy"], strict=True) if math.isfinite(a)]
        ax2.plot([s for s, _ in ev], [a for _, a in ev], "k", label="accuracy")
        ax2.set_ylim(0.9, 1.012)
        if j == 0:
            top.set_ylabel("global gradient norm")
            bottom.set_ylabel("loss")
        else:
            top.yaxis.set_ticklabels([])
            bottom.yaxis.set_ticklabels([])
        if j == len(TRAIN_LOSSES) - 1:
            ax2.set_ylabel("accuracy")
            bottom.legend(loc="center right")
            ax2.legend(loc="upper right")
        else:
            ax2.yaxis.set_ticklabels([])
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    return out


def draw_all(curves: Path = CURVES, figures: Path = FIGURES) -> list[Path]:
    written = []
    for _stem, opt, _lr, norm, fg in CELLS:
        name = cell_name(opt, norm, fg)
        src = curves / f"{name}.csv"
        if not src.exists():
            continue
        title = (f"{int(round(fg * 100))}% Foreground (faithful preset, seed {SEED})\n{opt.upper()} lr 1e-3, "
                 f"Batch Norm: {norm == 'batch'}")
        written.append(draw(src, figures / f"study_{name}.png", title))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extract", metavar="RESULTS", help="rebuild data/study/curves/*.csv from a results folder")
    a = ap.parse_args(argv)
    if a.extract:
        src = Path(a.extract)
        if not (src / "config.json").exists():
            print(f"error: --extract: {str(src)!r} is not a seglab results folder", file=sys.stderr)
            return 2
        for p in extract(src):
            print(f"curves -> {p}")
    for p in draw_all():
        print(f"figure -> {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
