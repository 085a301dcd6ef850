"""advise's structure measures (tubularity, connected components, thickness) and what it recommends from them:
topology-aware losses for tubular classes, the small-component note, and the metrics to report."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from seglab.advise import advise
from seglab.advise.recommend import BOUNDARY_THICKNESS, TUBULAR_ELONGATION, TUBULAR_WIDTH
from seglab.advise.stats import SIZE_BINS, MaskStats, decode, elongation


def _vessel(h=96, w=96, phase=0.0, half=1):
    """A curved line about 2*half+1 pixels wide across the image."""
    m = np.zeros((h, w), bool)
    for x in range(w):
        y = int(h / 2 + h / 4 * np.sin(x / 12 + phase))
        m[max(y - half, 0):y + half + 1, x] = True
    return m


def _disc(h=96, w=96, cy=48, cx=48, r=20):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def _by_name(a, name):
    return next(m for m in a.structure if m["name"] == name)


def test_tubular_class_vs_blob_class():
    masks = []
    for i in range(4):
        m = np.zeros((96, 96), np.uint8)
        m[_disc(cy=30 + 5 * i, cx=60, r=16)] = 2
        m[_vessel(phase=i)] = 1  # drawn last: the vessel crosses the disc
        masks.append(m)
    a = advise(masks, class_names=["background", "vessel", "organ"])
    v, o = _by_name(a, "vessel"), _by_name(a, "organ")
    assert v["tubular"] and not o["tubular"]
    assert v["width"] <= TUBULAR_WIDTH < o["width"]
    assert v["thin_fraction"] == 1.0 and o["elongation"] < TUBULAR_ELONGATION  # the cut disc: compact pieces
    assert v["skeleton_fraction"] > 0.3  # a ~3 px wide line: about a third of its pixels are skeleton
    assert a.structure_losses and a.structure_losses[0]["classes"] == ["vessel"]
    assert a.structure_losses[0]["losses"] == ["skeleton_recall", "cldice"]
    why = next(r for r in a.reasons if r.startswith("tubular structures"))
    assert f"skeleton/foreground {v['skeleton_fraction']:.3g}" in why and f"typical width {v['width']:.3g}" in why
    metrics = {m["metric"]: m for m in a.metrics}
    assert metrics["clDice"]["classes"] == ["vessel"]
    assert metrics["HD95"]["classes"] == ["vessel"]  # thin: boundaries matter; the organ is thick
    assert f"{v['thickness']:.3g} pixels thick" in metrics["HD95"]["reason"]
    assert o["thickness"] > BOUNDARY_THICKNESS >= v["thickness"]
    assert "+skeleton_recall" in a.code and "+cldice" in a.code  # as a comment: the loss line itself is unchanged
    assert a.code.count("seglab.get_loss(") == 1
    import seglab

    for name in a.structure_losses[0]["losses"]:  # the named terms exist in the loss vocabulary
        assert name in seglab.format_loss(seglab.get_loss(f"{a.loss}+{name}", mode=a.mode))
    out = str(a)
    assert "structure" in out and "metrics to report (Metrics Reloaded)" in out
    json.loads(a.to_json())  # serialisable


def test_blobs_only_no_structure_loss():
    masks = [_disc(cy=40 + i, cx=50, r=18).astype(np.uint8) for i in range(3)]
    a = advise(masks)
    m = a.structure[0]
    assert not m["tubular"] and m["components"] == 3 and m["components_per_image"] == 1
    assert not a.structure_losses and "clDice" not in {x["metric"] for x in a.metrics}
    assert "HD95" not in {x["metric"] for x in a.metrics}  # thick discs: NSD only as the boundary metric
    assert "NSD (normalised surface Dice)" in {x["metric"] for x in a.metrics}


def test_measures_by_construction():
    """A 1-pixel straight line: skeleton = the line (fraction 1, width 1); separated squares: one component each."""
    m = np.zeros((64, 64), np.uint8)
    m[10, 5:55] = 1  # 50 px line
    for k in range(4):
        m[40:42, 5 + 10 * k:7 + 10 * k] = 2  # four 2x2 squares: small (< 0.1% of 4096 px is < 4.1 px)
    m[50:62, 40:62] = 2  # one large block
    st = MaskStats()
    st.add(decode(m, {"kind": "numpy"}), "m")
    line, blocks = st.structure.classes[1], st.structure.classes[2]
    assert (line.pixels, line.skeleton, line.components, line.boundary) == (50, 50, 1, 50)
    assert blocks.components == 5 and blocks.small_components == 4 and blocks.small_pixels == 16
    assert blocks.max_components == 5 and sum(blocks.size_hist) == 5 and blocks.size_hist[2] == 4  # size 4 in [4, 8)
    assert 0 not in st.structure.classes  # the background label is not measured


def test_elongation_of_ribbons_discs_and_tubes():
    """Length / width from size and boundary: a straight 3 x 60 ribbon ~20, a disc ~2.5 (digital), 2D and 3D."""
    from scipy import ndimage

    def el(m):
        b = np.count_nonzero(m & ~ndimage.binary_erosion(m))
        return float(elongation(np.array([m.sum()]), np.array([b]), m.ndim)[0])

    r = np.zeros((20, 80), bool)
    r[8:11, 10:70] = True
    assert el(r) == pytest.approx(60 / 3, rel=0.05)
    assert 2 < el(_disc(r=20)) < 3.2
    zz, yy, xx = np.mgrid[:40, :24, :24]
    thin = ((yy - 12) ** 2 + (xx - 12) ** 2 < 1.5 ** 2) & (zz > 2) & (zz < 38)
    ball = (zz - 20) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 < 9 ** 2
    assert el(thin) > 3 * el(ball)


def test_small_component_note():
    masks = []
    for i in range(3):
        m = np.zeros((128, 128), np.uint8)
        m[_disc(128, 128, 64, 64, 25)] = 1
        for k in range(6):
            m[10 + 3 * i, 10 + 15 * k:12 + 15 * k] = 1  # six 2-pixel specks per image
        masks.append(m)
    a = advise(masks)
    w = next(x for x in a.warnings if "connected components" in x)
    assert "18 of its 21 connected components" in w and "small-component recall" in w
    assert "per-component recall (detection)" in {x["metric"] for x in a.metrics}


def test_per_image_dice_when_a_class_is_often_absent():
    masks = []
    for i in range(4):
        m = np.zeros((48, 48), np.uint8)
        m[_disc(48, 48, 24, 24, 10)] = 1
        if i < 2:
            m[2:8, 2:8] = 2  # class 2 in only half of the images
        masks.append(m)
    a = advise(masks)
    d = a.metrics[0]
    assert d["metric"] == "Dice, per image" and "absent from 50% of the images" in d["reason"]
    masks = [np.where(_disc(48, 48, 24, 24, 10), 1, 0).astype(np.uint8) for _ in range(3)]
    assert advise(masks).metrics[0]["metric"] == "Dice"


def test_3d_tube_is_tubular_and_channels_are_mapped():
    vol = np.zeros((2, 64, 40, 40), bool)  # channel-first multilabel volume: channel 0 a tube, channel 1 a ball
    zz, yy, xx = np.mgrid[:64, :40, :40]
    vol[0] = ((yy - 20) ** 2 + (xx - 12) ** 2 < 2.5 ** 2) & (zz > 3) & (zz < 60)  # 56 long, 5 wide
    vol[1] = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 28) ** 2 < 8 ** 2
    vol[1] |= vol[0] & (zz < 10)  # overlap: multilabel
    a = advise([vol], format="onehot")
    assert a.mode == "multilabel"
    tube, ball = _by_name(a, "channel 0"), _by_name(a, "channel 1")
    assert tube["tubular"] and not ball["tubular"]
    assert 3 <= tube["width"] <= 7  # a tube of diameter ~5 voxels


def test_structure_measures_are_bounded_and_streamed():
    """Counters only: the per-class state has the same size after 1 or 150 images, and a generator is consumed once."""
    def gen(n):
        for i in range(n):
            m = np.zeros((48, 48), np.uint8)
            m[_vessel(48, 48, phase=i)] = 1
            yield m

    st = MaskStats()
    for k, m in enumerate(gen(150)):
        st.add(decode(m, {"kind": "numpy"}), f"m{k}")
        assert len(st.structure.classes) == 1 and len(st.structure.classes[1].size_hist) == SIZE_BINS
    assert st.structure.classes[1].images == 150
    a = advise(gen(30))
    assert a.n_images == 30 and a.structure[0]["images"] == 30


def test_without_the_structure_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.morphology", None)
    a = advise([_vessel().astype(np.uint8)])
    assert a.structure == [] and not a.structure_losses
    note = next(n for n in a.encoding_notes if n.startswith("no structure measures"))
    assert "pip install 'seglab[structure]'" in note
    assert a.mode == "binary"  # the rest of the advice is unchanged


@pytest.mark.parametrize("void", [255])
def test_void_label_is_not_a_structure(void):
    m = np.zeros((32, 32), np.uint8)
    m[_disc(32, 32, 16, 16, 8)] = 1
    m[0, :] = void
    a = advise([m, m.copy()])
    assert a.void_label == void and [x["name"] for x in a.structure] == ["class 1"]
