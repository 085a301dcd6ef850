"""PNG figures: the study's layout (one column per training loss; gradient norms on top, all losses below,
smoothed), validation Dice per class over steps, heat-map summary grids and gradient norm vs foreground."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from seglab.losses.registry import display_label
from seglab.results import ResultsStore

from .data import _fmt, figure_slug, figure_title

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]


#: the longest loss label drawn on an axis, a title or a legend entry; longer specs get a short label (L1, L2, ...)
#: and a key below the figure that gives each in full
MAX_LABEL = 18


class LossLabels:
    """Short labels of loss specs for figures: :func:`display_label` when it is at most :data:`MAX_LABEL`
    characters, else ``L1``, ``L2``, ... in first-seen order; :meth:`key` is the legend that spells those out.

    >>> lab = LossLabels(["study_dice", "0.5*dice[batch=true,smooth=1e-07] + ce[label_smoothing=0.1]"])
    >>> lab("study_dice"), lab("0.5*dice[batch=true,smooth=1e-07] + ce[label_smoothing=0.1]")
    ('DICE', 'L1')
    """

    def __init__(self, specs: Any = ()) -> None:
        self.short: dict[str, str] = {}
        self.long: list[tuple[str, str]] = []
        for sp in specs:
            self(sp)

    def __call__(self, spec: str) -> str:
        if spec not in self.short:
            d = display_label(spec)
            if len(d) <= MAX_LABEL:
                self.short[spec] = d
            else:
                lab = f"L{len(self.long) + 1}"
                self.short[spec] = lab
                self.long.append((lab, d))
        return _t(self.short[spec])

    def key(self) -> str:
        """``"L1 = <spec>"`` lines of the shortened specs ('' when none was shortened)."""
        return "\n".join(f"{lab} = {_t(d)}" for lab, d in self.long)

    def add_key(self, fig: Any) -> None:
        """Write :meth:`key` below ``fig`` (saved with ``bbox_inches="tight"`` it is kept)."""
        if self.long:
            fig.text(0.01, -0.01, self.key(), ha="left", va="top", fontsize=7, family="monospace")


def _t(text: object) -> str:
    """User text (loss specs, class and model names) for a figure: shown as written, ``$`` is not mathtext."""
    return str(text).replace("$", r"\$")


class _Figures:
    """``matplotlib.pyplot.subplots`` without pyplot: figures are plain ``matplotlib.figure.Figure`` objects (freed
    by :func:`_save`), so rendering a report neither switches the caller's matplotlib backend nor registers figures
    in pyplot's global state."""

    @staticmethod
    def subplots(*args: Any, figsize: Any = None, **kw: Any):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kw)


def _plt() -> _Figures:
    from seglab._extras import require

    require("matplotlib", "report figures")
    return _Figures()


def _save(fig: Any, lab: LossLabels, path: Path, dpi: int = 90) -> Path:
    """Add the loss-label key below ``fig``, save it to ``path`` (PNG, cropped to its content) and free it."""
    lab.add_key(fig)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    fig.clear()
    return path


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


def _mean_evals(store: ResultsStore, run_ids: list[str], cols: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validation columns ``cols`` (e.g. ``dice/<class>``) per evaluation, mean over seeds (NaN-padded: runs
    may have stopped early); steps of the longest run."""
    ev = [store.evals(r) for r in run_ids]
    L = max(len(e["step"]) for e in ev)
    longest = max(ev, key=lambda e: len(e["step"]))
    out = {}
    for c in cols:
        mat = np.full((len(ev), L), np.nan)
        for i, e in enumerate(ev):
            if c in e:
                v = np.asarray([np.nan if x is None else x for x in e[c]], dtype=float)
                mat[i, : v.size] = v
        with np.errstate(all="ignore"):
            out[c] = np.nanmean(mat, axis=0) if len(ev) > 1 else mat[0]
    return np.asarray(longest["step"]), out


def plot_series(ax, x: np.ndarray, y: np.ndarray, *, smooth_frac: float = 0.02, **kw: Any) -> bool:
    """Plot the finite points of ``y`` against ``x``, smoothed over ``smooth_frac`` of them and thinned to at
    most ~600 points. Sparse series (gradient norms recorded every k-th step, or only at step 0 when
    ``grad_norm_every`` > steps) are plotted from their recorded points, with markers when there are few, so a
    panel is never empty when data exist. Returns whether anything was drawn.

    Example::

        >>> import matplotlib.pyplot as plt, numpy as np
        >>> y = np.full(100, np.nan); y[0] = 2.0          # recorded at step 0 only
        >>> fig, ax = plt.subplots(); plot_series(ax, np.arange(100), y)
        True
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y) & np.isfinite(x)
    if not ok.any():
        return False
    xs, ys = x[ok], y[ok]
    ys = smooth(ys, max(1, int(len(ys) * smooth_frac)))
    stride = max(1, len(xs) // 600)
    if len(xs) < 40:
        kw.setdefault("marker", "o")
        kw.setdefault("ms", 3)
    ax.plot(xs[::stride], ys[::stride], **kw)
    return True


def no_data(ax, what: str) -> None:
    """Say in the panel itself that nothing was recorded (instead of an empty frame)."""
    ax.text(0.5, 0.5, what, ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes, wrap=True)


def _order(by_loss: dict[str, list[str]], loss_order: list[str] | None) -> list[str]:
    return [n for n in (loss_order or []) if n in by_loss] + [n for n in by_loss if n not in (loss_order or [])]


def study_figure(store: ResultsStore, key: tuple, by_loss: dict[str, list[str]], out: Path,
                 loss_order: list[str] | None = None) -> Path:
    """One figure in the study's layout for one configuration group ``key`` (see :data:`FIGURE_KEYS`): one
    column per training loss; top: gradient norm of every monitored loss (log scale), bottom: every monitored
    loss, smoothed, mean over seeds. (Validation accuracy is not drawn: on an imbalanced task it sits at the
    majority rate; the validation Dice per class is in :func:`dice_figure`.)"""
    plt = _plt()
    losses = _order(by_loss, loss_order)
    first = store.steps(by_loss[losses[0]][0])
    monitors = [c[len("loss/"):] for c in first if c.startswith("loss/")]
    lab = LossLabels([*losses, *monitors])
    ncol = len(losses)
    fig, axes = plt.subplots(2, ncol, figsize=(3.4 * ncol, 6.2), squeeze=False, sharex=True)
    for j, loss in enumerate(losses):
        rids = by_loss[loss]
        cols = [f"gnorm/{m}" for m in monitors] + [f"loss/{m}" for m in monitors]
        steps, curves = _mean_curves(store, rids, cols)
        ax_g, ax_l = axes[0, j], axes[1, j]
        drew_g = False
        for i, m in enumerate(monitors):
            col = _COLORS[i % len(_COLORS)]
            g = curves[f"gnorm/{m}"]
            g = np.where(g > 0, g, np.nan)  # log scale
            drew_g |= plot_series(ax_g, steps, g, color=col, lw=1.1, label=lab(m))
            plot_series(ax_l, steps, curves[f"loss/{m}"], color=col, lw=1.1, label=lab(m))
        if drew_g:
            ax_g.set_yscale("log")
        else:
            no_data(ax_g, "no gradient norm recorded\n(grad_norm_every = 0)")
        ax_g.set_title(f"trained with {lab(loss)}" + (f"  (n={len(rids)})" if len(rids) > 1 else ""), fontsize=10)
        ax_g.grid(alpha=0.3)
        ax_l.grid(alpha=0.3)
        ax_l.set_xlabel("step")
        if j == 0:
            ax_g.set_ylabel("gradient norm (log)")
            ax_l.set_ylabel("loss")
    h, names = axes[1, 0].get_legend_handles_labels()
    fig.legend(h, names, loc="lower center", ncol=max(1, len(names)), fontsize=8, frameon=False)
    fig.suptitle(_t(figure_title(key)) + "  — smoothed, mean over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, lab, out / f"{figure_slug(key)}.png")


def dice_figure(store: ResultsStore, key: tuple, by_loss: dict[str, list[str]], out: Path,
                loss_order: list[str] | None = None) -> Path | None:
    """Validation Dice over training steps for one configuration group: one panel per class (its name where
    the task gives one) and one for the mean over classes; one line per training loss, mean over seeds.
    None when the runs recorded no per-class Dice."""
    plt = _plt()
    losses = _order(by_loss, loss_order)
    ev0 = store.evals(by_loss[losses[0]][0])
    classes = [c[len("dice/"):] for c in ev0 if c.startswith("dice/")]
    if not classes:
        return None
    panels = classes + ["mean"]
    lab = LossLabels(losses)
    ncol = len(panels) if len(panels) <= 5 else 4
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.7 * nrow + 0.6), squeeze=False, sharex=True, sharey=True)
    for j, loss in enumerate(losses):
        cols = [f"dice/{c}" for c in classes] + ["mean_dice"]
        steps, curves = _mean_evals(store, by_loss[loss], cols)
        for p, col in enumerate(cols):
            ax = axes[p // ncol, p % ncol]
            plot_series(ax, steps, curves[col], smooth_frac=0, color=_COLORS[j % len(_COLORS)], lw=1.3,
                        label=lab(loss) + (f" (n={len(by_loss[loss])})" if len(by_loss[loss]) > 1 else ""))
    for p, name in enumerate(panels):
        ax = axes[p // ncol, p % ncol]
        ax.set_title("mean over classes" if name == "mean" else f"class {_t(name)}", fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        if not ax.lines:
            no_data(ax, "no validation Dice recorded")
        if p + ncol >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("step")
            ax.tick_params(labelbottom=True)
        if p % ncol == 0:
            ax.set_ylabel("validation Dice")
    for p in range(len(panels), nrow * ncol):
        axes[p // ncol, p % ncol].set_visible(False)
    h, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, names, loc="lower center", ncol=max(1, min(len(names), 5)), fontsize=8, frameon=False)
    fig.suptitle(_t(figure_title(key)) + "  — validation Dice per class, mean over seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if nrow == 1 else 0.05, 1, 0.94))
    return _save(fig, lab, out / f"{figure_slug(key)}_dice_curves.png")


def examples_figure(store: ResultsStore, key: tuple, by_loss: dict[str, list[str]], out: Path,
                    loss_order: list[str] | None = None) -> Path | None:
    """For each training loss of a configuration group (one row each; its first seed that saved examples): the
    best and the worst validation image by per-image foreground Dice, each as image / ground truth / prediction
    (class colours over the image; void pixels grey). None when no run saved examples
    (``val_examples.pt``, written by ``seglab train --out``)."""
    from seglab.train.examples import load

    rows = []
    lab = LossLabels()
    for loss in _order(by_loss, loss_order):
        for rid in by_loss[loss]:
            ex = load(store.run_dir(rid))
            if ex is not None and len(ex["index"]):
                rows.append((loss, ex))
                break
    if not rows:
        return None
    plt = _plt()
    from matplotlib.colors import ListedColormap

    ncls = max(int(max(ex["target"].max(), ex["pred"].max())) for _, ex in rows) + 1
    cmap = ListedColormap([_COLORS[c % len(_COLORS)] for c in range(max(1, ncls))])
    fig, axes = plt.subplots(len(rows), 6, figsize=(10.5, 1.9 * len(rows) + 0.5), squeeze=False)
    for i, (loss, ex) in enumerate(rows):
        for j, (which, e) in enumerate((("best", 0), ("worst", len(ex["index"]) - 1))):
            img = ex["image"][e].numpy()
            void = ex["void"][e].numpy()
            for c, (name, m) in enumerate((("image", None), ("truth", ex["target"][e]), ("prediction", ex["pred"][e]))):
                ax = axes[i, 3 * j + c]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                if m is not None:
                    m = m.numpy()
                    ax.imshow(np.ma.masked_where((m == 0) | void, m), cmap=cmap, vmin=0, vmax=max(1, ncls - 1),
                              alpha=0.55, interpolation="nearest")
                    if void.any():
                        ax.imshow(np.ma.masked_where(~void, void), cmap=ListedColormap(["#999999"]), alpha=0.8,
                                  interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                title = f"{which} #{int(ex['index'][e])}, Dice {float(ex['dice'][e]):.2f}" if c == 0 else name
                ax.set_title(title, fontsize=7)
        axes[i, 0].set_ylabel(lab(loss), fontsize=8)
    fig.suptitle(_t(figure_title(key)) + "  — best and worst validation images (per-image foreground Dice)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, lab, out / f"{figure_slug(key)}_examples.png")


#: heat-map metrics and their labels
GRID_METRICS = {"final_fg_dice": "foreground Dice", "final_mean_dice": "mean Dice (all classes)",
                "final_min_dice": "worst-class Dice (lowest class of each run)"}


def summary_grid(agg: list[dict[str, Any]], out: Path, metric: str = "final_fg_dice") -> Path:
    """Heat map: rows = data/model configurations, columns = training loss, one panel per optimizer setting;
    colour = ``metric`` (final validation, mean over seeds; see :data:`GRID_METRICS`), text = value and
    converged/total."""
    plt = _plt()
    label = GRID_METRICS.get(metric, metric.replace("_", " "))
    opt_key = lambda a: (a["optimizer"], a["lr"], a["momentum"])  # noqa: E731
    row_key = lambda a: (_fmt(a["task"]), a["fg_ratio"] if a["fg_ratio"] is not None else -1, _fmt(a["model"]), _fmt(a["norm"]))  # noqa: E731
    opts = sorted({opt_key(a) for a in agg}, key=lambda o: (o[0], o[1], o[2]))
    rows = sorted({row_key(a) for a in agg})
    losses = []
    for a in agg:
        if a["loss"] not in losses:
            losses.append(a["loss"])
    lab = LossLabels(losses)
    n = len(opts)
    fig, axes = plt.subplots(1, n, figsize=(1.0 + 1.05 * len(losses) * n + 1.8, 0.9 + 0.42 * len(rows)), squeeze=False)
    cell = {(opt_key(a), row_key(a), a["loss"]): a for a in agg}
    im = None
    for k, o in enumerate(opts):
        ax = axes[0, k]
        M = np.full((len(rows), len(losses)), np.nan)
        for i, r in enumerate(rows):
            for j, loss in enumerate(losses):
                got = cell.get((o, r, loss))
                if got is None:
                    continue
                v = got.get(metric, math.nan)
                M[i, j] = v
                txt = "—" if math.isnan(v) else f"{v:.2f}"
                txt += f"\n{got['converged']}/{got['n']}" if got.get("verdict", True) else f"\nn={got['n']}"
                if got["diverged"]:
                    txt += f" ({got['diverged']}✗)"
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if (not math.isnan(M[i, j]) and M[i, j] < 0.5) else "black")
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(losses)), [lab(n) for n in losses], rotation=45, ha="right", fontsize=8)
        ylabels = [f"{t} fg{100 * fg:g}% {m} {('BN' if nm == 'batch' else 'norm=' + nm)}" if fg >= 0 else f"{t} {m} norm={nm}"
                   for t, fg, m, nm in rows]
        ax.set_yticks(range(len(rows)), [_t(y) for y in ylabels] if k == 0 else [""] * len(rows), fontsize=8)
        ax.set_title(_opt_title(*o), fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=axes[0, :].tolist(), fraction=0.02, pad=0.01, label=label)
    fig.suptitle(f"final {label} (mean over seeds) and converged/runs", fontsize=10, y=1.0 + 0.25 / max(1, len(rows)))
    return _save(fig, lab, out / f"summary_{metric}.png", dpi=100)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else _fmt(v)


def _opt_title(optimizer: Any, lr: Any, momentum: Any) -> str:
    """``adam lr=0.001`` (``sgd lr=0.01 mom=0.9``); a value a run did not record (None) is written ``none``."""
    return f"{_fmt(optimizer)} lr={_num(lr)}" + (f" mom={_num(momentum)}" if optimizer == "sgd" else "")


def _finite_pos(x: Any) -> bool:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0


def gradnorm_figure(agg: list[dict[str, Any]], out: Path) -> Path | None:
    """Mean gradient norm of each monitored loss vs foreground ratio (per norm/optimizer, pooled losses)."""
    plt = _plt()
    pts = [a for a in agg if a.get("fg_ratio") is not None]
    if not pts:
        return None
    mons = sorted({k[len("mean_gnorm/"):] for a in pts for k in a if k.startswith("mean_gnorm/")})
    if not any(_finite_pos(a.get(f"mean_gnorm/{m}")) for a in pts for m in mons):
        return None  # no gradient norm recorded (grad_norm_every = 0)
    settings = sorted({(_fmt(a["norm"]), a["optimizer"], a["lr"], a["momentum"]) for a in pts})
    lab = LossLabels(mons)
    fig, axes = plt.subplots(1, len(settings), figsize=(3.3 * len(settings), 3.2), squeeze=False, sharey=True)
    for k, st in enumerate(settings):
        ax = axes[0, k]
        sel = [a for a in pts if (_fmt(a["norm"]), a["optimizer"], a["lr"], a["momentum"]) == st]
        fgs = sorted({a["fg_ratio"] for a in sel})
        for i, m in enumerate(mons):
            ys = []
            for fg in fgs:
                v = [float(a[f"mean_gnorm/{m}"]) for a in sel if a["fg_ratio"] == fg
                     and _finite_pos(a.get(f"mean_gnorm/{m}"))]
                ys.append(float(np.exp(np.mean(np.log(v)))) if v else np.nan)
            plot_series(ax, np.array([100 * f for f in fgs]), np.array(ys), smooth_frac=0, marker="o",
                        color=_COLORS[i % len(_COLORS)], label=lab(m))
        if ax.lines:
            ax.set_yscale("log")
        else:
            no_data(ax, "no gradient norm recorded")
        ax.set_xlabel("foreground %")
        ax.set_title(f"norm={st[0]}, {st[1]} lr={st[2]:g}" + (f" m={st[3]:g}" if st[1] == "sgd" else ""), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean gradient norm\n(geo-mean over training losses/seeds)")
    if axes[0, -1].lines:
        axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, lab, out / "gradnorm_vs_fg.png")
