"""Shared fixtures: random inputs per mode and the peer libraries used as independent references."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

SPATIAL = {0: (), 1: (7,), 2: (6, 5), 3: (4, 3, 5)}


def make_inputs(mode: str, dims: int = 2, n: int = 2, c: int = 3, dtype=torch.float64, target: str = "index", seed: int = 0,
                scale: float = 2.0):
    """Random logits and a target for ``mode``; target kind: 'index', 'onehot', 'soft' (multiclass) or 'hard'/'soft'."""
    g = torch.Generator().manual_seed(seed)
    if mode == "binary":
        c = 1
    shape = (n, c, *SPATIAL[dims])
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    if mode == "multiclass":
        idx = torch.randint(0, c, (n, *SPATIAL[dims]), generator=g)
        if target == "index":
            y = idx
        elif target == "onehot":
            y = torch.nn.functional.one_hot(idx, c).movedim(-1, 1).to(dtype)
        else:
            y = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1).to(dtype)
    else:
        if target == "soft":
            y = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
        else:
            y = (torch.rand(shape, generator=g) > 0.5).to(dtype)
    return logits, y


@pytest.fixture(scope="session")
def smp_losses():
    """segmentation_models_pytorch.losses, loaded without the package __init__ (which needs timm/torchvision)."""
    from seglab.bench import _import_smp_losses

    try:
        return _import_smp_losses()
    except ImportError:
        pytest.fail("segmentation_models_pytorch is a test dependency: run `make test` (it installs it with --no-deps)")


@pytest.fixture(scope="session")
def monai_losses():
    try:
        return importlib.import_module("monai.losses")
    except ImportError:
        pytest.fail("MONAI is a test dependency: run `make test` (it installs it with --no-deps)")


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
