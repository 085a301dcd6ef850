"""seglab advise on masks generated here with known answers (every file written to tmp_path)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import seglab
import seglab.advise
from seglab.advise import advise
from seglab.cli import main


def _index_mask(h: int = 20, w: int = 20) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[:10, :10] = 1  # 100 px
    m[15:20, :4] = 2  # 20 px
    return m


def _terms(a) -> dict[str, dict]:
    """``{term name: its options}`` of the advised loss's canonical spec (``a.loss_spec``)."""
    from seglab.losses.registry import parse_loss_spec

    return {t.name: t.options for t in parse_loss_spec(a.loss_spec)}


def test_index_png_folder(tmp_path):
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    Image.fromarray(_index_mask()).save(tmp_path / "m0.png")
    Image.fromarray(_index_mask()).save(sub / "m1.png")  # recursive
    only1 = np.zeros((20, 20), np.uint8)
    only1[:10] = 1  # 200 px of class 1, no class 2
    Image.fromarray(only1).save(tmp_path / "m2.png")
    a = advise(tmp_path)
    assert a.encoding == "index" and a.n_files == 3 and a.n_images == 3
    assert a.class_pixel_counts == [1200 - 440, 400, 40]
    np.testing.assert_allclose(a.class_frequencies, [760 / 1200, 400 / 1200, 40 / 1200])
    assert a.class_image_counts == [3, 3, 2]
    assert a.mode == "multiclass" and a.activation == "softmax" and a.num_classes == 3
    assert a.imbalance_ratio == pytest.approx(760 / 40)
    assert _terms(a) == {"dice": {"batch": True, "include_background": False},
                         "ce": {"class_weights": pytest.approx(a.class_weights)}}
    assert a.include_background is False  # background 63% >= 50%
    # median frequency: freq = 780/1200, 400/1200, 40/800 -> median 1/3
    freq = np.array([760 / 1200, 400 / 1200, 40 / 800])
    np.testing.assert_allclose(a.class_weights, np.median(freq) / freq)
    assert a.multilabel_overlap_fraction == 0.0 and a.every_pixel_labelled
    assert any("imbalance ratio 19 (> 3)" in r for r in a.reasons)


def test_palette_png(tmp_path):
    im = Image.fromarray(_index_mask(), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    a = advise(tmp_path / "p.png")
    assert a.encoding == "palette"
    assert a.class_pixel_counts == [280, 100, 20]


def test_binary_0_255_png_and_code_builds_loss(tmp_path):
    m = np.zeros((32, 32), np.uint8)
    m[:4, :4] = 255  # 16 px foreground
    Image.fromarray(m).save(tmp_path / "b.png")
    a = advise(tmp_path)
    assert a.mode == "binary" and a.activation == "sigmoid" and a.out_channels == 1
    assert a.pos_weight_uncapped == [pytest.approx(1008 / 16)] and a.pos_weight == [50.0]  # capped at --max-weight 50
    assert a.loss == "dice+ce" and "0 and 255" in a.encoding_notes[0]
    ns: dict = {}
    exec(a.code, ns)
    out = ns["loss"](torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    assert torch.isfinite(out)


def test_onehot_npy(tmp_path):
    lab = _index_mask()
    oh = np.stack([(lab == c) for c in range(3)]).astype(np.uint8)  # (3, 20, 20)
    np.save(tmp_path / "oh.npy", oh)
    a = advise(tmp_path)
    assert a.encoding == "onehot" and not a.encoding_ambiguous
    assert a.mode == "multiclass" and a.class_pixel_counts == [280, 100, 20]
    assert a.every_pixel_labelled and a.background_class == 0


def test_multihot_npy_with_overlaps(tmp_path):
    y = np.zeros((2, 3, 10, 10), np.uint8)  # stacked (N, C, H, W)
    y[:, 0, :5] = 1  # 50 px per image
    y[:, 1, :, :2] = 1  # 20 px per image; overlaps channel 0 on 5x2 = 10 px
    y[0, 2, 9, 9] = 1  # 1 px, image 0 only, no overlap
    np.save(tmp_path / "mh.npy", y)
    a = advise(tmp_path)
    assert a.encoding == "multihot" and a.n_images == 2 and a.n_files == 1
    assert a.mode == "multilabel" and a.activation == "sigmoid"
    assert a.class_pixel_counts == [100, 40, 1]
    labelled = 2 * (50 + 20 - 10) + 1
    assert a.multilabel_overlap_fraction == pytest.approx(20 / labelled)
    assert a.overlap_pairs[0]["classes"] == [0, 1] and a.overlap_pairs[0]["pixels"] == 20
    np.testing.assert_allclose(a.pos_weight_uncapped, [100 / 100, 160 / 40, 199 / 1])
    np.testing.assert_allclose(a.pos_weight, [1, 4, 50])  # capped at MAX_WEIGHT
    assert a.class_image_counts == [2, 2, 1]
    assert not a.every_pixel_labelled
    ns: dict = {}
    exec(a.code, ns)
    assert torch.isfinite(ns["loss"](torch.randn(2, 3, 10, 10), torch.from_numpy(y).float()))


def test_exclusive_channels_get_implicit_background():
    y = np.zeros((2, 8, 8), np.uint8)
    y[0, :2] = 1
    y[1, 4:] = 1
    a = advise([y])
    assert a.mode == "multiclass" and a.num_classes == 3
    assert a.class_names[0].startswith("background") and a.class_pixel_counts == [16, 16, 32]
    assert not a.every_pixel_labelled and a.unlabelled_fraction == pytest.approx(16 / 64)


def _rgb(colours: dict[tuple[int, int, int], tuple[slice, slice]]) -> np.ndarray:
    im = np.zeros((10, 10, 3), np.uint8)
    for c, (r, s) in colours.items():
        im[r, s] = c
    return im


def test_rgb_without_mixed_colours(tmp_path):
    Image.fromarray(_rgb({(255, 0, 0): (slice(0, 5), slice(0, 10)), (0, 0, 255): (slice(5, 6), slice(0, 10))})).save(tmp_path / "c.png")
    a = advise(tmp_path)
    assert a.encoding == "rgb" and a.rgb["reading"] == "classes" and not a.rgb["ambiguous"]
    assert [c["name"] for c in a.rgb["colours"]] == ["#000000 (black)", "#0000ff (blue)", "#ff0000 (red)"]
    assert a.class_names == ["#000000 (black)", "#0000ff (blue)", "#ff0000 (red)"]
    assert a.class_pixel_counts == [40, 10, 50] and a.mode == "multiclass"


def test_rgb_magenta_is_ambiguous_both_readings(tmp_path):
    # red rows 0-3, blue rows 6-9, magenta (= red + blue) rows 4-5
    im = _rgb({(255, 0, 0): (slice(0, 4), slice(0, 10)), (255, 0, 255): (slice(4, 6), slice(0, 10)), (0, 0, 255): (slice(6, 10), slice(0, 5))})
    Image.fromarray(im).save(tmp_path / "m.png")
    a = advise(tmp_path)
    assert a.rgb["ambiguous"] and a.encoding_ambiguous and a.rgb["mixed_colours"] == ["#ff00ff (magenta)"]
    assert a.rgb["reading"] == "multilabel" and a.mode == "multilabel"
    assert a.class_names == ["red", "blue"] and a.class_pixel_counts == [60, 40]
    assert a.multilabel_overlap_fraction == pytest.approx(20 / 80)
    assert any("--rgb-reading classes" in r and "magenta = red + blue" in r for r in a.reasons)
    b = advise(tmp_path, rgb_reading="classes")
    assert b.mode == "multiclass" and b.num_classes == 4 and b.multilabel_overlap_fraction == 0
    assert any("--rgb-reading multilabel" in r for r in b.reasons)


def test_rgb_multilabel_reading_needs_primaries(tmp_path):
    Image.fromarray(_rgb({(128, 64, 0): (slice(0, 5), slice(0, 5)), (64, 0, 0): (slice(5, 9), slice(0, 5))})).save(tmp_path / "v.png")  # R is 128 or 64
    assert advise(tmp_path).rgb["decomposable"] is False
    with pytest.raises(ValueError, match="rgb-reading multilabel needs colours made of primary channels"):
        advise(tmp_path, rgb_reading="multilabel")


def test_nifti_3d_label_volume(tmp_path):
    vol = np.zeros((12, 10, 8), np.int16)
    vol[2:6, 2:6, 2:6] = 1  # 64 voxels
    vol[8:10, :, :] = 2  # 160 voxels
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    a = advise(tmp_path)
    assert a.encoding == "index" and a.n_images == 1
    assert a.class_pixel_counts == [960 - 224, 64, 160]
    assert a.mode == "multiclass"


def test_all_background_and_corrupt_file(tmp_path):
    Image.fromarray(_index_mask()).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "empty.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "broken.npy").write_bytes(b"garbage")
    a = advise(tmp_path)
    assert a.n_files == 2 and a.n_skipped == 2
    assert a.empty_masks == 1 and a.empty_mask_files == [str(tmp_path / "empty.png")]
    errors = {s["file"]: s["error"] for s in a.skipped}
    assert set(errors) == {str(tmp_path / "broken.png"), str(tmp_path / "broken.npy")}
    assert all(f in e and "cannot read" in e for f, e in errors.items())
    assert any("2 file(s) skipped" in w for w in a.warnings)
    assert a.class_image_counts == [2, 1, 1]


def test_single_all_background_file_warns(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((16, 16), np.uint8))
    a = advise(tmp_path / "z.npy")
    assert a.num_classes == 1 and a.empty_masks == 1
    assert any("only one class" in w for w in a.warnings)


def test_no_readable_mask_and_missing_path(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"no readable mask in .*x\.png"):
        advise(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        advise(tmp_path / "missing")
    (tmp_path / "x.png").unlink()
    with pytest.raises(ValueError, match="no mask files found"):
        advise(tmp_path)


def test_ignore_index_and_forced_formats(tmp_path):
    m = _index_mask()
    m[0, :] = 255
    np.save(tmp_path / "m.npy", m)
    a = advise(tmp_path, ignore_index=255)
    assert a.n_ignored_pixels == 20 and a.n_pixels == 380 and a.num_classes == 3
    assert a.loss_kwargs["ignore_index"] == 255 and "ignore_index=255" in a.code
    with pytest.raises(ValueError, match="--format rgb needs an"):
        advise([m], format="rgb")
    with pytest.raises(ValueError, match="--format onehot needs a channel-first"):
        advise([m], format="onehot")
    with pytest.raises(ValueError, match="unknown format 'png'"):
        advise([m], format="png")


def test_ambiguous_binary_stack_reported():
    v = np.zeros((4, 16, 16), np.uint8)
    v[1:3, 4:8, 4:8] = 1  # could be 4 channels or a binary 3D volume
    a = advise([v])
    assert a.encoding_ambiguous and "--format index" in a.encoding_notes[0]
    b = advise([v], format="index")
    assert not b.encoding_ambiguous and b.mode == "binary"


def test_inconsistent_channels_skipped():
    a = advise([np.eye(3, dtype=np.uint8)[np.zeros((8, 8), int)].transpose(2, 0, 1), np.ones((2, 8, 8), np.uint8)])
    assert a.n_files == 1 and a.n_skipped == 1 and "2 channels, but earlier files have 3" in a.skipped[0]["error"]


def test_balanced_gives_plain_ce_and_weights_choice():
    m = np.zeros((10, 10), np.int64)
    m[:, 3:6] = 1
    m[:, 6:] = 2
    a = advise([m], weights="inverse")
    assert a.loss == "ce" and "class_weights" not in a.loss_kwargs and a.imbalance_ratio == pytest.approx(4 / 3)
    raw = np.array([1 / 0.3, 1 / 0.3, 1 / 0.4])  # counts 30, 30, 40
    np.testing.assert_allclose(a.class_weights, raw / raw.mean())
    ns: dict = {}
    exec(a.code, ns)
    assert torch.isfinite(ns["loss"](torch.randn(1, 3, 10, 10), torch.from_numpy(m)[None]))


@pytest.mark.parametrize("weights", ["inverse", "median", "effective"])
def test_emitted_code_builds_multiclass_loss(weights):
    rng = np.random.default_rng(0)
    m = (rng.random((4, 16, 16)) < 0.05).astype(np.int64) * rng.integers(1, 4, (4, 16, 16))
    a = advise(list(m), weights=weights)
    # class weights in the CE term only (Dice class weights: a measured harm, dropped; analysis plan amendment 6)
    assert a.loss.startswith("dice+ce[class_weights=") and f'"{a.loss}"' in a.code and "include_background=False" in a.code
    terms = _terms(a)
    assert terms["ce"]["class_weights"] == pytest.approx(a.class_weights) and "class_weights" not in terms["dice"]
    ns: dict = {}
    exec(a.code, ns)
    assert isinstance(ns["loss"], torch.nn.Module)
    assert torch.isfinite(ns["loss"](torch.randn(4, 4, 16, 16), torch.from_numpy(m)))


def test_module_is_callable():
    assert isinstance(seglab.advise(np.zeros((4, 4), np.uint8)), seglab.advise.Advice)


def test_cli_json_and_report(tmp_path, capsys):
    Image.fromarray(_index_mask()).save(tmp_path / "m.png")
    assert main(["advise", str(tmp_path), "--json", "--weights", "effective"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("encoding", "num_classes", "mode", "activation", "loss", "class_frequencies", "class_weights", "pos_weight",
              "include_background", "multilabel_overlap_fraction", "reasons"):
        assert k in d
    assert d["num_classes"] == 3 and d["pos_weight"] is None and d["weights_method"] == "effective"
    assert seglab.get_loss(d["loss"], mode=d["mode"]) is not None
    assert main(["advise", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recommendation" in out and "seglab.get_loss(" in out and "softmax" in out
    assert main(["advise", str(tmp_path / "nothing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_advice_prints_the_spec_string_train_takes():
    """issue 22: advise prints the --loss spec beside the Python line, and the spec builds the advised loss."""
    import json

    import numpy as np
    import torch

    import seglab
    from seglab.advise import advise

    masks = [np.zeros((16, 16), np.uint8) for _ in range(4)]
    for i, m in enumerate(masks):
        m[2:9, 2:9] = 1
        m[11:13, 11:13] = 2 if i < 2 else 0
    adv = advise(masks)
    line = next(ln for ln in str(adv).splitlines() if ln.strip().startswith("--loss spec"))
    assert line.split("--loss spec", 1)[1].strip() == adv.loss_spec and "[" in adv.loss_spec
    assert json.loads(adv.to_json())["loss_spec"] == adv.loss_spec
    x, t = torch.randn(2, adv.out_channels, 16, 16), torch.randint(0, adv.num_classes, (2, 16, 16))
    from_spec = seglab.get_loss(adv.loss_spec, mode=adv.mode)
    from_kwargs = seglab.get_loss(adv.loss, mode=adv.mode, **adv.loss_kwargs)
    torch.testing.assert_close(from_spec(x, t), from_kwargs(x, t))
