"""LovaszLoss against smp and a per-class loop transcription of Berman's reference code."""

import pytest
import torch

from seglab import LovaszLoss
from seglab.losses import lovasz_loss
from conftest import make_inputs


def berman_lovasz_softmax(probas, labels):
    """Per-class Python loop, as in Berman's reference implementation (classes='present')."""
    c = probas.shape[1]
    probas = probas.movedim(1, -1).reshape(-1, c)
    labels = labels.reshape(-1)
    losses = []
    for k in range(c):
        fg = (labels == k).double()
        if fg.sum() == 0:
            continue
        errors = (fg - probas[:, k]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        fg_sorted = fg[perm]
        gts = fg_sorted.sum()
        inter = gts - fg_sorted.cumsum(0)
        union = gts + (1 - fg_sorted).cumsum(0)
        jac = 1 - inter / union
        jac[1:] = jac[1:] - jac[:-1].clone()
        losses.append(torch.dot(errors_sorted, jac))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_multiclass_matches_berman_loop(dims):
    x, t = make_inputs("multiclass", dims, n=2, c=4)
    torch.testing.assert_close(lovasz_loss(x, t, mode="multiclass"), berman_lovasz_softmax(torch.softmax(x, 1), t))


@pytest.mark.parametrize("per_image", [False, True])
def test_multiclass_matches_smp(smp_losses, per_image):
    x, t = make_inputs("multiclass", 2, n=3, c=3, dtype=torch.float32)  # smp Lovász is float32-only
    ref = smp_losses.LovaszLoss("multiclass", per_image=per_image)(x, t)
    torch.testing.assert_close(LovaszLoss("multiclass", per_image=per_image)(x, t), ref)


@pytest.mark.parametrize("per_image", [False, True])
def test_binary_hinge_matches_smp(smp_losses, per_image):
    x, y = make_inputs("binary", 2, n=3, dtype=torch.float32)
    ref = smp_losses.LovaszLoss("binary", per_image=per_image)(x, y)
    torch.testing.assert_close(LovaszLoss("binary", per_image=per_image)(x, y), ref)


def test_multilabel_is_mean_of_per_channel_hinge(smp_losses):
    x, y = make_inputs("multilabel", 2, n=2, c=3, dtype=torch.float32)
    ref = torch.stack([smp_losses.LovaszLoss("binary")(x[:, k:k + 1], y[:, k:k + 1]) for k in range(3)]).mean()
    torch.testing.assert_close(lovasz_loss(x, y, mode="multilabel"), ref)


def test_ignore_index_matches_smp(smp_losses):
    x, t = make_inputs("multiclass", 2, n=2, c=3, dtype=torch.float32)
    t[0, :2] = 255
    ref = smp_losses.LovaszLoss("multiclass", ignore_index=255)(x, t)
    torch.testing.assert_close(lovasz_loss(x, t, mode="multiclass", ignore_index=255), ref)


def test_perfect_prediction_is_zero():
    t = torch.randint(0, 3, (2, 8, 8))
    x = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).double() * 40
    assert lovasz_loss(x, t, mode="multiclass").item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_radix_argsort_matches_torch_sort(dtype):
    from seglab.kernels import cpu_ext

    g = torch.Generator().manual_seed(0)
    v = torch.randn(3, 5000, generator=g, dtype=dtype) * 10
    v[0, :100] = 0.25  # ties
    v[1, :50] = -0.0
    v[1, 50:100] = 0.0
    v[2, :10] = -1e4  # the ignored-pixel marker of the hinge
    perm = cpu_ext.argsort_desc(v)
    assert perm is not None, "the C++ kernels should build on this machine (gcc is part of the environment)"
    assert torch.equal(torch.sort(perm, dim=1)[0], torch.arange(5000).expand(3, -1))
    torch.testing.assert_close(v.gather(1, perm), torch.sort(v, dim=1, descending=True)[0], rtol=0, atol=0)


def test_torch_sort_fallback_gives_same_loss(monkeypatch):
    from seglab.kernels import cpu_ext

    x, t = make_inputs("multiclass", 2, n=2, c=3)
    a = lovasz_loss(x, t, mode="multiclass")
    monkeypatch.setattr(cpu_ext, "supports", lambda v: False)
    torch.testing.assert_close(lovasz_loss(x, t, mode="multiclass"), a)


def test_all_pixels_ignored_is_zero_with_zero_gradient():
    x, t = make_inputs("multiclass", 2, n=1, c=3)
    t[:] = 255
    x = x.clone().requires_grad_(True)
    loss = lovasz_loss(x, t, mode="multiclass", ignore_index=255)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def _lovasz_cases():
    x, t = make_inputs("multiclass", 2, n=2, c=3)
    xb, tb = make_inputs("binary", 2, n=2)
    return [("multiclass", x, t, None), ("multiclass", x, t.masked_fill(t == 1, 255), 255), ("binary", xb, tb, None)]


def _value_and_grad(mode, x, t, ignore, per_image=False):
    x = x.clone().requires_grad_(True)
    v = lovasz_loss(x, t, mode=mode, ignore_index=ignore, per_image=per_image)
    v.backward()
    return v.detach(), x.grad


@pytest.mark.parametrize("per_image", [False, True])
def test_rows_too_long_for_the_kernel_fall_back_to_torch(monkeypatch, per_image):
    """lovasz_rows declines rows of more than LOVASZ_MAX_ROW elements (31-bit indices): the torch path runs."""
    from seglab.kernels import cpu_ext

    if not cpu_ext.available():
        pytest.skip("no C++ kernels")
    for mode, x, t, ignore in _lovasz_cases():
        ref = _value_and_grad(mode, x, t, ignore, per_image)
        monkeypatch.setattr(cpu_ext, "LOVASZ_MAX_ROW", 5)  # every row here is longer
        errors = torch.rand(2, 6, dtype=torch.float64)
        assert cpu_ext.lovasz_rows(errors, fg=torch.ones_like(errors)) is None
        got = _value_and_grad(mode, x, t, ignore, per_image)
        monkeypatch.undo()
        torch.testing.assert_close(got, ref)


def test_fused_switch_turns_off_the_cpp_lovasz_and_argsort(monkeypatch):
    """set_fused(False) / SEGLAB_FUSED=0: the C++ Lovász and argsort kernels are not called."""
    from seglab.kernels import cpu_ext, dispatch

    refs = [_value_and_grad(*case) for case in _lovasz_cases()]

    def boom(*a, **k):
        raise AssertionError("C++ kernel called with the fused path switched off")

    monkeypatch.setattr(cpu_ext, "lovasz_rows", boom)
    monkeypatch.setattr(cpu_ext, "argsort_desc", boom)
    dispatch.set_fused(False)
    try:
        got = [_value_and_grad(*case) for case in _lovasz_cases()]
    finally:
        dispatch.set_fused(True)
    for g, r in zip(got, refs, strict=True):
        torch.testing.assert_close(g, r)
    with pytest.raises(AssertionError, match="switched off"):  # and with it on, they are the ones used
        _value_and_grad(*_lovasz_cases()[0])


def test_env_switch_turns_off_the_cpp_lovasz(tmp_path):
    import os
    import subprocess
    import sys

    code = ("import torch; from seglab.kernels import cpu_ext\n"
            "def boom(*a, **k): raise SystemExit('C++ kernel called')\n"
            "cpu_ext.lovasz_rows = cpu_ext.argsort_desc = boom\n"
            "from seglab.losses import lovasz_loss\n"
            "print(float(lovasz_loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)), mode='multiclass')))\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SEGLAB_FUSED": "0"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
