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

from seglab.targets import check_labels, compute_dtype


def _cd(x: torch.Tensor) -> torch.dtype:
    return compute_dtype(x.dtype)


def _bc(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(C,) -> (1, C, 1) on like's device/dtype."""
    return v.to(device=like.device, dtype=like.dtype).view(1, -1, 1)


def _focal_pows(omp: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p)^gamma (0^0 = 1)."""
    omp = omp.clamp_min(0)
    return torch.ones_like(omp) if gamma == 0 else omp ** gamma


def _focal_softmax_coef(logp: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For h = -(1 - p)^g log p: returns ``(q^g, p dh/dp = q^g (g p log(p) / q - 1))`` with q = 1 - p.

    Written with ``r = log(p) / q`` (-> -1 as q -> 0) instead of ``q^(g-1)``, which is infinite at q = 0 and
    made ``inf * 0 = NaN`` gradients for gamma < 1 where a pixel is confidently right.
    """
    omp = -torch.expm1(logp)
    pw = _focal_pows(omp, gamma)
    if gamma == 0:
        return pw, -pw
    r = torch.where(omp > 0, logp / torch.where(omp > 0, omp, torch.ones_like(omp)), torch.full_like(omp, -1.0))
    return pw, pw * (gamma * logp.exp() * r - 1)


def _sigmoid_focal_parts(xc: torch.Tensor, y: torch.Tensor, gamma: float):
    """Sigmoid focal pieces from the logits, in log space: ``(ce, dce/dx, q^g, g q^(g-1) dq/dx)``, q = 1 - p_t.

    q = y (1 - p) + (1 - y) p and dce/dx = p - y = (1 - y) p - y (1 - p) with 1 - p = sigmoid(-x) (no
    cancellation near p = 1); g q^(g-1) dq/dx = g (1 - 2y) exp((g - 1) log q + log p + log(1 - p)) stays finite
    at q = 0 (hard targets: -> 0 for g > 0), where q^(g-1) alone is infinite for g < 1.
    """
    l1 = torch.log1p(torch.exp(-xc.abs()))  # exact softplus pieces (F.softplus cuts off linearly at 20)
    spn = l1 + (-xc).clamp_min(0)           # -log sigmoid(x)
    spp = l1 + xc.clamp_min(0)              # -log(1 - sigmoid(x))
    ce = y * spn + (1 - y) * spp
    p, omp_s = torch.sigmoid(xc), torch.sigmoid(-xc)
    q = y * omp_s + (1 - y) * p
    dce = (1 - y) * p - y * omp_s
    if gamma == 0:
        return ce, dce, torch.ones_like(q), torch.zeros_like(q)
    logq = torch.where(y == 1, -spp, torch.where(y == 0, -spn, torch.log(q)))
    pw = torch.exp(gamma * logq)
    d = gamma * (1 - 2 * y) * torch.exp((gamma - 1) * logq - spn - spp)
    d = torch.where(torch.isfinite(logq), d, torch.zeros_like(d))
    return ce, dce, pw, d


def _check_labels(t: torch.Tensor, C: int, ignore_index) -> None:
    """Bounds-check index labels (whatever the validation setting): one aminmax, the details only on error."""
    check_labels(t, C, ignore_index)


# ---------------- multiclass, index target ----------------
def _mc_common(x, t, cfg):
    N, C = x.shape[:2]
    xc = x.reshape(N, C, -1).to(_cd(x))
    t = t.reshape(N, -1)
    _check_labels(t, C, cfg.ignore_index)
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
        pw = _focal_pows(-torch.expm1(logp_t), cfg.gamma)
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
        _, A = _focal_softmax_coef(logp_t, cfg.gamma)
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
        pw = _focal_pows(-torch.expm1(logp), cfg.gamma)
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
        hp = -_focal_softmax_coef(logp, cfg.gamma)[1]  # h'(p) p, h = (1-p)^g log p
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
        ce, _, pw, _ = _sigmoid_focal_parts(xc, y, cfg.gamma)
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
        ce, dce, pw, dq = _sigmoid_focal_parts(xc, y, cfg.gamma)
        at = _bc(cfg.alpha, xc) * y + _bc(cfg.alpha_neg, xc) * (1 - y)
        d = dce * pw + ce * dq
        grad += g_scal[3] * at * d
    return (grad * vm).reshape(x.shape).to(x.dtype)
