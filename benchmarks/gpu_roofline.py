"""Roofline figure of the fused statistics kernels on a GPU: bytes moved per logit against the bandwidth achieved by a
plain copy and the device's nominal bandwidth (issue 14; part of benchmarks/gpu_check.sh).

The fused pass is memory-bound: per logit it must read the logit and its share of the target, and the backward must
write the gradient. Minimal bytes, for ``C`` classes and logits of ``b`` bytes:

* ``mc`` (index target, int64):   forward ``b + 8/C``, backward ``2b + 8/C`` (x and target read, gradient written);
* ``ml`` (sigmoid, dense target in the compute dtype ``b_y``): forward ``b + b_y``, backward ``2b + b_y``.

(The (N, tiles, K, C) partial sums, about 1.5 % more at 4 classes, and the per-call constants are left out.) The achieved
bandwidth is these bytes over the measured time (``triton.testing.do_bench``, median, CUDA events), reported as GB/s
and as a fraction of a plain device copy (``torch.Tensor.copy_`` and a one-line Triton copy kernel, read + write of the
same tensor size) and of the nominal bandwidth (memory clock x bus width, when torch exposes them). The eager
torch backend and ``F.cross_entropy`` are timed on the same tensors for context (their real traffic is larger: the
figure uses the same minimal bytes, so it reads as "effective" GB/s).

Usage (on a GPU machine)::

    python benchmarks/gpu_roofline.py [--shapes 16x4x512x512,...] [--dtypes float32,bfloat16] [--out benchmarks/gpu_roofline.json]

Without a CUDA device it exits 2 with one line. ``--smoke`` runs tiny shapes on CPU tensors under
``TRITON_INTERPRET=1`` (set it in the environment) to check the script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

DEFAULT_SHAPES = "16x4x512x512,8x21x256x256,2x4x128x128x128,16x3x256x256"


def _timer(device: str):
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: float(do_bench(fn, warmup=25, rep=100, return_mode="median"))

    def cpu_time(fn):  # --smoke only
        fn()
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            ts.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(ts)
    return cpu_time


def _copy_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def copy(src, dst, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        tl.store(dst + offs, tl.load(src + offs, mask=m), mask=m)

    def run(a: torch.Tensor, b: torch.Tensor) -> None:
        n = a.numel()
        copy[(triton.cdiv(n, 4096),)](a, b, n, BLOCK=4096)
    return run


def nominal_bandwidth_gbs(device: str) -> float | None:
    if device != "cuda":
        return None
    p = torch.cuda.get_device_properties(0)
    clock_khz = getattr(p, "memory_clock_rate", None)
    bus_bits = getattr(p, "memory_bus_width", None)
    if not clock_khz or not bus_bits:
        return None
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9  # double data rate


def measure(shape: tuple[int, ...], dtype: torch.dtype, kind: str, device: str, timer, copy) -> dict:
    from seglab.kernels import eager, triton_backend
    from seglab.kernels.ops import KernelCfg

    g = torch.Generator().manual_seed(0)
    N, C = shape[:2]
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    cd_bytes = 8 if dtype == torch.float64 else 4
    if kind == "mc":
        t = torch.randint(0, C, (N, *shape[2:]), generator=g).to(device).reshape(N, -1)
        t_bytes = t.numel() * t.element_size()
        args: tuple = (t,)
    else:
        y = (torch.rand(shape, generator=g) < 0.3).to(device=device, dtype=torch.float64 if cd_bytes == 8 else torch.float32)
        t_bytes = y.numel() * y.element_size()
        args = (y,)
    ones = torch.ones(C, dtype=torch.float64, device=device)
    cfg = KernelCfg(ignore_index=None, squared=False, weight=ones, alpha=ones, alpha_neg=ones, pos_weight=ones)
    K = 3 if kind == "mc" else 4
    gs = torch.randn(N, K, C, dtype=torch.float64, device=device)
    gs[:, 2] = 0
    gsc = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64, device=device)
    fwd, bwd = getattr(triton_backend, f"{kind}_forward"), getattr(triton_backend, f"{kind}_backward")
    efwd, ebwd = getattr(eager, f"{kind}_forward"), getattr(eager, f"{kind}_backward")
    xb = x.numel() * x.element_size()
    bytes_fwd, bytes_bwd = xb + t_bytes, 2 * xb + t_bytes
    ms = {
        "triton_forward": timer(lambda: fwd(x, *args, cfg)),
        "triton_backward": timer(lambda: bwd(x, *args, cfg, gs, gsc)),
        "eager_forward": timer(lambda: efwd(x, *args, cfg)),
        "eager_backward": timer(lambda: ebwd(x, *args, cfg, gs, gsc)),
    }
    dst = torch.empty_like(x)
    ms["torch_copy"] = timer(lambda: dst.copy_(x))
    ms["triton_copy"] = timer(lambda: copy(x, dst))
    if kind == "mc":
        xg = x.detach().float().requires_grad_(True) if dtype == torch.float64 else x.detach().requires_grad_(True)
        tt = t.reshape(N, *shape[2:])

        def ce():
            xg.grad = None
            F.cross_entropy(xg, tt).backward()
        ms["F.cross_entropy_fwd_bwd"] = timer(ce)
    gbs = {
        "triton_forward": bytes_fwd / ms["triton_forward"] / 1e6,
        "triton_backward": bytes_bwd / ms["triton_backward"] / 1e6,
        "eager_forward_effective": bytes_fwd / ms["eager_forward"] / 1e6,
        "eager_backward_effective": bytes_bwd / ms["eager_backward"] / 1e6,
        "torch_copy": 2 * xb / ms["torch_copy"] / 1e6,
        "triton_copy": 2 * xb / ms["triton_copy"] / 1e6,
    }
    copy_best = max(gbs["torch_copy"], gbs["triton_copy"])
    n = x.numel()
    return {
        "shape": list(shape), "dtype": str(dtype).replace("torch.", ""), "kind": kind, "logits": n,
        "bytes_per_logit": {"forward": bytes_fwd / n, "backward": bytes_bwd / n, "fwd+bwd": (bytes_fwd + bytes_bwd) / n},
        "ms": ms, "GBps": gbs,
        "fraction_of_copy": {"forward": gbs["triton_forward"] / copy_best, "backward": gbs["triton_backward"] / copy_best},
        "triton_over_eager": {"forward": ms["triton_forward"] / ms["eager_forward"],
                              "backward": ms["triton_backward"] / ms["eager_backward"]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--kinds", default="mc,ml")
    ap.add_argument("--out", default="benchmarks/gpu_roofline.json")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1 (checks the script)")
    a = ap.parse_args()
    if a.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("gpu_roofline: --smoke needs TRITON_INTERPRET=1 in the environment", file=sys.stderr)
            return 2
        device, shapes = "cpu", [(2, 3, 8, 8)]
    else:
        if not torch.cuda.is_available():
            print("gpu_roofline: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine",
                  file=sys.stderr)
            return 2
        device, shapes = "cuda", [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    from seglab.kernels import triton_backend

    probe = torch.empty(0, device=device)
    if not triton_backend.supports(probe):
        print(f"gpu_roofline: the Triton backend does not run here: {triton_backend.unavailable_reason()}", file=sys.stderr)
        return 2
    timer, copy = _timer(device), _copy_kernel()
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
    rows = []
    for shape in shapes:
        for dn in a.dtypes.split(","):
            for kind in a.kinds.split(","):
                r = measure(shape, dtypes[dn], kind, device, timer, copy)
                rows.append(r)
                print(f"{'x'.join(map(str, shape)):>18} {dn:<8} {kind:<3} bytes/logit fwd {r['bytes_per_logit']['forward']:.2f} "
                      f"bwd {r['bytes_per_logit']['backward']:.2f} | GB/s fwd {r['GBps']['triton_forward']:.0f} "
                      f"bwd {r['GBps']['triton_backward']:.0f} copy {max(r['GBps']['torch_copy'], r['GBps']['triton_copy']):.0f} "
                      f"| of copy fwd {r['fraction_of_copy']['forward']:.2f} bwd {r['fraction_of_copy']['backward']:.2f} "
                      f"| triton/eager fwd {r['triton_over_eager']['forward']:.2f} bwd {r['triton_over_eager']['backward']:.2f}",
                      flush=True)
    out = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (interpreter smoke run: numbers meaningless)",
           "nominal_bandwidth_GBps": nominal_bandwidth_gbs(device), "torch": torch.__version__,
           "triton": triton_backend.version(), "rows": rows}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
