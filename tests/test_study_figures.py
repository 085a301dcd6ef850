"""tools/study_figures.py: the study's smoothing, and a figure drawn from a curves file."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("seglab_study_figures", ROOT / "tools" / "study_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fig = _tool()


@pytest.mark.parametrize("smooth", [0, 2, 4, 20])
def test_study_smooth_is_a_centred_mean_with_edge_padding(smooth):
    y = [math.sin(0.7 * i) + 0.1 * i for i in range(37)]
    got = fig.study_smooth(y, smooth)
    h = smooth // 2
    want = [sum(y[min(max(j, 0), len(y) - 1)] for j in range(i - h, i + h + 1)) / (smooth + 1) for i in range(len(y))]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_block_means_skip_missing_values():
    assert fig._block_means([1, 2, 3, None, 5, float("nan")], block=3) == [2.0, 5.0]


def test_smoothing_windows_in_blocks():
    assert fig._blocks(fig.SMOOTH_GRAD) == 20 and fig._blocks(fig.SMOOTH_LOSS) == 0


def test_draw_from_a_curves_file(tmp_path):
    path = tmp_path / "adam_nobn_fg95.csv"
    cols = [f"{t}:{k}:{m}" for t in fig.TRAIN_LOSSES for m in fig.TRAIN_LOSSES for k in ("loss", "gnorm")]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", *cols, *(f"{t}:accuracy" for t in fig.TRAIN_LOSSES)])
        for i in range(100):
            w.writerow([i * 10, *[0.5 / (1 + i)] * len(cols), *([0.95] * 3 if i % 25 == 0 else [""] * 3)])
    out = fig.draw(path, tmp_path / "f.png", "title")
    from PIL import Image

    with Image.open(out) as im:
        assert im.size[0] > 500 and im.size[1] > 300


def test_committed_curves_have_every_training_loss():
    files = sorted(fig.CURVES.glob("*.csv"))
    assert files, "no committed curves (python tools/study_figures.py --extract RESULTS)"
    names = {fig.cell_name(o, n, f) for _, o, _, n, f in fig.CELLS}
    for f in files:
        assert f.stem in names
        d = fig.load_curves(f)
        for t in fig.TRAIN_LOSSES:
            assert any(math.isfinite(v) for v in d[f"{t}:loss:{t}"]) and any(math.isfinite(v) for v in d[f"{t}:accuracy"])
