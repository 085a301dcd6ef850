"""Kernels that read index labels bounds-check them, whatever the validation setting (issue 10)."""

from __future__ import annotations

import re

import pytest
import torch

import seglab
import seglab.losses as L
from types import SimpleNamespace

from seglab.kernels import cpu_ext, eager
from seglab.targets import label_range_error

BACKENDS = ["cpu", "eager"] if cpu_ext.available() else ["eager"]


def _data(bad: int, ignore_index=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 5, 6), generator=g)
    t[1, 2, 3] = bad
    if ignore_index is not None:
        t[0, 0, 0] = ignore_index
    return x, t


def _expected(bad: int, ignore_index=None) -> str:
    return str(label_range_error([bad], 3, ignore_index))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [7, 3, -1])
def test_out_of_range_label_raises_without_validation(monkeypatch, backend, bad):
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", backend)
    x, t = _data(bad)
    loss = L.DiceLoss("multiclass") + L.CrossEntropyLoss("multiclass")
    calls = []
    orig = (cpu_ext if backend == "cpu" else eager).mc_forward
    monkeypatch.setattr(cpu_ext if backend == "cpu" else eager, "mc_forward",
                        lambda *a: calls.append(1) or orig(*a))
    with seglab.validation(False), pytest.raises(ValueError) as ei:
        loss(x, t)
    assert calls, "the backend kernel was not the one that ran"
    assert str(ei.value) == _expected(bad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_label_with_ignore_index(monkeypatch, backend):
    """ignore_index pixels are skipped, other out-of-range labels still raise (message names ignore_index)."""
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", backend)
    loss = L.DiceLoss("multiclass", ignore_index=255) + L.CrossEntropyLoss("multiclass", ignore_index=255)
    x, t = _data(7, ignore_index=255)
    with seglab.validation(False), pytest.raises(ValueError) as ei:
        loss(x, t)
    assert str(ei.value) == _expected(7, 255)
    x, t = _data(2, ignore_index=255)  # only valid labels and ignore_index: a value
    with seglab.validation(False):
        v = loss(x, t)
    assert torch.isfinite(v)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backend_functions_raise(backend, dtype):
    """mc_forward and mc_backward themselves raise (the kernel counts the bad labels)."""
    mod = cpu_ext if backend == "cpu" else eager
    x, t = _data(9)
    x = x.detach().to(dtype)
    t = t.reshape(2, -1)
    one = torch.ones(3, dtype=torch.float64)
    cfg = SimpleNamespace(ignore_index=None, squared=False, weight=one, alpha=one, alpha_neg=one, pos_weight=one,
                          label_smoothing=0.0, smoothing=False, focal=True, gamma=2.0)
    with pytest.raises(ValueError, match=r"found values \[9\]"):
        mod.mc_forward(x, t, cfg)
    with pytest.raises(ValueError, match=r"found values \[9\]"):
        mod.mc_backward(x, t, cfg, torch.ones(2, 3, 3, dtype=torch.float64), torch.ones(4, dtype=torch.float64))


def test_prepare_target_uses_the_same_message():
    x, t = _data(7)
    with pytest.raises(ValueError) as ei:
        seglab.targets.prepare_target(x, t, "multiclass")
    assert str(ei.value) == _expected(7)


def test_check_labels_op_for_compiled_reference_paths():
    """``seglab::check_labels`` (what prepare_target runs under torch.compile): registration checked by opcheck; a
    zero when the labels are in range (ignore_index allowed), seglab's message otherwise."""
    t = torch.tensor([[0, 2, 1], [255, 1, 0]])
    torch.library.opcheck(torch.ops.seglab.check_labels.default, (t, 3, 255))
    zero = torch.ops.seglab.check_labels(t, 3, 255)
    assert zero.shape == () and zero.dtype == t.dtype and int(zero) == 0
    with pytest.raises(ValueError, match=r"found values \[255\]; if they mark pixels to skip, pass ignore_index"):
        torch.ops.seglab.check_labels(t, 3, None)
    t[0, 0] = -1
    with pytest.raises(ValueError, match=re.escape(_expected(-1, 255))):
        torch.ops.seglab.check_labels(t, 3, 255)
