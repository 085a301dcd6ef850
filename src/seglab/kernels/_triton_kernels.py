"""The Triton kernels behind :mod:`seglab.kernels.triton_backend` (imported only through it: importing this module
imports triton). See that module for the layout; the formulas are those of :mod:`seglab.kernels.eager`.

Each program owns one tile: all ``BC`` class rows (padded rows masked) of ``BS`` consecutive pixels of sample ``n``.
Scalars that must be exact in float64 (gamma, label smoothing, the sigmoid ignore value) come in a small ``prm``
tensor of the compute dtype (Triton passes Python floats as float32). The options (ignore_index, squared, label
smoothing, focal) are runtime flags, uniform over the grid, not compile-time constants: one compiled kernel per
kind, dtype and tile shape serves every loss configuration (a GPU check compiles a few dozen kernels, not hundreds);
the branches a flag turns off are skipped, not computed.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def tl_dtype(cd: torch.dtype):
    return tl.float64 if cd == torch.float64 else tl.float32


@triton.jit
def _log1p(u):
    """log(1 + u) accurate for small u (no libdevice): log(w) - ((w - 1) - u) / w with w = 1 + u."""
    w = 1.0 + u
    return tl.log(w) - ((w - 1.0) - u) / w


@triton.jit
def _sign(d):
    return tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0))


@triton.jit
def _tile(x_ptr, n, b, C, S, BC: tl.constexpr, BS: tl.constexpr, CD: tl.constexpr):
    """Offsets, masks and the logits of tile (n, b); padded class rows are -inf, padded pixels 0."""
    cs = tl.arange(0, BC)
    ss = b * BS + tl.arange(0, BS)
    cm = cs < C
    sm = ss < S
    m2 = cm[:, None] & sm[None, :]
    offs = n.to(tl.int64) * C * S + cs[:, None].to(tl.int64) * S + ss[None, :]
    x = tl.load(x_ptr + offs, mask=m2, other=0.0).to(CD)
    return cs, ss, cm, sm, m2, offs, x


@triton.jit
def _softmax(x, cm):
    """Max-shifted softmax pieces over the class axis: z = x - max, e = exp(z) (0 on padded rows), se, log se, p."""
    xs = tl.where(cm[:, None], x, float("-inf"))
    mx = tl.max(xs, 0)
    z = xs - mx[None, :]
    e = tl.where(cm[:, None], tl.exp(z), 0.0)
    se = tl.sum(e, 0)
    return z, e, se, tl.log(se), e / se[None, :]


@triton.jit
def _focal_pow(logq, q, gamma):
    """q^gamma from log q (0^gamma = 0 for gamma > 0; q^0 = 1, also at q = 0)."""
    return tl.where(gamma == 0.0, 1.0, tl.where(q > 0, tl.exp(gamma * logq), 0.0))


@triton.jit
def _mc_pixel(x_ptr, t_ptr, w_ptr, a_ptr, n, b, C, S, IGN, HAS_IGN, BC: tl.constexpr,
              BS: tl.constexpr, CD: tl.constexpr):
    """Everything per pixel of an index-target tile: softmax, target row, log p_t, 1 - p_t, weights, keep mask."""
    cs, ss, cm, sm, m2, offs, x = _tile(x_ptr, n, b, C, S, BC, BS, CD)
    t = tl.load(t_ptr + n.to(tl.int64) * S + ss, mask=sm, other=0)
    keep = sm & tl.where(HAS_IGN != 0, t != IGN, True)
    bad = keep & ((t < 0) | (t >= C))
    keep = keep & (bad == 0)
    tc = tl.where(keep, t, 0).to(tl.int32)
    z, e, se, lse, p = _softmax(x, cm)
    oh = (cs[:, None] == tc[None, :]) & keep[None, :]
    e_t = tl.sum(tl.where(oh, e, 0.0), 0)
    z_t = tl.sum(tl.where(oh, z, 0.0), 0)
    so = tl.sum(tl.where(oh, 0.0, e), 0)                   # sum of the non-target exps
    logp_t = tl.where(z_t == 0, -_log1p(so), z_t - lse)     # target = max: -log1p(others), no cancellation
    p_t = e_t / se
    q = so / se                                            # 1 - p_t
    v = keep.to(CD)
    w_t = tl.load(w_ptr + tc, mask=keep, other=0.0)
    a_t = tl.load(a_ptr + tc, mask=keep, other=0.0)
    return cs, cm, sm, m2, offs, z, se, lse, p, oh, logp_t, p_t, q, v, w_t, a_t, bad


@triton.jit(do_not_specialize=["NB", "IGN", "HAS_IGN", "SQUARED", "SMOOTH", "FOCAL"])
def mc_fwd(x_ptr, t_ptr, w_ptr, a_ptr, prm_ptr, part_ptr, sc_ptr, C, S, NB, IGN, HAS_IGN,
           SQUARED, SMOOTH, FOCAL, BC: tl.constexpr, BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, sm, m2, offs, z, se, lse, p, oh, logp_t, p_t, q, v, w_t, a_t, bad = _mc_pixel(
        x_ptr, t_ptr, w_ptr, a_ptr, n, b, C, S, IGN, HAS_IGN, BC, BS, CD)
    v2 = v[None, :]
    tp = tl.sum(tl.where(oh, p, 0.0), 1)
    pp = p
    if SQUARED != 0:
        pp = p * p
    ps = tl.sum(pp * v2, 1)
    ys = tl.sum(tl.where(oh, 1.0, 0.0), 1)
    base = (n * NB + b).to(tl.int64)
    tl.store(part_ptr + (base * 3 + 0) * BC + cs, tp.to(CD))
    tl.store(part_ptr + (base * 3 + 1) * BC + cs, ps.to(CD))
    tl.store(part_ptr + (base * 3 + 2) * BC + cs, ys.to(CD))
    ce = tl.sum(-(w_t * v) * logp_t, 0)
    wsum = tl.sum(w_t * v, 0)
    smooth = tl.sum(v * 0.0, 0)
    if SMOOTH != 0:
        w = tl.load(w_ptr + cs, mask=cm, other=0.0)
        wl = tl.sum(tl.where(cm[:, None], w[:, None] * (lse[None, :] - z), 0.0), 0)  # sum_c w_c (-log p_c)
        smooth = tl.sum(wl * v, 0)
    focal = tl.sum(v * 0.0, 0)
    if FOCAL != 0:
        gamma = tl.load(prm_ptr).to(CD)
        pw = _focal_pow(tl.log(q), q, gamma)
        focal = tl.sum(-(a_t * v * pw) * logp_t, 0)
    tl.store(sc_ptr + base * 5 + 0, ce.to(CD))
    tl.store(sc_ptr + base * 5 + 1, wsum.to(CD))
    tl.store(sc_ptr + base * 5 + 2, smooth.to(CD))
    tl.store(sc_ptr + base * 5 + 3, focal.to(CD))
    tl.store(sc_ptr + base * 5 + 4, tl.sum(bad.to(CD), 0))


@triton.jit(do_not_specialize=["IGN", "HAS_IGN", "SQUARED", "SMOOTH", "FOCAL"])
def mc_bwd(x_ptr, t_ptr, w_ptr, a_ptr, prm_ptr, gst_ptr, gsc_ptr, gx_ptr, C, S, IGN, HAS_IGN,
           SQUARED, SMOOTH, FOCAL, BC: tl.constexpr, BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, sm, m2, offs, z, se, lse, p, oh, logp_t, p_t, q, v, w_t, a_t, bad = _mc_pixel(
        x_ptr, t_ptr, w_ptr, a_ptr, n, b, C, S, IGN, HAS_IGN, BC, BS, CD)
    gbase = n.to(tl.int64) * 3 * C
    gtp = tl.load(gst_ptr + gbase + cs, mask=cm, other=0.0).to(CD)
    gps = tl.load(gst_ptr + gbase + C + cs, mask=cm, other=0.0).to(CD)
    gtp_t = tl.sum(tl.where(oh, gtp[:, None], 0.0), 0)   # 0 on ignored pixels (oh is False there)
    dps = gps[:, None] * v[None, :]
    if SQUARED != 0:
        dps = dps * (2.0 * p)
    dot = tl.sum(p * dps, 0) + p_t * gtp_t
    grad = p * (dps - dot[None, :]) + tl.where(oh, (p_t * gtp_t)[None, :], 0.0)
    g0 = tl.load(gsc_ptr + 0).to(CD)
    cce = g0 * w_t * v
    coef_p = cce
    coef_t = -cce
    if SMOOTH != 0:
        g2 = tl.load(gsc_ptr + 2).to(CD)
        w = tl.load(w_ptr + cs, mask=cm, other=0.0)
        csm = g2 * v
        coef_p += csm * tl.sum(w, 0)
        grad -= csm[None, :] * w[:, None]
    if FOCAL != 0:
        g3 = tl.load(gsc_ptr + 3).to(CD)
        gamma = tl.load(prm_ptr).to(CD)
        pw = _focal_pow(tl.log(q), q, gamma)
        r = tl.where(q > 0, logp_t / tl.where(q > 0, q, 1.0), -1.0)  # log(p)/q -> -1 as q -> 0
        A = pw * (gamma * p_t * r - 1.0)                              # p dh/dp, h = -(1-p)^g log p
        cf = g3 * a_t * A * v
        coef_p -= cf
        coef_t += cf
    grad += coef_p[None, :] * p + tl.where(oh, coef_t[None, :], 0.0)
    tl.store(gx_ptr + offs, grad.to(gx_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _mcd_pixel(x_ptr, y_ptr, v_ptr, n, b, C, S, HAS_VALID, BC: tl.constexpr, BS: tl.constexpr,
               CD: tl.constexpr):
    cs, ss, cm, sm, m2, offs, x = _tile(x_ptr, n, b, C, S, BC, BS, CD)
    y = tl.load(y_ptr + offs, mask=m2, other=0.0).to(CD)
    keep = sm
    if HAS_VALID != 0:
        keep = keep & (tl.load(v_ptr + n.to(tl.int64) * S + ss, mask=sm, other=0) != 0)
    z, e, se, lse, p = _softmax(x, cm)
    logp = tl.where(cm[:, None], z - lse[None, :], 0.0)
    q = tl.maximum((se[None, :] - e) / se[None, :], 0.0)   # 1 - p_c
    return cs, cm, m2, offs, y, keep.to(CD), p, logp, q


@triton.jit(do_not_specialize=["NB", "HAS_VALID", "SQUARED", "FOCAL"])
def mcd_fwd(x_ptr, y_ptr, v_ptr, w_ptr, a_ptr, prm_ptr, part_ptr, sc_ptr, C, S, NB, HAS_VALID,
            SQUARED, FOCAL, BC: tl.constexpr,
            BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, m2, offs, y, v, p, logp, q = _mcd_pixel(x_ptr, y_ptr, v_ptr, n, b, C, S, HAS_VALID, BC, BS, CD)
    v2 = tl.where(m2, v[None, :], 0.0)
    base = (n * NB + b).to(tl.int64)
    tl.store(part_ptr + (base * 4 + 0) * BC + cs, tl.sum(p * y * v2, 1).to(CD))
    pp = p
    yy = y
    if SQUARED != 0:
        pp = p * p
        yy = y * y
    tl.store(part_ptr + (base * 4 + 1) * BC + cs, tl.sum(pp * v2, 1).to(CD))
    tl.store(part_ptr + (base * 4 + 2) * BC + cs, tl.sum(yy * v2, 1).to(CD))
    tl.store(part_ptr + (base * 4 + 3) * BC + cs, tl.sum(tl.abs(p - y) * v2, 1).to(CD))
    eps = tl.load(prm_ptr + 1).to(CD)
    w = tl.load(w_ptr + cs, mask=cm, other=0.0)
    ysm = y * (1.0 - eps) + eps / C
    ce = tl.sum(tl.sum(-(w[:, None] * ysm * v2) * logp, 0), 0)
    focal = tl.sum(v * 0.0, 0)
    if FOCAL != 0:
        gamma = tl.load(prm_ptr).to(CD)
        a = tl.load(a_ptr + cs, mask=cm, other=0.0)
        pw = _focal_pow(tl.log(q), q, gamma)
        focal = tl.sum(tl.sum(-(a[:, None] * y * pw * v2) * logp, 0), 0)
    tl.store(sc_ptr + base * 5 + 0, ce.to(CD))
    tl.store(sc_ptr + base * 5 + 1, tl.sum(v, 0).to(CD))
    tl.store(sc_ptr + base * 5 + 2, tl.sum(v * 0.0, 0).to(CD))
    tl.store(sc_ptr + base * 5 + 3, focal.to(CD))
    tl.store(sc_ptr + base * 5 + 4, tl.sum(v * 0.0, 0).to(CD))


@triton.jit(do_not_specialize=["HAS_VALID", "SQUARED", "FOCAL"])
def mcd_bwd(x_ptr, y_ptr, v_ptr, w_ptr, a_ptr, prm_ptr, gst_ptr, gsc_ptr, gx_ptr, C, S, HAS_VALID,
            SQUARED, FOCAL, BC: tl.constexpr,
            BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, m2, offs, y, v, p, logp, q = _mcd_pixel(x_ptr, y_ptr, v_ptr, n, b, C, S, HAS_VALID, BC, BS, CD)
    v2 = tl.where(m2, v[None, :], 0.0)
    gbase = n.to(tl.int64) * 4 * C
    gtp = tl.load(gst_ptr + gbase + cs, mask=cm, other=0.0).to(CD)
    gps = tl.load(gst_ptr + gbase + C + cs, mask=cm, other=0.0).to(CD)
    gad = tl.load(gst_ptr + gbase + 3 * C + cs, mask=cm, other=0.0).to(CD)
    dps = tl.broadcast_to(gps[:, None], (BC, BS))
    if SQUARED != 0:
        dps = dps * (2.0 * p)
    dp = (gtp[:, None] * y + dps + gad[:, None] * _sign(p - y)) * v2
    grad = p * (dp - tl.sum(p * dp, 0)[None, :])
    eps = tl.load(prm_ptr + 1).to(CD)
    w = tl.load(w_ptr + cs, mask=cm, other=0.0)
    wy = w[:, None] * (y * (1.0 - eps) + eps / C) * v2
    g0 = tl.load(gsc_ptr + 0).to(CD)
    grad += g0 * (p * tl.sum(wy, 0)[None, :] - wy)
    if FOCAL != 0:
        g3 = tl.load(gsc_ptr + 3).to(CD)
        gamma = tl.load(prm_ptr).to(CD)
        a = tl.load(a_ptr + cs, mask=cm, other=0.0)
        pw = _focal_pow(tl.log(q), q, gamma)
        r = tl.where(q > 0, logp / tl.where(q > 0, q, 1.0), -1.0)
        A = pw * (gamma * p * r - 1.0)
        Bc = -(a[:, None] * y * A * v2)
        grad += g3 * (p * tl.sum(Bc, 0)[None, :] - Bc)
    tl.store(gx_ptr + offs, grad.to(gx_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _ml_elem(x_ptr, y_ptr, prm_ptr, n, b, C, S, HAS_IGN, BC: tl.constexpr, BS: tl.constexpr,
             CD: tl.constexpr):
    """Sigmoid pieces per element: p, 1 - p, -log p, -log(1 - p) (exact softplus), the target and the keep mask."""
    cs, ss, cm, sm, m2, offs, x = _tile(x_ptr, n, b, C, S, BC, BS, CD)
    y = tl.load(y_ptr + offs, mask=m2, other=0.0).to(CD)
    keep = m2 & tl.where(HAS_IGN != 0, y != tl.load(prm_ptr + 2).to(CD), True)
    y = tl.where(keep, y, 0.0)
    l1 = _log1p(tl.exp(-tl.abs(x)))
    spn = l1 + tl.maximum(-x, 0.0)   # -log sigmoid(x)
    spp = l1 + tl.maximum(x, 0.0)    # -log(1 - sigmoid(x))
    return cs, cm, m2, offs, y, keep.to(CD), tl.exp(-spn), tl.exp(-spp), spn, spp


@triton.jit
def _ml_focal(y, p, omp, spn, spp, gamma):
    """Sigmoid focal pieces (eager._sigmoid_focal_parts): ce, q^g, and g q^(g-1) dq/dx without q^(g-1)."""
    ce = y * spn + (1.0 - y) * spp
    q = y * omp + (1.0 - y) * p
    logq = tl.where(y == 1.0, -spp, tl.where(y == 0.0, -spn, tl.log(q)))
    pw = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * logq))
    d = gamma * (1.0 - 2.0 * y) * tl.exp((gamma - 1.0) * logq - spn - spp)
    d = tl.where(gamma == 0.0, 0.0, tl.where(logq > float("-inf"), d, 0.0))
    return ce, pw, d


@triton.jit(do_not_specialize=["NB", "HAS_IGN", "SQUARED", "FOCAL"])
def ml_fwd(x_ptr, y_ptr, w_ptr, pw_ptr, a_ptr, an_ptr, prm_ptr, part_ptr, sc_ptr, C, S, NB, HAS_IGN,
           SQUARED, FOCAL, BC: tl.constexpr,
           BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, m2, offs, y, v, p, omp, spn, spp = _ml_elem(x_ptr, y_ptr, prm_ptr, n, b, C, S, HAS_IGN, BC, BS, CD)
    base = (n * NB + b).to(tl.int64)
    tl.store(part_ptr + (base * 4 + 0) * BC + cs, tl.sum(p * y * v, 1).to(CD))
    pp = p
    yy = y
    if SQUARED != 0:
        pp = p * p
        yy = y * y
    tl.store(part_ptr + (base * 4 + 1) * BC + cs, tl.sum(pp * v, 1).to(CD))
    tl.store(part_ptr + (base * 4 + 2) * BC + cs, tl.sum(yy * v, 1).to(CD))
    tl.store(part_ptr + (base * 4 + 3) * BC + cs, tl.sum(tl.abs(p - y) * v, 1).to(CD))
    w = tl.load(w_ptr + cs, mask=cm, other=0.0)[:, None]
    pwt = tl.load(pw_ptr + cs, mask=cm, other=0.0)[:, None]
    bce = tl.sum(tl.sum(w * (pwt * y * spn + (1.0 - y) * spp) * v, 1), 0)
    focal = tl.sum(tl.sum(v * 0.0, 1), 0)
    if FOCAL != 0:
        gamma = tl.load(prm_ptr).to(CD)
        ce, pw, d = _ml_focal(y, p, omp, spn, spp, gamma)
        at = tl.load(a_ptr + cs, mask=cm, other=0.0)[:, None] * y + tl.load(an_ptr + cs, mask=cm, other=0.0)[:, None] * (1.0 - y)
        focal = tl.sum(tl.sum(at * ce * pw * v, 1), 0)
    tl.store(sc_ptr + base * 5 + 0, bce.to(CD))
    tl.store(sc_ptr + base * 5 + 1, tl.sum(tl.sum(v, 1), 0).to(CD))
    tl.store(sc_ptr + base * 5 + 2, tl.sum(tl.sum(v * 0.0, 1), 0).to(CD))
    tl.store(sc_ptr + base * 5 + 3, focal.to(CD))
    tl.store(sc_ptr + base * 5 + 4, tl.sum(tl.sum(v * 0.0, 1), 0).to(CD))


@triton.jit(do_not_specialize=["HAS_IGN", "SQUARED", "FOCAL"])
def ml_bwd(x_ptr, y_ptr, w_ptr, pw_ptr, a_ptr, an_ptr, prm_ptr, gst_ptr, gsc_ptr, gx_ptr, C, S,
           HAS_IGN, SQUARED, FOCAL, BC: tl.constexpr, BS: tl.constexpr, CD: tl.constexpr):
    n = tl.program_id(0)
    b = tl.program_id(1)
    cs, cm, m2, offs, y, v, p, omp, spn, spp = _ml_elem(x_ptr, y_ptr, prm_ptr, n, b, C, S, HAS_IGN, BC, BS, CD)
    gbase = n.to(tl.int64) * 4 * C
    gtp = tl.load(gst_ptr + gbase + cs, mask=cm, other=0.0).to(CD)[:, None]
    gps = tl.load(gst_ptr + gbase + C + cs, mask=cm, other=0.0).to(CD)[:, None]
    gad = tl.load(gst_ptr + gbase + 3 * C + cs, mask=cm, other=0.0).to(CD)[:, None]
    dps = tl.broadcast_to(gps, (BC, BS))
    if SQUARED != 0:
        dps = dps * (2.0 * p)
    grad = (gtp * y + dps + gad * _sign(p - y)) * (p * omp)
    w = tl.load(w_ptr + cs, mask=cm, other=0.0)[:, None]
    pwt = tl.load(pw_ptr + cs, mask=cm, other=0.0)[:, None]
    g0 = tl.load(gsc_ptr + 0).to(CD)
    grad += g0 * w * (p * (1.0 - y + pwt * y) - pwt * y)
    if FOCAL != 0:
        g3 = tl.load(gsc_ptr + 3).to(CD)
        gamma = tl.load(prm_ptr).to(CD)
        ce, pw, d = _ml_focal(y, p, omp, spn, spp, gamma)
        at = tl.load(a_ptr + cs, mask=cm, other=0.0)[:, None] * y + tl.load(an_ptr + cs, mask=cm, other=0.0)[:, None] * (1.0 - y)
        dce = (1.0 - y) * p - y * omp
        grad += g3 * at * (dce * pw + ce * d)
    tl.store(gx_ptr + offs, (grad * v).to(gx_ptr.dtype.element_ty), mask=m2)
