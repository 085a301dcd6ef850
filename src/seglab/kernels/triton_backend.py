"""Triton backend: the fused statistics pass as Triton kernels (CUDA; CPU tensors under ``TRITON_INTERPRET=1``).

Same six functions and the same meaning as :mod:`seglab.kernels.eager` (the contract is there and in
:mod:`seglab.kernels.plan`): ``mc_forward/mc_backward`` (softmax, index target), ``mcd_forward/mcd_backward``
(softmax, dense target + valid mask), ``ml_forward/ml_backward`` (sigmoid). Forward returns
``(stats (N, K, C) float64, scal (4,) float64)``; backward returns ``d loss / d x`` in ``x``'s dtype.

Layout: the logits are viewed as ``(N, C, S)``; program ``(n, b)`` holds the tile ``x[n, :, b*BS:(b+1)*BS]``
(``BC = next_pow2(C)`` rows, all classes in registers), computes the activation once and

* forward: the per-class sums of the tile (tp, ps, ys[, |p - y|]) and the pixel sums (CE, its denominator, the
  label-smoothing sum, focal, out-of-range labels), written as partials ``(N, NB, K, BC)`` / ``(N, NB, 5)``,
  reduced in float64 by one ``torch.sum`` (deterministic: no atomics, the result does not depend on scheduling);
* backward: the gradient tile from the gradients of *all* statistics, recomputing the activation (only the
  logits and the target are read: one read of each, one write of the gradient).

Arithmetic in float32 for float32 / bfloat16 / float16 logits (half types are read as they are and upcast in
registers) and in float64 for float64 logits. The log-space formulas are those of the C++ and eager backends
(NOTES.md, issue 10): ``log p_t`` from the max-shifted sum with ``-log1p(sum of the other exps)`` where the
target is the max, ``1 - p_t`` as the sum of the non-target exps over the total, exact softplus pieces for the
sigmoid, focal gradients without ``q^(gamma - 1)``.

Limits (the dispatcher then picks the eager backend): ``C > MAX_CLASSES`` (one tile holds all classes), dtypes
other than float16/bfloat16/float32/float64, triton not importable, or a device that is neither CUDA nor a CPU
under the Triton interpreter. A Triton compilation/resource error makes that function run the eager backend for that
dtype and device type for the rest of the process, with one RuntimeWarning (:func:`broken` lists them).

Example (on a CUDA machine; the dispatcher does this for every fused loss call)::

    >>> import torch                                                            # doctest: +SKIP
    >>> from seglab.kernels import triton_backend, dispatch
    >>> x = torch.randn(2, 4, 64, 64, device="cuda")
    >>> t = torch.randint(0, 4, (2, 64 * 64), device="cuda")
    >>> cfg = dispatch.KernelCfg(None, False, *(torch.ones(4, dtype=torch.float64, device="cuda"),) * 4)
    >>> stats, scal = triton_backend.mc_forward(x, t, cfg)  # stats[:, 0] = tp, scal[0] = CE sum
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from types import ModuleType
from typing import Any

import torch

from seglab._extras import installed

MAX_CLASSES = 256
_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "kernels": the compiled-kernel namespace, or "reason": why unavailable


def interpreted() -> bool:
    """Whether Triton runs its interpreter in this process (``TRITON_INTERPRET=1`` set before the kernels were
    defined): kernels then take CPU tensors. Read from the loaded kernels when they exist (the switch is fixed then)."""
    k = _state.get("kernels")
    if k is not None:
        return bool(k.INTERPRETED)
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _load() -> ModuleType | None:
    """Import triton and define the kernels once; None (with the reason in :func:`unavailable_reason`) if impossible."""
    if "kernels" in _state or "reason" in _state:
        return _state.get("kernels")
    with _lock:
        if "kernels" not in _state and "reason" not in _state:
            if not installed("triton"):
                _state["reason"] = "triton is not installed: pip install 'seglab[gpu]'"
                return None
            try:
                _state["kernels"] = importlib.import_module("seglab.kernels._triton_kernels")
            except Exception as exc:  # a broken triton install: report, do not crash the losses
                _state["reason"] = f"importing triton failed: {type(exc).__name__}: {exc}"
    return _state.get("kernels")


def available() -> bool:
    """Whether the Triton kernels can be defined here (triton imports); says nothing about a GPU."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why the Triton backend cannot run (after trying to import triton), or None when it can."""
    return None if _load() is not None else _state.get("reason", "unknown reason")


def version() -> str | None:
    """The installed triton version, or None."""
    if not installed("triton"):
        return None
    from importlib import metadata

    try:
        return metadata.version("triton")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def runs_on(device_type: str, dtype: torch.dtype, channels: int) -> bool:
    """Whether these kernels run for logits of this device type, dtype and channel count (0: any): CUDA (or CPU
    under the interpreter), float16/bfloat16/float32/float64, ``channels <= MAX_CLASSES``, triton importable."""
    if device_type == "cuda":
        if interpreted():
            return False
    elif not (device_type == "cpu" and interpreted()):
        return False
    if dtype not in _DTYPES or channels > MAX_CLASSES:
        return False
    return _load() is not None


def supports(x: torch.Tensor) -> bool:
    """:func:`runs_on` for logits ``x`` (a 0/1-D tensor is a probe for its device and dtype: `seglab bench` asks so)."""
    return runs_on(x.device.type, x.dtype, x.shape[1] if x.ndim >= 2 else 0)


_BROKEN: dict[tuple[str, torch.dtype, str], str] = {}  # (function, dtype, device type) -> why it runs eager


def broken() -> dict[str, str]:
    """The kernels that failed to compile or launch in this process (they run the eager backend), and why."""
    return {f"{n}/{str(d).replace('torch.', '')}/{dev}": why for (n, d, dev), why in _BROKEN.items()}


def _guard(name: str):
    """Run the Triton implementation; a Triton error (compilation, resources) makes this function run the eager
    backend for this dtype and device type from then on, with one RuntimeWarning."""
    def wrap(impl):
        def fn(*args):
            x = args[0]
            key = (name, x.dtype, x.device.type)
            k = _load()
            if k is not None and key not in _BROKEN:
                try:
                    return impl(k, *args)
                except Exception as exc:
                    if not type(exc).__module__.startswith("triton"):
                        raise
                    why = _BROKEN[key] = f"{type(exc).__name__}: {exc}"[:2000]
                    warnings.warn(f"seglab: Triton kernel {name} ({x.dtype}, {x.device.type}) failed to compile or "
                                  f"launch; the eager backend runs it instead ({why})", RuntimeWarning, stacklevel=3)
            from seglab.kernels import eager

            return getattr(eager, name)(*args)
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = impl.__doc__
        return fn
    return wrap


def _next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


def _tiles(C: int, S: int) -> tuple[int, int, int]:
    """(BC, BS, NB): class rows (power of two >= C), pixels per tile, tiles per sample.

    About 1024 elements a tile (8 a thread with 4 warps): compiled for sm_90 the kernels then use 56-116 registers and
    no local memory at 4 classes, where 4096-element tiles needed 179-255 registers and spilled (cuobjdump
    -res-usage of benchmarks/triton_compile_check.py's cubins); the per-tile partial sums add ~1.5 % to the traffic."""
    bc = _next_pow2(C)
    bs = max(16, min(256, 1024 // bc))
    bs = min(bs, max(16, _next_pow2(S)))
    return bc, bs, -(-S // bs)


def _cd(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


_VECS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _vec(v: torch.Tensor, cd: torch.dtype, device: torch.device) -> torch.Tensor:
    """A (C,) weight in the compute dtype on ``device``. Cached per source tensor (and its version): the dispatcher
    passes the same cached default tensors on every call, and each conversion would be a kernel launch on a GPU."""
    key = (id(v), v._version, cd, device)
    hit = _VECS.get(key)
    if hit is not None and hit[0] is v:
        return hit[1]
    if len(_VECS) > 64:
        _VECS.clear()
    out = v.detach().to(device=device, dtype=cd).contiguous()
    _VECS[key] = (v, out)  # (the source is kept alive, so its id cannot be reused while cached)
    return out


def _flat(x: torch.Tensor) -> tuple[torch.Tensor, int, int, int]:
    N, C = x.shape[0], x.shape[1]
    xf = x.reshape(N, C, -1)
    if not xf.is_contiguous():
        xf = xf.contiguous()
    return xf, N, C, xf.shape[2]


def _ign(cfg) -> tuple[bool, float]:
    return cfg.ignore_index is not None, 0 if cfg.ignore_index is None else cfg.ignore_index


def _flags(cfg, smooth: bool = False) -> dict[str, int]:
    """The runtime option flags of the kernels (0/1 ints, not compile-time constants: one compiled kernel for all)."""
    f = {"SQUARED": int(bool(cfg.squared)), "FOCAL": int(bool(cfg.focal))}
    if smooth:
        f["SMOOTH"] = int(bool(cfg.smoothing))
    return f


_PRM: dict[tuple, torch.Tensor] = {}


def _prm(cfg, cd: torch.dtype, device: torch.device) -> torch.Tensor:
    """(gamma, label smoothing, sigmoid ignore value) in the compute dtype (exact in float64), cached per call config."""
    _, ign = _ign(cfg)
    key = (float(cfg.gamma), float(cfg.label_smoothing), float(ign), cd, device)
    v = _PRM.get(key)
    if v is None:
        if len(_PRM) > 256:
            _PRM.clear()
        v = _PRM[key] = torch.tensor(key[:3], dtype=cd, device=device)
    return v


def _finish(part: torch.Tensor, sc: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor]:
    stats = part.sum(1, dtype=torch.float64)[..., :C]
    return stats, sc[..., :4].sum((0, 1), dtype=torch.float64)


def _grads(g_stats: torch.Tensor, g_scal: torch.Tensor, cd: torch.dtype, device: torch.device):
    return (g_stats.to(device=device, dtype=cd).contiguous(), g_scal.to(device=device, dtype=cd).contiguous())


# ---------------- multiclass, index target ----------------
@_guard("mc_forward")
def mc_forward(k: ModuleType, x: torch.Tensor, t: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """tp, ps, ys per (n, c) and (CE, sum w_t, smoothing sum, focal) for an index target ``t`` ``(N, S)``."""
    xf, N, C, S = _flat(x)
    t = t.reshape(N, -1)
    t = t if t.is_contiguous() else t.contiguous()
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    part = torch.empty(N, nb, 3, bc, dtype=cd, device=x.device)
    sc = torch.empty(N, nb, 5, dtype=cd, device=x.device)
    has_ign, ign = _ign(cfg)
    dev = x.device
    k.mc_fwd[(N, nb)](xf, t, _vec(cfg.weight, cd, dev), _vec(cfg.alpha, cd, dev), _prm(cfg, cd, dev), part, sc, C, S,
                      nb, int(ign), int(has_ign), **_flags(cfg, True), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    if bool(sc[..., 4].sum() > 0):  # out-of-range labels were counted (and never used): the validation error
        from seglab.kernels.eager import _check_labels

        _check_labels(t, C, cfg.ignore_index)
    return _finish(part, sc, C)


@_guard("mc_backward")
def mc_backward(k: ModuleType, x: torch.Tensor, t: torch.Tensor, cfg, g_stats: torch.Tensor,
                g_scal: torch.Tensor) -> torch.Tensor:
    """d loss / d x from the gradients of (tp, ps, ys) ``(N, 3, C)`` and of the 4 sums, in one pass."""
    xf, N, C, S = _flat(x)
    t = t.reshape(N, -1)
    t = t if t.is_contiguous() else t.contiguous()
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    gx = torch.empty_like(xf)
    gst, gsc = _grads(g_stats, g_scal, cd, x.device)
    has_ign, ign = _ign(cfg)
    dev = x.device
    k.mc_bwd[(N, nb)](xf, t, _vec(cfg.weight, cd, dev), _vec(cfg.alpha, cd, dev), _prm(cfg, cd, dev), gst, gsc, gx, C,
                      S, int(ign), int(has_ign), **_flags(cfg, True), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    return gx.reshape(x.shape)


# ---------------- multiclass, dense target ----------------
# Compile options: FMA contraction on, said explicitly (Triton 3.9 warns when it is left to its default, which changes
# in 3.10); 4 warps for tiles of ~1024 elements.
_LAUNCH = {"enable_fp_fusion": True, "num_warps": 4}

_DUMMY: dict[torch.device, torch.Tensor] = {}


def _valid(valid: torch.Tensor | None, N: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if valid is None:  # a uint8 pointer never read (the same pointer type: no second compiled kernel)
        d = _DUMMY.get(like.device)
        if d is None:
            d = _DUMMY[like.device] = torch.zeros(1, dtype=torch.uint8, device=like.device)
        return d, False
    v = valid.reshape(N, -1)
    v = v.to(torch.uint8) if v.dtype != torch.uint8 else v
    return (v if v.is_contiguous() else v.contiguous()), True


def _dense(y: torch.Tensor, N: int, C: int) -> torch.Tensor:
    yf = y.reshape(N, C, -1)
    return yf if yf.is_contiguous() else yf.contiguous()


@_guard("mcd_forward")
def mcd_forward(k: ModuleType, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None,
                cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """tp, ps, ys, |p - y| per (n, c) and (CE, kept pixels, 0, focal) for a dense target ``y`` ``(N, C, S)``."""
    xf, N, C, S = _flat(x)
    yf = _dense(y, N, C)
    vf, has_valid = _valid(valid, N, yf)
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    part = torch.empty(N, nb, 4, bc, dtype=cd, device=x.device)
    sc = torch.empty(N, nb, 5, dtype=cd, device=x.device)
    dev = x.device
    k.mcd_fwd[(N, nb)](xf, yf, vf, _vec(cfg.weight, cd, dev), _vec(cfg.alpha, cd, dev), _prm(cfg, cd, dev), part, sc,
                       C, S, nb, int(has_valid), **_flags(cfg), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    return _finish(part, sc, C)


@_guard("mcd_backward")
def mcd_backward(k: ModuleType, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None, cfg,
                 g_stats: torch.Tensor, g_scal: torch.Tensor) -> torch.Tensor:
    """d loss / d x from the gradients of (tp, ps, ys, |p - y|) ``(N, 4, C)`` and of the 4 sums."""
    xf, N, C, S = _flat(x)
    yf = _dense(y, N, C)
    vf, has_valid = _valid(valid, N, yf)
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    gx = torch.empty_like(xf)
    gst, gsc = _grads(g_stats, g_scal, cd, x.device)
    dev = x.device
    k.mcd_bwd[(N, nb)](xf, yf, vf, _vec(cfg.weight, cd, dev), _vec(cfg.alpha, cd, dev), _prm(cfg, cd, dev), gst, gsc,
                       gx, C, S, int(has_valid), **_flags(cfg), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    return gx.reshape(x.shape)


# ---------------- multilabel / binary sigmoid ----------------
@_guard("ml_forward")
def ml_forward(k: ModuleType, x: torch.Tensor, y: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """tp, ps, ys, |p - y| per (n, c) and (BCE, kept elements, 0, focal) for a dense target ``y`` ``(N, C, S)``."""
    xf, N, C, S = _flat(x)
    yf = _dense(y, N, C)
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    part = torch.empty(N, nb, 4, bc, dtype=cd, device=x.device)
    sc = torch.empty(N, nb, 5, dtype=cd, device=x.device)
    has_ign, _ = _ign(cfg)
    dev = x.device
    k.ml_fwd[(N, nb)](xf, yf, _vec(cfg.weight, cd, dev), _vec(cfg.pos_weight, cd, dev), _vec(cfg.alpha, cd, dev),
                      _vec(cfg.alpha_neg, cd, dev), _prm(cfg, cd, dev), part, sc, C, S, nb, int(has_ign),
                      **_flags(cfg), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    return _finish(part, sc, C)


@_guard("ml_backward")
def ml_backward(k: ModuleType, x: torch.Tensor, y: torch.Tensor, cfg, g_stats: torch.Tensor,
                g_scal: torch.Tensor) -> torch.Tensor:
    """d loss / d x from the gradients of (tp, ps, ys, |p - y|) ``(N, 4, C)`` and of the 4 sums."""
    xf, N, C, S = _flat(x)
    yf = _dense(y, N, C)
    cd = _cd(x)
    bc, bs, nb = _tiles(C, S)
    gx = torch.empty_like(xf)
    gst, gsc = _grads(g_stats, g_scal, cd, x.device)
    has_ign, _ = _ign(cfg)
    dev = x.device
    k.ml_bwd[(N, nb)](xf, yf, _vec(cfg.weight, cd, dev), _vec(cfg.pos_weight, cd, dev), _vec(cfg.alpha, cd, dev),
                      _vec(cfg.alpha_neg, cd, dev), _prm(cfg, cd, dev), gst, gsc, gx, C, S, int(has_ign),
                      **_flags(cfg), BC=bc, BS=bs, CD=k.tl_dtype(cd), **_LAUNCH)
    return gx.reshape(x.shape)
