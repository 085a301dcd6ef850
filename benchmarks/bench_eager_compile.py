"""torch.compile of the eager backend on CPU, against the eager backend itself, the C++ backend and the reference.

The question (issue 14): is ``torch.compile`` (Inductor, CPU) of :mod:`seglab.kernels.eager` a better CPU backend
than the hand-written C++ kernels, or than the reference path where the C++ kernels do not apply (dense multiclass
targets)? Keep whichever wins on CPU.

What runs: a Dice + CE loss (``DiceLoss + CrossEntropyLoss``, multiclass), forward + backward, end to end through
the loss as a user calls it, with validation off:

* ``reference``   fused kernels off (``dispatch.fused(False)``);
* ``eager``       ``SEGLAB_FUSED_BACKEND=eager`` (torch ops);
* ``compiled``    the same, with ``eager.<kind>_forward`` / ``<kind>_backward`` replaced by
                  ``torch.compile(..., dynamic=False)`` of themselves (the label bounds check is kept out of the graph
                  with ``torch.compiler.disable``: it reads two scalars, a graph break otherwise);
* ``cpp``         the C++ backend (index targets only; dense targets have none).

Kinds: ``mc`` (index target) and ``mcd`` (one-hot float target). Each shape is compiled once before timing
(compile time reported). Rounds are interleaved (the variant order rotates each round); per round the ratio of
``compiled`` to each other variant; median and quartiles over rounds. One process, one thread by default.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_eager_compile.py [--shapes 8x4x128x128] [--rounds 15]
        [--threads 1] [--out benchmarks/bench_eager_compile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import seglab.losses as L
from seglab import _checks
from seglab.bench import machine
from seglab.kernels import cpu_ext, dispatch, eager


def _quartiles(v: list[float]) -> dict[str, float]:
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "q1": q[0], "q3": q[2], "min": min(v), "max": max(v)}


def _run(variant: str, loss, x: torch.Tensor, t: torch.Tensor, compiled: dict) -> float:
    saved = {}
    if variant == "compiled":
        for name, fn in compiled.items():
            saved[name] = getattr(eager, name)
            setattr(eager, name, fn)
    os.environ["SEGLAB_FUSED_BACKEND"] = {"eager": "eager", "compiled": "eager", "cpp": "cpu"}.get(variant, "")
    try:
        with dispatch.fused(variant != "reference"), _checks.validation(False):
            x.grad = None
            t0 = time.perf_counter()
            loss(x, t).backward()
            return time.perf_counter() - t0
    finally:
        for name, fn in saved.items():
            setattr(eager, name, fn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="8x4x128x128", help="comma-separated NxCxHxW[xD] shapes")
    ap.add_argument("--kinds", default="mc,mcd", help="mc (index target) and/or mcd (one-hot target)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/bench_eager_compile.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    check = eager._check_labels
    eager._check_labels = torch.compiler.disable(check)  # keep the host-side bounds check out of the graphs
    compiled = {f"{k}_{w}": torch.compile(getattr(eager, f"{k}_{w}"), dynamic=False)
                for k in ("mc", "mcd") for w in ("forward", "backward")}
    loss = L.DiceLoss("multiclass") + L.CrossEntropyLoss("multiclass")
    out: dict = {"machine": machine(), "torch": torch.__version__, "threads": a.threads, "rounds": a.rounds,
                 "loss": "DiceLoss('multiclass') + CrossEntropyLoss('multiclass'), fwd+bwd, validation off",
                 "load_average_1min_start": os.getloadavg()[0], "results": {}}
    try:
        for s in a.shapes.split(","):
            shape = tuple(int(v) for v in s.split("x"))
            for kind in a.kinds.split(","):
                x = torch.randn(shape, requires_grad=True)
                t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
                if kind == "mcd":
                    t = torch.nn.functional.one_hot(t, shape[1]).movedim(-1, 1).float()
                variants = ["reference", "eager", "compiled"] + (["cpp"] if kind == "mc" and cpu_ext.available() else [])
                t0 = time.perf_counter()
                _run("compiled", loss, x, t, compiled)  # compile (forward and backward graphs)
                compile_s = time.perf_counter() - t0
                grads = {}
                for v in variants:  # same numbers (float32 rounding) before timing anything
                    _run(v, loss, x, t, compiled)
                    grads[v] = x.grad.clone()
                err = max(float((grads[v] - grads["reference"]).abs().max()) for v in variants)
                times: dict[str, list[float]] = {v: [] for v in variants}
                for r in range(a.rounds + 1):
                    order = variants[r % len(variants):] + variants[:r % len(variants)]
                    for v in order:
                        dt = _run(v, loss, x, t, compiled)
                        if r:  # round 0 warms up
                            times[v].append(dt)
                res = {"compile_s": compile_s, "max_abs_grad_diff_vs_reference": err,
                       "ms": {v: _quartiles([1e3 * d for d in times[v]]) for v in variants},
                       "compiled_over": {v: _quartiles([c / o for c, o in zip(times["compiled"], times[v])])
                                         for v in variants if v != "compiled"}}
                out["results"][f"{s}/{kind}"] = res
                print(f"{s} {kind}: compile {compile_s:.1f} s, grad diff {err:.1e}")
                for v in variants:
                    m = res["ms"][v]
                    line = f"  {v:<10} {m['median']:8.2f} ms [{m['q1']:.2f}, {m['q3']:.2f}]"
                    if v != "compiled":
                        c = res["compiled_over"][v]
                        line += f"   compiled/{v} = {c['median']:.3f} [{c['q1']:.3f}, {c['q3']:.3f}]"
                    print(line, flush=True)
    finally:
        eager._check_labels = check
        os.environ.pop("SEGLAB_FUSED_BACKEND", None)
    out["load_average_1min_end"] = os.getloadavg()[0]
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
