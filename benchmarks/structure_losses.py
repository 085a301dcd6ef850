"""Cost of the structure-aware losses (issue 12): forward + backward, map on the fly vs precomputed, vs MONAI.

    nice -n 10 .venv/bin/python benchmarks/structure_losses.py [--size 128] [--reps 5]

Prints a markdown table (median ms over ``--reps``, one thread, 4x3xSxS logits, a class map of compact regions).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from seglab import get_loss
from seglab.transforms import distance_field, signed_distance_map, skeleton_target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from monai import losses as ml

    torch.manual_seed(0)
    torch.set_num_threads(1)
    n, c, s = 4, 3, a.size
    x = torch.randn(n, c, s, s, requires_grad=True)
    oh = torch.nn.functional.one_hot(torch.randint(0, c, (n, s, s)), c).movedim(-1, 1).float()
    t = torch.nn.functional.avg_pool2d(oh, 9, 1, 4).argmax(1)
    oh = torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()
    phi = signed_distance_map(t, mode="multiclass", num_classes=c)
    fld = distance_field(t, mode="multiclass", num_classes=c)
    sk = skeleton_target(t, mode="multiclass")
    mc = "multiclass"

    def step(f):
        f()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            v = f()
            if v.requires_grad:
                v.backward()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    rows = [
        ("boundary, map on the fly", lambda: get_loss("boundary", mode=mc)(x, t)),
        ("boundary, precomputed map", lambda: get_loss("boundary", mode=mc)(x, t, distance_map=phi)),
        ("MONAI `BoundaryLoss`", lambda: ml.BoundaryLoss(softmax=True, to_onehot_y=True)(x, t[:, None])),
        ("hausdorff, target field on the fly", lambda: get_loss("hausdorff", mode=mc)(x, t)),
        ("hausdorff, precomputed target field", lambda: get_loss("hausdorff", mode=mc)(x, t, distance_map=fld)),
        ("MONAI `HausdorffDTLoss`", lambda: ml.HausdorffDTLoss(softmax=True, include_background=True)(x, oh)),
        ("cldice", lambda: get_loss("cldice", mode=mc)(x, t)),
        ("MONAI `SoftclDiceLoss`", lambda: ml.SoftclDiceLoss(softmax=True)(x, oh)),
        ("skeleton_recall, skeleton on the fly", lambda: get_loss("skeleton_recall", mode=mc)(x, t)),
        ("skeleton_recall, precomputed skeleton", lambda: get_loss("skeleton_recall", mode=mc)(x, t, skeleton=sk)),
        ("mcc", lambda: get_loss("mcc", mode=mc)(x, t)),
        ("MONAI `MCCLoss`", lambda: ml.MCCLoss(softmax=True, to_onehot_y=True)(x, t[:, None])),
        ("topk_ce", lambda: get_loss("topk_ce", mode=mc)(x, t)),
        (f"`signed_distance_map` alone ({n}x{c} maps)", lambda: signed_distance_map(t, mode=mc, num_classes=c)),
        (f"`skeleton_target` alone ({n} images)", lambda: skeleton_target(t, mode=mc)),
    ]
    print(f"| {n}x{c}x{s}x{s}, fwd+bwd | ms |\n|---|---|")
    for name, f in rows:
        print(f"| {name} | {step(f):.1f} |")


if __name__ == "__main__":
    main()
