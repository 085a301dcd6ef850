"""Peak resident memory of ``seglab advise`` on a folder of 2,000 masks of 512x512 (target: < 500 MB).

Generates the folder in a temporary directory (index PNGs with 4 classes, random rectangles, some empty),
then runs ``python -m seglab advise FOLDER --json`` in a child process and reads the child's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), so that generating the data does not count.

    .venv/bin/python benchmarks/advise_memory.py [--n 2000] [--size 512] [--out benchmarks/advise_memory.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def generate(folder: Path, n: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        if i % 10:  # every 10th mask stays empty
            for c in rng.integers(1, 4, size=rng.integers(1, 5)):
                y, x = rng.integers(0, size - 64, 2)
                h, w = rng.integers(8, 64, 2)
                m[y:y + h, x:x + w] = c
        sub = folder / f"part{i // 500}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(m).save(sub / f"mask_{i:05d}.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=None, help="write the JSON result here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp), args.n, args.size)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "seglab", "advise", tmp, "--json"], capture_output=True, text=True)
        advise_s = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        advice = json.loads(proc.stdout)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    result = {
        "benchmark": "seglab advise peak RSS",
        "n_masks": args.n, "mask_shape": [args.size, args.size], "format": "index PNG (uint8), 4 classes",
        "peak_rss_mb": round(peak_kib / 1024, 1), "limit_mb": 500, "passed": peak_kib / 1024 < 500,
        "advise_seconds": round(advise_s, 1), "generate_seconds": round(gen_s, 1),
        "n_images_read": advice["n_images"], "mode": advice["mode"], "loss": advice["loss"],
        "python": platform.python_version(), "machine": platform.machine(), "command": " ".join(["python", *sys.argv]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
