"""Cost of seglab's boundary metrics against MONAI's and bare baselines on the same inputs (CPU).

Realistic masks: a target of C = 3 classes whose regions are smooth blobs (low-resolution noise upsampled and
arg-maxed, tens of voxels across), and a prediction that is the target's field plus a smaller perturbation
(boundaries off by a few voxels, a few spurious or missed bits). Cases: 2D 1x512x512, spacing (0.8, 1.2), and 3D
1x128x192x192, spacing (1.0, 0.7, 2.0); and the 2D case with the prediction moved 40 voxels along both axes (far
from its target). Per case and metric (HD95, ASSD, NSD at 1 mm), timed in interleaved
rounds (order rotated every round, so that machine noise hits all alike):

* ``seglab``          seglab's function (``definition="monai"``), all classes: exact local lattice search, a
                      KD-tree for the few far elements, an EDT (``edt``) only when many are far
* ``seglab-edt``      the same forced onto one ``edt`` transform per direction and class (HD95 only)
* ``monai``           MONAI's compute_hausdorff_distance / compute_average_surface_distance / compute_surface_dice
* ``edt-pooled``      a bare medpy-style HD95 per class: scipy binary_erosion boundaries, two ``edt`` transforms
                      on the union's bounding box, one pooled percentile (the floor of the EDT approach)
* ``ckdtree-pooled``  the same with the boundary points' nearest neighbours from scipy's cKDTree (2 workers)

(the baselines are timed on HD95 only). Every timed function first has its numbers checked against MONAI's
(baselines: against medpy's pooled definition, seglab ``definition="pooled"``). Reports the median and the
interquartile range of the times and of the per-round ratio seglab / MONAI. Threads: ``--threads`` (torch,
edt, cKDTree; MONAI's scipy transform is single-threaded). ``--example`` prints the docs' worked example.

    nice -n 10 .venv/bin/python benchmarks/bench_metrics.py --rounds 5 --threads 2 --out benchmarks/bench_metrics.json
    .venv/bin/python benchmarks/bench_metrics.py --example
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch

from seglab.provenance import cpu_model

C = 3
# (shape, spacing, shift): shift > 0 moves the prediction that many voxels along every spatial axis (a bad
# prediction far from its target: seglab's local search gives way to the transform)
CASES = [((1, 512, 512), (0.8, 1.2), 0), ((1, 512, 512), (0.8, 1.2), 40), ((1, 128, 192, 192), (1.0, 0.7, 2.0), 0)]


def realistic_maps(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) class maps ``(N, *spatial)`` of C smooth blobs; pred = target's field + a perturbation."""
    n, spatial = shape[0], shape[1:]
    g = torch.Generator().manual_seed(seed)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"

    def field(factor: int, scale: float) -> torch.Tensor:
        low = torch.randn(n, C, *(max(s // factor, 2) for s in spatial), generator=g)
        return scale * torch.nn.functional.interpolate(low, size=spatial, mode=mode, align_corners=False)

    base = field(16, 1.0)
    base[:, 0] += 0.3  # a larger background
    target = base.argmax(1)
    pred = (base + field(4, 0.15)).argmax(1)
    return pred, target


def _pooled_hd95_edt(pn: np.ndarray, tn: np.ndarray, sp: tuple[float, ...], threads: int) -> list[float]:
    import edt
    from scipy import ndimage
    out = []
    for k in range(C):
        p, t = pn == k, tn == k
        union = p | t
        box = []
        for ax in range(union.ndim):
            hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
            box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2))
        p, t = p[tuple(box)], t[tuple(box)]
        bp, bt = p & ~ndimage.binary_erosion(p), t & ~ndimage.binary_erosion(t)
        d1 = edt.edt(~bt, anisotropy=sp, parallel=threads)[bp]
        d2 = edt.edt(~bp, anisotropy=sp, parallel=threads)[bt]
        out.append(float(np.percentile(np.concatenate([d1, d2]), 95)))
    return out


def _pooled_hd95_kdtree(pn: np.ndarray, tn: np.ndarray, sp: tuple[float, ...], threads: int) -> list[float]:
    from scipy import ndimage
    from scipy.spatial import cKDTree
    out = []
    s = np.asarray(sp)
    for k in range(C):
        p, t = pn == k, tn == k
        bp, bt = p & ~ndimage.binary_erosion(p), t & ~ndimage.binary_erosion(t)
        xp, xt = np.argwhere(bp) * s, np.argwhere(bt) * s
        d1 = cKDTree(xt).query(xp, workers=threads)[0]
        d2 = cKDTree(xp).query(xt, workers=threads)[0]
        out.append(float(np.percentile(np.concatenate([d1, d2]), 95)))
    return out


def _edt_only(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with seglab's local search and KD-tree switched off: one transform per direction and class."""
    from seglab.metrics import surface
    saved = surface._LOCAL_REACH, surface._KD_FRACTION
    surface._LOCAL_REACH, surface._KD_FRACTION = 0.0, -1.0
    try:
        return fn()
    finally:
        surface._LOCAL_REACH, surface._KD_FRACTION = saved


def _stats(xs: list[float]) -> dict[str, float]:
    q = np.percentile(xs, [25, 50, 75])
    return {"median": float(q[1]), "q25": float(q[0]), "q75": float(q[2]), "iqr": float(q[2] - q[0]),
            "min": float(min(xs)), "max": float(max(xs))}


def bench(rounds: int, threads: int, cases: list[Any]) -> dict[str, Any]:
    import monai.metrics as mm

    from seglab.metrics import average_surface_distance, hausdorff_distance, surface_dice

    results: dict[str, Any] = {}
    for shape, spacing, shift in cases:
        pred, target = realistic_maps(shape)
        if shift:
            pred = torch.roll(pred, shifts=(shift,) * (len(shape) - 1), dims=tuple(range(1, len(shape))))
        p1 = torch.nn.functional.one_hot(pred, C).movedim(-1, 1).float()
        t1 = torch.nn.functional.one_hot(target, C).movedim(-1, 1).float()
        kw: dict[str, Any] = dict(mode="multiclass", num_classes=C, aggregate="none")
        sp = list(spacing)
        pn, tn = pred[0].numpy(), target[0].numpy()
        fns: dict[str, dict[str, Callable[[], Any]]] = {
            "hd95": {
                "seglab": lambda: hausdorff_distance(pred, target, 95, spacing, **kw),
                "monai": lambda: mm.compute_hausdorff_distance(p1, t1, include_background=True, percentile=95,
                                                               spacing=sp),
                "seglab-edt": lambda: _edt_only(lambda: hausdorff_distance(pred, target, 95, spacing, **kw)),
                "edt-pooled": lambda: _pooled_hd95_edt(pn, tn, spacing, threads),
                "ckdtree-pooled": lambda: _pooled_hd95_kdtree(pn, tn, spacing, threads),
            },
            "assd": {
                "seglab": lambda: average_surface_distance(pred, target, spacing, **kw),
                "monai": lambda: mm.compute_average_surface_distance(p1, t1, include_background=True,
                                                                     symmetric=True, spacing=sp),
            },
            "nsd": {
                "seglab": lambda: surface_dice(pred, target, 1.0, spacing, **kw),
                "monai": lambda: mm.compute_surface_dice(p1, t1, [1.0] * C, include_background=True, spacing=sp),
            },
        }
        for metric, group in fns.items():
            # the same numbers first
            ours, ref = group["seglab"](), group["monai"]()
            torch.testing.assert_close(ours.double(), ref.double(), rtol=1e-6, atol=1e-9)
            if metric == "hd95":
                torch.testing.assert_close(group["seglab-edt"]().double(), ref.double(), rtol=1e-6, atol=1e-9)
                pooled = hausdorff_distance(pred, target, 95, spacing, definition="pooled", **kw)[0].tolist()
                for name in ("edt-pooled", "ckdtree-pooled"):  # against seglab's medpy-equal definition
                    np.testing.assert_allclose(group[name](), pooled, rtol=1e-6)
            names = list(group)
            times: dict[str, list[float]] = {nm: [] for nm in names}
            for r in range(rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for nm in order:
                    t0 = time.perf_counter()
                    group[nm]()
                    times[nm].append(time.perf_counter() - t0)
            ratios = [a / b for a, b in zip(times["seglab"], times["monai"])]
            key = f"{metric} {'x'.join(map(str, shape))}" + (f" shifted {shift}" if shift else "")
            results[key] = {nm: _stats([1e3 * t for t in ts]) for nm, ts in times.items()}
            results[key]["ratio_seglab_over_monai"] = _stats(ratios)
            line = "  ".join(f"{nm} {results[key][nm]['median']:8.1f} ms (IQR {results[key][nm]['iqr']:.1f})"
                             for nm in names)
            rs = results[key]["ratio_seglab_over_monai"]
            print(f"{key:20s} {line}  ratio {rs['median']:.3f} (IQR {rs['q25']:.3f}-{rs['q75']:.3f})", flush=True)
    return results


def example() -> None:
    """The worked example of docs/metrics.md: one 2D pair where the three definitions disagree."""
    from seglab.metrics import average_surface_distance, hausdorff_distance, surface_dice

    t = torch.zeros(1, 24, 24, dtype=torch.long)
    t[0, 4:18, 5:17] = 1
    p = torch.zeros_like(t)
    p[0, 5:18, 5:16] = 1         # one row and one column short
    p[0, 10:12, 16:21] = 1       # a thin spur
    sp = (1.0, 0.8)
    kw: dict[str, Any] = dict(mode="multiclass", num_classes=2, aggregate="none")
    print("target: rows 4-17, cols 5-16; prediction: rows 5-17, cols 5-15 plus a spur rows 10-11, cols 16-20; "
          f"spacing {sp}")
    print(f"{'definition':18s} {'HD':>7s} {'HD95':>7s} {'ASSD':>7s} {'NSD@1':>7s}")
    for d in ("monai", "pooled", "surface_weighted"):
        v = [hausdorff_distance(p, t, None, sp, definition=d, **kw), hausdorff_distance(p, t, 95, sp, definition=d, **kw),
             average_surface_distance(p, t, sp, definition=d, **kw), surface_dice(p, t, 1.0, sp, definition=d, **kw)]
        print(f"{d:18s} " + " ".join(f"{x[0, 1].item():7.4f}" for x in v))
    # the sources, on the same masks (each row above equals its source: tests/metrics/test_surface_definitions.py)
    pn, tn = (p[0] == 1).numpy(), (t[0] == 1).numpy()
    import monai.metrics as mm
    oh = [torch.nn.functional.one_hot(x, 2).movedim(-1, 1).float() for x in (p, t)]
    m = [mm.compute_hausdorff_distance(*oh, percentile=None, spacing=list(sp)),
         mm.compute_hausdorff_distance(*oh, percentile=95, spacing=list(sp)),
         mm.compute_average_surface_distance(*oh, symmetric=True, spacing=list(sp)),
         mm.compute_surface_dice(*oh, [1.0], spacing=list(sp))]
    print(f"{'MONAI':18s} " + " ".join(f"{x[0, 0].item():7.4f}" for x in m))
    import medpy.metric.binary as mb
    print(f"{'medpy':18s} {mb.hd(pn, tn, sp):7.4f} {mb.hd95(pn, tn, sp):7.4f} {mb.assd(pn, tn, sp):7.4f} {'-':>7s}")
    import surface_distance as sdm
    sd = sdm.compute_surface_distances(tn, pn, sp)
    a_gt, a_pred = sdm.compute_average_surface_distance(sd)
    print(f"{'surface-distance':18s} {sdm.compute_robust_hausdorff(sd, 100):7.4f} "
          f"{sdm.compute_robust_hausdorff(sd, 95):7.4f} {'-':>7s} {sdm.compute_surface_dice_at_tolerance(sd, 1.0):7.4f}"
          f"   (ASD gt->pred {a_gt:.4f}, pred->gt {a_pred:.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["2d", "3d"], default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--example", action="store_true")
    args = ap.parse_args()
    if args.example:
        example()
        return
    if args.rounds < 3:
        ap.error("--rounds must be >= 3 (medians of at least 3 runs)")
    import monai

    from seglab.metrics.surface import distance_backend

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    cases = [c for c in CASES if args.only is None or (len(c[0]) - 1) == int(args.only[0])]
    results = bench(args.rounds, args.threads, cases)
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "rounds": args.rounds, "threads": args.threads,
            "backend": distance_backend(), "torch": torch.__version__, "monai": monai.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "load_avg_after": os.getloadavg(),
            "cases": [{"shape": s, "spacing": sp, "shift": sh} for s, sp, sh in cases], "classes": C}
    try:
        from importlib.metadata import version
        meta["edt"] = version("edt")
    except Exception:  # PackageNotFoundError: not installed
        pass
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
