"""Compile the Triton kernels ahead of time for a GPU architecture, on a machine without a GPU.

The interpreter tests (tests/kernels/test_triton.py) check the arithmetic but not the lowering: a kernel can run in
the interpreter and still fail to compile (types of a runtime ``if``, layouts, unsupported ops). This script runs the
real compiler pipeline (Triton IR -> LLVM -> PTX -> cubin with the ptxas shipped in the triton wheel) for every kernel,
for float32 / bfloat16 / float64 logits and the tile shapes of 4 and 32 classes, and exits 1 when one fails. No GPU
and no CUDA driver are needed. About 10 s a kernel on a loaded 2-core machine (30 kernels).

Usage::

    nice -n 10 .venv/bin/python benchmarks/triton_compile_check.py [--arch 90] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _resources(cubin: bytes | None) -> str:
    """Registers / stack / local memory of a cubin (the cuobjdump shipped with triton), or '' if unavailable."""
    import subprocess
    import tempfile

    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not cubin or not os.path.exists(tool):
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
    lines = [ln.strip() for ln in out.splitlines() if "REG:" in ln]
    return " ".join(w for w in lines[0].split() if w.split(":")[0] in ("REG", "STACK", "LOCAL")) if lines else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (80: A100, 90: H100/H200)")
    ap.add_argument("--quick", action="store_true", help="float32 with 4 classes only (6 kernels)")
    a = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("triton_compile_check: unset TRITON_INTERPRET (it makes the kernels interpreted, not compiled)",
              file=sys.stderr)
        return 2
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from seglab.kernels import _triton_kernels as K

    target = GPUTarget("cuda", a.arch, 32)
    variants = [("*fp32", "*fp32", tl.float32, [(4, 256), (32, 32)]), ("*bf16", "*fp32", tl.float32, [(4, 256)]),
                ("*fp64", "*fp64", tl.float64, [(4, 16)])]  # the tiles triton_backend._tiles picks for 4 / 21 classes
    if a.quick:
        variants = [("*fp32", "*fp32", tl.float32, [(4, 256)])]
    failed = 0
    n = 0
    for xdt, cp, cd, tiles in variants:
        for bc, bs in tiles:
            common = dict(w_ptr=cp, a_ptr=cp, prm_ptr=cp)
            jobs = [
                (K.mc_fwd, dict(x_ptr=xdt, t_ptr="*i64", part_ptr=cp, sc_ptr=cp, **common)),
                (K.mc_bwd, dict(x_ptr=xdt, t_ptr="*i64", gst_ptr=cp, gsc_ptr=cp, gx_ptr=xdt, **common)),
                (K.mcd_fwd, dict(x_ptr=xdt, y_ptr=cp, v_ptr="*u8", part_ptr=cp, sc_ptr=cp, **common)),
                (K.mcd_bwd, dict(x_ptr=xdt, y_ptr=cp, v_ptr="*u8", gst_ptr=cp, gsc_ptr=cp, gx_ptr=xdt, **common)),
                (K.ml_fwd, dict(x_ptr=xdt, y_ptr=cp, pw_ptr=cp, an_ptr=cp, part_ptr=cp, sc_ptr=cp, **common)),
                (K.ml_bwd, dict(x_ptr=xdt, y_ptr=cp, pw_ptr=cp, an_ptr=cp, gst_ptr=cp, gsc_ptr=cp, gx_ptr=xdt, **common)),
            ]
            consts = {"BC": bc, "BS": bs, "CD": cd}
            for fn, ptrs in jobs:
                sig = {arg: ("constexpr" if arg in consts else ptrs.get(arg, "i32")) for arg in fn.arg_names}
                t0 = time.perf_counter()
                n += 1
                try:
                    k = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=target,
                                      options={"enable_fp_fusion": True, "num_warps": 4})  # as triton_backend launches
                except Exception as exc:
                    failed += 1
                    print(f"FAILED {fn.__name__} x={xdt} BC={bc} BS={bs}: {type(exc).__name__}: {str(exc)[:3000]}",
                          flush=True)
                    continue
                print(f"ok {fn.__name__:<8} x={xdt:<6} BC={bc:<3} BS={bs:<5} sm_{a.arch} {time.perf_counter() - t0:5.1f} s "
                      f"{_resources(k.asm.get('cubin'))}", flush=True)
    print(f"{n - failed} of {n} kernels compiled for sm_{a.arch}", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
