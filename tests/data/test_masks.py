"""Issue 20, "one mask reader": every mask format that ``seglab advise`` reads also trains with the folder task, and
both decide the same classes, mode and void label (seglab.data.masks). Tiny 16x16 folders written to tmp_path."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from seglab.advise import advise
from seglab.advise.stats import MaskStats
from seglab.data import FolderTask
from seglab.data import masks as M
from seglab.data.readers import read_mask
from seglab.train import RunSpec, train_run

RED, BLUE, MAGENTA, BLACK = (255, 0, 0), (0, 0, 255), (255, 0, 255), (0, 0, 0)


def _labels(i: int, n_classes: int = 3) -> np.ndarray:
    """A 16x16 index map: background, class 1 in a top block, class 2 in a bottom strip (when n_classes = 3)."""
    m = np.zeros((16, 16), np.uint8)
    m[1 + i % 3: 7 + i % 3, 2:9] = 1
    if n_classes > 2:
        m[11:14, 3 + i: 12 + i % 4] = 2
    return m


def _paint(lab: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    im = np.zeros(lab.shape + (3,), np.uint8)
    for k, c in colours.items():
        im[lab == k] = c
    return im


def _write(root, masks: list[np.ndarray], save, suffix: str, n: int = 4):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = _labels(i)
        np.save(root / "images" / f"c{i}.npy", (lab * 2.0 + rng.normal(0, 0.5, lab.shape)).astype(np.float32))
        save(masks[i], root / "masks" / f"c{i}{suffix}")
    return root


def _png(a, path):
    Image.fromarray(a).save(path)


def _palette(a, path):
    im = Image.fromarray(a, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(path)


def _nifti_channels_last(a, path):  # a: (C, H, W) -> a (H, W, 1, C) NIfTI with a voxel spacing
    img = nib.Nifti1Image(np.moveaxis(a, 0, -1)[:, :, None, :].astype(np.uint8), np.diag([0.5, 0.5, 2.0, 1.0]))
    nib.save(img, str(path))


def _nifti_index(a, path):
    nib.save(nib.Nifti1Image(a.astype(np.int16), np.diag([0.7, 0.7, 3.0, 1.0])), str(path))


def _onehot(i):
    lab = _labels(i)
    return np.stack([lab == k for k in range(3)]).astype(np.uint8)


def _multihot_overlap(i):
    lab = _labels(i)
    a = (lab == 1).astype(np.uint8)
    b = (lab == 1).astype(np.uint8)
    b[:, 5:] = 0  # a and b overlap on part of class 1
    b[12:, :] = 1
    return np.stack([a, b])


def _multihot_disjoint(i):
    lab = _labels(i)
    return np.stack([lab == 1, lab == 2]).astype(np.uint8)  # never overlap, background has no channel


# name -> (mask per case, writer, suffix, expected encoding, mode, class names as advise gives them)
CASES = {
    "index_png": ([_labels(i) for i in range(4)], _png, ".png", "index", "multiclass", ["background", "class 1", "class 2"]),
    "binary_0_255_png": ([_labels(i, 2) * 255 for i in range(4)], _png, ".png", "index", "binary", ["background", "class 1"]),
    "palette_png": ([_labels(i) for i in range(4)], _palette, ".png", "palette", "multiclass", ["background", "class 1", "class 2"]),
    "rgb_classes": ([_paint(_labels(i), {1: RED, 2: BLUE}) for i in range(4)], _png, ".png", "rgb", "multiclass",
                    ["#000000 (black)", "#0000ff (blue)", "#ff0000 (red)"]),
    # magenta = red + blue: the R/G/B channels are labels that overlap (advise's "multilabel" reading)
    "rgb_multilabel": ([_paint(_labels(i), {1: RED, 2: MAGENTA}) for i in range(4)], _png, ".png", "rgb", "multilabel", ["red", "blue"]),
    "rgb_all_grey": ([np.repeat(_labels(i)[..., None], 3, -1) for i in range(4)], _png, ".png", "index", "multiclass",
                     ["background", "class 1", "class 2"]),
    "onehot_npy": ([_onehot(i) for i in range(4)], lambda a, p: np.save(p, a), ".npy", "onehot", "multiclass",
                   ["channel 0", "channel 1", "channel 2"]),
    "multihot_npy": ([_multihot_overlap(i) for i in range(4)], lambda a, p: np.save(p, a), ".npy", "multihot", "multilabel",
                     ["channel 0", "channel 1"]),
    "multihot_disjoint_npy": ([_multihot_disjoint(i) for i in range(4)], lambda a, p: np.save(p, a), ".npy", "multihot", "multiclass",
                              ["background (no class set)", "channel 0", "channel 1"]),
    "nifti_index": ([_labels(i)[:, :, None] for i in range(4)], _nifti_index, ".nii.gz", "index", "multiclass",
                    ["background", "class 1", "class 2"]),
    "nifti_channels_last": ([_multihot_overlap(i) for i in range(4)], _nifti_channels_last, ".nii.gz", "multihot", "multilabel",
                            ["channel 0", "channel 1"]),
}


def _nifti_images(root, n: int = 4):
    """Replace the .npy images by NIfTI volumes (16, 16, 1) of the masks' grid."""
    for i in range(n):
        img = np.load(root / "images" / f"c{i}.npy")
        nib.save(nib.Nifti1Image(img[:, :, None], np.eye(4)), str(root / "images" / f"c{i}.nii.gz"))
        (root / "images" / f"c{i}.npy").unlink()


def _train(root, mode: str) -> dict:
    torch.set_num_threads(1)
    loss = "ce" if mode == "multiclass" else "bce"
    task_kw = {"path": str(root), "val_fraction": 0.25}
    if root.joinpath("masks", "c0.nii.gz").exists():
        task_kw["slice_axis"] = 2
    cfg = RunSpec(loss=loss, task="folder", task_kw=task_kw, model="tiny", steps=2, batch_size=2, eval_every=2, monitors=[], seed=0)
    return train_run(cfg).summary


@pytest.mark.parametrize("case", sorted(CASES))
def test_advise_and_folder_task_agree_and_train(tmp_path, case):
    masks, save, suffix, encoding, mode, names = CASES[case]
    root = _write(tmp_path / case, masks, save, suffix)
    if case.startswith("nifti"):
        _nifti_images(root)
    a = advise(root / "masks")
    assert (a.encoding, a.mode, a.class_names) == (encoding, mode, names)
    task = FolderTask(root, slice_axis=2 if case.startswith("nifti") else None)
    assert task.mode == a.mode and task.num_classes == a.out_channels
    assert task.class_names == (a.class_names[1:] if mode == "binary" else a.class_names)
    # the shared reader gives the same answer file by file
    read = M.read_masks(sorted((root / "masks").iterdir()))
    assert {m.mode for m in read} == {mode} and read[0].names == tuple(names) and read[0].format == encoding
    stats = MaskStats()  # advise's accumulator carries the same reader's summary
    for f in sorted((root / "masks").iterdir()):
        stats.add(M.decode(*read_mask(f)), str(f))
    assert (stats.label_space().mode, stats.label_space().names) == (mode, tuple(names))
    # targets: the classes sit where the masks put them
    x, y = task.validation()
    lab = _labels(int(task.val_cases[0][1:]), 2 if mode == "binary" else 3)
    if mode == "multiclass" and encoding != "multihot":
        fg = y[0] if case != "rgb_classes" else torch.where(y[0] == 1, 2, torch.where(y[0] == 2, 1, 0))  # blue, red order
        assert torch.equal(fg, torch.from_numpy(lab).long())
    elif mode == "binary":
        assert torch.equal(y[0, 0], torch.from_numpy(lab > 0).float())
    elif mode == "multilabel":
        first = lab > 0 if case == "rgb_multilabel" else lab == 1  # red is on in red and magenta
        assert y.shape[1] == 2 and torch.equal(y[0, 0].bool(), torch.from_numpy(first)) and bool((y[0].sum(0) == 2).any())
    summary = _train(root, mode)
    assert summary["status"] == "finished" and summary["steps_done"] == 2 and math.isfinite(summary["final_train_loss"])
    assert summary["class_names"] == task.class_names


def test_spacing_from_nifti(tmp_path):
    root = _write(tmp_path, [_labels(i)[:, :, None] for i in range(4)], _nifti_index, ".nii.gz")
    _nifti_images(root)
    (m, *_) = M.read_masks(sorted((root / "masks").iterdir()))
    assert m.spacing == pytest.approx((0.7, 0.7, 3.0)) and m.labels.shape == (16, 16, 1)
    assert advise(root / "masks").spacing["median"] == pytest.approx([0.7, 0.7, 3.0])
    task = FolderTask(root, slice_axis=2)
    assert task.spacings["c0"] == pytest.approx((0.7, 0.7, 3.0))


def test_void_255_agrees(tmp_path):
    masks = []
    for i in range(4):
        m = _labels(i)
        m[0, :] = 255  # a void border row (PASCAL VOC style)
        masks.append(m)
    root = _write(tmp_path, masks, _png, ".png")
    a = advise(root / "masks")
    task = FolderTask(root)
    assert a.void_label == 255 == task.ignore_index and a.loss_kwargs.get("ignore_index") == 255
    assert task.class_names == a.class_names == ["background", "class 1", "class 2"] and task.num_classes == 3
    y = task.validation()[1]
    assert bool((y[:, 0, :] == 255).all()) and int(y[:, 1:].max()) == 2  # void kept as 255, classes 0..2
    none = FolderTask(root, ignore_index=None)  # every value a class, as advise --ignore-index none
    assert none.ignore_index is None and none.num_classes == advise(root / "masks", ignore_index=None).num_classes == 4
    assert none.config()["ignore_index"] is None and "ignore_index" not in task.config()


def test_remapped_labels_agree(tmp_path):
    root = _write(tmp_path, [_labels(i) * 100 for i in range(4)], lambda a, p: np.save(p, a), ".npy")  # 0/100/200
    a = advise(root / "masks")
    task = FolderTask(root)
    assert a.label_values == [0, 100, 200] and task.label_space.values == (0, 100, 200)
    assert task.class_names == a.class_names == ["background", "label 100", "label 200"]
    assert int(task.validation()[1].max()) == 2


def test_rgb_reading_can_be_forced_on_both_sides(tmp_path):
    root = _write(tmp_path, [_paint(_labels(i), {1: RED, 2: MAGENTA}) for i in range(4)], _png, ".png")
    a = advise(root / "masks", rgb_reading="classes")
    task = FolderTask(root, rgb_reading="classes")
    assert (a.mode, a.class_names) == (task.mode, task.class_names) == ("multiclass", ["#000000 (black)", "#ff0000 (red)", "#ff00ff (magenta)"])
    assert task.config()["rgb_reading"] == "classes"


def _noise_photo(i):
    return np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _smooth_scan(i):
    return np.repeat(np.arange(100, dtype=np.uint8) + i, 4)[:, None].repeat(16, 1)  # (400, 16): a slow ramp, 100 grey levels


def test_images_are_refused_as_masks(tmp_path):
    root = _write(tmp_path / "photos", [_noise_photo(i) for i in range(4)], _png, ".png")
    with pytest.raises(ValueError, match=r"256 distinct colours \(> 64\) and .* of neighbouring pixels differ .*looks like an image"):
        advise(root / "masks")
    with pytest.raises(ValueError, match=r"c0\.png: 256 distinct colours .*looks like an image, not a label mask"):
        FolderTask(root)
    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(2):
        Image.fromarray(_smooth_scan(i)).save(scans / f"s{i}.png")
    with pytest.raises(ValueError, match=r"100 distinct values .* smooth histogram .*looks like an intensity image"):
        advise(scans)


def test_instance_like_maps_are_not_images():
    # 100 instance ids on a 10 x 10 grid of blocks of random heights and widths: piecewise constant, and the
    # pixel counts of neighbouring ids jump (unlike an intensity histogram)
    rng = np.random.default_rng(0)
    rows, cols = np.repeat(np.arange(10), rng.integers(4, 20, 10)), np.repeat(np.arange(10), rng.integers(4, 20, 10))
    m = rng.permutation(100)[rows[:, None] * 10 + cols[None, :]]  # ids in no particular order
    assert M.image_like(M.decode(m, {"kind": "numpy"})) is None
    assert M.image_like(M.decode(_smooth_scan(0), {"kind": "image"})) is not None


def test_decode_helpers():
    assert M._is_binary(np.array([0.0, 1.0])) and not M._is_binary(np.array([0, 2]))
    # a 3D NIfTI is one volume even when it is 0/1 with a short first axis (channels are last in NIfTI)
    vol = np.zeros((4, 16, 16), np.uint8)
    vol[1, 2:5, 2:5] = 1
    assert M.decode(vol, {"kind": "nifti"}).kind == "index"
    assert M.decode(vol, {"kind": "numpy"}).kind == "channels"
    with pytest.raises(ValueError, match="unknown format"):
        M.decode(vol, {}, "png")
