"""seglab advise on a new user's masks: no advice from 0 files, void labels, large label values,
extreme weights, NIfTI voxels and spacing, a versioned --json, plain unwrapped piped output."""

from __future__ import annotations

import io
import json
import re
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import seglab
from seglab._version import __version__
from seglab.advise import advise
from seglab.advise.recommend import dice_ce_weighted
from seglab.cli import main

VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (251 * 3) + [224, 224, 192]  # 256 entries, 255 = void colour


def _run(args, capsys):
    rc = main(["advise", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("case", ["negative", "huge", "random_rgb"])
def test_no_readable_mask_is_an_error_with_the_cause(tmp_path, capsys, case):
    if case == "negative":
        np.save(tmp_path / "a.npy", -np.ones((8, 8), np.int64))
        why = "negative label -1"
    elif case == "huge":
        a = np.zeros((8, 8), np.int64)
        a[0, 0] = 10**9
        np.save(tmp_path / "a.npy", a)
        why = "label 1000000000 is too large"
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
        why = "more than 1024 distinct colours"
    with pytest.raises(ValueError, match=f"no readable mask in {re.escape(str(tmp_path))}: 1 file\\(s\\) skipped: .*{why}"):
        advise(tmp_path)
    rc, out, err = _run([tmp_path], capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and why in err and "a." in err
    assert "class weights need" not in err
    rc, out, _ = _run([tmp_path, "--json"], capsys)
    d = json.loads(out)
    assert rc == 2 and why in d["error"] and d["schema_version"] >= 2 and d["seglab_version"] == __version__


def test_large_label_values_cost_by_distinct_labels(tmp_path, capsys):
    a = np.zeros((64, 64), np.uint16)
    a[:20] = 1
    a[0, 0] = 60000  # one stray pixel in a 16-bit PNG
    Image.fromarray(a).save(tmp_path / "m.png")
    tracemalloc.start()
    adv = advise(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20, peak  # was a (60001, 60001) int64 matrix: 26.8 GiB
    assert adv.num_classes == 3 and adv.label_values == [0, 1, 60000] and adv.class_pixel_counts == [64 * 44, 64 * 20 - 1, 1]
    assert any("label values (0, 1, 60000) are not the class indices 0..2" in s for s in adv.assumptions)
    assert any("label 60000 covers only 1 pixel" in w and "m.png" in w for w in adv.warnings)
    ns: dict = {}
    exec(adv.code, ns)
    target = torch.from_numpy(a.astype(np.int64))[None]
    exec(adv.code.splitlines()[3].lstrip("# ").split("  #")[0], ns, loc := {"target": target, "torch": torch})
    assert loc["target"].max() == 2
    assert torch.isfinite(ns["loss"](torch.randn(1, 3, 64, 64), loc["target"]))
    rc, out, _ = _run([tmp_path], capsys)
    assert rc == 0 and len(out.splitlines()) < 60  # was 20,402 lines for a stray 5000


def test_small_label_gaps_stay_class_indices():
    m = np.zeros((10, 10), np.int64)
    m[:3] = 1
    m[5:] = 3
    a = advise([m])
    assert a.num_classes == 4 and a.label_values == [0, 1, 2, 3] and a.class_pixel_counts[2] == 0 and not a.assumptions


def _voc(tmp_path, n=3, palette=VOC_PALETTE, void=255):
    for i in range(n):
        m = np.zeros((40, 40), np.uint8)
        m[5:20, 5:20] = 1 + i
        m[4, 4:21] = void  # boundary
        m[21, 4:21] = void
        im = Image.fromarray(m, mode="P")
        im.putpalette(palette)
        im.save(tmp_path / f"{i}.png")


def test_voc_palette_255_is_void_and_said_first(tmp_path, capsys):
    _voc(tmp_path)
    a = advise(tmp_path)
    assert a.void_label == 255 and a.num_classes == 4 and a.out_channels == 4 and a.n_ignored_pixels == 3 * 34
    assert a.assumptions[0].startswith("treating 255 as void (ignore_index=255)") and "--ignore-index none" in a.assumptions[0]
    assert a.loss_kwargs["ignore_index"] == 255 and a.class_pixel_counts == [3 * (1600 - 225 - 34), 225, 225, 225]
    rc, out, _ = _run([tmp_path], capsys)
    assert rc == 0 and out.splitlines()[1].startswith("assumption: treating 255 as void (ignore_index=255)")
    assert len(out.splitlines()) < 60
    ns: dict = {}
    exec(a.code, ns)
    t = torch.from_numpy(np.asarray(Image.open(tmp_path / "0.png"), dtype=np.int64))[None]
    assert torch.isfinite(ns["loss"](torch.randn(1, 4, 40, 40), t))
    # the user can say 255 is a class
    b = advise(tmp_path, ignore_index=None)
    assert b.void_label is None and b.num_classes == 5 and b.label_values == [0, 1, 2, 3, 255] and not any("void" in s for s in b.assumptions)
    rc, out, _ = _run([tmp_path, "--ignore-index", "none", "--json"], capsys)
    assert rc == 0 and json.loads(out)["num_classes"] == 5


def test_value_outside_the_palette_is_void(tmp_path):
    # a 17-entry colour table (Pillow writes 8-bit indices from 17 entries on), 200 marks void
    _voc(tmp_path, n=2, palette=[0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * 14 * 3, void=200)
    assert np.asarray(Image.open(tmp_path / "0.png")).max() == 200
    a = advise(tmp_path)
    assert a.void_label == 200 and a.num_classes == 3 and "outside the palette's colour table (17 entries)" in a.assumptions[0]


def test_binary_with_void_builds_loss(tmp_path):
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 1
    m[7, 7:25] = 255
    np.save(tmp_path / "m.npy", m)
    a = advise(tmp_path)
    assert a.mode == "binary" and a.void_label == 255 and a.loss_kwargs.get("ignore_index") == 255
    ns: dict = {}
    exec(a.code, ns)
    assert torch.isfinite(ns["loss"](torch.randn(1, 1, 32, 32), torch.from_numpy(m.astype(np.int64))[None, None].float()))


def test_extreme_class_weights_capped_with_reason():
    m = np.zeros((4, 64, 64), np.int64)
    m[:, :32] = 1
    m[0, 63, 63] = 2  # 1 pixel: median-frequency weight in the thousands
    a = advise(list(m))
    assert max(a.class_weights_uncapped) > 1000 and max(a.class_weights) == 50
    assert a.loss == dice_ce_weighted(a.class_weights) and "class_weights" not in a.loss_kwargs  # capped, in CE only
    assert any("class weights capped at 50" in w and "ENet" in w for w in a.warnings)
    assert seglab.get_loss(a.loss, mode=a.mode, **{k: torch.tensor(v) if isinstance(v, list) else v for k, v in a.loss_kwargs.items()})
    b = advise(list(m), max_weight=float("inf"))
    assert b.class_weights == b.class_weights_uncapped and not any("capped" in w for w in b.warnings)


def test_extreme_pos_weight_capped(tmp_path):
    m = np.zeros((100, 100), np.uint8)
    m[0, :10] = 1  # 10 of 10,000 pixels: pos_weight 999
    a = advise([m])
    assert a.pos_weight_uncapped == [pytest.approx(999)] and a.pos_weight == [50.0]
    assert any("pos_weight capped at 50" in w for w in a.warnings)
    assert advise([m], max_weight=200).pos_weight == [200.0]


def test_nifti_voxels_volumes_spacing(tmp_path, capsys):
    vol = np.zeros((12, 10, 8), np.int16)
    vol[2:6, 2:6, 2:6] = 1
    vol[8:10] = 2
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 3.0, 1.0])), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(vol, np.diag([0.8, 0.8, 2.0, 1.0])), str(tmp_path / "b.nii.gz"))
    a = advise(tmp_path)
    assert a.element == "voxel" and a.sample == "volume"
    assert a.spacing["median"] == pytest.approx([0.8, 0.8, 2.5]) and a.spacing["anisotropy"] == pytest.approx(3.75)
    assert any("anisotropic voxels" in w for w in a.warnings)
    rc, out, _ = _run([tmp_path], capsys)
    assert rc == 0 and "voxel spacing" in out and "2 volume(s)" in out and "in volumes" in out
    assert "pixel" not in out and " image" not in out
    d = json.loads(_run([tmp_path, "--json"], capsys)[1])
    assert d["element"] == "voxel" and d["spacing"]["anisotropy"] == pytest.approx(3.75)


def test_json_carries_schema_and_version(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.eye(8, dtype=np.uint8))
    rc, out, _ = _run([tmp_path, "--json"], capsys)
    d = json.loads(out)
    assert rc == 0 and list(d)[:2] == ["schema_version", "seglab_version"]
    assert d["schema_version"] == 2 and d["seglab_version"] == __version__
    assert advise(tmp_path).to_dict()["seglab_version"] == __version__


def _many_classes(tmp_path):
    m = np.zeros((40, 40), np.uint8)
    for c in range(1, 12):
        m[c * 3: c * 3 + 1 + c // 4] = c  # 11 classes: a long class_weights tensor on the code line
    Image.fromarray(m).save(tmp_path / "m.png")


def test_piped_output_plain_and_code_line_whole(tmp_path, capsys):
    _many_classes(tmp_path)
    rc, out, _ = _run([tmp_path], capsys)  # capsys: stdout is not a TTY
    assert rc == 0 and "\x1b[" not in out and not set("┃┏━│╭╰") & set(out)
    code = [ln for ln in out.splitlines() if "seglab.get_loss(" in ln]
    assert len(code) == 1 and len(code[0]) > 80 and code[0].startswith("loss = seglab.get_loss(") and code[0].endswith(")")
    assert advise(tmp_path).code.splitlines()[3] == code[0]


def test_terminal_render_never_breaks_code_line(tmp_path):
    from rich.console import Console

    from seglab.advise.report import render

    _many_classes(tmp_path)
    a = advise(tmp_path)
    buf = io.StringIO()
    render(a, Console(file=buf, width=80, force_terminal=True))
    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())
    assert a.code.splitlines()[3] in text.splitlines()


def test_presence_statistic_named(tmp_path, capsys):
    for i in range(30):
        m = np.zeros((8, 8), np.uint8)
        m[:4] = 1
        if i == 0:
            m[7, 7] = 2  # class 2 in 1 of 30 masks
        np.save(tmp_path / f"{i:02d}.npy", m)
    a = advise(tmp_path)
    assert a.rare_classes == [2] and "present in < 5% of the images" in a.rare_rule
    assert any(w.startswith("classes present in < 5% of images") for w in a.warnings)
    rc, out, _ = _run([tmp_path], capsys)
    assert "classes in < 5% of images  class 2" in out and "rare classes" not in out
