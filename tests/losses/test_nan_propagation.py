"""Issue 24: a NaN logit never becomes a finite loss, and an out-of-range label always gets seglab's message.

For every name of :func:`seglab.list_losses` (plus the ``smooth=0`` variants, where an empty class is a 0/0, and
composites) × every mode it accepts × every CPU backend (C++ kernels, the eager torch backend forced with
``SEGLAB_FUSED_BACKEND=eager``, the reference code with the fused kernels off) × validation on/off × float32/float64
(multiclass: index targets, and for losses with kernels one-hot targets in float32):

* one NaN logit (sigmoid modes: in the last channel, since a channel that ``include_background=False`` drops never
  reaches the loss): validation on raises seglab's non-finite-logits error; validation off (what ``torch.compile`` and
  ``validate=False`` run) gives a NaN loss — ``reduction="mean"`` NaN, ``"none"`` NaN somewhere. Before the fix
  tversky / focal_tversky / gdice / dice and jaccard with smooth=0 turned a NaN denominator into a ratio of 1 (a loss
  of 0), the C++ CE gave a finite value (its vector log turned NaN into ~89) and the C++ Lovász hinge dropped NaN;
* multiclass index labels -1 or C (not ignore_index): seglab's label-range error on every path, validation on or
  off (before: torch's IndexError on the reference paths, and skeleton_recall accepted negative labels).

The Triton kernels run the same checks in a subprocess under ``TRITON_INTERPRET=1`` (fusable losses only).
Tiny tensors; each loss is one test that loops over its cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import seglab
from seglab._checks import MODES
from seglab._extras import installed
from seglab.kernels import dispatch
from seglab.losses.base import LOSSES
from seglab.losses.registry import NAMES

EXTRA_SPECS = ["dice[smooth=0]", "dice[smooth=0,log=true]", "dice[smooth=0,batch=true]", "jaccard[smooth=0]",
               "tversky[smooth=0]", "focal_tversky[smooth=0]", "gdice[smooth=0]", "dice_sq[smooth=0]",
               "dice+ce", "dice+lovasz", "0.5*tversky+focal"]
NAMES_UNDER_TEST = sorted(seglab.list_losses()) + EXTRA_SPECS
NAN_MSG = "non-finite values"
LABEL_MSG = r"multiclass target values must be class indices in \[0, 3\)"
BACKENDS = ("cpu", "eager", "reference")
STRUCTURE = {"boundary", "hausdorff", "cldice", "skeleton_recall"}
FUSABLE = {"ce", "focal", "dice", "gdice", "tversky", "jaccard", "lovasz"}  # have a kernel path (Lovász: C++ sort)


def backends_of(spec: str) -> tuple[str, ...]:
    """The CPU backends that differ for ``spec``: losses with no kernel path only run their reference code."""
    return BACKENDS if any(base_of(p) in FUSABLE for p in spec.split("+")) else ("reference",)


def base_of(spec: str) -> str:
    name = spec.split("[")[0].split("*")[-1]
    return NAMES[name].base if name in NAMES else name


def modes_of(spec: str) -> tuple[str, ...]:
    modes = set(MODES)
    for part in spec.split("+"):
        name = part.split("[")[0].split("*")[-1]
        if name in NAMES and NAMES[name].modes is not None:
            modes &= set(NAMES[name].modes)
        modes &= set(getattr(LOSSES[base_of(part)], "modes", MODES))
    return tuple(m for m in MODES if m in modes)


def inputs(mode: str, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = 1 if mode == "binary" else 3
    x = torch.randn(2, c, 8, 8, generator=g, dtype=dtype)
    if mode == "multiclass":
        t = torch.zeros(2, 8, 8, dtype=torch.long)
        t[:, 2:6, 1:7] = 1
        t[:, 3:5, 3:5] = 2
    else:
        t = torch.zeros(2, c, 8, 8, dtype=dtype)
        t[:, :, 2:6, 1:7] = 1
    return x, t


class backend:
    """Run the losses on one CPU backend: the C++ kernels, the eager backend (forced) or the reference code."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name, self.mp = name, monkeypatch

    def __enter__(self):
        self.mp.delenv("SEGLAB_FUSED_BACKEND", raising=False)
        if self.name == "eager":
            self.mp.setenv("SEGLAB_FUSED_BACKEND", "eager")
        self.ctx = dispatch.fused(self.name != "reference")
        self.ctx.__enter__()

    def __exit__(self, *exc):
        self.ctx.__exit__(*exc)
        self.mp.delenv("SEGLAB_FUSED_BACKEND", raising=False)


def _skip_missing(spec: str) -> None:
    bases = {base_of(p) for p in spec.split("+")}
    if bases & STRUCTURE and not (installed("scipy") and installed("skimage")):
        pytest.skip("the structure losses need scipy and scikit-image (extras metrics, structure)")


@pytest.mark.parametrize("spec", NAMES_UNDER_TEST)
def test_nan_logit_gives_nan_or_the_validation_error(spec, monkeypatch):
    _skip_missing(spec)
    modes = modes_of(spec)
    assert modes, spec
    failures, ran = [], 0
    backends = backends_of(spec)
    for mode in modes:
        for reduction in ("mean", "none"):
            loss = seglab.get_loss(spec, mode=mode, reduction=reduction)
            for dtype in (torch.float32, torch.float64):
                x, t = inputs(mode, dtype)
                # multiclass: channel 0 (the C++ max skipped a NaN there), not the target class of that pixel;
                # sigmoid: the last channel (a channel include_background=False drops never reaches the loss)
                x[0, 0 if mode == "multiclass" else -1, 3, 4] = float("nan")  # (target class 2 there)
                targets = [("index" if mode == "multiclass" else "dense", t)]
                if mode == "multiclass" and dtype == torch.float32 and len(backends) > 1:  # one-hot: "mcd" kernels
                    targets.append(("onehot", torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float()))
                for be in backends:
                    for kind, tt in targets:
                        with backend(be, monkeypatch), warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            case = f"{mode}/{kind}/{reduction}/{str(dtype)[6:]}/{be}"
                            with pytest.raises(ValueError, match=NAN_MSG):
                                loss(x, tt)
                            with seglab.validation(False):
                                v = loss(x, tt)
                            ran += 1
                            if not bool(torch.isnan(v).any()):
                                failures.append(f"{case}: {v.flatten()[:6].tolist()}")
    assert ran == (len(modes) + ('multiclass' in modes and len(backends) > 1) / 2) * 2 * 2 * len(backends)
    assert not failures, f"{spec}: a NaN logit gave a finite loss with validation off:\n" + "\n".join(failures)


@pytest.mark.parametrize("spec", [s for s in NAMES_UNDER_TEST if "multiclass" in modes_of(s)])
def test_out_of_range_labels_get_seglabs_message(spec, monkeypatch):
    _skip_missing(spec)
    failures = []
    for reduction in ("mean", "none"):
        loss = seglab.get_loss(spec, mode="multiclass", reduction=reduction)
        for bad in (-1, 3):
            x, t = inputs("multiclass", torch.float32)
            t[1, 0, 5] = bad
            for be in backends_of(spec):
                for validate in (True, False):
                    case = f"{reduction}/label {bad}/{be}/validation {'on' if validate else 'off'}"
                    with backend(be, monkeypatch), seglab.validation(validate), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        try:
                            v = loss(x, t)
                        except ValueError as e:
                            if f"found values [{bad}]" not in str(e) or "class indices in [0, 3)" not in str(e):
                                failures.append(f"{case}: {e}")
                        except Exception as e:  # noqa: BLE001  (torch's IndexError / RuntimeError: the bug)
                            failures.append(f"{case}: {type(e).__name__}: {e}")
                        else:
                            failures.append(f"{case}: no error, gave {v.flatten()[:4].tolist()}")
    assert not failures, f"{spec}: out-of-range labels:\n" + "\n".join(failures)


def test_safe_ratio_empty_is_one_and_nan_stays_nan():
    from seglab.losses._stats import safe_ratio

    num = torch.tensor([0.0, 1.0, float("nan"), 0.0, 2.0])
    den = torch.tensor([0.0, float("nan"), float("nan"), -0.0, 4.0])
    out = safe_ratio(num, den)
    assert out[0] == 1 and out[3] == 1 and out[4] == 0.5
    assert torch.isnan(out[1]) and torch.isnan(out[2])


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_lovasz_all_nan_logits_give_nan_on_the_cpp_and_the_torch_path(mode, monkeypatch):
    """The C++ Lovász hinge gave 0.0 for all-NaN logits; torch.sort's path gives NaN."""
    from seglab.kernels import cpu_ext

    if not cpu_ext.available():
        pytest.skip(f"C++ kernels unavailable: {cpu_ext.unavailable_reason()}")
    x, t = inputs(mode, torch.float32)
    x = torch.full_like(x, float("nan")).requires_grad_()
    values = []
    for be in ("cpu", "reference"):
        with backend(be, monkeypatch), seglab.validation(False):
            values.append(seglab.get_loss("lovasz", mode=mode)(x, t))
    assert all(bool(torch.isnan(v)) for v in values), values


_TRITON_SCRIPT = r"""
import warnings, torch, seglab
from seglab.kernels import dispatch, triton_backend
assert triton_backend.interpreted(), "TRITON_INTERPRET did not take"
warnings.simplefilter("ignore")
bad = []
for spec in ("ce", "focal", "dice[smooth=0]", "jaccard[smooth=0]", "tversky", "gdice", "dice+ce"):
    for mode in ("binary", "multiclass", "multilabel"):
        c = 1 if mode == "binary" else 3
        x = torch.randn(2, c, 4, 4)
        x[0, 0 if mode == "multiclass" else -1, 1, 2] = float("nan")
        t = torch.zeros(2, 4, 4, dtype=torch.long) if mode == "multiclass" else torch.zeros(2, c, 4, 4)
        if mode == "multiclass":
            t[:, 1:3, 1:3] = 2
        else:
            t[:, :, 1:3, 1:3] = 1
        assert dispatch.backend_name(x, "mc" if mode == "multiclass" else "ml") == "triton"
        with seglab.validation(False):
            v = seglab.get_loss(spec, mode=mode)(x, t)
            if not bool(torch.isnan(v)):
                bad.append(f"NaN {spec}/{mode}: {v.item()}")
            if mode == "multiclass":
                t[1, 0, 0] = 3
                try:
                    seglab.get_loss(spec, mode=mode)(x.nan_to_num(), t)
                    bad.append(f"label {spec}: no error")
                except ValueError as e:
                    if "class indices in [0, 3)" not in str(e):
                        bad.append(f"label {spec}: {e}")
print("BAD:" + repr(bad))
"""


def test_triton_kernels_propagate_nan_and_bounds_check_labels():
    """The Triton kernels (interpreter, CPU tensors) in a subprocess: TRITON_INTERPRET is fixed per process."""
    if not installed("triton"):
        pytest.skip("triton is not installed (extra gpu)")
    env = {**os.environ, "TRITON_INTERPRET": "1", "SEGLAB_FUSED_BACKEND": "triton"}
    proc = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BAD:[]" in proc.stdout, proc.stdout[-3000:]
