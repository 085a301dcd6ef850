"""Focal-loss gradients of the fused backends at extreme logits and for gamma < 1 (issue 10).

References are written in log space in float64 (``log q = log(1 - p_t)`` and ``log p_t`` from softplus of
logsumexp differences), so torch autograd of them is exact and finite where the naive formula is not.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import seglab.losses as L
from types import SimpleNamespace

from seglab.kernels import cpu_ext, eager

BACKENDS = ["cpu", "eager"] if cpu_ext.available() else ["eager"]
MODULES = {"cpu": cpu_ext, "eager": eager}


def _softplus(z):
    """log(1 + e^z) without F.softplus's linear cut-off at z > 20 (which drops up to 2e-9)."""
    return torch.logaddexp(torch.zeros_like(z), z)


def _cfg(C, gamma):
    """The attributes the backend functions read (the dispatcher's KernelCfg has the same fields)."""
    one = torch.ones(C, dtype=torch.float64)
    return SimpleNamespace(ignore_index=None, squared=False, weight=one, alpha=one, alpha_neg=one, pos_weight=one,
                           label_smoothing=0.0, smoothing=False, focal=True, gamma=gamma)


def _issue_ref(x, t, gamma):
    """The reference named in issue 10: autograd of -(1-p_t)^g log p_t with log_softmax and -expm1(log p_t)."""
    x = x.detach().double().requires_grad_(True)
    logp = F.log_softmax(x, 1).gather(1, t[:, None]).squeeze(1)
    loss = (-((-torch.expm1(logp)) ** gamma) * logp).sum()
    loss.backward()
    return loss.detach(), x.grad


def _logspace_ref_mc(x, t, gamma):
    """Multiclass focal sum in log space: p_t = sigmoid(x_t - lse_others), finite gradients for any gamma > 0."""
    x = x.detach().double().requires_grad_(True)
    xt = x.gather(1, t[:, None]).squeeze(1)
    others = x.masked_fill(F.one_hot(t, x.shape[1]).movedim(-1, 1).bool(), float("-inf"))
    d = torch.logsumexp(others, 1) - xt
    logp, logq = -_softplus(d), -_softplus(-d)
    loss = (-torch.exp(gamma * logq) * logp).sum()
    loss.backward()
    return loss.detach(), x.grad


def _logspace_ref_sigmoid(x, y, gamma):
    """Sigmoid focal sum for hard targets: q = sigmoid(-s x), ce = softplus(-s x), s = 2y - 1."""
    x = x.detach().double().requires_grad_(True)
    s = 2 * y.double() - 1
    per = _softplus(-s * x) * torch.exp(-gamma * _softplus(s * x))
    loss = per.sum()
    loss.backward()
    return loss.detach(), x.grad, per.detach()


def _mc_run(backend, x, t, gamma):
    mod = MODULES[backend]
    N, C = x.shape[:2]
    cfg = _cfg(C, gamma)
    stats, scal = mod.mc_forward(x, t.reshape(N, -1), cfg)
    gx = mod.mc_backward(x, t.reshape(N, -1), cfg, torch.zeros(N, 3, C, dtype=torch.float64),
                         torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    return scal[3], gx


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e3, 1e6, 1e10, 1e30])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multiclass_focal_huge_logits(backend, scale, gamma, dtype):
    """Logits of size ~scale with O(1) differences: the focal value and gradient match the reference."""
    g = torch.Generator().manual_seed(int(gamma * 10))
    sign = torch.where(torch.rand(2, 1, 40, generator=g) < 0.5, -1.0, 1.0).double()
    x = (scale * sign + torch.randn(2, 4, 40, generator=g, dtype=torch.float64)).to(dtype)
    t = torch.randint(0, 4, (2, 40), generator=g)
    v, gx = _mc_run(backend, x, t, gamma)
    rv, rg = _issue_ref(x, t, gamma)
    assert torch.isfinite(gx).all()
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(v, rv, rtol=tol, atol=0)
    torch.testing.assert_close(gx.double(), rg, rtol=tol, atol=tol * float(rg.abs().max()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target", ["argmax", "random"])
@pytest.mark.parametrize("gamma", [0.5, 0.25])
def test_multiclass_focal_gamma_below_one(monkeypatch, backend, dtype, target, gamma):
    """randn*8 logits, gamma < 1: confident pixels have 1 - p_t = 0 in floating point; gradients stay finite."""
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", backend)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 3, 64, 64, generator=g, dtype=torch.float64) * 8).to(dtype)
    t = x.argmax(1) if target == "argmax" else torch.randint(0, 3, (1, 64, 64), generator=g)
    xr = x.clone().requires_grad_(True)
    loss = L.FocalLoss("multiclass", gamma=gamma, reduction="sum")
    calls = []
    orig = MODULES[backend].mc_forward
    monkeypatch.setattr(MODULES[backend], "mc_forward", lambda *a: calls.append(1) or orig(*a))
    v = loss(xr, t)
    v.backward()
    assert calls, "fused path not taken"
    rv, rg = _logspace_ref_mc(x, t, gamma)
    assert torch.isfinite(xr.grad).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(v.double(), rv, rtol=tol, atol=0)
    torch.testing.assert_close(xr.grad.double(), rg, rtol=tol, atol=tol * float(rg.abs().max()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("gamma", [0.5, 0.1, 1.5])
def test_binary_focal_gamma_below_one(monkeypatch, backend, dtype, gamma):
    """The issue's reproducer (x = 17 confidently right): finite gradient equal to the log-space reference."""
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", backend)
    x = torch.tensor([[[17.0, -1.0, -40.0, 800.0, 3.0, -3.0]]], dtype=dtype)
    y = torch.tensor([[[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]]], dtype=dtype)
    xr = x.clone().requires_grad_(True)
    v = L.FocalLoss("binary", gamma=gamma, reduction="sum")(xr, y)
    v.backward()
    rv, rg, _ = _logspace_ref_sigmoid(x, y, gamma)
    assert torch.isfinite(xr.grad).all(), xr.grad
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(v.double(), rv, rtol=tol, atol=0)
    torch.testing.assert_close(xr.grad.double(), rg, rtol=tol, atol=1e-30)


def test_logspace_references_match_finite_differences():
    """The float64 references themselves, against central differences where the gradient is not tiny."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 20, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, 3, (1, 20), generator=g)
    _, rg = _logspace_ref_mc(x, t, 0.5)
    h = 1e-6
    fd = torch.zeros_like(x)
    for idx in [(0, c, s) for c in range(3) for s in range(20)]:
        xp, xm = x.clone(), x.clone()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (_logspace_ref_mc(xp, t, 0.5)[0] - _logspace_ref_mc(xm, t, 0.5)[0]) / (2 * h)
    torch.testing.assert_close(rg, fd, rtol=1e-6, atol=1e-8)
    xb = torch.tensor([[[17.0, -1.0, 3.0, -30.0]]], dtype=torch.float64)
    yb = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]], dtype=torch.float64)
    _, gb, _ = _logspace_ref_sigmoid(xb, yb, 0.5)
    for i in range(4):
        xp, xm = xb.clone(), xb.clone()
        xp[0, 0, i] += 1e-5
        xm[0, 0, i] -= 1e-5
        fd = (_logspace_ref_sigmoid(xp, yb, 0.5)[2][0, 0, i] - _logspace_ref_sigmoid(xm, yb, 0.5)[2][0, 0, i]) / 2e-5
        torch.testing.assert_close(gb[0, 0, i], fd, rtol=1e-6, atol=1e-20)
