"""Issue 23: ``import seglab`` does not import the compile machinery (``torch._dynamo`` cost ~1.9 s, ~2x ``import
torch``), yet the kernels' trace-time constants still reach dynamo.

``seglab.kernels.dispatch.assume_constant_result`` sets the marker torch's ``torch.compiler.assume_constant_result``
sets, without importing ``torch._dynamo``; if a torch release changes how the decorator works, the first test here
fails (and ``test_compile_first_use.py`` shows the effect). Import time itself is measured by
``benchmarks/bench_import.py``, not asserted.
"""

from __future__ import annotations

import subprocess
import sys

import torch

from seglab.kernels import dispatch

HEAVY = ("torch._dynamo", "torch._inductor", "triton", "sympy", "scipy", "skimage", "matplotlib", "pyarrow", "monai")


def test_our_marker_is_the_one_torchs_decorator_sets():
    def probe() -> int:
        return 1

    before = set(vars(probe))
    torch.compiler.assume_constant_result(probe)
    assert set(vars(probe)) - before == {"_dynamo_marked_constant"} and probe._dynamo_marked_constant is True

    def ours() -> int:
        return 1

    assert dispatch.assume_constant_result(ours) is ours and vars(ours) == vars(probe)
    for fn in (dispatch.fused_enabled, dispatch._triton_runs, dispatch._cpu_available):
        assert getattr(fn, "_dynamo_marked_constant", False) is True, fn.__name__


def test_import_seglab_loads_no_compile_machinery_and_no_extras():
    code = ("import sys, seglab; import seglab.kernels.ops, seglab.kernels.dispatch; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
