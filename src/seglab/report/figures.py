"""PNG figures: the study's layout (one column per training loss; gradient norms on top, all losses and the
validation accuracy below, smoothed) and a heat-map summary grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from seglab.losses.registry import display_label
from seglab.results import ResultsStore

from .data import _fmt, figure_slug, figure_title

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]


def _plt():
    from seglab._extras import require

    matplotlib = require("matplotlib", "report figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Centred-free trailing moving average ignoring NaN (window clipped at the start)."""
    y = np.asarray(y, dtype=float)
    if window <= 1 or y.size == 0:
        return y
    ok = np.isfinite(y)
    c = np.cumsum(np.where(ok, y, 0.0))
    n = np.cumsum(ok.astype(float))
    c = np.concatenate([[0.0], c])
    n = np.concatenate([[0.0], n])
    idx = np.arange(1, y.size + 1)
    lo = np.maximum(0, idx - window)
    cnt = n[idx] - n[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (c[idx] - c[lo]) / np.maximum(cnt, 1), np.nan)


def _mean_curves(store: ResultsStore, run_ids: list[str], cols: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-step means over seeds (runs may have stopped early: shorter runs are padded with NaN)."""
    data = [store.steps(r) for r in run_ids]
    L = max(len(d["step"]) for d in data)
    steps = np.arange(L)
    out = {}
    for c in cols:
        mat = np.full((len(data), L), np.nan)
        for i, d in enumerate(data):
            if c in d:
                v = np.asarray(d[c], dtype=float)
                mat[i, : v.size] = v
        with np.errstate(all="ignore"):
            out[c] = np.nanmean(mat, axis=0) if len(data) > 1 else mat[0]
    return steps, out


def _mean_evals(store: ResultsStore, run_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ev = [store.evals(r) for r in run_ids]
    L = max(len(e["step"]) for e in ev)
    longest = max(ev, key=lambda e: len(e["step"]))
    mat = np.full((len(ev), L), np.nan)
    for i, e in enumerate(ev):
        mat[i, : len(e["accuracy"])] = e["accuracy"]
    with np.errstate(all="ignore"):
        return np.asarray(longest["step"]), np.nanmean(mat, axis=0)


def study_figure(store: ResultsStore, key: tuple, by_loss: dict[str, list[str]], out: Path,
                 loss_order: list[str] | None = None) -> Path:
    """One figure in the study's layout for one configuration group ``key`` (see :data:`FIGURE_KEYS`)."""
    plt = _plt()
    losses = [l for l in (loss_order or []) if l in by_loss] + [l for l in by_loss if l not in (loss_order or [])]
    first = store.steps(by_loss[losses[0]][0])
    monitors = [c[len("loss/"):] for c in first if c.startswith("loss/")]
    ncol = len(losses)
    fig, axes = plt.subplots(2, ncol, figsize=(3.4 * ncol, 6.2), squeeze=False, sharex=True)
    for j, loss in enumerate(losses):
        rids = by_loss[loss]
        cols = [f"gnorm/{m}" for m in monitors] + [f"loss/{m}" for m in monitors]
        steps, curves = _mean_curves(store, rids, cols)
        window = max(1, len(steps) // 50)
        stride = max(1, len(steps) // 600)
        ax_g, ax_l = axes[0, j], axes[1, j]
        for i, m in enumerate(monitors):
            col = _COLORS[i % len(_COLORS)]
            g = smooth(curves[f"gnorm/{m}"], window)[::stride]
            ax_g.plot(steps[::stride], g, color=col, lw=1.1, label=display_label(m))
            lv = smooth(curves[f"loss/{m}"], window)[::stride]
            ax_l.plot(steps[::stride], lv, color=col, lw=1.1, label=display_label(m))
        es, acc = _mean_evals(store, rids)
        ax_l.plot(es, acc, color="black", lw=1.6, ls="--", marker=".", ms=3, label="val accuracy")
        ax_g.set_yscale("log")
        ax_g.set_title(f"trained with {display_label(loss)}" + (f"  (n={len(rids)})" if len(rids) > 1 else ""), fontsize=10)
        ax_g.grid(alpha=0.3)
        ax_l.grid(alpha=0.3)
        ax_l.set_ylim(-0.02, 1.05)
        ax_l.set_xlabel("step")
        if j == 0:
            ax_g.set_ylabel("gradient norm (log)")
            ax_l.set_ylabel("loss / accuracy")
    h, lab = axes[1, 0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=len(lab), fontsize=8, frameon=False)
    fig.suptitle(figure_title(key) + "  — smoothed, mean over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    path = out / f"{figure_slug(key)}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summary_grid(agg: list[dict[str, Any]], out: Path, metric: str = "final_fg_dice") -> Path:
    """Heat map: rows = data/model configurations, columns = training loss, one panel per optimizer setting;
    colour = mean final foreground Dice, text = value and converged/total."""
    plt = _plt()
    opt_key = lambda a: (a["optimizer"], a["lr"], a["momentum"])  # noqa: E731
    row_key = lambda a: (_fmt(a["task"]), a["fg_ratio"] if a["fg_ratio"] is not None else -1, _fmt(a["model"]), _fmt(a["norm"]))  # noqa: E731
    opts = sorted({opt_key(a) for a in agg}, key=lambda o: (o[0], o[1], o[2]))
    rows = sorted({row_key(a) for a in agg})
    losses = []
    for a in agg:
        if a["loss"] not in losses:
            losses.append(a["loss"])
    n = len(opts)
    fig, axes = plt.subplots(1, n, figsize=(1.0 + 1.05 * len(losses) * n + 1.8, 0.9 + 0.42 * len(rows)), squeeze=False)
    cell = {(opt_key(a), row_key(a), a["loss"]): a for a in agg}
    im = None
    for k, o in enumerate(opts):
        ax = axes[0, k]
        M = np.full((len(rows), len(losses)), np.nan)
        for i, r in enumerate(rows):
            for j, l in enumerate(losses):
                a = cell.get((o, r, l))
                if a is None:
                    continue
                M[i, j] = a[metric]
                txt = "—" if math.isnan(a[metric]) else f"{a[metric]:.2f}"
                txt += f"\n{a['converged']}/{a['n']}"
                if a["diverged"]:
                    txt += f" ({a['diverged']}✗)"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if (not math.isnan(M[i, j]) and M[i, j] < 0.5) else "black")
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(losses)), [display_label(l) for l in losses], rotation=45, ha="right", fontsize=8)
        ylabels = [f"{t} fg{100 * fg:g}% {m} {('BN' if nm == 'batch' else 'norm=' + nm)}" if fg >= 0 else f"{t} {m} norm={nm}"
                   for t, fg, m, nm in rows]
        ax.set_yticks(range(len(rows)), ylabels if k == 0 else [""] * len(rows), fontsize=8)
        title = f"{o[0]} lr={o[1]:g}" + (f" mom={o[2]:g}" if o[0] == "sgd" else "")
        ax.set_title(title, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.02, pad=0.01, label=metric.replace("_", " "))
    fig.suptitle(f"{metric.replace('_', ' ')} (mean over seeds) and converged/runs", fontsize=10, y=1.0 + 0.25 / max(1, len(rows)))
    path = out / f"summary_{metric}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def gradnorm_figure(agg: list[dict[str, Any]], out: Path) -> Path | None:
    """Mean gradient norm of each monitored loss vs foreground ratio (per norm/optimizer, pooled losses)."""
    plt = _plt()
    pts = [a for a in agg if a.get("fg_ratio") is not None]
    if not pts:
        return None
    mons = sorted({k[len("mean_gnorm/"):] for a in pts for k in a if k.startswith("mean_gnorm/")})
    settings = sorted({(_fmt(a["norm"]), a["optimizer"], a["lr"], a["momentum"]) for a in pts})
    fig, axes = plt.subplots(1, len(settings), figsize=(3.3 * len(settings), 3.2), squeeze=False, sharey=True)
    for k, st in enumerate(settings):
        ax = axes[0, k]
        sel = [a for a in pts if (_fmt(a["norm"]), a["optimizer"], a["lr"], a["momentum"]) == st]
        fgs = sorted({a["fg_ratio"] for a in sel})
        for i, m in enumerate(mons):
            ys = []
            for fg in fgs:
                v = [a.get(f"mean_gnorm/{m}") for a in sel if a["fg_ratio"] == fg]
                v = [x for x in v if x is not None and not math.isnan(x)]
                ys.append(float(np.exp(np.mean(np.log(v)))) if v else np.nan)
            ax.plot([100 * f for f in fgs], ys, marker="o", color=_COLORS[i % len(_COLORS)], label=m)
        ax.set_yscale("log")
        ax.set_xlabel("foreground %")
        ax.set_title(f"norm={st[0]}, {st[1]} lr={st[2]:g}" + (f" m={st[3]:g}" if st[1] == "sgd" else ""), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean gradient norm\n(geo-mean over training losses/seeds)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "gradnorm_vs_fg.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
