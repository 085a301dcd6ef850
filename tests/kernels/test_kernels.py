"""Fused kernels (seglab.kernels) against the reference losses (seglab.losses with the fused path off).

Every configuration is run twice on the same tensors — fused on / off — and compared in value and gradient,
for both backends (C++ "cpu" and torch "eager"), float32 (1e-5) and float64 (1e-10), 1D/2D/3D spatial.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import seglab.losses as L
from seglab import _checks
from seglab.kernels import cpu_ext, dispatch, ops
from seglab.kernels.plan import NotFusable, StatsRequest, merge

BACKENDS = ["cpu", "eager"]
if not cpu_ext.available():  # pragma: no cover - no compiler on this machine
    BACKENDS = ["eager"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", request.param)
    return request.param


def _losses(mode: str, C: int, ignore):
    """(name, loss module) pairs covering every fused term and option."""
    g = torch.Generator().manual_seed(1)
    cw = torch.rand(C, generator=g) + 0.1
    kw = {} if ignore is None else {"ignore_index": ignore}
    # plain CE modules run torch's own op where it applies (tests/losses/test_native_ce.py); as a one-part composite
    # (1.0 * ...) they take the pipeline, whose fused kernel is what is compared here
    out = [
        ("ce", 1.0 * L.CrossEntropyLoss(mode, **kw)),
        ("ce_w", 1.0 * L.CrossEntropyLoss(mode, class_weights=cw, **kw)),
        ("ce_sum", 1.0 * L.CrossEntropyLoss(mode, reduction="sum", **kw)),
        ("focal", L.FocalLoss(mode, gamma=2.0, **kw)),
        ("focal_g1.5_a", L.FocalLoss(mode, gamma=1.5, alpha=torch.rand(C, generator=g), **kw)),
        ("focal_g0", L.FocalLoss(mode, gamma=0.0, **kw)),
        ("dice", L.DiceLoss(mode, **kw)),
        ("dice_sq_batch_w", L.DiceLoss(mode, squared=True, batch=True, class_weights=cw, **kw)),
        ("dice_log_s0", L.DiceLoss(mode, log=True, smooth=0.0, **kw)),
        ("dice_product", L.DiceLoss(mode, soft_targets="product", reduction="sum", **kw)),
        ("jaccard", L.JaccardLoss(mode, class_weights=cw, **kw)),
        ("tversky", L.TverskyLoss(mode, alpha=0.3, beta=0.7, gamma=0.75, batch=True, **kw)),
        ("gdice_square", L.GeneralizedDiceLoss(mode, **kw)),
        ("gdice_simple_batch", L.GeneralizedDiceLoss(mode, weighting="simple", batch=True, **kw)),
        ("dice+ce", L.DiceLoss(mode, **kw) + L.CrossEntropyLoss(mode, class_weights=cw, **kw)),
        ("dice+focal", L.DiceLoss(mode, squared=True, **kw) + 0.5 * L.FocalLoss(mode, **kw)),
        ("tversky+jaccard+gdice", L.TverskyLoss(mode, **kw) + L.JaccardLoss(mode, **kw) + L.GeneralizedDiceLoss(mode, **kw)),
    ]
    if mode == "multiclass":
        out += [
            ("ce_ls", 1.0 * L.CrossEntropyLoss(mode, label_smoothing=0.1, class_weights=cw, **kw)),
            ("dice_nobg", L.DiceLoss(mode, include_background=False, class_weights=cw, **kw)),
            ("dice+ce_ls", L.DiceLoss(mode, include_background=False, **kw) + L.CrossEntropyLoss(mode, label_smoothing=0.2, **kw)),
        ]
    else:
        out += [("bce_pos", 1.0 * L.CrossEntropyLoss(mode, pos_weight=torch.rand(C, generator=g) * 3, class_weights=cw,
                                                    **kw)),
                ("focal_scalar_alpha", L.FocalLoss(mode, alpha=0.25, **kw))]
    return out


def _data(mode, target_kind, spatial, dtype, ignore, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = 2
    C = 1 if mode == "binary" else 4
    x = (torch.randn(N, C, *spatial, generator=g) * 3).to(dtype)
    if mode == "multiclass":
        t = torch.randint(0, C, (N, *spatial), generator=g)
        if target_kind == "onehot":
            t = torch.nn.functional.one_hot(t, C).movedim(-1, 1).to(dtype)
        elif target_kind == "soft":
            t = torch.softmax(torch.randn(N, C, *spatial, generator=g), 1).to(dtype)
        if ignore is not None:
            drop = torch.rand((N, *spatial), generator=g) < 0.2
            t = t.masked_fill(drop.unsqueeze(1), float(ignore)) if t.is_floating_point() else t.masked_fill(drop, ignore)
    else:
        t = (torch.rand(x.shape, generator=g) < 0.3).to(dtype)
        if target_kind == "soft":
            t = torch.rand(x.shape, generator=g).to(dtype)
        if ignore is not None:
            t = t.masked_fill(torch.rand(x.shape, generator=g) < 0.2, float(ignore))
        if mode == "binary" and target_kind == "squeezed":
            t = t[:, 0]
    return x, t


def _run(loss, x, t, fused: bool):
    x = x.detach().clone().requires_grad_(True)
    with dispatch.fused(fused):
        v = loss(x, t)
    v.backward()
    return v.detach(), x.grad


def _compare(loss, x, t, name):
    # the fused path must actually be taken
    calls = []
    orig = ops.FusedStatsFunction.apply

    def spy(*a):
        calls.append(1)
        return orig(*a)

    ops.FusedStatsFunction.apply = spy
    try:
        vf, gf = _run(loss, x, t, True)
    finally:
        ops.FusedStatsFunction.apply = orig
    assert calls, f"{name}: fused path not used"
    vr, gr = _run(loss, x, t, False)
    tol = dict(rtol=1e-10, atol=1e-10) if x.dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(vf, vr, **tol, msg=lambda m: f"{name} value: {m}")
    torch.testing.assert_close(gf, gr, **tol, msg=lambda m: f"{name} grad: {m}")


CASES = [
    ("multiclass", "index"), ("multiclass", "onehot"), ("multiclass", "soft"),
    ("multilabel", "hard"), ("multilabel", "soft"), ("binary", "hard"), ("binary", "squeezed"),
]
SPATIAL = [(37,), (9, 13), (5, 6, 7)]


@pytest.mark.parametrize("mode,target_kind", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial", SPATIAL, ids=lambda s: f"{len(s)}d")
def test_fused_matches_reference(backend, mode, target_kind, dtype, spatial):
    ignore_opts = [None, 255] if mode == "multiclass" else [None, -1]
    if target_kind == "soft" and mode == "multiclass":
        ignore_opts = [None]
    for ignore in ignore_opts:
        x, t = _data(mode, target_kind, spatial, dtype, ignore, seed=len(spatial))
        for name, loss in _losses(mode, x.shape[1], ignore):
            if mode == "binary" and "nobg" in name:
                continue
            _compare(loss.to(dtype), x, t, f"{mode}/{target_kind}/{name}/ignore={ignore}")


def test_all_ignored_and_empty_classes(backend):
    x, t = _data("multiclass", "index", (8, 8), torch.float64, None)
    t_all = torch.full_like(t, 255)
    for name, loss in _losses("multiclass", 4, 255):
        _compare(loss.double(), x, t_all, f"all-ignored/{name}")
    t_one = torch.zeros_like(t)  # classes 1..3 absent: empty-class policy, infinite gdice weights
    for name, loss in _losses("multiclass", 4, None):
        _compare(loss.double(), x, t_one, f"one-class/{name}")


def test_half_inputs_accumulate_in_float32(backend):
    for dt in (torch.bfloat16, torch.float16):
        x, t = _data("multiclass", "index", (16, 16), torch.float32, 255)
        x = x.to(dt)
        loss = L.DiceLoss("multiclass", ignore_index=255) + L.CrossEntropyLoss("multiclass", ignore_index=255)
        vf, gf = _run(loss, x, t, True)
        vr, gr = _run(loss, x, t, False)
        assert vf.dtype == vr.dtype == torch.float32 and gf.dtype == dt
        torch.testing.assert_close(vf, vr, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gf.float(), gr.float(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("kind", ["mc", "mcd", "ml"])
def test_gradcheck_custom_backward(backend, kind):
    """gradcheck of the autograd.Function (stats + pixel sums) with random upstream weights on every output."""
    torch.manual_seed(0)
    N, C, S = 2, 3, 7
    x = torch.randn(N, C, S, dtype=torch.float64, requires_grad=True)
    if kind == "mc":
        t = torch.randint(0, C, (N, S))
        t[0, 0] = -100
        tgt, ignore = (t,), -100
    elif kind == "mcd":
        tgt, ignore = (torch.softmax(torch.randn(N, C, S, dtype=torch.float64), 1), torch.rand(N, S) > 0.2), None
    else:
        tgt, ignore = (torch.rand(N, C, S, dtype=torch.float64),), None
    for squared, gamma, eps in [(False, 2.0, 0.0), (True, 1.5, 0.1), (False, 0.0, 0.0), (True, 3.0, 0.0)]:
        cfg = dispatch.KernelCfg(ignore_index=ignore, squared=squared, weight=torch.rand(C, dtype=torch.float64) + 0.5,
                                 alpha=torch.rand(C, dtype=torch.float64), alpha_neg=torch.rand(C, dtype=torch.float64),
                                 pos_weight=torch.rand(C, dtype=torch.float64) + 0.5, label_smoothing=eps if kind != "ml" else 0.0,
                                 focal=True, gamma=gamma)
        bk = dispatch.backend_name(x, kind)
        K = 3 if kind == "mc" else 4
        ws, wc = torch.randn(N, K, C, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
        ws[:, 2] = 0  # sum y does not depend on the logits
        wc[1] = 0 if kind != "mcd" else wc[1]

        def f(x):
            valid = tgt[1] if kind == "mcd" else None
            st, sc = torch.ops.seglab.fused_stats(  # the registered op: packed outputs, registered autograd
                x, tgt[0], valid, cfg.weight, cfg.pos_weight, cfg.alpha, cfg.alpha_neg, kind, bk, cfg.ignore_index,
                cfg.squared, cfg.label_smoothing, cfg.focal, cfg.gamma)
            return (st * ws).sum() + (sc * wc).sum()

        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)


class _AllocRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor):
                self.outputs.append((str(func), tuple(o.shape), o.dtype, o))
        return out


def test_no_one_hot_for_index_target(backend):
    """No float (N, C, *spatial) one-hot of an index target is ever materialised (forward + backward).

    C++ backend: the only (N, C, *spatial)-sized tensor created is the gradient itself. Eager backend: the
    softmax/gradient buffers have that size, but none of them is a 0/1 tensor.
    """
    N, C, H, W = 2, 5, 16, 16
    x = torch.randn(N, C, H, W, requires_grad=True)
    t = torch.randint(0, C, (N, H, W))
    loss = L.DiceLoss("multiclass") + L.CrossEntropyLoss("multiclass") + L.FocalLoss("multiclass")
    rec = _AllocRecorder()
    with _checks.validation(False), rec:
        loss(x, t).backward()
    big = [(f, s, d, o) for f, s, d, o in rec.outputs if o.is_floating_point() and o.numel() >= N * C * H * W]
    if backend == "cpu":
        # distinct buffers (views/detach share storage): the kernel's gradient, and the copy autograd's
        # AccumulateGrad makes of it into x.grad. Nothing else of that size.
        storages = {o.untyped_storage().data_ptr() for _, _, _, o in big} - {x.untyped_storage().data_ptr()}
        assert len(storages) <= 2, [(f, s) for f, s, _, _ in big]
    for f, s, _d, o in big:
        vals = o.detach()
        assert not bool(((vals == 0) | (vals == 1)).all()), f"one-hot-like tensor from {f} {s}"


def test_thread_count_does_not_change_result():
    if "cpu" not in BACKENDS:
        pytest.skip("no compiler")
    x, t = _data("multiclass", "index", (64, 200), torch.float32, 255)
    loss = L.DiceLoss("multiclass", ignore_index=255) + L.CrossEntropyLoss("multiclass", ignore_index=255)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        v1, g1 = _run(loss, x, t, True)
        torch.set_num_threads(2)
        v2, g2 = _run(loss, x, t, True)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(v1, v2) and torch.equal(g1, g2)


def test_switch_and_env():
    x, t = _data("multiclass", "index", (8, 8), torch.float32, None)
    req = StatsRequest(mode="multiclass", region=True)
    assert dispatch.fused_stats(req, x, t) is not None
    with dispatch.fused(False):
        assert dispatch.fused_stats(req, x, t) is None
    # not fusable: two CE terms, Dice terms disagreeing on squared, different ignore_index; per-pixel outputs
    with pytest.raises(NotFusable):
        merge([StatsRequest(mode="multiclass", ce=True), StatsRequest(mode="multiclass", ce=True)])
    with pytest.raises(NotFusable):
        merge([StatsRequest(mode="multiclass", region=True), StatsRequest(mode="multiclass", region=True, squared=True)])
    with pytest.raises(NotFusable):
        merge([StatsRequest(mode="multiclass", region=True), StatsRequest(mode="multiclass", ce=True, ignore_index=3)])
    assert L.CrossEntropyLoss("multiclass", reduction="none").term.request(
        L.CrossEntropyLoss("multiclass", reduction="none").options()) is None
    code = "import seglab.kernels.dispatch as d; print(d.fused_enabled())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SEGLAB_FUSED": "0"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_fallback_without_compiler(monkeypatch, tmp_path):
    """No compiler: one warning, then the reference path runs (the eager backend is slower on CPU)."""
    monkeypatch.setattr(cpu_ext, "_lib", None)
    monkeypatch.setattr(cpu_ext, "_failed", None)
    monkeypatch.setattr(cpu_ext, "_compiler", lambda: None)
    monkeypatch.setenv("SEGLAB_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("SEGLAB_FUSED_BACKEND", raising=False)
    x, t = _data("multiclass", "index", (8, 8), torch.float64, None)
    with pytest.warns(RuntimeWarning, match="unavailable"):
        assert not cpu_ext.available()
    assert dispatch.backend_for(x, "mc") is None
    loss = L.DiceLoss("multiclass") + L.CrossEntropyLoss("multiclass")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.fused_stats(StatsRequest(mode="multiclass", region=True, ce=True), x, t) is None
        value = loss(x, t)
    with dispatch.fused(False):
        torch.testing.assert_close(value, loss(x, t))


def test_kernel_call_is_the_op_schema():
    """The typed call (plan.KernelCall) meets the op's positional schema at one place (ops.op_args), and the op's
    implementations read their arguments back by name (ops._call_of): both follow the registered schema."""
    import dataclasses
    import inspect

    from seglab.kernels.plan import KernelCall

    schema = [a.name for a in torch.ops.seglab.fused_stats.default._schema.arguments]
    assert schema == [f.name for f in dataclasses.fields(KernelCall)]
    assert [a.name for a in torch.ops.seglab.fused_stats_backward.default._schema.arguments] == [*schema, "g_stats",
                                                                                                "g_scal"]
    assert list(inspect.signature(ops._call_of).parameters) == schema
    sentinels = {name: object() for name in schema}
    call = KernelCall(**sentinels)  # type: ignore[arg-type]
    assert all(a is sentinels[n] for a, n in zip(ops.op_args(call), schema, strict=True)) and len(ops.op_args(call)) == len(schema)
    assert ops._call_of(*ops.op_args(call)) == call
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.kind = "ml"  # type: ignore[misc]
