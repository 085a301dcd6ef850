"""A folder task for the tests of advise --compare and compare --ablate advised (imported by test modules; a
module of its own, since ``conftest`` names several files of tests/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_split_advice_folder(root: Path, n: int = 10) -> None:
    """A folder task whose validation cases hold a big class-2 band and whose training cases a tiny square, so that
    advice on all masks and advice on the training masks differ."""
    from seglab.data import create_task

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        m = np.zeros((16, 16), dtype=np.uint8)
        m[2:8, 2:8] = 1
        m[10:12, 10:12] = 2
        np.save(root / "masks" / f"case{i:02d}.npy", m)
        np.save(root / "images" / f"case{i:02d}.npy", rng.normal(size=(16, 16)).astype(np.float32) + m)
    for stem in create_task("folder", path=str(root)).val_cases:
        m = np.zeros((16, 16), dtype=np.uint8)
        m[2:8, 2:8] = 1
        m[8:16, 0:16] = 2
        np.save(root / "masks" / f"{stem}.npy", m)
