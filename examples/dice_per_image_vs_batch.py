"""Per-image Dice (``dice``, ``batch=False``, seglab's default) vs batch Dice (``dice[batch=true]``, nnU-Net /
smp style) on a task whose rare class is missing from most images (issue 13).

Task: ``shapes`` with 3 foreground classes, the last one rare —
``create_task("shapes", frequencies=[0.8, 0.8, 0.1], size=32, noise=...)``: class 3 is a small disc or box
(radius 2-3 px) present in ~10 % of the images and < 1 % of the pixels. The image is ``k / 3`` on class ``k`` plus
Gaussian noise, so class 3 (intensity 1) is separated from class 2 (2/3) by a margin of ``1/6`` — 1.7 noise sds
at the default ``noise=0.1`` (nearly separable pixel by pixel) but 0.56 sd at ``noise=0.3`` (the net must use
spatial context, and false positives on images without the class become likely). :func:`separability` measures
this on the validation images with the intensity threshold ``5/6``.

Each seed trains the same U-Net (``torch.manual_seed(seed)`` before building it: same initial weights for every
loss) on the same batches (``task.batch(step, batch_size, seed)``) with each loss, Adam lr 1e-2 (at lr 1e-3,
seed 0, ``dice+ce`` first predicted class 3 after ~1500 steps: too slow for this budget). Measures on a fixed
validation set of ``--val`` images (drawn once with a fixed generator, more than the task's 64 so that
enough images hold the rare class):

* images WITHOUT class 3: the fraction with at least one predicted class-3 pixel (``fp_image_rate``) and the
  mean number of predicted class-3 pixels per such image (``fp_pixels``);
* images WITH class 3: the mean per-image Dice of class 3 (``rare_dice_present``);
* pooled Dice of each class (``seglab.metrics.dice_score(..., aggregate="pooled")``: counts summed over all
  validation images);
* per-image Dice of class 3 as ``seglab.metrics.dice_score`` averages it: ``empty=nan`` (default: an image
  where class 3 is neither present nor predicted is skipped; one with only a false positive scores 0) and
  ``empty=1.0`` (such an image scores 1, MONAI ``ignore_empty=False``).

Paired differences (batch minus per-image, same seed; and with minus without CE) with 95 % t-intervals and exact
sign-flip p-values (``seglab.stats.paired_difference``). The table states the verdicts of docs/analysis_plan.md:
Holm within each noise setting's 32 differences (the declared family), TOST within +-0.01 for the Dice measures (no
margin is declared for the false-positive counts), better/worse/equivalent/inconclusive; with 5 seeds the smallest
sign-flip p is 0.0625, so no difference here can be better or worse.
Writes docs/data/dice_per_image_vs_batch.json and prints markdown tables.

    nice -n 10 python examples/dice_per_image_vs_batch.py [--seeds 5] [--steps 500] [--lr 1e-2] [--noise 0.1 0.3]
    python examples/dice_per_image_vs_batch.py --reanalyse [--figure docs/figures/dice_per_image_vs_batch.png]

``--reanalyse`` trains nothing: it recomputes the differences and the tables from the runs stored in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import seglab
from seglab.data import create_task
from seglab.metrics import dice_score
from seglab.models import create_model
from seglab.stats import disagree, holm, paired_difference, plan_verdict, tost_paired

C = 4
RARE = 3
FREQUENCIES = [0.8, 0.8, 0.1]
LOSSES = ("dice", "dice[batch=true]", "dice+ce", "dice[batch=true]+ce")
# (a, b): a - b is reported. The first two are the question (batch minus per-image, without and with CE); the
# last two say what adding CE does to each Dice.
PAIRS = (("dice[batch=true]", "dice"), ("dice[batch=true]+ce", "dice+ce"), ("dice+ce", "dice"),
         ("dice[batch=true]+ce", "dice[batch=true]"))
METRICS = ("fp_image_rate", "fp_pixels", "rare_dice_present", "rare_dice_mean", "rare_dice_mean_empty1",
           "pooled_dice_1", "pooled_dice_2", "pooled_dice_3")
MARGIN = 0.01  # docs/analysis_plan.md section 4, Dice measures only
VAL_SEED = 20261201  # the fixed validation generator (not a training seed: those are seed * 1_000_003 + step)


def validation_set(task: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fixed validation images: the task's own generator law, one fixed seed."""
    return task.generate(n, torch.Generator().manual_seed(VAL_SEED))


def separability(task: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """How well the intensity alone separates class 3: threshold halfway between class 2 and class 3."""
    thr = (RARE - 0.5) / (C - 1)
    hit = x[:, 0] > thr
    rare = y == RARE
    empty_img = ~rare.flatten(1).any(1)
    return {
        "threshold": thr,
        "margin_in_noise_sd": (0.5 / (C - 1)) / task.noise if task.noise > 0 else float("inf"),
        "pixel_threshold_fp_rate": float((hit & ~rare).sum() / (~rare).sum()),
        "pixel_threshold_recall": float((hit & rare).sum() / rare.sum()),
        "pixel_threshold_empty_images_with_fp": float((hit & ~rare).flatten(1).any(1)[empty_img].float().mean()),
    }


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 64]).argmax(1) for i in range(0, len(x), 64)])
    model.train()
    has = (y == RARE).flatten(1).any(1)
    fp_pix = ((pred == RARE) & (y != RARE)).flatten(1).sum(1).double()
    per_image = dice_score(pred, y, mode="multiclass", num_classes=C, aggregate="none")  # (N, C), NaN: 0/0
    pooled = dice_score(pred, y, mode="multiclass", num_classes=C, aggregate="pooled")
    out = {
        "fp_image_rate": float((fp_pix[~has] > 0).double().mean()),
        "fp_pixels": float(fp_pix[~has].mean()),
        "rare_dice_present": float(per_image[has, RARE].mean()),
        "rare_dice_mean": float(dice_score(pred, y, mode="multiclass", num_classes=C)[RARE]),
        "rare_dice_mean_empty1": float(dice_score(pred, y, mode="multiclass", num_classes=C, empty=1.0)[RARE]),
    }
    out.update({f"pooled_dice_{k}": float(pooled[k]) for k in range(1, C)})
    return out


def train(task: Any, loss_spec: str, seed: int, steps: int, batch: int, lr: float) -> torch.nn.Module:
    loss = seglab.get_loss(loss_spec, "multiclass")
    torch.manual_seed(seed)
    model = create_model("unet", in_channels=1, out_channels=C, base_width=8, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        xb, yb = task.batch(step, batch, seed)
        opt.zero_grad()
        loss(model(xb), yb).backward()
        opt.step()
    return model


def run_setting(noise: float, seeds: int, steps: int, batch: int, n_val: int, size: int, lr: float) -> dict:
    task = create_task("shapes", frequencies=FREQUENCIES, size=size, noise=noise)
    vx, vy = validation_set(task, n_val)
    has = (vy == RARE).flatten(1).any(1)
    rare_batches = sum(bool((task.batch(s, batch, 0)[1] == RARE).any()) for s in range(steps))
    out: dict = {
        "task": task.config(),
        "validation": {"images": n_val, "with_rare_class": int(has.sum()), "without_rare_class": int((~has).sum()),
                       "rare_pixel_fraction": float((vy == RARE).double().mean()),
                       "generator_seed": VAL_SEED},
        "training_batches_with_rare_class_seed0": rare_batches / steps,
        "separability": separability(task, vx, vy),
        "runs": {k: [] for k in LOSSES},
    }
    for seed in range(seeds):
        for spec in LOSSES:
            model = train(task, spec, seed, steps, batch, lr)
            out["runs"][spec].append({"seed": seed, **measure(model, vx, vy)})
    out["differences"] = differences(out["runs"])
    return out


def differences(runs: dict[str, list[dict]]) -> dict[str, dict | None]:
    """Paired differences ``a - b`` (same seeds) of every measure for every pair in :data:`PAIRS`."""
    diffs: dict[str, dict | None] = {}
    for a, b in PAIRS:
        for m in METRICS:
            va = [r[m] for r in runs[a]]
            vb = [r[m] for r in runs[b]]
            d = paired_difference(va, vb) if len(va) >= 2 else None
            diffs[f"{a} - {b}: {m}"] = None if d is None else {**d.as_dict(), "verdict": d.verdict(a, b)}
    return diffs


def run(seeds: int, steps: int, noises: list[float], batch: int = 8, n_val: int = 640, size: int = 32,
        lr: float = 1e-2) -> dict:
    torch.set_num_threads(1)
    res: dict = {"setup": {"model": "unet base_width=8 depth=2 norm=batch", "steps": steps, "batch_size": batch,
                           "optimizer": f"adam lr {lr:g}", "size": size, "seeds": list(range(seeds)),
                           "losses": list(LOSSES),
                           "pairs": [f"{a} - {b}" for a, b in PAIRS], "torch_threads": 1,
                           "rule": "exact sign-flip p of the paired difference with its 95 % t-interval; the "
                                   "rendered table adds Holm within each setting, TOST within +-0.01 for the Dice "
                                   "measures and the verdict of docs/analysis_plan.md"},
                 "settings": {}}
    for noise in noises:
        res["settings"][f"noise={noise:g}"] = run_setting(noise, seeds, steps, batch, n_val, size, lr)
    return res


def _fmt(v: list[float]) -> str:
    t = torch.tensor(v, dtype=torch.float64)
    return f"{t.mean():.3f} ± {t.std():.3f}" if len(v) > 1 else f"{t.mean():.3f}"


def plan_rows(s: dict) -> list[tuple[str, dict, float, float | None]]:
    """One setting's differences under docs/analysis_plan.md: ``(key, difference, Holm p, TOST p)``. Family: the
    setting's differences (Holm over their sign-flip p); TOST within +-0.01 on the per-seed differences of the Dice
    measures only (``None`` for the false-positive counts, which have no declared margin)."""
    keys = [k for k, d in s["differences"].items() if d is not None]
    adjusted = holm([s["differences"][k]["pvalue"] for k in keys])
    out = []
    for key, h in zip(keys, adjusted):
        pair, m = key.split(": ")
        a, b = pair.split(" - ")
        tost_p = None
        if "dice" in m:
            diff = [ra[m] - rb[m] for ra, rb in zip(s["runs"][a], s["runs"][b])]
            tost_p = tost_paired(diff, MARGIN).pvalue
        out.append((key, s["differences"][key], h, tost_p))
    return out


def table(res: dict) -> str:
    lines = []
    for name, s in res["settings"].items():
        v, sep = s["validation"], s["separability"]
        lines += [f"### {name}: {v['images']} validation images, {v['with_rare_class']} with class 3, "
                  f"{v['without_rare_class']} without; intensity margin {sep['margin_in_noise_sd']:.2f} noise sd, "
                  f"pixel threshold FP on {sep['pixel_threshold_empty_images_with_fp']:.0%} of the empty images",
                  "",
                  "| loss | empty images with FP | FP px / empty image | class-3 Dice, images with it | "
                  "class-3 per-image Dice (NaN skipped) | (empty = 1) | pooled Dice 1 / 2 / 3 |",
                  "|---|---|---|---|---|---|---|"]
        for spec, runs in s["runs"].items():
            col = {m: [r[m] for r in runs] for m in METRICS}
            pooled = " / ".join(_fmt(col[f"pooled_dice_{k}"]) for k in range(1, C))
            lines.append(f"| `{spec}` | {_fmt(col['fp_image_rate'])} | {_fmt(col['fp_pixels'])} | "
                         f"{_fmt(col['rare_dice_present'])} | {_fmt(col['rare_dice_mean'])} | "
                         f"{_fmt(col['rare_dice_mean_empty1'])} | {pooled} |")
        lines += ["", "| difference a − b (same seeds) | mean [95 % CI] | sign-flip p | Holm p | TOST p (±0.01) | "
                  "verdict (analysis plan) |", "|---|---|---|---|---|---|"]
        for key, d, holm_p, tost_p in plan_rows(s):
            verdict = plan_verdict(holm_p, d["low"], d["high"], tost_p)
            if d["sd"] == 0 and d["mean"] == 0:
                verdict += " (equal in every seed)"
            elif disagree(d["pvalue"], d["low"], d["high"]):
                verdict += " † interval excludes 0, test does not reject"
            tost = "—" if tost_p is None else f"{tost_p:.2g}"
            lines.append(f"| {key} | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] | {d['pvalue']:.3g} | "
                         f"{holm_p:.2g} | {tost} | {verdict} |")
        lines.append("")
    return "\n".join(lines)


def _strict_json(obj: Any) -> Any:
    """NaN (e.g. the t-test p-value of identical pairs) -> null, so the file is strict JSON."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict_json(v) for v in obj]
    return obj


def figure(res: dict, path: str | Path) -> None:
    """Per-seed dots: empty images with a false positive, and pooled class-3 Dice, for each loss and setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["settings"])
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 2.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        runs = res["settings"][name]["runs"]
        for ax, m, label in ((row[0], "fp_image_rate", "empty images with a class-3 FP"),
                             (row[1], "pooled_dice_3", "pooled Dice of class 3")):
            for i, spec in enumerate(LOSSES):
                vals = [r[m] for r in runs[spec]]
                ax.plot([i] * len(vals), vals, "o", alpha=0.6)
                ax.plot([i - 0.25, i + 0.25], [sum(vals) / len(vals)] * 2, "k-")
            for a, b in PAIRS[:2]:  # lines join the same seed's two runs
                ia, ib = LOSSES.index(a), LOSSES.index(b)
                for ra, rb in zip(runs[a], runs[b]):
                    ax.plot([ib, ia], [rb[m], ra[m]], "-", color="0.7", lw=0.8, zorder=0)
            ax.set_xticks(range(len(LOSSES)), LOSSES, fontsize=7)
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_ylim(-0.03, 1.03)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument("--val", type=int, default=640, help="validation images (fixed generator)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "data"
                                         / "dice_per_image_vs_batch.json"))
    ap.add_argument("--reanalyse", action="store_true",
                    help="do not train: recompute the differences and the table from the runs in --out")
    ap.add_argument("--figure", default=None, help="also write a PNG of the per-seed results here")
    a = ap.parse_args(argv)
    if a.reanalyse:
        try:
            res = json.loads(Path(a.out).read_text())
            for s in res["settings"].values():
                s["differences"] = differences(s["runs"])
            res["setup"]["pairs"] = [f"{x} - {y}" for x, y in PAIRS]
        except (OSError, ValueError, KeyError) as e:
            ap.error(f"--reanalyse: cannot read the runs in --out {a.out} ({type(e).__name__}: {e})")
        res = _strict_json(res)
        Path(a.out).write_text(json.dumps(res, indent=1, allow_nan=False))
        print(table(res))
        if a.figure:
            figure(res, a.figure)
        return res
    for opt in ("seeds", "steps", "val", "batch"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt} must be at least 1")
    if not a.lr > 0:
        ap.error("--lr must be positive")
    if not all(n >= 0 for n in a.noise):
        ap.error("--noise must be >= 0")
    t0 = time.perf_counter()
    res = run(a.seeds, a.steps, a.noise, batch=a.batch, n_val=a.val, lr=a.lr)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["command"] = " ".join(["python examples/dice_per_image_vs_batch.py", *(sys.argv[1:] if argv is None else argv)])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    res = _strict_json(res)
    Path(a.out).write_text(json.dumps(res, indent=1, allow_nan=False))
    print(table(res))
    print(f"wall time {res['wall_s']} s")
    if a.figure:
        figure(res, a.figure)
    return res


if __name__ == "__main__":
    main()
