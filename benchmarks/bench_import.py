"""``import seglab`` against ``import torch`` (issue 23: target ``import seglab`` <= 1.3x ``import torch``).

Fresh interpreters, interleaved (torch, seglab, torch, seglab, ...) so that machine noise hits both alike. Three
numbers per process: the whole process's wall time (``python -c "import X"``, interpreter start included: what a
CLI call costs), the import statement alone (``time.perf_counter`` around it, inside the process) and that
statement's CPU time (``time.process_time``: the least sensitive to other processes on a shared machine). Reports
the medians over ``--runs`` processes each and their ratios seglab / torch; ``--json`` writes them. Also lists which
of a few heavy modules (torch._dynamo, triton, scipy, ...) ``import seglab`` pulled in (should be none).

    .venv/bin/python benchmarks/bench_import.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("torch._dynamo", "torch._inductor", "triton", "scipy", "skimage", "sympy", "matplotlib", "pyarrow", "monai",
         "torch.distributed.fsdp")
_CODE = ("import time, sys; t, c = time.perf_counter(), time.process_time(); import {mod}; "
         "print(time.perf_counter() - t, time.process_time() - c); "
         "print(','.join(m for m in {heavy!r} if m in sys.modules))")
KEYS = ("process_wall_s", "import_wall_s", "import_cpu_s")


def one(module: str) -> tuple[tuple[float, float, float], list[str]]:
    """((whole process wall s, import wall s, import CPU s), heavy modules loaded) for one fresh interpreter."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CODE.format(mod=module, heavy=HEAVY)], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    whole = time.perf_counter() - t0
    wall, cpu = (float(v) for v in out[0].split())
    return (whole, wall, cpu), [m for m in out[1].split(",") if m]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    one("seglab")  # warm the file cache and the bytecode caches (not timed)
    res: dict[str, list] = {"torch": [], "seglab": []}
    heavy: list[str] = []
    for _ in range(args.runs):
        for mod in ("torch", "seglab"):
            times, loaded = one(mod)
            res[mod].append(times)
            if mod == "seglab":
                heavy = loaded
    med = {m: [statistics.median(t[k] for t in r) for k in range(3)] for m, r in res.items()}
    out: dict = {"runs": args.runs, "python": sys.version.split()[0]}
    for k, key in enumerate(KEYS):
        out[key] = {m: round(med[m][k], 3) for m in res}
        out[key]["ratio"] = round(med["seglab"][k] / med["torch"][k], 3)
    out["all"] = {m: [[round(v, 3) for v in t] for t in r] for m, r in res.items()}
    out["heavy_modules_loaded_by_import_seglab"] = heavy
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
