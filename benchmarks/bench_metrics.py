"""Cost of seglab's boundary metrics against MONAI's on the same inputs (CPU, 1 thread).

HD95, average symmetric surface distance and surface Dice, on 4x128x128 (3 classes, spacing (0.8, 1.2)) and
1x64x64x64 (3 classes, spacing (1.0, 0.7, 2.0)) class maps of smooth random blobs. Interleaved rounds (seglab,
then MONAI, order swapped every round) so that machine noise hits both alike; the per-round ratio
seglab / MONAI is reported as median and min-max. Writes JSON with ``--out``.

    nice -n 10 .venv/bin/python benchmarks/bench_metrics.py --rounds 7 --out benchmarks/bench_metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch

CASES = [((4, 128, 128), (0.8, 1.2)), ((1, 64, 64, 64), (1.0, 0.7, 2.0))]
C = 3


def _maps(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape[0], C, *shape[1:], generator=g)
    pool = torch.nn.functional.avg_pool2d if len(shape) == 3 else torch.nn.functional.avg_pool3d
    for _ in range(3):
        x = pool(x, 5, stride=1, padding=2)
    return x.argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")

    import monai
    import monai.metrics as mm

    from seglab.metrics import average_surface_distance, hausdorff_distance, surface_dice

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    results = {}
    for shape, spacing in CASES:
        pred, target = _maps(1, shape), _maps(2, shape)
        p1 = torch.nn.functional.one_hot(pred, C).movedim(-1, 1).float()
        t1 = torch.nn.functional.one_hot(target, C).movedim(-1, 1).float()
        kw = dict(mode="multiclass", num_classes=C, aggregate="none")
        sp = list(spacing)
        pairs = {
            "hd95": (lambda: hausdorff_distance(pred, target, 95, spacing, **kw),
                     lambda: mm.compute_hausdorff_distance(p1, t1, include_background=True, percentile=95, spacing=sp)),
            "assd": (lambda: average_surface_distance(pred, target, spacing, **kw),
                     lambda: mm.compute_average_surface_distance(p1, t1, include_background=True, symmetric=True,
                                                                 spacing=sp)),
            "nsd": (lambda: surface_dice(pred, target, 1.0, spacing, **kw),
                    lambda: mm.compute_surface_dice(p1, t1, [1.0] * C, include_background=True, spacing=sp)),
        }
        for name, (ours, theirs) in pairs.items():
            a, b = ours(), theirs()
            torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=1e-5)  # same numbers first
            t_ours, t_monai, ratios = [], [], []
            for r in range(args.rounds):
                order = (ours, theirs) if r % 2 == 0 else (theirs, ours)
                times = {}
                for fn in order:
                    t0 = time.perf_counter()
                    fn()
                    times[fn] = time.perf_counter() - t0
                t_ours.append(times[ours])
                t_monai.append(times[theirs])
                ratios.append(times[ours] / times[theirs])
            key = f"{name} {'x'.join(map(str, shape))}"
            results[key] = {
                "seglab_ms_median": 1e3 * statistics.median(t_ours), "monai_ms_median": 1e3 * statistics.median(t_monai),
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            }
            s = results[key]
            print(f"{key:18s} seglab {s['seglab_ms_median']:8.1f} ms  MONAI {s['monai_ms_median']:8.1f} ms  "
                  f"ratio {s['ratio_median']:.2f} ({s['ratio_min']:.2f}-{s['ratio_max']:.2f})", flush=True)
    meta = {"rounds": args.rounds, "threads": 1, "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(), "load_avg": os.getloadavg()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
