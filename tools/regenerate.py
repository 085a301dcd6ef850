"""Regenerate every study number the README and the docs cite, from the committed per-run data (issue 13).

    python tools/regenerate.py             # rewrite the regen blocks of README.md and docs/*.md from data/study/
    python tools/regenerate.py --check     # exit 1 and name every block whose text differs (tests/test_regenerate.py)
    python tools/regenerate.py --extract results/chlebus2018_faithful
                                           # rebuild data/study/chlebus2018_faithful.csv from a results folder
    python tools/regenerate.py --measure-init   # rebuild data/study/init_step0.csv (untrained nets, seconds)

The study data come from sweeps of the same preset (commands in docs/study_deviations.md):
``chlebus2018_faithful.csv`` (full length, 10,001 steps) and ``chlebus2018_faithful_early.csv`` (the same grid
stopped after 301 steps: training never depends on the run length, so these are the first 301 steps of the full
runs, cheap enough for every cell and seed; they hold the early window, steps 100-300).

Besides these: ``chlebus2018_faithful_long.csv`` (SGD lr 1e-3 for 100,001 steps), ``chlebus2018_faithful_early_inverted.csv``
(seed 002: the input 1 - x), ``init_step0.csv``, the committed ``seglab compare --json`` results in ``data/compare/``
(brain tissue, the rare-class task) and ``docs/data/seed001.json`` (examples/seed001_bce_vs_ce.py). The calibration
and per-image-vs-batch pages render their own tables from ``docs/data/`` (their scripts' ``--render``/``--check``,
tested).

A *regen block* is the text between ``<!-- regen:NAME -->`` and ``<!-- /regen:NAME -->`` in a Markdown file;
NAME is a key of :data:`BLOCKS`, whose function renders it from the CSV alone. Everything outside the blocks is
prose, and prose cites no number a block does not hold.

The data (``data/study/<results folder name>.csv``) has one row per run: its configuration, status, final
validation metrics, the per-class Dice, mean Dice at three quarters of training, the run label (below), and
per monitored loss the final value (mean of the last 100 steps), the gradient norm averaged over all steps and
its mean and max over the early window (steps 100-300).

Run labels (``label``), from the validation curve (every 250 steps, 64 images), threshold ``t`` (0.9 by default):

* ``converged``: final mean Dice (both classes) >= t;
* ``collapsed``: not converged and one class is (almost) never predicted: min per-class Dice < 0.05, i.e. the
  network predicts one class everywhere;
* ``slow``: neither, and the mean Dice still rose by >= 0.01 over the last quarter (from step 7,500 to the end);
* ``stuck``: the rest (a partial segmentation that no longer improves).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "study"
FILES = ("README.md", "docs/experiments.md", "docs/study_deviations.md", "docs/brain_tissue.md", "docs/rare_class.md")
FAITHFUL = "chlebus2018_faithful"  # full-length runs (10,001 steps)
EARLY_RUNS = "chlebus2018_faithful_early"  # the same runs' first 301 steps (training does not depend on the length)
LONG = "chlebus2018_faithful_long"  # SGD lr 1e-3, no BN, 50 % fg, 100,001 steps: slow or stuck?
INVERTED = "chlebus2018_faithful_early_inverted"  # Adam, 5 and 95 % fg, input 1 - x, first 301 steps (seed 002)
COMPARE = {"compare-brain": "brain_tissue", "compare-rare": "rare_shapes", "compare-rare-noisy": "rare_shapes_noisy"}  # data/compare/<name>.json

MONITORS = {"study_cce_clip": "cce", "study_dice": "dice", "study_dicefg": "dicefg"}
LABELS = {"study_cce_clip": "CCE", "study_dice": "DICE", "study_dicefg": "DICEFG"}
EARLY = (100, 300)  # the early window, steps inclusive
THRESHOLDS = (0.8, 0.9, 0.95)
COLLAPSE_DICE = 0.05
SLOW_RISE = 0.01
RUN_LABELS = ("converged", "slow", "stuck", "collapsed")

BLOCK_RE = re.compile(r"(<!-- regen:([a-z0-9_\-]+) -->\n)(.*?)(<!-- /regen:\2 -->)", re.S)

sys.path.insert(0, str(ROOT / "src"))


# ---------------------------------------------------------------------------------------------- extraction
def _f(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _window(values: list, lo: int, hi: int) -> list[float]:
    return [x for x in (_f(v) for v in values[lo:hi + 1]) if math.isfinite(x)]


def extract(results: Path, out: Path) -> int:
    """One CSV row per finished run of the results folder ``results``; returns the number of rows."""
    from seglab.results import ResultsStore

    store = ResultsStore(results)
    rows = []
    for s in store.summaries():
        c = s["config"]
        ev = store.evals(s["run_id"])
        st = store.steps(s["run_id"])
        steps = int(c["steps"])
        q3 = 0.75 * steps
        ev_steps = list(ev.get("step", []))
        mdice = list(ev.get("mean_dice", []))
        iq3 = min(range(len(ev_steps)), key=lambda i: abs(ev_steps[i] - q3)) if ev_steps else None
        i10k = min(range(len(ev_steps)), key=lambda i: abs(ev_steps[i] - 10_000)) if ev_steps else None
        dice = s.get("final_dice") or [math.nan, math.nan]
        row: dict[str, Any] = {
            "run_id": s["run_id"], "optimizer": c["optimizer"], "lr": c["lr"],
            "momentum": c["momentum"] if c["optimizer"] == "sgd" else 0.0,
            "norm": c["model_kw"].get("norm") or "none", "fg_ratio": c["task_kw"]["fg_ratio"], "loss": c["loss"],
            "seed": c["seed"], "steps": steps, "status": s["status"], "steps_done": s["steps_done"],
            "final_train_loss": s["final_train_loss"], "final_accuracy": s["final_accuracy"],
            "majority": s["majority"], "final_mean_dice": s["final_mean_dice"], "final_bg_dice": dice[0],
            "final_fg_dice": dice[1], "q3_mean_dice": mdice[iq3] if iq3 is not None else math.nan,
            "q3_step": ev_steps[iq3] if iq3 is not None else "",
            "mean_dice_10k": mdice[i10k] if i10k is not None else math.nan, "converged_0.9": int(bool(s["converged"])),
            "converged_step": s["converged_step"] if s["converged_step"] is not None else "",
            "wall_s": s["wall_s"],
        }
        for m, short in MONITORS.items():
            row[f"final_loss_{short}"] = s.get(f"final_loss/{m}", math.nan)
            g = st.get(f"gnorm/{m}", [])
            w = _window(g, *EARLY)
            allg = [x for x in (_f(v) for v in g) if math.isfinite(x)]
            row[f"gn_mean_{short}"] = statistics.fmean(allg) if allg else math.nan
            row[f"gn_early_mean_{short}"] = statistics.fmean(w) if w else math.nan
            row[f"gn_early_max_{short}"] = max(w) if w else math.nan
        row["label"] = run_label(row)
        rows.append(row)
    rows.sort(key=lambda r: (r["optimizer"], float(r["lr"]), float(r["momentum"]), r["norm"], float(r["fg_ratio"]),
                             r["loss"], int(r["seed"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["run_id"], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return len(rows)


INIT_SEEDS = 20


def measure_init(out: Path) -> int:
    """The network at step 0 (no training), per init and norm, seeds 0-19, built as a run builds it
    (``torch.manual_seed(seed)`` then ``create_model``): on the threshold task's 64 validation images, the share of
    pixels predicted foreground, and whether one class is predicted for every pixel. BN nets use batch statistics
    (training mode), as at the first training step. Writes ``out`` (CSV); returns the number of rows."""
    import torch

    from seglab.data import create_task
    from seglab.models import create_model
    from seglab.studies.chlebus2018 import FAITHFUL_MODEL_KW

    torch.set_num_threads(1)
    x, _ = create_task("threshold", fg_ratio=0.5, size=32).validation()
    settings = {"torch": {"width": 4}, "glorot": dict(FAITHFUL_MODEL_KW)}
    rows = []
    for init, kw in settings.items():
        for norm in ("none", "batch"):
            for seed in range(INIT_SEEDS):
                torch.manual_seed(seed)
                net = create_model("tiny", in_channels=1, out_channels=2, **dict(kw, norm=None if norm == "none" else norm))
                net.train()
                with torch.no_grad():
                    pred = net(x).argmax(1)
                fg = float(pred.float().mean())
                rows.append({"init": init, "norm": norm, "seed": seed, "fg_pred_share": f"{fg:.6g}",
                             "one_class": int(fg in (0.0, 1.0)), "all_foreground": int(fg == 1.0)})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return len(rows)


# ---------------------------------------------------------------------------------------------- the rules
def run_label(r: dict[str, Any], threshold: float = 0.9) -> str:
    """converged / collapsed / slow / stuck (module docstring)."""
    md = _f(r["final_mean_dice"])
    if md >= threshold:
        return "converged"
    if min(_f(r["final_bg_dice"]), _f(r["final_fg_dice"])) < COLLAPSE_DICE:
        return "collapsed"
    if md - _f(r["q3_mean_dice"]) >= SLOW_RISE:
        return "slow"
    return "stuck"


def converged(r: dict[str, Any], rule: str | float) -> bool:
    """Final mean Dice >= a threshold, or ``"accuracy"``: accuracy >= majority + 0.9 (1 - majority) (seglab's
    accuracy rule: 90 % of the way from the majority-class rate to 1)."""
    if rule == "accuracy":
        maj = _f(r["majority"])
        return _f(r["final_accuracy"]) >= maj + 0.9 * (1.0 - maj)
    return _f(r["final_mean_dice"]) >= float(rule)


# ---------------------------------------------------------------------------------------------- data access
Data = dict[str, list[dict[str, str]]]  # dataset name -> its rows


INIT = "init_step0"


def load_all() -> Data:
    return {name: load(name) for name in (FAITHFUL, EARLY_RUNS, LONG, INVERTED, INIT)}


def load_compare(name: str) -> dict[str, Any]:
    """A ``seglab compare --json`` result committed as ``data/compare/<name>.json`` ({} when absent)."""
    import json

    path = ROOT / "data" / "compare" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load(name: str = FAITHFUL) -> list[dict[str, str]]:
    path = DATA / f"{name}.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def opt_name(r: dict[str, str]) -> str:
    if r["optimizer"] == "adam":
        return f"Adam lr {_f(r['lr']):g}"
    mom = _f(r["momentum"])
    return f"SGD lr {_f(r['lr']):g}" + (f" + momentum {mom:g}" if mom else "")


def select(rows: Iterable[dict[str, str]], **kw: Any) -> list[dict[str, str]]:
    out = []
    for r in rows:
        ok = True
        for k, v in kw.items():
            if k == "opt":
                ok = opt_name(r) == v
            elif k == "fg":
                ok = abs(_f(r["fg_ratio"]) - v) < 1e-9
            elif k == "not_loss":
                ok = r["loss"] != v
            else:
                ok = r[k] == v
            if not ok:
                break
        if ok:
            out.append(r)
    return out


def _rate(rows: list[dict[str, str]], rule: str | float = 0.9) -> str:
    from seglab.stats import rate

    if not rows:
        return "not run"
    k = sum(converged(r, rule) for r in rows)
    rt = rate(k, len(rows))
    return f"{k}/{len(rows)} [{rt.low:.2f}, {rt.high:.2f}]"


def _labels(rows: list[dict[str, str]]) -> str:
    c = Counter(run_label(r) for r in rows)
    return " · ".join(f"{c[lab]} {lab}" for lab in RUN_LABELS if c[lab]) or "—"


def _fisher(a: list[dict[str, str]], b: list[dict[str, str]], rule: str | float = 0.9) -> str:
    from seglab.stats import fisher_exact

    if not a or not b:
        return "—"
    ka, kb = sum(converged(r, rule) for r in a), sum(converged(r, rule) for r in b)
    return f"{fisher_exact([[ka, len(a) - ka], [kb, len(b) - kb]]).pvalue:.2g}"


def _seeds(rows: list[dict[str, str]]) -> str:
    """``0–9 (20)``: the seeds of ``rows`` (a range when contiguous) and how many runs."""
    seeds = sorted({int(r["seed"]) for r in rows})
    if not seeds:
        return "—"
    span = f"{seeds[0]}–{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else (
        ", ".join(map(str, seeds)))
    return f"{span} ({len(rows)})"


def _g(x: float, nd: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:.{nd}g}"


OPTS_MAIN = ("Adam lr 0.001", "SGD lr 0.001")
OPTS_ALL = ("Adam lr 0.001", "SGD lr 0.001", "SGD lr 0.1", "SGD lr 0.01 + momentum 0.9")
FGS = (0.05, 0.5, 0.95)


# ---------------------------------------------------------------------------------------------- the blocks
def block_runs(d: Data) -> str:
    lines = []
    for name, what, cmd in ((FAITHFUL, "full length (10,001 steps)", "--study-steps --grad-norm-every 10"),
                            (EARLY_RUNS, "early window (first 301 steps)", "--steps 301"),
                            (INVERTED, "seed 002, inverted input (first 301 steps)", "--steps 301 --fg-ratios 0.05,0.95 "
                             "--optimizers adam --lrs 0.001 --seeds 0,1,2,3,4,5,6,7,8,9 --task-opt invert=true"),
                            (LONG, "10× longer (100,001 steps)", "--steps 100001 --grad-norm-every 10 --optimizers sgd "
                             "--lrs 0.001 --momentums 0 --seeds 0 --fg-ratios 0.5 --norms none")):
        if name in (INVERTED, LONG) and not d[name]:
            continue
        rows = d[name]
        if not rows:
            lines.append(f"* {what}: no per-run data committed (`data/study/{name}.csv`).")
            continue
        by = defaultdict(list)
        for r in rows:
            by[opt_name(r)].append(r)
        parts = []
        for o in sorted(by, key=lambda o: (o not in OPTS_ALL, OPTS_ALL.index(o) if o in OPTS_ALL else 0, o)):
            rs = by[o]
            if rs:
                cells = len({(r["norm"], r["fg_ratio"], r["loss"]) for r in rs})
                seeds = sorted({int(r["seed"]) for r in rs})
                parts.append(f"{o}: {len(rs)} runs in {cells} cells, seeds {seeds[0]}–{seeds[-1]}")
        status = Counter(r["status"] for r in rows)
        st = ", ".join(f"{v} {k}" for k, v in sorted(status.items()))
        extra = ""
        if name == FAITHFUL and any(o not in OPTS_ALL for o in by):
            extra = (" The SGD learning-rate × momentum cells at 50 % fg were added to the same folder by "
                     "`seglab sweep --preset chlebus2018-faithful --study-steps --grad-norm-every 10 --optimizers sgd "
                     "--lrs 0.001,0.01,0.1 --momentums 0,0.9 --seeds 0,1,2 --fg-ratios 0.5`.")
        lines.append(f"* {what}: {len(rows)} runs ({st}) of `seglab sweep --preset chlebus2018-faithful {cmd}`, "
                     f"`data/study/{name}.csv` — " + "; ".join(parts) + "." + extra)
    return "\n".join(lines) + "\n"


def block_verdicts(d: Data) -> str:
    """The README/docs findings table: the study's observations, the faithful preset's counts with 95 %
    Clopper-Pearson intervals, the rule."""
    rows = d[FAITHFUL]
    from seglab.stats import fisher_exact

    if not rows and not d[EARLY_RUNS]:
        return "No per-run data committed yet.\n"
    out = ["| study's observation | seeds (runs) | faithful preset (converged = final mean Dice ≥ 0.9 at the last step; "
           "k/n [exact 95 % CI]; paired differences: mean [95 % t-interval]) | verdict |", "|---|---|---|---|"]

    def add(observation: str, used: list[dict[str, str]], text: str, verdict: str) -> None:
        out.append(f"| {observation} | {_seeds(used)} | {text} | {verdict} |")

    sgd = select(rows, opt="SGD lr 0.001")
    s_none, s_bn = select(sgd, norm="none"), select(sgd, norm="batch")
    if sgd:
        ks = sum(converged(r, 0.9) for r in sgd)
        verdict = "agrees" if ks == 0 else ("mostly agrees" if ks / len(sgd) < 0.25 else "does not hold")
        add("SGD (lr 1e-3) does not converge", sgd, f"no BN {_rate(s_none)}, BN {_rate(s_bn)}; labels: {_labels(sgd)}",
            verdict)
    lv = _long_verdict(d)
    if lv:
        add("(slow or stuck?) SGD lr 1e-3 run 10× longer", d[LONG], lv["text"], lv["verdict"])
    grid = [r for r in rows if r["optimizer"] == "sgd" and abs(_f(r["fg_ratio"]) - GRID_FG) < 1e-9 and int(r["seed"]) < 3]
    combos = sorted({(_f(r["lr"]), _f(r["momentum"])) for r in grid})
    if len(combos) >= 4:
        parts = []
        for lr, mom in combos:
            rs = [r for r in grid if (_f(r["lr"]), _f(r["momentum"])) == (lr, mom)]
            parts.append(f"lr {lr:g}{f' + momentum {mom:g}' if mom else ''}: {_rate(rs)}")
        base = [r for r in grid if (_f(r["lr"]), _f(r["momentum"])) == (1e-3, 0.0)]
        kb = sum(converged(r, 0.9) for r in base)
        from seglab.stats import fisher_exact, holm

        tests = []
        for c in combos:
            if c == (1e-3, 0.0) or not base:
                continue
            rs = [r for r in grid if (_f(r["lr"]), _f(r["momentum"])) == c]
            k = sum(converged(r, 0.9) for r in rs)
            tests.append((c, k, len(rs), fisher_exact([[k, len(rs) - k], [kb, len(base) - kb]]).pvalue))
        adj = holm([t[3] for t in tests])
        shown = [f"lr {c[0]:g}{f' + momentum {c[1]:g}' if c[1] else ''} ({k}/{n}, Fisher p {p:.2g}, Holm {h:.2g})"
                 for (c, k, n, p), h in zip(tests, adj, strict=True) if h < 0.05 and k > kb]
        verdict = (("converges more often than lr 1e-3 (" + f"{kb}/{len(base)}): " + "; ".join(shown)
                    + f"; the other {len(tests) - len(shown)} settings inconclusive (Holm over the {len(tests)} "
                    "settings vs lr 1e-3)") if shown else
                   f"no setting shown to beat lr 1e-3 after Holm over the {len(tests)} settings")
        add("(grid) SGD learning rate × momentum, 50 % fg, 3 losses × BN/no BN", grid, "; ".join(parts), verdict)
    adam_none = select(rows, opt="Adam lr 0.001", norm="none")
    if adam_none:
        col = select(adam_none, loss="study_dicefg", fg=0.95)
        rest = [r for r in adam_none if r not in col]
        losses = sorted(_f(r["final_train_loss"]) for r in col)
        kc, kr = sum(converged(r, 0.9) for r in col), sum(converged(r, 0.9) for r in rest)
        if not rest:
            verdict = "DICEFG at 95 % fg fails as the study says; the other cells were not run" if kc == 0 else (
                "does not hold for DICEFG at 95 % fg")
        else:
            verdict = "agrees" if kc == 0 and kr == len(rest) else (
                "agrees for DICEFG at 95 % fg" if kc == 0 else "does not hold")
        lo = f"{losses[0]:.4f}–{losses[-1]:.4f}" if losses else "—"
        add("Adam without BN converges except DICEFG at 95 % fg (loss ≈ 0.026)", adam_none,
            f"DICEFG at 95 % fg {_rate(col)} ({_labels(col)}; final loss {lo}); all other cells {_rate(rest)}", verdict)
    adam_bn = select(rows, opt="Adam lr 0.001", norm="batch")
    if adam_bn and adam_none:
        a, b = select(adam_bn, loss="study_dicefg", fg=0.95), select(adam_none, loss="study_dicefg", fg=0.95)
        ka, kb = sum(converged(r, 0.9) for r in a), sum(converged(r, 0.9) for r in b)
        p = fisher_exact([[ka, len(a) - ka], [kb, len(b) - kb]]).pvalue
        fam = [c for c in _fisher_family(d) if (c["opt"], c["fg"], c["loss"]) == ("Adam lr 0.001", 0.95, "study_dicefg")]
        ph = fam[0]["p_holm"] if fam else p
        verdict = "agrees" if ph < 0.05 and ka > kb else "not supported at p < 0.05 after Holm"
        add("BN makes DICEFG at 95 % fg converge (Adam)", a + b,
            f"BN {_rate(a)} vs no BN {_rate(b)}; Fisher p = {p:.2g}, Holm over the {len(_fisher_family(d))} cells of "
            f"the Fisher table {ph:.2g}; Adam + BN, all cells: {_rate(adam_bn)}", verdict)
    o4 = _o4_numbers(d[EARLY_RUNS])
    if o4:
        add("CCE loss and gradient norm skyrocket early when training with DICEFG (50 % fg)",
            select(d[EARLY_RUNS], opt="Adam lr 0.001", norm="none", fg=0.5),
            f"Adam, no BN, steps {EARLY[0]}–{EARLY[1]}: monitored CCE gradient norm {o4['dicefg']} when training with "
            f"DICEFG vs {o4['others']} with CCE/DICE; paired (same seed) DICEFG − CCE: {o4['paired']}", o4["verdict"])
    g_early, g_all = _grad_family(d)
    if g_early:
        add("gradient norms smaller at 95 % than at 5 % fg (early; one family with the next row, Holm over 4 tests)", g_early["rows"],
            g_early["text"], g_early["verdict"])
    if g_all:
        add("gradient norms smaller at 95 % than at 5 % fg (whole run; Holm with the row above)", g_all["rows"], g_all["text"],
            g_all["verdict"])
    bv = _bn_accuracy_verdict(d)
    if bv:
        add("BN improved the models' accuracy", bv["rows"], bv["text"], bv["verdict"])
    iv = _inverted_verdict(d)
    if iv:
        add("(seed 002) is it the input? 95 % fg on the inverted input 1 − x", iv["rows"], iv["text"], iv["verdict"])
    return "\n".join(out) + "\n"


def _o4_numbers(rows: list[dict[str, str]]) -> dict[str, str]:
    from seglab.stats import paired_difference

    cell = select(rows, opt="Adam lr 0.001", norm="none", fg=0.5)
    fg = select(cell, loss="study_dicefg")
    if not fg:
        return {}
    others = [r for r in cell if r["loss"] != "study_dicefg"]
    m = [_f(r["gn_early_mean_cce"]) for r in fg]
    mx = [_f(r["gn_early_max_cce"]) for r in fg]
    om = [_f(r["gn_early_mean_cce"]) for r in others]
    omx = [_f(r["gn_early_max_cce"]) for r in others]
    cce = {int(r["seed"]): _f(r["gn_early_mean_cce"]) for r in select(cell, loss="study_cce_clip")}
    pairs = [(_f(r["gn_early_mean_cce"]), cce[int(r["seed"])]) for r in fg if int(r["seed"]) in cce]
    out = {"dicefg": f"mean {statistics.fmean(m):.2f} (max {max(mx):.2f})",
           "others": f"mean {statistics.fmean(om):.2f} (max {max(omx):.2f})" if om else "—"}
    if len(pairs) >= 2:
        d = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
        out["paired"] = f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}], sign-flip p = {d.pvalue:.2g}, n = {d.n}"
        out["verdict"] = "agrees" if d.low > 0 and d.pvalue < 0.05 else "inconclusive"
    else:
        out["paired"], out["verdict"] = "—", "too few seeds"
    return out


def _grad_95_5(rows: list[dict[str, str]], col: str, what: str, holm_p: dict | None = None) -> dict[str, Any]:
    """DICEFG's gradient norm at 5 % minus at 95 % fg (Adam), paired by seed, per norm: text, the raw sign-flip
    p of each test (``tests``), and verdicts from ``holm_p`` (the Holm-adjusted p per norm, from the declared
    family of :func:`_grad_family`; the raw p when not given)."""
    from seglab.stats import paired_difference

    parts, verdicts, used, tests = [], [], [], {}
    for norm in ("none", "batch"):
        cell = select(rows, opt="Adam lr 0.001", norm=norm, loss="study_dicefg")
        a = {int(r["seed"]): _f(r[col]) for r in select(cell, fg=0.05)}
        b = {int(r["seed"]): _f(r[col]) for r in select(cell, fg=0.95)}
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            continue
        d = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
        tests[norm] = d.pvalue
        ph = (holm_p or {}).get(norm, d.pvalue)
        used += [r for r in cell if int(r["seed"]) in seeds and _f(r["fg_ratio"]) in (0.05, 0.95)]
        parts.append(f"{'no BN' if norm == 'none' else 'BN'}: DICEFG gradient norm ({what}) "
                     f"{statistics.fmean(a[s] for s in seeds):.3g} at 5 % vs {statistics.fmean(b[s] for s in seeds):.3g}"
                     f" at 95 % fg, paired difference {d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}], sign-flip p = "
                     f"{d.pvalue:.2g}" + (f", Holm p = {ph:.2g}" if holm_p else "") + f", n = {d.n}")
        v = ("smaller at 95 %" if d.low > 0 and ph < 0.05 else
             "larger at 95 %" if d.high < 0 and ph < 0.05 else "inconclusive")
        verdicts.append(f"{'no BN' if norm == 'none' else 'BN'}: {v}")
    if not parts:
        return {}
    return {"text": "; ".join(parts), "verdict": "; ".join(verdicts), "rows": used, "tests": tests}


def _grad_family(d: Data) -> list[dict[str, Any]]:
    """The study's "gradient norms smaller at 95 % than at 5 % fg" as one declared family: DICEFG's gradient norm,
    early window and whole run, without and with BN (4 tests), Holm within it."""
    from seglab.stats import holm

    specs = ((d[EARLY_RUNS], "gn_early_mean_dicefg", f"mean over steps {EARLY[0]}–{EARLY[1]}"),
             (d[FAITHFUL], "gn_mean_dicefg", "mean over training"))
    raw = [_grad_95_5(rows, col, what) for rows, col, what in specs]
    keys = [(i, norm) for i, g in enumerate(raw) if g for norm in g["tests"]]
    adj = dict(zip(keys, holm([raw[i]["tests"][norm] for i, norm in keys]), strict=True))
    out = []
    for i, (rows, col, what) in enumerate(specs):
        out.append(_grad_95_5(rows, col, what, {norm: adj[(j, norm)] for j, norm in keys if j == i}) if raw[i] else {})
    return out


def block_cells(d: Data) -> str:
    """Every cell: converged k/n with its interval, the labels, the median final mean Dice."""
    rows = d[FAITHFUL]
    if not rows:
        return "No per-run data committed yet.\n"
    out = ["| optimizer | BN | fg | loss | converged (≥ 0.9) [95 % CI] | labels | median final mean Dice |",
           "|---|---|---|---|---|---|---|"]
    for o in OPTS_ALL:
        for norm in ("batch", "none"):
            for fg in FGS:
                for loss in MONITORS:
                    rs = select(rows, opt=o, norm=norm, fg=fg, loss=loss)
                    if not rs:
                        continue
                    med = statistics.median(_f(r["final_mean_dice"]) for r in rs)
                    out.append(f"| {o} | {'yes' if norm == 'batch' else 'no'} | {int(fg * 100)} % | {LABELS[loss]} | "
                               f"{_rate(rs)} | {_labels(rs)} | {med:.3f} |")
    return "\n".join(out) + "\n"


def block_thresholds(d: Data) -> str:
    """How the convergence counts depend on the rule."""
    rows = d[FAITHFUL]
    if not rows:
        return "No per-run data committed yet.\n"
    out = ["| optimizer | BN | mean Dice ≥ 0.8 | ≥ 0.9 | ≥ 0.95 | accuracy rule |", "|---|---|---|---|---|---|"]
    for o in OPTS_ALL:
        for norm in ("batch", "none"):
            rs = select(rows, opt=o, norm=norm)
            if rs:
                cells = " | ".join(_rate(rs, t) for t in (*THRESHOLDS, "accuracy"))
                out.append(f"| {o} | {'yes' if norm == 'batch' else 'no'} | {cells} |")
    return "\n".join(out) + "\n"


def _fisher_family(d: Data) -> list[dict[str, Any]]:
    """BN vs no BN per optimizer, fg and loss (the 36 cells of the Fisher table): converged counts and Fisher's
    exact two-sided p under the 0.9 rule and the accuracy rule; each rule's 36 p-values are one declared family,
    Holm-adjusted within it (docs/analysis_plan.md section 3)."""
    from seglab.stats import fisher_exact, holm

    rows = d[FAITHFUL]
    cells = []
    for o in OPTS_ALL:
        for fg in FGS:
            for loss in MONITORS:
                a = select(rows, opt=o, norm="batch", fg=fg, loss=loss)
                b = select(rows, opt=o, norm="none", fg=fg, loss=loss)
                if a and b:
                    c = {"opt": o, "fg": fg, "loss": loss, "a": a, "b": b}
                    for rule, key in ((0.9, "p"), ("accuracy", "p_acc")):
                        ka, kb = sum(converged(r, rule) for r in a), sum(converged(r, rule) for r in b)
                        c[key] = fisher_exact([[ka, len(a) - ka], [kb, len(b) - kb]]).pvalue
                    cells.append(c)
    for key in ("p", "p_acc"):
        for c, h in zip(cells, holm([c[key] for c in cells]), strict=True):
            c[key + "_holm"] = h
    return cells


def block_fisher(d: Data) -> str:
    """BN vs no BN, per optimizer, fg and loss: converged counts and Fisher's exact two-sided p, raw and Holm."""
    cells = _fisher_family(d)
    if not cells:
        return "No per-run data committed yet.\n"
    n = len(cells)
    out = ["| optimizer | fg | loss | BN converged | no BN converged | Fisher p (0.9) | Holm p (0.9, "
           f"{n} cells) | Fisher p (accuracy rule) | Holm p (accuracy rule, {n} cells) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        out.append(f"| {c['opt']} | {int(c['fg'] * 100)} % | {LABELS[c['loss']]} | {_rate(c['a'])} | {_rate(c['b'])} | "
                   f"{c['p']:.2g} | {c['p_holm']:.2g} | {c['p_acc']:.2g} | {c['p_acc_holm']:.2g} |")
    return "\n".join(out) + "\n"


def _key(r: dict[str, str]) -> tuple:
    return (opt_name(r), r["norm"], round(_f(r["fg_ratio"]), 6), r["loss"], int(r["seed"]))


def block_o4(d: Data) -> str:
    """The monitored CCE's gradient norm over the early window (from the 301-step runs, every cell and seed), and
    over the whole run where the full-length run exists, by training loss."""
    early, full = d[EARLY_RUNS], {_key(r): r for r in d[FAITHFUL]}
    if not early:
        return "No per-run data committed yet.\n"
    out = [f"| optimizer | BN | fg | trained with | n | CCE grad norm, steps {EARLY[0]}–{EARLY[1]}: mean (max) | "
           "full-length runs: n, CCE grad norm over all steps, final monitored CCE |", "|---|---|---|---|---|---|---|"]
    for o in OPTS_MAIN:
        for norm in ("none", "batch"):
            for fg in FGS:
                for loss in MONITORS:
                    rs = select(early, opt=o, norm=norm, fg=fg, loss=loss)
                    if not rs:
                        continue
                    em = statistics.fmean(_f(r["gn_early_mean_cce"]) for r in rs)
                    ex = max(_f(r["gn_early_max_cce"]) for r in rs)
                    fr = [full[_key(r)] for r in rs if _key(r) in full]
                    tail = "—"
                    if fr:
                        am = statistics.fmean(_f(r["gn_mean_cce"]) for r in fr)
                        fl = statistics.fmean(_f(r["final_loss_cce"]) for r in fr)
                        tail = f"{len(fr)}, {am:.3g}, {fl:.3g}"
                    out.append(f"| {o} | {'yes' if norm == 'batch' else 'no'} | {int(fg * 100)} % | {LABELS[loss]} | "
                               f"{len(rs)} | {em:.3g} ({ex:.3g}) | {tail} |")
    return "\n".join(out) + "\n"


def block_collapse(d: Data) -> str:
    """The collapsed runs: Adam, no BN, DICEFG at 95 % fg, one line per seed."""
    rows = d[FAITHFUL]
    rs = select(rows, opt="Adam lr 0.001", norm="none", fg=0.95, loss="study_dicefg")
    if not rs:
        return "No per-run data committed yet.\n"
    out = ["| seed | label | final DICEFG loss | accuracy | background Dice | final monitored CCE | CCE grad norm: "
           f"all steps vs steps {EARLY[0]}–{EARLY[1]} |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rs, key=lambda r: int(r["seed"])):
        out.append(f"| {r['seed']} | {run_label(r)} | {_f(r['final_train_loss']):.4f} | {_f(r['final_accuracy']):.4f} | "
                   f"{_f(r['final_bg_dice']):.3f} | {_f(r['final_loss_cce']):.3g} | {_g(_f(r['gn_mean_cce']))} vs "
                   f"{_g(_f(r['gn_early_mean_cce']))} |")
    return "\n".join(out) + "\n"


def block_init(d: Data) -> str:
    """The net at step 0: one class predicted everywhere, per init and norm."""
    from seglab.stats import rate

    rows = d[INIT]
    if not rows:
        return "No data committed yet (`data/study/init_step0.csv`).\n"
    out = ["| init | BN | one class for every pixel at step 0 [95 % CI] | of which all foreground | median share "
           "predicted foreground |", "|---|---|---|---|---|"]
    for init, what in (("torch", "PyTorch default (`chlebus2018`)"), ("glorot", "Glorot, zero biases (study, faithful)")):
        for norm in ("none", "batch"):
            rs = [r for r in rows if r["init"] == init and r["norm"] == norm]
            if not rs:
                continue
            k = sum(int(r["one_class"]) for r in rs)
            rt = rate(k, len(rs))
            allfg = sum(int(r["all_foreground"]) for r in rs)
            med = statistics.median(_f(r["fg_pred_share"]) for r in rs)
            out.append(f"| {what} | {'yes' if norm == 'batch' else 'no'} | {k}/{len(rs)} [{rt.low:.2f}, {rt.high:.2f}] | "
                       f"{allfg} | {med:.2f} |")
    return "\n".join(out) + "\n"


GRID_FG = 0.5


def block_sgd_grid(d: Data) -> str:
    """SGD learning rate x momentum at 50 % fg, 3 seeds: converged k/n and the labels, per norm and loss."""
    rows = [r for r in d[FAITHFUL] if r["optimizer"] == "sgd" and abs(_f(r["fg_ratio"]) - GRID_FG) < 1e-9]
    combos = sorted({(_f(r["lr"]), _f(r["momentum"])) for r in rows})
    if len(combos) < 4:
        return "Not run yet (the SGD learning-rate x momentum grid).\n"
    out = ["| SGD lr | momentum | effective step lr/(1 − m) | BN | " + " | ".join(LABELS[m] for m in MONITORS) + " |",
           "|---|---|---|---|" + "---|" * len(MONITORS)]
    for lr, mom in combos:
        for norm in ("batch", "none"):
            cells = []
            for loss in MONITORS:
                rs = [r for r in rows if (_f(r["lr"]), _f(r["momentum"])) == (lr, mom) and r["norm"] == norm
                      and r["loss"] == loss and int(r["seed"]) < 3]
                if not rs:
                    cells.append("not run")
                    continue
                k = sum(converged(r, 0.9) for r in rs)
                med = statistics.median(_f(r["final_mean_dice"]) for r in rs)
                cells.append(f"{k}/{len(rs)} · {_labels(rs)} · {med:.3f}")
            out.append(f"| {lr:g} | {mom:g} | {lr / (1 - mom):g} | {'yes' if norm == 'batch' else 'no'} | "
                       + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def block_long(d: Data) -> str:
    """The 100,001-step SGD lr 1e-3 runs: mean Dice at 10,000 steps vs at the end, first step at >= 0.9, label."""
    rows = d[LONG]
    if not rows:
        return "Not run yet (`data/study/chlebus2018_faithful_long.csv`).\n"
    out = ["| trained with | BN | fg | seed | mean Dice at step 10,000 | at step 100,001 | first validation with mean "
           "Dice ≥ 0.9 | label at 100,001 (last quarter: steps 75,000–100,001) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["norm"], r["fg_ratio"], list(MONITORS).index(r["loss"]), int(r["seed"]))):
        cs = r["converged_step"] or "never"
        out.append(f"| {LABELS[r['loss']]} | {'yes' if r['norm'] == 'batch' else 'no'} | {int(_f(r['fg_ratio']) * 100)} % | "
                   f"{r['seed']} | {_f(r['mean_dice_10k']):.3f} | {_f(r['final_mean_dice']):.3f} | {cs} | "
                   f"{run_label(r)} |")
    return "\n".join(out) + "\n"


def _long_verdict(d: Data) -> dict[str, str]:
    rows = d[LONG]
    if not rows:
        return {}
    parts, kinds = [], []
    for r in sorted(rows, key=lambda r: list(MONITORS).index(r["loss"])):
        a, b = _f(r["mean_dice_10k"]), _f(r["final_mean_dice"])
        kind = "slow" if b - a >= SLOW_RISE else ("stuck" if run_label(r) != "collapsed" else "collapsed")
        if converged(r, 0.9):
            kind = "slow (converges later)" if a < 0.9 else "converged by 10k"
        kinds.append(kind)
        parts.append(f"{LABELS[r['loss']]} {a:.3f} → {b:.3f}")
    return {"text": "SGD lr 1e-3, no BN, 50 % fg, seed 0, mean Dice at step 10,000 → 100,001: " + ", ".join(parts),
            "verdict": "; ".join(f"{LABELS[r['loss']]}: {k}" for r, k in
                                 zip(sorted(rows, key=lambda r: list(MONITORS).index(r["loss"])), kinds, strict=True))}


def block_inverted(d: Data) -> str:
    """Seed 002: early gradient norms at 5 % and 95 % fg, on the plain input x and on 1 - x (same seeds)."""
    from seglab.stats import paired_difference

    plain, inv = d[EARLY_RUNS], d[INVERTED]
    if not inv:
        return "Not run yet (`data/study/chlebus2018_faithful_early_inverted.csv`).\n"
    out = [f"| BN | trained with (its own gradient norm, mean over steps {EARLY[0]}–{EARLY[1]}) | x, 5 % fg | x, 95 % fg | "
           "1 − x, 5 % fg | 1 − x, 95 % fg | 1 − x at 95 % minus x at 95 % [95 % CI] | 1 − x at 95 % minus x at 5 % "
           "[95 % CI] | n |", "|---|---|---|---|---|---|---|---|---|"]
    for norm in ("none", "batch"):
        for loss, short in MONITORS.items():
            col = f"gn_early_mean_{short}"

            def by_seed(rows: list[dict[str, str]], fg: float, col: str = col, norm: str = norm,
                        loss: str = loss) -> dict[int, float]:
                return {int(r["seed"]): _f(r[col]) for r in select(rows, opt="Adam lr 0.001", norm=norm, loss=loss, fg=fg)}

            p5, p95, i5, i95 = by_seed(plain, 0.05), by_seed(plain, 0.95), by_seed(inv, 0.05), by_seed(inv, 0.95)
            seeds = sorted(set(p5) & set(p95) & set(i95))
            if len(seeds) < 2:
                continue
            d1 = paired_difference([i95[s] for s in seeds], [p95[s] for s in seeds])
            d2 = paired_difference([i95[s] for s in seeds], [p5[s] for s in seeds])
            means = [f"{statistics.fmean(m[s] for s in seeds):.3g}" if all(s in m for s in seeds) else "—"
                     for m in (p5, p95, i5, i95)]
            out.append(f"| {'yes' if norm == 'batch' else 'no'} | {LABELS[loss]} | " + " | ".join(means)
                       + f" | {d1.mean:+.3g} [{d1.low:+.3g}, {d1.high:+.3g}] | {d2.mean:+.3g} [{d2.low:+.3g}, {d2.high:+.3g}] "
                       f"| {d1.n} |")
    return "\n".join(out) + "\n"


def _plan(b: list[float], a: list[float]) -> dict[str, Any]:
    """The paired difference ``b - a`` (one value per seed) under docs/analysis_plan.md: mean, 95 % t-interval,
    exact sign-flip p (raw; ``holm`` is filled in by the caller for the declared family)."""
    from seglab.stats import paired_difference, signflip_pvalue

    pd = paired_difference(b, a)
    p, _ = signflip_pvalue([x - y for x, y in zip(b, a, strict=True)])
    return {"mean": pd.mean, "low": pd.low, "high": pd.high, "n": pd.n, "p": p, "holm": None}


def _holm_family(tests: list[dict[str, Any]]) -> None:
    from seglab.stats import holm

    for t, h in zip(tests, holm([t["p"] for t in tests]), strict=True):
        t["holm"] = h


def _ci(t: dict[str, Any], nd: int = 3) -> str:
    return f"{t['mean']:+.{nd}g} [{t['low']:+.{nd}g}, {t['high']:+.{nd}g}]"


def _direction(t: dict[str, Any], up: str = "higher", down: str = "lower") -> str:
    """``better``/``worse`` of the plan for a quantity without an equivalence margin (gradient norms): Holm p < 0.05
    and the 95 % t-interval on one side of 0 -> ``up``/``down``; else ``inconclusive`` (never "equal")."""
    from seglab.stats import plan_verdict

    v = plan_verdict(t["holm"], t["low"], t["high"], None)
    return {"better": up, "worse": down}.get(v, "inconclusive")


SEED002_TESTS = (  # (name, arm b, arm a): b - a, DICEFG's early gradient norm, paired by seed
    ("input at 5 % fg (1 − x minus x)", "i5", "p5"),
    ("input at 95 % fg (1 − x minus x)", "i95", "p95"),
    ("foreground fraction on x (95 % minus 5 %)", "p95", "p5"),
    ("foreground fraction on 1 − x (95 % minus 5 %)", "i95", "i5"),
)


def _seed002_tests(d: Data) -> list[dict[str, Any]]:
    """Seed 002 under the plan: DICEFG's gradient norm (mean over the early window), Adam, as a 2 x 2 design
    (input x or 1 - x) x (5 or 95 % fg), paired by seed. Family (declared here and in docs/experiments.md): the
    simple effects of both factors, for no BN and BN, that the committed data hold (8 with every arm); Holm
    within it. No equivalence margin was declared for gradient norms, so no difference is ``inconclusive``."""
    col = "gn_early_mean_dicefg"
    tests = []
    for norm in ("none", "batch"):
        sel = {"opt": "Adam lr 0.001", "norm": norm, "loss": "study_dicefg"}
        arms = {}
        for key, rows, fg in (("p5", d[EARLY_RUNS], 0.05), ("p95", d[EARLY_RUNS], 0.95),
                              ("i5", d[INVERTED], 0.05), ("i95", d[INVERTED], 0.95)):
            arms[key] = {int(r["seed"]): _f(r[col]) for r in select(rows, fg=fg, **sel)}
        for name, b, a in SEED002_TESTS:
            seeds = sorted(set(arms[a]) & set(arms[b]))
            if len(seeds) < 2:
                continue
            t = _plan([arms[b][s] for s in seeds], [arms[a][s] for s in seeds])
            t.update(norm=norm, name=name, b=statistics.fmean(arms[b][s] for s in seeds),
                     a=statistics.fmean(arms[a][s] for s in seeds))
            tests.append(t)
    _holm_family(tests)
    return tests


def block_seed002_tests(d: Data) -> str:
    tests = _seed002_tests(d)
    if not tests:
        return "Not run yet (`data/study/chlebus2018_faithful_early_inverted.csv`).\n"
    out = [f"| BN | effect on DICEFG's gradient norm (mean over steps {EARLY[0]}–{EARLY[1]}) | means (b vs a) | "
           "difference [95 % t-interval] | sign-flip p | Holm p | verdict |", "|---|---|---|---|---|---|---|"]
    for t in tests:
        out.append(f"| {'yes' if t['norm'] == 'batch' else 'no'} | {t['name']} | {t['b']:.3g} vs {t['a']:.3g} | "
                   f"{_ci(t)} | {t['p']:.2g} | {t['holm']:.2g} | {_direction(t)} |")
    return "\n".join(out) + "\n"


def _inverted_verdict(d: Data) -> dict[str, str]:
    """DICEFG without BN (the cell where the 95 % vs 5 % difference shows): does the foreground fraction change the
    norm, does the input's intensities (x vs 1 - x) change it, at 95 % and at 5 % fg? Verdicts of the plan from
    :func:`_seed002_tests` (Holm within its family)."""
    col = "gn_early_mean_dicefg"
    sel = {"opt": "Adam lr 0.001", "norm": "none", "loss": "study_dicefg"}
    p5 = {int(r["seed"]): _f(r[col]) for r in select(d[EARLY_RUNS], fg=0.05, **sel)}
    p95 = {int(r["seed"]): _f(r[col]) for r in select(d[EARLY_RUNS], fg=0.95, **sel)}
    i95 = {int(r["seed"]): _f(r[col]) for r in select(d[INVERTED], fg=0.95, **sel)}
    seeds = sorted(set(p5) & set(p95) & set(i95))
    if len(seeds) < 2:
        return {}
    tests = {t["name"]: t for t in _seed002_tests(d) if t["norm"] == "none"}
    fg_x, in95 = tests[SEED002_TESTS[2][0]], tests[SEED002_TESTS[1][0]]
    in5 = tests.get(SEED002_TESTS[0][0])

    def one(t: dict[str, Any]) -> str:
        return f"{_ci(t)}, sign-flip p = {t['p']:.2g}, Holm p = {t['holm']:.2g}"

    text = (f"no BN, DICEFG gradient norm (mean over steps {EARLY[0]}–{EARLY[1]}): x at 5 % fg "
            f"{statistics.fmean(p5[s] for s in seeds):.3g}, x at 95 % {statistics.fmean(p95[s] for s in seeds):.3g}, "
            f"1 − x at 95 % {statistics.fmean(i95[s] for s in seeds):.3g}; paired: x at 95 % minus x at 5 %: "
            f"{one(fg_x)}; 1 − x minus x at 95 % fg: {one(in95)}")
    if in5:
        text += f"; 1 − x minus x at 5 % fg: {one(in5)}"
    text += f", n = {fg_x['n']} (Holm over the 8 tests of the seed-002 table)" if len(tests) == 4 else f", n = {fg_x['n']}"
    v_fg, v95 = _direction(fg_x), _direction(in95)
    v5 = _direction(in5) if in5 else None
    parts = [f"foreground fraction: {v_fg} at 95 %" if v_fg != "inconclusive" else "foreground fraction: inconclusive",
             f"input at 95 % fg: {v95} on 1 − x" if v95 != "inconclusive" else "input at 95 % fg: inconclusive"]
    if v5:
        parts.append(f"input at 5 % fg: {v5} on 1 − x" if v5 != "inconclusive" else "input at 5 % fg: inconclusive")
    verdict = "; ".join(parts)
    if v_fg != "inconclusive" and v95 == "inconclusive" and v5 not in (None, "inconclusive"):
        verdict += " — the input's intensities matter too, so \"not the input\" is not supported"
    used = [r for r in select(d[EARLY_RUNS] + d[INVERTED], **sel) if int(r["seed"]) in seeds]
    return {"text": text, "verdict": verdict, "rows": used}


STUDY_GRID = (("Adam lr 0.001", 10), ("SGD lr 0.001", 5))
ACC_MARGIN = 0.01


def _bn_accuracy_tests(d: Data) -> list[dict[str, Any]]:
    """The study's "BN improved the models' accuracy" under the plan: final validation accuracy, BN minus no BN,
    paired by seed (same data stream), per cell of the study's grid (Adam and SGD lr 1e-3 x 5/50/95 % fg x the three
    losses: 18 cells = the declared family, Holm within it), TOST within +-0.01 accuracy (the plan's margin,
    applied to accuracy)."""
    from seglab.stats import disagree, plan_verdict, tost_paired

    rows = d[FAITHFUL]
    tests = []
    for opt, _ in STUDY_GRID:
        for fg in FGS:
            for loss in MONITORS:
                bn = {int(r["seed"]): _f(r["final_accuracy"]) for r in select(rows, opt=opt, norm="batch", fg=fg, loss=loss)}
                nb = {int(r["seed"]): _f(r["final_accuracy"]) for r in select(rows, opt=opt, norm="none", fg=fg, loss=loss)}
                seeds = sorted(set(bn) & set(nb))
                if len(seeds) < 2:
                    continue
                t = _plan([bn[s] for s in seeds], [nb[s] for s in seeds])
                t.update(opt=opt, fg=fg, loss=loss, bn=statistics.fmean(bn[s] for s in seeds),
                         nobn=statistics.fmean(nb[s] for s in seeds),
                         tost=tost_paired([bn[s] - nb[s] for s in seeds], ACC_MARGIN).pvalue)
                tests.append(t)
    _holm_family(tests)
    for t in tests:
        t["verdict"] = plan_verdict(t["holm"], t["low"], t["high"], t["tost"])
        t["disagree"] = disagree(t["p"], t["low"], t["high"])
    return tests


def block_bn_accuracy(d: Data) -> str:
    tests = _bn_accuracy_tests(d)
    if not tests:
        return "No per-run data committed yet.\n"
    out = ["| optimizer | fg | trained with | accuracy BN vs no BN | BN − no BN [95 % t-interval] | n | sign-flip p | "
           "Holm p (18 cells) | TOST p (±0.01) | verdict for BN |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in tests:
        mark = " (interval and test disagree)" if t["disagree"] else ""
        out.append(f"| {t['opt']} | {int(round(t['fg'] * 100))} % | {LABELS[t['loss']]} | {t['bn']:.4f} vs "
                   f"{t['nobn']:.4f} | {t['mean']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] | {t['n']} | {t['p']:.2g} | "
                   f"{t['holm']:.2g} | {t['tost']:.2g} | {t['verdict']}{mark} |")
    return "\n".join(out) + "\n"


def _bn_accuracy_verdict(d: Data) -> dict[str, Any]:
    tests = _bn_accuracy_tests(d)
    if not tests:
        return {}
    c = Counter(t["verdict"] for t in tests)
    lows = [t for t in tests if t["high"] < 0]
    text = (f"final validation accuracy, BN minus no BN, paired by seed, each of the {len(tests)} cells of the "
            f"study's grid (Adam, SGD lr 1e-3 × 3 fg × 3 losses; Holm over the {len(tests)}; TOST ±{ACC_MARGIN:g}): "
            + ", ".join(f"{c[v]} {v}" for v in ("better", "worse", "equivalent", "inconclusive") if c[v]))
    if lows:
        ps = sorted(t["p"] for t in lows)
        text += (f"; BN lower (t-interval below 0) in {len(lows)} cells: "
                 + ", ".join(f"{t['opt'].split()[0]} {int(round(t['fg'] * 100))} % {LABELS[t['loss']]} {_ci(t, 2)}"
                             for t in lows) + f" (raw p {ps[0]:.2g}–{ps[-1]:.2g}, none < 0.05 after Holm)")
    for opt, _ in STUDY_GRID:
        best = max((t for t in tests if t["opt"] == opt), key=lambda t: t["mean"], default=None)
        if best:
            text += (f"; largest gain with {opt.split()[0]}: {int(round(best['fg'] * 100))} % {LABELS[best['loss']]} "
                     f"{_ci(best, 2)}, n = {best['n']}, Holm p = {best['holm']:.2g}")
    verdict = ("not supported: BN better in no cell after Holm" if not c["better"]
               else f"BN better in {c['better']} of {len(tests)} cells")
    if c["worse"]:
        verdict += f", worse in {c['worse']}"
    return {"text": text, "verdict": verdict, "rows": [r for r in d[FAITHFUL] if opt_name(r) in dict(STUDY_GRID)]}


def block_compare(name: str) -> Callable[[Data], str]:
    """A committed ``seglab compare --json`` result as a table: each loss's Dice per class (mean ± sd over seeds)
    and its paired difference to the baseline with the 95 % interval, the sign-flip p (raw and Holm-adjusted) and
    the verdict of docs/analysis_plan.md, per class. Results of an older schema are re-read under the plan from
    their per-seed values (:func:`seglab.compare.upgrade`)."""

    def render_compare(_: Data) -> str:
        from seglab.compare import upgrade

        c = load_compare(name)
        if not c:
            return f"Not run yet (`data/compare/{name}.json`).\n"
        c = upgrade(c)
        classes = c["class_names"]
        st = c["setup"]
        diffs = {(x["a"], x["metric"]): x for x in c["differences"]}
        seeds = st["seeds"]
        fams = {"fg_dice": "fg Dice", "dice[class]": "per-class Dice"}
        fam_text = ", ".join(f"{fams.get(k, k)} ({v} test{'' if v == 1 else 's'})" for k, v in c["families"].items())
        head = (f"`seglab compare` on `{st['task']}`{_kw_text(st.get('task_kw'))}, model `{st['model']}`"
                f"{_kw_text(st.get('model_kw'))}, {st['optimizer']} lr {st['lr']:g}, {st['steps']} steps, batch "
                f"{st['batch_size']}, seeds {seeds[0]}–{seeds[-1]} (n = {len(seeds)}, paired); Dice per class on the "
                f"task's fixed validation set; difference = loss − baseline (`{c['baseline']}`), mean [95 % t-interval]; "
                f"p = exact sign-flip p, raw and Holm-adjusted within its family ({fam_text}); verdict per "
                f"[analysis_plan.md](analysis_plan.md): **better**/**worse** (Holm p < 0.05 and the interval excludes "
                f"0 on that side), equivalent (TOST within ±{c['margin']:g} Dice), inconclusive (neither); † the "
                f"t-interval and the sign-flip test disagree.\n\n")

        def cell(x: dict[str, Any]) -> str:
            if x.get("mean") is None:
                return f"not tested, {x['verdict']}"
            v = x["verdict"]
            v = f"**{v}**" if v in ("better", "worse") else v
            return (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]; p {x['p_raw']:.2g}, Holm "
                    f"{x['p_holm']:.2g}; {v}{' †' if x['disagreement'] else ''}")

        out = ["| loss | spec | fg Dice (mean ± sd) | " + " | ".join(classes) + " |", "|---|---|---|" + "---|" * len(classes)]
        for r in c["losses"]:
            cells = []
            for k in classes:
                pc = r["per_class"][k]
                x = diffs.get((r["label"], f"dice[{k}]"))
                cells.append(f"{pc['mean']:.3f}" if x is None else f"{pc['mean']:.3f} ({cell(x)})")
            fx = diffs.get((r["label"], "fg_dice"))
            fg = f"{r['fg_dice']['mean']:.3f} ± {r['fg_dice']['sd']:.3f}"
            if fx is not None:
                fg += f" ({cell(fx)})"
            out.append(f"| {r['label']} | `{r['spec']}` | {fg} | " + " | ".join(cells) + " |")
        counts = Counter(x["verdict"] for x in c["differences"])
        tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("better", "worse", "equivalent", "inconclusive"))
        n_dis = sum(bool(x["disagreement"]) for x in c["differences"])
        tail = f"\nVerdicts of the {len(c['differences'])} differences: {tally}; † {n_dis}.\n"
        failed = c.get("failed_runs") or []
        tail += f"\nFailed runs: {len(failed)}.\n" if failed else ""
        return head + "\n".join(out) + "\n" + tail

    return render_compare


def _kw_text(kw: Any) -> str:
    if not kw:
        return ""
    return " (" + ", ".join(f"{k}={v}" for k, v in kw.items()) + ")"


SEED001 = ROOT / "docs" / "data" / "seed001.json"  # examples/seed001_bce_vs_ce.py


def _minus(x: float, nd: int = 3) -> str:
    """Signed with a typographic minus, as the prose around these tables."""
    return f"{x:+.{nd}f}".replace("-", "−")


def block_seed001(_: Data) -> str:
    """Seed 001: each loss's measures, mean ± sample sd over the seeds (docs/data/seed001.json)."""
    import json

    if not SEED001.exists():
        return "Not run yet (`docs/data/seed001.json`).\n"
    d = json.loads(SEED001.read_text())
    out = ["| loss | categorical accuracy | Keras `binary_accuracy` | mean foreground Dice |", "|---|---|---|---|"]
    for loss, runs in d["runs"].items():
        cells = []
        for m in ("categorical_accuracy", "binary_accuracy", "fg_dice"):
            v = [float(r[m]) for r in runs]
            cells.append(f"{statistics.fmean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0.0:.3f}")
        out.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def block_seed001_diff(_: Data) -> str:
    """Seed 001: paired differences from ``ce`` recomputed from the per-seed values (seglab.stats)."""
    import json

    from seglab.stats import paired_difference

    if not SEED001.exists():
        return "Not run yet (`docs/data/seed001.json`).\n"
    runs = json.loads(SEED001.read_text())["runs"]
    names = {"onehot_bce": "onehot_bce − ce", "keras_cce_channels_first": "channels-first CCE − ce"}
    out = ["| comparison | categorical accuracy | fg Dice |", "|---|---|---|"]
    for loss, label in names.items():
        if loss not in runs:
            continue
        cells = []
        for m in ("categorical_accuracy", "fg_dice"):
            x = paired_difference([float(r[m]) for r in runs[loss]], [float(r[m]) for r in runs["ce"]])
            cells.append(f"{_minus(x.mean)} [{_minus(x.low)}, {_minus(x.high)}]")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


BLOCKS: dict[str, Callable[[Data], str]] = {
    "init-step0": block_init,
    "faithful-runs": block_runs,
    "faithful-verdicts": block_verdicts,
    "faithful-cells": block_cells,
    "faithful-thresholds": block_thresholds,
    "faithful-fisher": block_fisher,
    "faithful-o4": block_o4,
    "faithful-collapse": block_collapse,
    "faithful-sgd-grid": block_sgd_grid,
    "faithful-long": block_long,
    "seed002-inverted": block_inverted,
    "seed002-tests": block_seed002_tests,
    "faithful-bn-accuracy": block_bn_accuracy,
    "seed001": block_seed001,
    "seed001-diff": block_seed001_diff,
    **{block: block_compare(name) for block, name in COMPARE.items()},
}


# ---------------------------------------------------------------------------------------------- rewrite / check
def render(text: str, data: Data, where: str = "") -> tuple[str, list[str]]:
    """``text`` with every regen block re-rendered; the names of blocks whose content changed."""
    changed: list[str] = []
    cache: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise SystemExit(f"error: {where}: unknown regen block {name!r}; known: {', '.join(BLOCKS)}")
        if name not in cache:
            cache[name] = BLOCKS[name](data)
        if m.group(3) != cache[name]:
            changed.append(f"{where}:{name}")
        return m.group(1) + cache[name] + m.group(4)

    return BLOCK_RE.sub(sub, text), changed


def run(check: bool, files: Iterable[str] = FILES, root: Path = ROOT) -> list[str]:
    data = load_all()
    changed_all = []
    for f in files:
        p = root / f
        if not p.exists():
            continue
        text = p.read_text()
        new, changed = render(text, data, f)
        changed_all += changed
        if changed and not check:
            p.write_text(new)
    return changed_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a block differs from its regenerated text")
    ap.add_argument("--extract", metavar="RESULTS", help="rebuild data/study/<folder name>.csv from a results folder")
    ap.add_argument("--measure-init", action="store_true",
                    help="rebuild data/study/init_step0.csv (the untrained nets' predictions; seconds)")
    a = ap.parse_args(argv)
    if a.extract:
        src = Path(a.extract)
        if not (src / "config.json").exists():
            print(f"error: --extract: {str(src)!r} is not a seglab results folder", file=sys.stderr)
            return 2
        n = extract(src, DATA / f"{src.name}.csv")
        print(f"{n} runs -> {DATA / (src.name + '.csv')}")
    if a.measure_init:
        n = measure_init(DATA / f"{INIT}.csv")
        print(f"{n} nets -> {DATA / (INIT + '.csv')}")
    changed = run(a.check)
    if a.check:
        for c in changed:
            print(f"differs from the data: {c}")
        return 1 if changed else 0
    for c in changed:
        print(f"rewrote {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
