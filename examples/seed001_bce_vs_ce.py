"""Seed 001: "the network seems to learn better with binary cross-entropy" on one-hot masks of 7 labels.

Trains the same U-Net (same seeds: same initial weights, same batches) on an exclusive 7-class task
(``shapes``, 6 foreground shapes) with three losses:

* ``ce``: softmax over the class axis + cross-entropy (the matched loss for exclusive classes);
* ``onehot_bce``: one sigmoid per channel + BCE on the one-hot masks (Keras ``binary_crossentropy``);
* ``keras_cce_channels_first``: what Keras 1 computed for ``categorical_crossentropy`` with the asker's
  channels-first ``(7, rows, cols)`` labels — softmax and the sum of ``-y log p`` over the **last** axis
  (image columns), not the class axis (this loss is written here, not in seglab: it is a bug to reproduce).

For each trained model it measures on the fixed validation set: categorical (pixel) accuracy, Keras's
``binary_accuracy`` (what ``metrics=['accuracy']`` reports next to ``binary_crossentropy``: the mean over all
7 channels of ``round(p) == y``) and the mean foreground Dice, then paired differences with 95 % intervals
(seglab.stats). Writes docs/data/seed001.json and prints a markdown table.

    python examples/seed001_bce_vs_ce.py [--seeds 5] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import seglab
from seglab.data import create_task
from seglab.models import create_model
from seglab.stats import paired_difference

C = 7


def keras_cce_channels_first(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Keras 1 categorical_crossentropy on (N, C, H, W) tensors: softmax and the sum over the last axis."""
    onehot = F.one_hot(y, C).movedim(-1, 1).to(logits.dtype)
    return -(onehot * F.log_softmax(logits, dim=-1)).sum(-1).mean()


LOSSES = {
    "ce": seglab.get_loss("ce", "multiclass"),
    "onehot_bce": seglab.get_loss("onehot_bce", "multiclass"),
    "keras_cce_channels_first": keras_cce_channels_first,
}
PROBS = {  # the per-channel probabilities each model's Keras output layer would give
    "ce": lambda z: z.softmax(1),
    "onehot_bce": lambda z: z.sigmoid(),
    "keras_cce_channels_first": lambda z: z.softmax(-1),
}


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(x[i:i + 16]) for i in range(0, len(x), 16)])
    onehot = F.one_hot(y, C).movedim(-1, 1).float()
    p = PROBS[name](z)
    pred = z.argmax(1) if name != "keras_cce_channels_first" else p.argmax(1)
    cat_acc = (pred == y).float().mean().item()
    bin_acc = (p.round() == onehot).float().mean().item()  # Keras binary_accuracy, mean over the 7 channels
    dice = seglab.metrics.dice_score(pred, y, mode="multiclass", num_classes=C, aggregate="pooled")
    fg = dice[1:]
    return {"categorical_accuracy": cat_acc, "binary_accuracy": bin_acc,
            "fg_dice": float(fg[~fg.isnan()].mean()), "all_zero_binary_accuracy": (C - 1) / C}


def run(seeds: int, steps: int, batch: int = 8) -> dict:
    task = create_task("shapes", num_classes=C, size=32, frequencies=[0.8] * (C - 1))
    vx, vy = task.validation()
    out: dict = {"setup": {"task": task.config(), "model": "unet base_width=8 depth=2 norm=batch", "steps": steps,
                           "batch_size": batch, "optimizer": "adam lr 1e-3", "seeds": list(range(seeds))},
                 "runs": {k: [] for k in LOSSES}}
    for seed in range(seeds):
        for name, loss in LOSSES.items():
            torch.manual_seed(seed)
            model = create_model("unet", in_channels=1, out_channels=C, base_width=8, depth=2)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            model.train()
            for step in range(steps):
                xb, yb = task.batch(step, batch, seed)
                opt.zero_grad()
                loss(model(xb), yb).backward()
                opt.step()
            out["runs"][name].append(measure(name, model, vx, vy))
    diffs = {}
    for name in ("onehot_bce", "keras_cce_channels_first"):
        for metric in ("categorical_accuracy", "binary_accuracy", "fg_dice"):
            a = [r[metric] for r in out["runs"][name]]
            b = [r[metric] for r in out["runs"]["ce"]]
            diffs[f"{name} - ce: {metric}"] = paired_difference(a, b).as_dict()
    out["differences"] = diffs
    return out


def table(d: dict) -> str:
    rows = ["| loss | categorical accuracy | Keras binary_accuracy | fg Dice |", "|---|---|---|---|"]
    for name, runs in d["runs"].items():
        cells = []
        for m in ("categorical_accuracy", "binary_accuracy", "fg_dice"):
            v = torch.tensor([r[m] for r in runs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "data" / "seed001.json"))
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = run(a.seeds, a.steps)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(table(res))
    for k, v in res["differences"].items():
        print(f"{k}: {v['mean']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] p={v['pvalue']:.3g}")
