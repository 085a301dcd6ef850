"""Issue 23: ``torch.compile`` works on the first call of a fresh process, before any eager call.

``torch.compile(get_loss("dice+ce", mode="multiclass"), fullgraph=True)(x, t)`` raised "Unsupported context manager:
lock" in a fresh process: the first call loads the C++ kernel library under a ``threading.Lock`` and that happened
inside the traced region (``dispatch.backend_name`` -> ``cpu_ext.available()``). It only worked after one eager call,
which the contract test (``test_contract.test_compiles_with_fullgraph``) made before compiling.

One subprocess (a fresh interpreter: nothing loaded) compiles, before any eager call, first the issue's case with
the default backend (inductor), then every distinct loss of ``describe_losses()`` (names with the same spec, e.g.
``cce``/``ce``, run once per mode; base losses in every mode they take, presets such as ``dicefg`` in their first)
with ``backend="aot_eager"`` (dynamo + AOT autograd:
the custom ops' autograd formulas are traced), forward and backward, ``fullgraph=True``. Afterwards the same losses
run eagerly and values and gradients are compared. Then out-of-range labels on reference paths (CE with
reduction="none", MCC, Lovász) under compile get seglab's label-range error (the ``seglab::check_labels`` op). Last, every case but the first gets a NaN logit under compile (which skips
validation): the loss must be NaN (issue 24).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seglab.losses.base import LOSSES

_SCRIPT = r"""
import json, sys, traceback, warnings
import torch
import seglab
from seglab.kernels import cpu_ext

warnings.simplefilter("ignore")
assert cpu_ext._lib is None and cpu_ext._failed is None, "the kernel library was loaded at import"
MODES = ("multiclass", "multilabel", "binary")


def inputs(mode, seed):
    g = torch.Generator().manual_seed(seed)
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 6, 5, generator=g)
    if mode == "multiclass":
        t = torch.randint(0, c, (2, 6, 5), generator=g)
    else:
        t = (torch.rand(2, c, 6, 5, generator=g) > 0.5).float()
    return x.requires_grad_(), t


cases, seen = [("dice+ce", "multiclass", "inductor")], set()
for name, (spec, _) in seglab.describe_losses().items():
    for mode in MODES:
        try:
            seglab.get_loss(name, mode=mode)
        except ValueError:
            continue  # the preset does not apply to this mode
        if (spec, mode) not in seen and not (("[" in spec) and any(s == spec for s, _ in seen)):
            seen.add((spec, mode))  # base losses in every mode, presets (options in brackets) in their first
            cases.append((name, mode, "aot_eager"))

bases = sorted({spec.split("[")[0] for spec, _ in seen})
out = {"cases": [f"{n}/{m}/{b}" for n, m, b in cases], "bases": bases, "failures": [], "compared": 0}
compiled = {}
import time
t0 = time.time()
for i, (name, mode, backend) in enumerate(cases):  # every compiled call before any eager one
    if i == 1:
        out["inductor_s"] = round(time.time() - t0, 1)
    torch._dynamo.reset()
    x, t = inputs(mode, i)
    try:
        f = torch.compile(seglab.get_loss(name, mode=mode), fullgraph=True, backend=backend)
        v = f(x, t)
        v.backward()
        compiled[i] = (v.detach(), x.grad)
    except Exception as e:
        out["failures"].append(f"{name}/{mode}/{backend} compiled: {type(e).__name__}: {str(e)[:400]}")
    if i == 0:
        out["kernels_loaded_by_first_compiled_call"] = cpu_ext._lib is not None
        out["kernels_unavailable"] = cpu_ext._failed
out["compiled_s"] = round(time.time() - t0, 1)
for i, (name, mode, backend) in enumerate(cases):
    if i not in compiled:
        continue
    x, t = inputs(mode, i)
    v = seglab.get_loss(name, mode=mode)(x, t)
    v.backward()
    try:
        torch.testing.assert_close(compiled[i][0], v.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(compiled[i][1], x.grad, rtol=1e-5, atol=1e-6)
        out["compared"] += 1
    except AssertionError as e:
        out["failures"].append(f"{name}/{mode}/{backend} differs from eager: {e}")
# out-of-range labels on reference paths under compile: seglab's message from the check_labels op (not torch's error)
out["label_checks"] = 0
for spec, red in (("ce", "none"), ("mcc", "mean"), ("lovasz", "mean")):
    torch._dynamo.reset()
    x, t = inputs("multiclass", 0)
    t[0, 1, 1] = 7
    f = torch.compile(seglab.get_loss(spec, mode="multiclass", reduction=red), fullgraph=True, backend="aot_eager")
    try:
        f(x, t)
        out["failures"].append(f"{spec} compiled: label 7 for C=3 gave no error")
    except Exception as e:
        if not (isinstance(e, ValueError) and "class indices in [0, 3)" in str(e) and "[7]" in str(e)):
            out["failures"].append(f"{spec} compiled, label 7: {type(e).__name__}: {str(e)[:300]}")
    out["label_checks"] += 1
# NaN in gives NaN out under compile (which skips validation): every compiled case, the NaN on a counted pixel
out["nan_checks"] = 0
for i, (name, mode, backend) in enumerate(cases):
    if i == 0:
        continue  # inductor case: its NaN behaviour is checked through aot_eager below with the same loss
    torch._dynamo.reset()
    x, t = inputs(mode, i)
    x = x.detach().clone()
    x[0, 0, 2, 2] = float("nan")
    try:
        v = torch.compile(seglab.get_loss(name, mode=mode), fullgraph=True, backend="aot_eager")(x, t)
        if not torch.isnan(v).any():
            out["failures"].append(f"{name}/{mode} compiled: a NaN logit gave the finite loss {v.tolist()}")
    except Exception as e:
        out["failures"].append(f"{name}/{mode} compiled, NaN logit: {type(e).__name__}: {str(e)[:300]}")
    out["nan_checks"] += 1
print("RESULT:" + json.dumps(out))
"""


@pytest.mark.slow
def test_every_loss_compiles_on_first_use_in_a_fresh_process():
    env = dict(os.environ)
    env.pop("SEGLAB_FUSED", None)
    env.pop("SEGLAB_FUSED_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT:")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT:"):])
    assert not out["failures"], "\n".join(out["failures"])
    assert out["compared"] == len(out["cases"]) and out["label_checks"] == 3
    assert out["nan_checks"] == len(out["cases"]) - 1  # issue 24: NaN propagates under compile for every loss
    assert out["bases"] == sorted(LOSSES)  # every base loss compiled (in every mode it takes)
    if out["kernels_unavailable"] is None:  # a compiler is there: the first compiled call loaded the C++ kernels
        assert out["kernels_loaded_by_first_compiled_call"]
