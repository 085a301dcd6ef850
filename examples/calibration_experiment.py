"""Calibration of CE vs Dice vs Dice+CE: expected calibration error and reliability diagram on one task (issue 13).

Task: ``shapes`` (4 classes, 64x64, the defaults of ``create_task("shapes")``). Each seed trains the default U-Net
(``create_model("unet", ...)``: depth 3, width 16, batch norm) with each loss — ``seglab.get_loss(name,
"multiclass")`` for ``ce``, ``dice`` and ``dice+ce`` — from the same initial weights (``torch.manual_seed(seed)``
before building it) on the same batches (``task.batch(step, batch_size, seed)``), Adam lr 1e-3, as
examples/seed001_bce_vs_ce.py. On the task's fixed validation set (64 images) it measures, from the softmax
probabilities:

* ``ece``: top-label expected calibration error, 15 equal-width bins, L1
  (``seglab.metrics.expected_calibration_error``), and ``mce`` (the largest bin gap);
* ``nll``: mean negative log-likelihood of the true class per pixel (``F.cross_entropy``);
* ``fg_dice``: mean foreground Dice of the argmax (``seglab.metrics.dice_score``, per image then averaged, the
  three foreground classes averaged);
* ``accuracy`` (pixel) and ``mean_confidence`` (mean top-label probability);
* the same ECE and NLL after temperature scaling (``ece_ts``, ``nll_ts``): one temperature ``T`` per model,
  fitted by minimising the NLL of ``softmax(z / T)`` on a separate calibration set of 64 images
  (``task.batch(0, 64, CALIBRATION_SEED)``, never used for training or evaluation);
* reliability bins per seed and pooled over seeds (``seglab.metrics.CalibrationError``, updated with every seed).

Paired differences between losses (same seed) with 95 % t-intervals and sign-flip p-values
(``seglab.stats.paired_difference``); the rendered table adds Holm within its differences and the verdict of
docs/analysis_plan.md. Writes docs/data/calibration.json and the reliability diagram
docs/figures/calibration_reliability.png, and prints a markdown table.

    nice -n 10 python examples/calibration_experiment.py [--seeds 5] [--steps 150] [--threads 1]
    python examples/calibration_experiment.py --render   # docs/calibration.md's table and the figure from the JSON
    python examples/calibration_experiment.py --check    # exit 1 if that table differs from the JSON
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

import seglab
from seglab.data import create_task
from seglab.metrics import CalibrationError, dice_score, reliability_bins
from seglab.models import create_model
from seglab.stats import disagree, holm, paired_difference, plan_verdict, tost_paired

LOSSES = ("ce", "dice", "dice+ce")
METRICS = ("ece", "mce", "nll", "fg_dice", "accuracy", "mean_confidence", "ece_ts", "nll_ts", "temperature")
PAIRS = (("dice", "ce"), ("dice+ce", "ce"), ("dice", "dice+ce"))
MARGIN = 0.01  # docs/analysis_plan.md section 4 (fg Dice only)
CALIBRATION_SEED = 1_000  # batches of training seeds 0..999 never reach it (make_generator: seed * 1_000_003 + step)
N_BINS = 15
ROOT = Path(__file__).resolve().parents[1]


def train(task: Any, loss_name: str, seed: int, steps: int, batch: int) -> torch.nn.Module:
    """The paired training run: same initial weights and batches for every loss of a seed."""
    loss = seglab.get_loss(loss_name, "multiclass")
    torch.manual_seed(seed)
    model = create_model("unet", in_channels=task.in_channels, out_channels=task.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(steps):
        x, y = task.batch(step, batch, seed)
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    return torch.cat([model(x[i:i + chunk]) for i in range(0, len(x), chunk)]).double()


def fit_temperature(z: torch.Tensor, y: torch.Tensor) -> float:
    """``T`` minimising ``cross_entropy(z / T, y)``, by golden-section search on ``log T`` in [-3, 5] (convex in 1/T)."""
    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    lo, hi = -3.0, 5.0
    r = (math.sqrt(5) - 1) / 2
    a, b = hi - r * (hi - lo), lo + r * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - r * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + r * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def measure(z: torch.Tensor, y: torch.Tensor, temperature: float, num_classes: int) -> dict[str, Any]:
    p = z.softmax(1)
    bins = reliability_bins(p, y, n_bins=N_BINS)
    pred = z.argmax(1)
    fg = dice_score(pred, y, mode="multiclass", num_classes=num_classes)[1:]
    return {
        "ece": bins.ece, "mce": bins.mce, "nll": float(F.cross_entropy(z, y)),
        "fg_dice": float(fg[~fg.isnan()].mean()), "accuracy": float((pred == y).double().mean()),
        "mean_confidence": float(p.max(1).values.mean()),
        "ece_ts": reliability_bins((z / temperature).softmax(1), y, n_bins=N_BINS).ece,
        "nll_ts": float(F.cross_entropy(z / temperature, y)), "temperature": temperature,
        "bins": bins.as_dict(),
    }


def run(seeds: int, steps: int, batch: int = 8, size: int | None = None, log: Any = None) -> dict[str, Any]:
    task = create_task("shapes") if size is None else create_task("shapes", size=size)
    vx, vy = task.validation()
    cx, cy = task.batch(0, 64, CALIBRATION_SEED)
    pooled = {name: CalibrationError("multiclass", N_BINS) for name in LOSSES}
    out: dict[str, Any] = {
        "setup": {"task": task.config(), "model": "unet (defaults: depth 3, base_width 16, norm batch)",
                  "losses": {name: seglab.format_loss(seglab.get_loss(name, "multiclass")) for name in LOSSES},
                  "steps": steps, "batch_size": batch, "optimizer": "adam lr 1e-3", "seeds": list(range(seeds)),
                  "n_bins": N_BINS, "ece": "top-label, equal-width bins, L1 (seglab.metrics.expected_calibration_error)",
                  "validation_images": len(vx), "calibration_set": f"task.batch(0, 64, {CALIBRATION_SEED})",
                  "fg_dice": "seglab.metrics.dice_score per image (empty classes skipped), mean of classes 1..3"},
        "runs": {name: [] for name in LOSSES},
    }
    for seed in range(seeds):
        for name in LOSSES:
            t0 = time.perf_counter()
            model = train(task, name, seed, steps, batch)
            z, zc = logits_of(model, vx), logits_of(model, cx)
            r = measure(z, vy, fit_temperature(zc, cy), task.num_classes)
            pooled[name].update(z.softmax(1), vy)
            r["seed"], r["wall_s"] = seed, round(time.perf_counter() - t0, 1)
            out["runs"][name].append(r)
            if log:
                log(f"seed {seed} {name}: ece {r['ece']:.4f} nll {r['nll']:.3f} fg_dice {r['fg_dice']:.3f} "
                    f"T {r['temperature']:.2f} ({r['wall_s']} s)")
    out["pooled_bins"] = {name: m.bins().as_dict() for name, m in pooled.items()}
    out["summary"] = {name: {m: _mean_sd([r[m] for r in out["runs"][name]]) for m in METRICS} for name in LOSSES}
    if seeds >= 2:
        out["differences"] = {
            f"{a} - {b}": {m: paired_difference([r[m] for r in out["runs"][a]], [r[m] for r in out["runs"][b]]).as_dict()
                           for m in ("ece", "nll", "fg_dice", "ece_ts", "nll_ts")}
            for a, b in PAIRS}
    return out


def _mean_sd(v: Sequence[float]) -> dict[str, float]:
    t = torch.tensor(v, dtype=torch.float64)
    return {"mean": float(t.mean()), "sd": float(t.std()) if len(v) > 1 else 0.0}


def figure(res: dict[str, Any], path: Path) -> None:
    """Reliability diagram (accuracy vs confidence, pooled over seeds) and the confidence histogram, per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(1, 2, figsize=(10, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfectly calibrated")
    n_losses = len(res["pooled_bins"])
    for i, (name, b) in enumerate(res["pooled_bins"].items()):
        ece = res["summary"][name]["ece"]
        pts = [(c, a) for c, a in zip(b["confidence"], b["accuracy"]) if c is not None]
        ax.plot([c for c, _ in pts], [a for _, a in pts], marker="o", ms=4, label=f"{name} (pooled ECE {b['ece']:.3f}; mean of seeds {ece['mean']:.3f})")
        edges = b["edges"]
        width = (edges[1] - edges[0]) / (n_losses + 1)
        total = sum(b["count"]) or 1
        hx.bar([e + (i + 0.5) * width for e in edges[:-1]], [c / total for c in b["count"]], width=width, label=name)
    ax.set(xlabel="confidence (top-label probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability diagram (validation pixels, seeds pooled)")
    ax.legend(fontsize=8, loc="lower right")
    hx.set(xlabel="confidence", ylabel="fraction of pixels", yscale="log", xlim=(0, 1), title="Confidence histogram")
    hx.legend(fontsize=8, loc="upper left")
    setup = res["setup"]
    fig.suptitle(f"shapes {setup['task']['size']}px, default U-Net, {setup['steps']} steps, "
                 f"{len(setup['seeds'])} seeds, {setup['n_bins']} bins", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


COLUMNS = {"ece": "ECE", "mce": "MCE", "nll": "NLL", "fg_dice": "fg Dice", "accuracy": "pixel acc.",
           "mean_confidence": "mean conf.", "temperature": "T", "ece_ts": "ECE after TS", "nll_ts": "NLL after TS"}
DOC = ROOT / "docs" / "calibration.md"
BLOCK_RE = re.compile(r"(<!-- calibration:table -->\n)(.*?)(<!-- /calibration:table -->)", re.S)


def table(res: dict[str, Any]) -> str:
    """Markdown: mean ± sd over seeds per loss, then the paired differences with 95 % intervals (from the JSON alone)."""
    setup = res["setup"]
    rows = [f"{len(setup['seeds'])} seeds, {setup['steps']} steps, batch {setup['batch_size']}, "
            f"{setup['validation_images']} validation images of {setup['task']['size']}x{setup['task']['size']}, "
            f"{setup['n_bins']} bins; mean ± sd over seeds.", "",
            "| loss | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, s in res["summary"].items():
        rows.append(f"| {name} | " + " | ".join(f"{s[c]['mean']:.3f} ± {s[c]['sd']:.3f}" for c in COLUMNS) + " |")
    diffs = res.get("differences", {})
    if diffs:
        keys = [(pair, m) for pair, d in diffs.items() for m in d]
        adjusted = dict(zip(keys, holm([diffs[pair][m]["pvalue"] for pair, m in keys])))
        rows += ["", "Paired differences (same seed: same initial weights and batches), mean [95 % t-interval], "
                 f"exact sign-flip p, Holm p over the {len(keys)} differences of this table (the declared family), and "
                 "the verdict of docs/analysis_plan.md (TOST within ±0.01 for fg Dice only; ECE and NLL have no "
                 "declared margin); † the t-interval excludes 0 but the sign-flip test does not reject.", "",
                 "| difference | " + " | ".join(COLUMNS[m] for m in next(iter(diffs.values()))) + " |",
                 "|---|" + "---:|" * len(next(iter(diffs.values())))]
        for pair, d in diffs.items():
            cells = []
            for m in d:
                h = adjusted[(pair, m)]
                tost_p = None
                if m == "fg_dice":
                    a, b = pair.split(" - ")
                    tost_p = tost_paired([x[m] - y[m] for x, y in zip(res["runs"][a], res["runs"][b])], MARGIN).pvalue
                v = plan_verdict(h, d[m]["low"], d[m]["high"], tost_p)
                mark = " †" if disagree(d[m]["pvalue"], d[m]["low"], d[m]["high"]) else ""
                cells.append(f"{d[m]['mean']:+.3f} [{d[m]['low']:+.3f}, {d[m]['high']:+.3f}] p={d[m]['pvalue']:.2g}, "
                             f"Holm {h:.2g}: {v}{mark}")
            rows.append(f"| {pair} | " + " | ".join(cells) + " |")
    names = list(res["runs"])
    rows += ["", "Per seed: ECE / ECE after TS / fg Dice.", "", "| seed | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for i, seed in enumerate(setup["seeds"]):
        rows.append(f"| {seed} | " + " | ".join(
            "{ece:.3f} / {ece_ts:.3f} / {fg_dice:.3f}".format(**res["runs"][n][i]) for n in names) + " |")
    pooled = res["pooled_bins"]
    edges = next(iter(pooled.values()))["edges"]
    rows += ["", "Reliability bins, validation pixels of all seeds pooled: pixels / mean confidence / accuracy "
             "(empty bins left out).", "", "| confidence bin | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for k in range(len(edges) - 1):
        if not any(pooled[n]["count"][k] for n in names):
            continue
        cells = []
        for n in names:
            b = pooled[n]
            cells.append("—" if not b["count"][k] else
                         f"{int(b['count'][k])} / {b['confidence'][k]:.3f} / {b['accuracy'][k]:.3f}")
        rows.append(f"| [{edges[k]:.3f}, {edges[k + 1]:.3f}{']' if k == len(edges) - 2 else ')'} | " + " | ".join(cells) + " |")
    rows.append("| pooled ECE | " + " | ".join(f"{pooled[n]['ece']:.3f}" for n in names) + " |")
    return "\n".join(rows) + "\n"


def render_doc(res: dict[str, Any], doc: Path) -> tuple[str, str]:
    """(current text, text with the ``calibration:table`` block rendered from ``res``) of ``doc``."""
    text = doc.read_text()
    if not BLOCK_RE.search(text):
        raise SystemExit(f"{doc}: no <!-- calibration:table --> ... <!-- /calibration:table --> block")
    return text, BLOCK_RE.sub(lambda m: m.group(1) + table(res) + m.group(3), text)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=None, help="image size (default: the task's, 64)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "data" / "calibration.json")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "figures" / "calibration_reliability.png")
    ap.add_argument("--render", action="store_true",
                    help="no training: rewrite the table block of docs/calibration.md and the figure from --out")
    ap.add_argument("--check", action="store_true",
                    help="no training: exit 1 if the table block of docs/calibration.md differs from --out")
    ap.add_argument("--doc", type=Path, default=DOC)
    a = ap.parse_args(argv)
    if a.render or a.check:
        if not a.out.is_file():
            ap.error(f"--out {a.out}: no such file")
        res = json.loads(a.out.read_text())
        old, new = render_doc(res, a.doc)
        if a.check:
            if old != new:
                print(f"{a.doc}: the calibration table differs from {a.out}; run with --render", file=sys.stderr)
                raise SystemExit(1)
        else:
            if old != new:
                a.doc.write_text(new)
            figure(res, a.figure)
        return res
    for opt, v, lo in (("--seeds", a.seeds, 2), ("--steps", a.steps, 1), ("--batch", a.batch, 1), ("--threads", a.threads, 1)):
        if v < lo:
            ap.error(f"{opt} must be >= {lo}, got {v}")
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    res = run(a.seeds, a.steps, a.batch, a.size, log=lambda s: print(s, file=sys.stderr, flush=True))
    res["setup"]["command"] = "python examples/calibration_experiment.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    res["setup"]["torch_threads"] = a.threads
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    figure(res, a.figure)
    print(table(res))
    return res


if __name__ == "__main__":
    main()
