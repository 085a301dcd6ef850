"""Dice+CE (multiclass, index target) fwd+bwd: reference (fused off) vs the two fused backends, vs F.cross_entropy.

Interleaved rounds in one process, median ratio to F.cross_entropy within each round. Usage:
    .venv/bin/python benchmarks/bench_backends.py [--shapes 16x4x256x256,...] [--rounds 5] [--out benchmarks/bench_backends.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

import seglab.losses as L
from seglab import _checks
from seglab.bench import machine
from seglab.kernels import dispatch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="16x4x256x256,2x4x96x96x96,8x21x256x256")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/bench_backends.json")
    a = ap.parse_args()
    loss = L.DiceLoss("multiclass") + L.CrossEntropyLoss("multiclass")
    variants = {
        "F.cross_entropy": (None, lambda x, t: F.cross_entropy(x, t)),
        "reference (fused off)": ("off", loss),
        "fused eager (torch ops)": ("eager", loss),
        "fused cpu_ext (C++)": ("cpu", loss),
    }
    out = {"machine": machine(), "shapes": {}}
    for s in a.shapes.split(","):
        shape = tuple(int(v) for v in s.split("x"))
        x = torch.randn(shape, requires_grad=True)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
        times = {k: [] for k in variants}
        for r in range(a.rounds + 1):
            for k, (mode, fn) in variants.items():
                os.environ["SEGLAB_FUSED_BACKEND"] = mode or ""
                with dispatch.fused(mode != "off"), _checks.validation(False):
                    x.grad = None
                    t0 = time.perf_counter()
                    fn(x, t).backward()
                    dt = time.perf_counter() - t0
                if r:
                    times[k].append(dt)
        base = times["F.cross_entropy"]
        res = {k: {"ms": 1e3 * statistics.median(v), "ratio_ce": statistics.median([p / q for p, q in zip(v, base)])}
               for k, v in times.items()}
        out["shapes"][s] = res
        for k, v in res.items():
            print(f"{s:>16} {k:<26} {v['ms']:8.1f} ms  {v['ratio_ce']:.2f}x CE")
    os.environ.pop("SEGLAB_FUSED_BACKEND", None)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
