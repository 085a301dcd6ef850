"""Helpers of the report tests: a 4-class folder task on disk and a check that a matplotlib panel shows data."""

from __future__ import annotations

import numpy as np

#: class names given to the folder task
CLASSES = ["bg", "liver", "kidney", "lesion"]


def make_four_class_folder(root) -> None:
    """6 cases of 24x24 ``.npy`` images/masks: a large square (liver), a small one (kidney), a 2x2 lesion."""
    rng = np.random.default_rng(0)
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(6):
        m = np.zeros((24, 24), np.uint8)
        r, c = rng.integers(2, 8, 2)
        m[r:r + 10, c:c + 10] = 1
        r, c = rng.integers(14, 18, 2)
        m[r:r + 5, c:c + 5] = 2
        r, c = rng.integers(0, 21, 2)
        m[r:r + 2, c:c + 2] = 3
        img = m.astype(np.float32) + 0.3 * rng.standard_normal(m.shape).astype(np.float32)
        np.save(root / "images" / f"c{i}.npy", img)
        np.save(root / "masks" / f"c{i}.npy", m)


def drawn(ax) -> bool:
    """Whether ``ax`` shows data: a line with >= 2 finite points (or >= 1 with a marker), an image or a
    collection with a finite value."""
    for ln in ax.lines:
        if not ln.get_visible():
            continue
        x, y = (np.asarray(v, dtype=float) for v in ln.get_data())
        n = int((np.isfinite(x) & np.isfinite(y)).sum())
        if (n >= 2 and ln.get_linestyle() not in ("None", "", " ")) or (n >= 1 and ln.get_marker() not in (None, "None", "", " ")):
            return True
    for art in list(ax.images) + list(ax.collections):
        a = art.get_array()
        if a is not None and np.isfinite(np.ma.filled(np.ma.asarray(a, dtype=float), np.nan)).any():
            return True
    return False


