"""Tests of the folder task on small PNG / .npy / NIfTI folders written in tmp_path."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from seglab.data import FolderTask, create_task


def _dirs(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root / "images", root / "masks"


def _index_mask(rng, shape, num_classes):
    m = np.zeros(shape, dtype=np.uint8)
    for k in range(1, num_classes):
        c = [rng.integers(2, s - 2) for s in shape]
        sl = tuple(slice(max(0, ci - 2), ci + 3) for ci in c)
        m[sl] = k
    return m


@pytest.fixture
def png_npy_folder(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = _dirs(tmp_path / "ds")
    for i in range(6):
        m = _index_mask(rng, (16, 20), 3)
        img = 40.0 * m + rng.normal(100, 5, m.shape)
        if i % 2:
            np.save(images / f"case{i}.npy", img.astype(np.float32))
        else:
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(images / f"case{i}.png")
        Image.fromarray(m).save(masks / f"case{i}.png")
    (images / ".DS_Store").write_text("ignored")
    (images / "notes.txt").write_text("ignored")
    return tmp_path / "ds"


def test_png_and_npy_multiclass(png_npy_folder):
    task = create_task("folder", path=str(png_npy_folder), val_fraction=0.34)
    assert isinstance(task, FolderTask)
    assert (task.mode, task.num_classes, task.in_channels, task.spatial_dims) == ("multiclass", 3, 1, 2)
    assert task.class_names == ["background", "class 1", "class 2"]  # the names seglab advise gives
    assert len(task.val_cases) == 2 and len(task.train_cases) == 4
    assert not set(task.val_cases) & set(task.train_cases)
    x, y = task.batch(step=0, batch_size=5, seed=0)
    assert x.shape == (5, 1, 16, 20) and x.dtype == torch.float32
    assert y.shape == (5, 16, 20) and y.dtype == torch.int64 and y.max() <= 2
    x2, y2 = task.batch(step=0, batch_size=5, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    xv, yv = task.validation()
    assert xv.shape == (2, 1, 16, 20)
    assert torch.allclose(xv.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(xv.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)
    assert xv[:, 0][yv == 2].mean() > xv[:, 0][yv == 0].mean()  # images and masks stay aligned
    cfg = task.config()
    json.dumps(cfg)
    again = create_task(**cfg)
    assert again.val_cases == task.val_cases and torch.equal(again.batch(1, 3, 2)[0], task.batch(1, 3, 2)[0])
    assert create_task("folder", path=png_npy_folder, num_classes=5).num_classes == 5


def test_binary_png_255_and_patches(tmp_path):
    rng = np.random.default_rng(1)
    images, masks = _dirs(tmp_path)
    for i in range(3):
        m = _index_mask(rng, (24, 24), 2) * 255
        Image.fromarray(m).save(masks / f"im{i}.png")
        Image.fromarray(np.stack([m, 255 - m, m // 2], -1)).save(images / f"im{i}.png")  # colour, channel-last
    # 2 mutually exclusive classes: binary by default (as seglab advise), a 2-class multiclass task on request
    auto = create_task("folder", path=tmp_path, patch_size=8)
    assert (auto.mode, auto.num_classes, auto.class_names) == ("binary", 1, ["class 1"])
    task = create_task("folder", path=tmp_path, mode="multiclass", patch_size=8, val_fraction=0.0, validation_patches=2)
    assert task.num_classes == 2 and task.in_channels == 3 and task.mode == "multiclass"
    x, y = task.batch(0, 4, 0)
    assert x.shape == (4, 3, 8, 8) and y.shape == (4, 8, 8) and set(y.unique().tolist()) <= {0, 1}
    assert task.validation()[0].shape == (6, 3, 8, 8)
    b = create_task("folder", path=tmp_path, mode="binary", patch_size=(8, 8))
    xb, yb = b.batch(0, 4, 0)
    assert b.num_classes == 1 and yb.shape == (4, 1, 8, 8) and yb.dtype == torch.float32


def test_multihot_npy_multilabel(tmp_path):
    rng = np.random.default_rng(2)
    images, masks = _dirs(tmp_path)
    for i in range(4):
        a = _index_mask(rng, (12, 12), 2)
        b = _index_mask(rng, (12, 12), 2)
        np.save(masks / f"s{i}.npy", np.stack([a, b]).astype(np.uint8))
        np.savez(images / f"s{i}.npz", np.stack([a, b]).astype(np.float32) + rng.normal(0, 0.1, (2, 12, 12)))
    task = create_task("folder", path=tmp_path, class_names=["a", "b"])
    assert (task.mode, task.num_classes, task.in_channels) == ("multilabel", 2, 2)
    x, y = task.batch(0, 3, 0)
    assert x.shape == (3, 2, 12, 12) and y.shape == (3, 2, 12, 12) and y.dtype == torch.float32
    with pytest.raises(ValueError, match="mode='multiclass' needs mutually exclusive classes"):
        create_task("folder", path=tmp_path, mode="multiclass")


def test_nifti_volumes_sliced_and_patched(tmp_path):
    rng = np.random.default_rng(3)
    images, masks = _dirs(tmp_path)
    for i in range(3):
        m = _index_mask(rng, (10, 12, 8), 3).astype(np.int16)
        img = 10.0 * m + rng.normal(0, 1, m.shape)
        nib.save(nib.Nifti1Image(img.astype(np.float32), np.eye(4)), str(images / f"vol{i}.nii.gz"))
        nib.save(nib.Nifti1Image(m.astype(np.float32), np.eye(4)), str(masks / f"vol{i}.nii"))
    sliced = create_task("folder", path=tmp_path, slice_axis=2, val_fraction=0.34)
    assert sliced.spatial_dims == 2 and sliced.num_classes == 3
    assert sliced.validation()[0].shape == (8, 1, 10, 12)  # one volume of 8 slices
    x, y = sliced.batch(0, 6, 0)
    assert x.shape == (6, 1, 10, 12) and y.shape == (6, 10, 12)
    if (y > 0).any():
        assert x[:, 0][y > 0].mean() > x[:, 0][y == 0].mean()
    patched = create_task("folder", path=tmp_path, patch_size=(6, 6, 4))
    x, y = patched.batch(1, 4, 0)
    assert patched.spatial_dims == 3 and x.shape == (4, 1, 6, 6, 4) and y.shape == (4, 6, 6, 4)
    whole = create_task("folder", path=tmp_path)
    assert whole.batch(0, 2, 0)[0].shape == (2, 1, 10, 12, 8)


def test_folder_errors(tmp_path, png_npy_folder):
    with pytest.raises(ValueError, match="is not a directory"):
        create_task("folder", path=tmp_path / "nowhere")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"missing folder .*masks.*expected layout"):
        create_task("folder", path=tmp_path / "empty")
    np.save(png_npy_folder / "images" / "orphan.npy", np.zeros((16, 20), np.float32))
    with pytest.raises(ValueError, match=r"image .*orphan\.npy has no mask"):
        create_task("folder", path=png_npy_folder)
    np.save(png_npy_folder / "masks" / "orphan.npy", np.zeros((15, 20), np.uint8))
    with pytest.raises(ValueError, match=r"shape mismatch: image orphan\.npy has shape \(16, 20\), mask orphan\.npy has shape \(15, 20\)"):
        create_task("folder", path=png_npy_folder)
    np.save(png_npy_folder / "images" / "orphan.npy", np.zeros((15, 20), np.float32))
    with pytest.raises(ValueError, match="pass patch_size"):
        create_task("folder", path=png_npy_folder)
    with pytest.raises(ValueError, match=r"patch_size \(16, 16\) is larger"):
        create_task("folder", path=png_npy_folder, patch_size=16)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1\.2"):
        create_task("folder", path=png_npy_folder, val_fraction=1.2)
    with pytest.raises(ValueError, match="slice_axis=0 needs 3D volumes"):
        create_task("folder", path=png_npy_folder, slice_axis=0, patch_size=8)
    with pytest.raises(ValueError, match="num_classes=2 but the masks contain label 2"):
        create_task("folder", path=png_npy_folder, num_classes=2, patch_size=8)
    with pytest.raises(ValueError, match="mask_format must be one of"):
        create_task("folder", path=png_npy_folder, mask_format="colour")
    with pytest.raises(ValueError, match=r"case0\.png: --format rgb needs an \(H, W, 3\|4\) colour image"):
        create_task("folder", path=png_npy_folder, mask_format="rgb")
