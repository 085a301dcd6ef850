"""One contract for every registered loss name (``list_losses()``): adding a loss to the registry tests it here.

For each name and each mode it applies to:
* the module equals its plain function with the module's options;
* the fused kernels equal the reference code (value and gradient, float64);
* gradcheck in float64;
* ``torch.compile(fullgraph=True)`` traces it and gives the eager value;
* dtypes: float32/float64 in, same dtype out; half inputs accumulate in float32;
* the exact bad-input messages, which the shared checks write once for every loss.
Peers (MONAI, smp, torch) are compared for each base loss in its own test file (tests/test_<loss>.py) and below
for the defaults of each base loss.
"""

from __future__ import annotations

import re

import pytest
import torch

from seglab import get_loss, list_losses
from seglab.kernels import dispatch
from seglab.losses.base import CompositeLoss

MODES = ("multiclass", "multilabel", "binary")


def _cases():
    out = []
    for name in list_losses():
        for mode in MODES:
            try:
                get_loss(name, mode=mode)
            except ValueError:
                continue  # the preset does not apply to this mode (e.g. dicefg on binary): tested in test_vocabulary
            out.append((name, mode))
    return out


CASES = _cases()


def _inputs(mode: str, dtype=torch.float64, n=2, c=3, hw=(5, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    c = 1 if mode == "binary" else c
    x = (torch.randn(n, c, *hw, generator=g, dtype=torch.float64) * 2).to(dtype)
    if mode == "multiclass":
        t = torch.randint(0, c, (n, *hw), generator=g)
    else:
        t = (torch.rand(n, c, *hw, generator=g) > 0.5).to(dtype)
    return x, t


def test_every_mode_has_cases():
    assert {m for _, m in CASES} == set(MODES)
    assert {n for n, _ in CASES} == set(list_losses())


@pytest.mark.parametrize("name, mode", CASES)
def test_module_equals_function(name, mode):
    loss = get_loss(name, mode=mode)
    parts = loss.parts if isinstance(loss, CompositeLoss) else [loss]
    x, t = _inputs(mode)
    for part in parts:
        fn = type(part).fn
        torch.testing.assert_close(part(x, t), fn(x, t, **part.options()), rtol=0, atol=0)


@pytest.mark.parametrize("name, mode", CASES)
def test_fused_equals_reference(name, mode):
    loss = get_loss(name, mode=mode)
    out = []
    for fused in (True, False):
        x, t = _inputs(mode)
        x.requires_grad_()
        with dispatch.fused(fused):
            v = loss(x, t)
        v.backward()
        out.append((v.detach(), x.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, mode", CASES)
@pytest.mark.parametrize("fused", [True, False])
def test_gradcheck(name, mode, fused):
    loss = get_loss(name, mode=mode)
    x, t = _inputs(mode, n=2, c=3, hw=(3, 2))
    if name == "lovasz":
        x = x + 0.01 * torch.arange(x.numel(), dtype=x.dtype).reshape(x.shape)  # no ties: piecewise linear in sort order
    x.requires_grad_()
    with dispatch.fused(fused):
        assert torch.autograd.gradcheck(lambda v: loss(v, t), (x,), atol=1e-6)


@pytest.mark.parametrize("name, mode", CASES)
def test_compiles_with_fullgraph(name, mode):
    torch._dynamo.reset()  # each case compiles afresh (the lambda's code object is shared: recompile limit)
    loss = get_loss(name, mode=mode)
    x, t = _inputs(mode, dtype=torch.float32)
    compiled = torch.compile(lambda a, b: loss(a, b), fullgraph=True, backend="eager")
    value = compiled(x, t)  # compiled before the eager call (a fresh process: test_compile_first_use.py)
    torch.testing.assert_close(value, loss(x, t))


@pytest.mark.parametrize("name, mode", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes(name, mode, dtype):
    loss = get_loss(name, mode=mode)
    x, t = _inputs(mode, dtype=dtype)
    if t.is_floating_point():
        t = t.to(dtype)
    v = loss(x, t)
    ref = loss(x.double(), t.double() if t.is_floating_point() else t)
    assert torch.isfinite(v)
    assert v.dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(v.double(), ref, rtol=tol, atol=tol)


def _raises(exc, message, fn):
    with pytest.raises(exc, match=re.escape(message)):
        fn()


@pytest.mark.parametrize("name, mode", CASES)
def test_bad_input_messages(name, mode):
    loss = get_loss(name, mode=mode)
    x, t = _inputs(mode, dtype=torch.float32)
    _raises(TypeError, "logits must be a floating-point tensor (raw network outputs), got dtype torch.int64",
            lambda: loss(x.long(), t))
    _raises(ValueError, "logits must have shape (N, C, *spatial) with 0 to 3 spatial dims (2 to 5 dims in all), got 1 dims",
            lambda: loss(x.flatten(), t))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    _raises(ValueError, "logits contain 1 non-finite values (NaN or inf); the network or its input diverged",
            lambda: loss(bad, t))
    if mode == "multiclass":
        tb = t.clone()
        tb[0, 0, 0] = 7
        _raises(ValueError, "multiclass target values must be class indices in [0, 3) for C=3 logit channels; found values [7]",
                lambda: loss(x, tb))
        _raises(ValueError, "multiclass integer target must have shape (N, *spatial) = (2, 5, 4) (or (N, 1, *spatial)) "
                            "to match logits (2, 3, 5, 4), got (2, 5, 3)", lambda: loss(x, t[..., :3]))
    else:
        _raises(ValueError, f"{mode} float target values must lie in [0, 1] (probabilities / one-hot / multi-hot), "
                            "got range [0, 2]", lambda: loss(x, t * 2))
    if mode == "binary":
        _raises(ValueError, "binary mode expects logits with C == 1 channel, got shape (2, 3, 5, 4) (C=3)",
                lambda: loss(x.expand(2, 3, 5, 4), t))


# ---------------------------------------------------------------- peers, for each base loss's defaults
def _monai(name):
    monai = pytest.importorskip("monai.losses", reason="MONAI is a test dependency installed by make test")
    kw = dict(to_onehot_y=True, softmax=True)
    return {
        "dice": lambda: monai.DiceLoss(**kw, smooth_nr=1e-5, smooth_dr=1e-5),
        # MONAI's jaccard puts smooth on (2I, 2U), seglab's on (I, U): equal at smooth = 0
        "jaccard": lambda: monai.DiceLoss(**kw, jaccard=True, smooth_nr=0.0, smooth_dr=0.0),
        "tversky": lambda: monai.TverskyLoss(**kw, alpha=0.5, beta=0.5, smooth_nr=1e-5, smooth_dr=1e-5),
        "gdice": lambda: monai.GeneralizedDiceLoss(**kw, smooth_nr=1e-5, smooth_dr=1e-5),
    }[name]()


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "gdice"])
def test_base_region_losses_equal_monai(name):
    x, t = _inputs("multiclass")
    for fused in (True, False):
        with dispatch.fused(fused):
            kw = {"smooth": 0.0} if name == "jaccard" else {}
            torch.testing.assert_close(get_loss(name, mode="multiclass", **kw)(x, t), _monai(name)(x, t[:, None]))


@pytest.mark.parametrize("mode", MODES)
def test_ce_equals_torch(mode):
    x, t = _inputs(mode)
    ref = (torch.nn.functional.cross_entropy(x, t) if mode == "multiclass"
           else torch.nn.functional.binary_cross_entropy_with_logits(x, t))
    for fused in (True, False):
        with dispatch.fused(fused):
            torch.testing.assert_close(get_loss("ce", mode=mode)(x, t), ref)
