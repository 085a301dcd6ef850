"""Shared fixtures: random inputs per mode and the peer libraries used as independent references."""

from __future__ import annotations

import importlib

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
