"""Per-call cost on small inputs (patch training, the Chlebus toy task): seglab dice+ce vs MONAI's DiceCELoss.

Forward + backward, 1 thread, interleaved rounds (seglab, MONAI, F.cross_entropy, in turn) so that machine noise
hits all three alike; each round times `--calls` calls, the ratio of medians is reported with the spread
(min-max over rounds of the per-round ratio). Run several processes (`--runs`) because a process's memory layout
also moves the numbers. Writes JSON (`--out`).

    .venv/bin/python benchmarks/bench_small.py --runs 3 --out benchmarks/bench_small.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = [(4, 3, 64, 64), (2, 2, 32, 32)]


def one_process(rounds: int, calls: int) -> dict:
    import torch
    from monai.losses import DiceCELoss

    import seglab
    from seglab import _checks

    torch.set_num_threads(1)
    out = {}
    for shape in SHAPES:
        n, c = shape[:2]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(*shape, generator=g).requires_grad_()
        t = torch.randint(0, c, (n, *shape[2:]), generator=g)
        ours = seglab.get_loss("dice+ce", mode="multiclass")
        monai = DiceCELoss(to_onehot_y=True, softmax=True)
        t1 = t[:, None]
        def ours_unchecked():
            with _checks.validation(False):
                ours(x, t).backward()

        fns = {
            "seglab": lambda: ours(x, t).backward(),
            "seglab_validation_off": ours_unchecked,
            "monai": lambda: monai(x, t1).backward(),
            "F.cross_entropy": lambda: torch.nn.functional.cross_entropy(x, t).backward(),
        }
        # the losses agree (MONAI's DiceCE = Dice(smooth 1e-5) + CE, as seglab's dice+ce)
        assert abs(float(ours(x, t)) - float(monai(x, t1))) < 1e-4
        times: dict[str, list[float]] = {k: [] for k in fns}
        for f in fns.values():
            for _ in range(20):
                f()
        for _ in range(rounds):
            for k, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    f()
                times[k].append((time.perf_counter() - t0) / calls * 1e3)
        ratios = [a / b for a, b in zip(times["seglab"], times["monai"])]
        ratios_off = [a / b for a, b in zip(times["seglab_validation_off"], times["monai"])]
        out["x".join(map(str, shape))] = {
            "ms_median": {k: statistics.median(v) for k, v in times.items()},
            "seglab_over_monai": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
            "seglab_validation_off_over_monai": {"median": statistics.median(ratios_off), "min": min(ratios_off),
                                                 "max": max(ratios_off)},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(one_process(a.rounds, a.calls)))
        return 0
    runs = []
    for _ in range(a.runs):
        p = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(a.rounds), "--calls", str(a.calls)],
                           capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    import torch

    summary = {}
    for shape in runs[0]:
        med = [r[shape]["seglab_over_monai"]["median"] for r in runs]
        med_off = [r[shape]["seglab_validation_off_over_monai"]["median"] for r in runs]
        summary[shape] = {
            "seglab_over_monai_median_of_runs": statistics.median(med),
            "per_run_medians": med,
            "validation_off_over_monai_median_of_runs": statistics.median(med_off),
            "validation_off_per_run_medians": med_off,
            "per_run_round_range": [[r[shape]["seglab_over_monai"]["min"], r[shape]["seglab_over_monai"]["max"]] for r in runs],
            "ms_median_per_run": [r[shape]["ms_median"] for r in runs],
        }
        print(f"{shape}: seglab/MONAI = {statistics.median(med):.3f} (runs {', '.join(f'{m:.3f}' for m in med)}); "
              f"validation off: {statistics.median(med_off):.3f} (runs {', '.join(f'{m:.3f}' for m in med_off)}); "
              f"ms {runs[0][shape]['ms_median']}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    result = {"what": "dice+ce forward+backward, 1 thread, seglab / MONAI DiceCELoss (lower is better); seglab with "
                      "its default input validation, and with validation off (MONAI validates nothing)",
              "commit": commit,
              "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "load_average_at_end": os.getloadavg()},
              "rounds": a.rounds, "calls": a.calls, "runs": a.runs, "results": summary}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
