"""Eager backend: the fused kernels written with plain torch ops (any device: CPU fallback, CUDA).

Every backend module exposes the same functions; :mod:`seglab.kernels.dispatch` wraps them in one
``torch.autograd.Function`` and computes the (cheap) loss heads from the statistics with autograd.

* ``mc_forward(x, t, cfg) -> (stats (N, 3, C), scal (4,))``: multiclass softmax with an index target
  ``t`` ``(N, S)`` (values in [0, C) or ``cfg.ignore_index``). ``stats[:, k]`` = tp, ps, ys per (n, c)
  over kept pixels (ps = sum p or sum p^2 if ``cfg.squared``); ``scal`` = (sum w_t * -log p_t,
  sum w_t, sum_c w_c * -log p_c summed over pixels (label smoothing), sum alpha_t (1 - p_t)^g * -log p_t).
* ``mc_backward(x, t, cfg, g_stats, g_scal) -> grad_x``: one pass from the incoming gradients.
* ``mcd_forward / mcd_backward``: multiclass with a dense (one-hot / soft) target ``(N, C, S)`` and a
  valid mask ``(N, S)``; ``stats`` has a 4th row ``sum |p - y|`` (semimetric Dice), ``scal[1]`` = kept pixels.
* ``ml_forward / ml_backward``: sigmoid per channel, dense target; ``stats`` (tp, ps, ys, |p - y|),
  ``scal`` = (BCE sum, kept elements, 0, focal sum).

Here nothing is fused at the instruction level (each op is one pass), but softmax is computed once,
there is no one-hot tensor, and autograd saves nothing: the backward recomputes the activation.
Statistics are returned in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seglab.targets import compute_dtype


def _cd(x: torch.Tensor) -> torch.dtype:
    return compute_dtype(x.dtype)


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(C,) -> (1, C, 1) on like's device/dtype."""
    return v.to(device=like.device, dtype=like.dtype).view(1, -1, 1)


def _focal_pows(omp: torch.Tensor, gamma: float):
    omp = omp.clamp_min(0)
    if gamma == 0:
        return torch.ones_like(omp), torch.zeros_like(omp)
    return omp ** gamma, omp ** (gamma - 1) if gamma != 1 else torch.ones_like(omp)


# ---------------- multiclass, index target ----------------
def _mc_common(x, t, cfg):
    N, C = x.shape[:2]
    xc = x.reshape(N, C, -1).to(_cd(x))
    t = t.reshape(N, -1)
    if cfg.ignore_index is not None:
        valid = t != cfg.ignore_index
        tc = t.masked_fill(~valid, 0)
        vm = valid.to(xc.dtype)
    else:
        tc, vm = t, torch.ones(t.shape, dtype=xc.dtype, device=xc.device)
    logp = F.log_softmax(xc, 1)
    return xc, tc, vm, logp


def mc_forward(x, t, cfg):
    xc, tc, vm, logp = _mc_common(x, t, cfg)
    N, C, S = xc.shape
    p = logp.exp()
    logp_t = logp.gather(1, tc[:, None]).squeeze(1)
    p_t = logp_t.exp()
    zeros = xc.new_zeros(N, C)
    tp = zeros.scatter_add(1, tc, p_t * vm)
    ps = torch.einsum("ncs,ns->nc", p * p if cfg.squared else p, vm)
    ys = zeros.scatter_add(1, tc, vm)
    w = cfg.weight.to(xc)
    w_t = w[tc] * vm
    ce = -(w_t * logp_t).sum()
    wsum = w_t.sum()
    sm = -(torch.einsum("ncs,c->ns", logp, w) * vm).sum() if cfg.smoothing else xc.new_zeros(())
    if cfg.focal:
        pw, _ = _focal_pows(-torch.expm1(logp_t), cfg.gamma)
        fo = -(cfg.alpha.to(xc)[tc] * vm * pw * logp_t).sum()
    else:
        fo = xc.new_zeros(())
    stats = torch.stack([tp, ps, ys], 1).double()
    return stats, torch.stack([ce, wsum, sm, fo]).double()


def mc_backward(x, t, cfg, g_stats, g_scal):
    xc, tc, vm, logp = _mc_common(x, t, cfg)
    N, C, S = xc.shape
    p = logp.exp()
    g_stats = g_stats.to(xc)
    g_scal = g_scal.to(xc)
    gtp, gps = g_stats[:, 0], g_stats[:, 1]
    logp_t = logp.gather(1, tc[:, None]).squeeze(1)
    p_t = logp_t.exp()
    gtp_t = gtp.gather(1, tc) * vm                                  # (N, S) coefficient of y at the target class
    dps = gps[:, :, None] * (2 * p if cfg.squared else 1.0)          # (N, C, S)
    dps = dps * vm[:, None]
    dot = (p * dps).sum(1) + p_t * gtp_t                            # sum_c p_c dp_c
    grad = p * (dps - dot[:, None])
    grad.scatter_add_(1, tc[:, None], (p_t * gtp_t)[:, None])
    w = cfg.weight.to(xc)
    cce = g_scal[0] * w[tc] * vm                                     # CE: cce * (p - onehot)
    coef_p = cce
    coef_t = -cce
    if cfg.smoothing:
        csm = g_scal[2] * vm                                         # smooth: csm * (W p_c - w_c)
        coef_p = coef_p + csm * w.sum()
        grad -= csm[:, None] * w.view(1, -1, 1)
    if cfg.focal:
        omp = -torch.expm1(logp_t)
        pw, pw1 = _focal_pows(omp, cfg.gamma)
        A = (cfg.gamma * pw1 * p_t * logp_t if cfg.gamma != 0 else 0) - pw
        cf = g_scal[3] * cfg.alpha.to(xc)[tc] * A * vm               # focal: cf * (onehot - p)
        coef_p = coef_p - cf
        coef_t = coef_t + cf
    grad += coef_p[:, None] * p
    grad.scatter_add_(1, tc[:, None], coef_t[:, None])
    return grad.reshape(x.shape).to(x.dtype)


# ---------------- multiclass, dense (one-hot / soft) target ----------------
def _mcd_common(x, y, valid, cfg):
    N, C = x.shape[:2]
    xc = x.reshape(N, C, -1).to(_cd(x))
    y = y.reshape(N, C, -1).to(xc.dtype)
    vm = torch.ones(N, y.shape[-1], dtype=xc.dtype, device=xc.device) if valid is None else valid.reshape(N, -1).to(xc.dtype)
    return xc, y, vm, F.log_softmax(xc, 1)


def mcd_forward(x, y, valid, cfg):
    xc, y, vm, logp = _mcd_common(x, y, valid, cfg)
    p = logp.exp()
    v3 = vm[:, None]
    tp = (p * y * v3).sum(-1)
    ps = ((p * p if cfg.squared else p) * v3).sum(-1)
    ys = ((y * y if cfg.squared else y) * v3).sum(-1)
    ad = ((p - y).abs() * v3).sum(-1)
    C = xc.shape[1]
    w = _bc(cfg.weight, xc)
    eps = cfg.label_smoothing
    ysm = y * (1 - eps) + eps / C if eps else y
    ce = -(w * ysm * logp * v3).sum()
    if cfg.focal:
        pw, _ = _focal_pows(-torch.expm1(logp), cfg.gamma)
        fo = -(_bc(cfg.alpha, xc) * y * pw * logp * v3).sum()
    else:
        fo = xc.new_zeros(())
    stats = torch.stack([tp, ps, ys, ad], 1).double()
    return stats, torch.stack([ce, vm.sum(), xc.new_zeros(()), fo]).double()


def mcd_backward(x, y, valid, cfg, g_stats, g_scal):
    xc, y, vm, logp = _mcd_common(x, y, valid, cfg)
    p = logp.exp()
    g_stats, g_scal = g_stats.to(xc), g_scal.to(xc)
    v3 = vm[:, None]
    dp = (g_stats[:, 0, :, None] * y + g_stats[:, 1, :, None] * (2 * p if cfg.squared else 1.0)
          + g_stats[:, 3, :, None] * torch.sign(p - y)) * v3
    grad = p * (dp - (p * dp).sum(1, keepdim=True))
    C = xc.shape[1]
    eps = cfg.label_smoothing
    ysm = y * (1 - eps) + eps / C if eps else y
    wy = _bc(cfg.weight, xc) * ysm * v3
    grad += g_scal[0] * (p * wy.sum(1, keepdim=True) - wy)
    if cfg.focal:
        pw, pw1 = _focal_pows(-torch.expm1(logp), cfg.gamma)
        hp = pw - (cfg.gamma * pw1 * p * logp if cfg.gamma != 0 else 0)  # h'(p) p, h = (1-p)^g log p
        Bc = _bc(cfg.alpha, xc) * y * hp * v3
        grad += g_scal[3] * (p * Bc.sum(1, keepdim=True) - Bc)
    return grad.reshape(x.shape).to(x.dtype)


# ---------------- multilabel / binary sigmoid ----------------
def _ml_common(x, y, cfg):
    N, C = x.shape[:2]
    xc = x.reshape(N, C, -1).to(_cd(x))
    y = y.reshape(N, C, -1).to(xc.dtype)
    if cfg.ignore_index is not None:
        valid = y != cfg.ignore_index
        y = y.masked_fill(~valid, 0.0)
        vm = valid.to(xc.dtype)
    else:
        vm = torch.ones_like(y)
    return xc, y, vm


def ml_forward(x, y, cfg):
    xc, y, vm = _ml_common(x, y, cfg)
    p = torch.sigmoid(xc)
    tp = (p * y * vm).sum(-1)
    ps = ((p * p if cfg.squared else p) * vm).sum(-1)
    ys = ((y * y if cfg.squared else y) * vm).sum(-1)
    ad = ((p - y).abs() * vm).sum(-1)
    spn = F.softplus(-xc)   # -log sigmoid(x)
    spp = F.softplus(xc)    # -log(1 - sigmoid(x))
    w, pwt = _bc(cfg.weight, xc), _bc(cfg.pos_weight, xc)
    bce = (w * (pwt * y * spn + (1 - y) * spp) * vm).sum()
    if cfg.focal:
        ce = y * spn + (1 - y) * spp
        pw, _ = _focal_pows(p + y - 2 * p * y, cfg.gamma)
        at = _bc(cfg.alpha, xc) * y + _bc(cfg.alpha_neg, xc) * (1 - y)
        fo = (at * ce * pw * vm).sum()
    else:
        fo = xc.new_zeros(())
    stats = torch.stack([tp, ps, ys, ad], 1).double()
    return stats, torch.stack([bce, vm.sum(), xc.new_zeros(()), fo]).double()


def ml_backward(x, y, cfg, g_stats, g_scal):
    xc, y, vm = _ml_common(x, y, cfg)
    p = torch.sigmoid(xc)
    g_stats, g_scal = g_stats.to(xc), g_scal.to(xc)
    dp = (g_stats[:, 0, :, None] * y + g_stats[:, 1, :, None] * (2 * p if cfg.squared else 1.0)
          + g_stats[:, 3, :, None] * torch.sign(p - y))
    grad = dp * p * (1 - p)
    w, pwt = _bc(cfg.weight, xc), _bc(cfg.pos_weight, xc)
    grad += g_scal[0] * w * (p * (1 - y + pwt * y) - pwt * y)
    if cfg.focal:
        ce = y * F.softplus(-xc) + (1 - y) * F.softplus(xc)
        omp = p + y - 2 * p * y
        pw, pw1 = _focal_pows(omp, cfg.gamma)
        at = _bc(cfg.alpha, xc) * y + _bc(cfg.alpha_neg, xc) * (1 - y)
        d = (p - y) * pw - (ce * cfg.gamma * pw1 * p * (1 - p) * (2 * y - 1) if cfg.gamma != 0 else 0)
        grad += g_scal[3] * at * d
    return (grad * vm).reshape(x.shape).to(x.dtype)
