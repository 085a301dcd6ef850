"""What this installation is (``seglab info``) and which loss backend it runs.

Versions (seglab, Python, torch), the platform, the devices, the fused backend that CPU float32 losses use and the
one CUDA losses use (Triton, else the eager torch backend; or why none is active) and which optional extras are
installed. Needs only the core install (torch + numpy).
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from importlib import metadata
from importlib.util import find_spec
from typing import Any

import torch

from seglab._extras import EXTRAS, installed
from seglab._version import __version__
from seglab.kernels import cpu_ext, dispatch, triton_backend


def _fused() -> dict[str, Any]:
    """The fused backend of a CPU float32 loss call: ``"cpp"``, ``"eager"`` or None, and why."""
    env = {k: os.environ.get(k) for k in ("SEGLAB_FUSED", "SEGLAB_FUSED_BACKEND", "SEGLAB_KERNEL_CACHE", "CXX")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reason is reported below instead
        cpp_ok = cpu_ext.available()
    cpp = {"available": cpp_ok, "reason": None if cpp_ok else cpu_ext.unavailable_reason(),
           "source": str(cpu_ext._SRC), "source_present": cpu_ext._SRC.is_file(), "cache": str(cpu_ext.cache_dir())}
    enabled = dispatch.fused_enabled()
    forced = (env["SEGLAB_FUSED_BACKEND"] or "").strip().lower()
    if not enabled:
        backend = None
        by_env = (env["SEGLAB_FUSED"] or "1").strip().lower() in ("0", "false", "no", "off")
        reason = (f"fused kernels disabled by SEGLAB_FUSED={env['SEGLAB_FUSED']}" if by_env
                  else "fused kernels disabled by seglab.set_fused(False)") + "; the reference losses run"
    elif forced == "eager":
        backend, reason = "eager", "forced by SEGLAB_FUSED_BACKEND=eager"
    elif forced == "triton":
        backend = dispatch.backend_name(torch.empty(1, 1), "mc")
        reason = "forced by SEGLAB_FUSED_BACKEND=triton" + (
            " (CPU tensors through the Triton interpreter)" if backend == "triton"
            else "; Triton runs CPU tensors only under TRITON_INTERPRET=1, so the eager torch backend runs")
    elif cpp_ok:
        backend, reason = "cpp", None
    else:
        backend = "eager" if forced == "cpu" else None
        reason = f"C++ kernels unavailable: {cpp['reason']}" + (
            "; SEGLAB_FUSED_BACKEND=cpu selects the eager torch backend" if backend else "; the reference losses run")
    return {"backend": backend, "reason": reason, "enabled": enabled, "cpp": cpp, "env": env}


def _fused_cuda() -> dict[str, Any]:
    """The fused backend of a CUDA loss call: ``"triton"``, ``"eager"`` or None, and why (also on a machine without a
    GPU: what would run there). Imports triton (to check that it works), never initialises CUDA."""
    forced = (os.environ.get("SEGLAB_FUSED_BACKEND") or "").strip().lower()
    interp = triton_backend.interpreted()
    ok = triton_backend.available()
    triton = {"installed": triton_backend.version() is not None, "version": triton_backend.version(), "available": ok,
              "reason": None if ok else triton_backend.unavailable_reason(), "interpreter": interp,
              "max_classes": triton_backend.MAX_CLASSES, "failed_kernels": triton_backend.broken()}
    if not dispatch.fused_enabled():
        backend, reason = None, "fused kernels disabled; the reference losses run"
    elif forced in ("eager", "cpu"):
        backend, reason = "eager", f"forced by SEGLAB_FUSED_BACKEND={forced}"
    elif not ok:
        backend, reason = "eager", f"Triton unavailable: {triton['reason']}"
    elif interp:
        backend, reason = "eager", "TRITON_INTERPRET=1 is set: Triton runs CPU tensors in its interpreter, not CUDA"
    else:
        backend, reason = "triton", f"eager above {triton_backend.MAX_CLASSES} classes"
    return {"backend": backend, "reason": reason, "triton": triton}


def _devices() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "cpu": {"threads": torch.get_num_threads(), "processor": platform.processor() or platform.machine()},
        "cuda": {"available": cuda, "version": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []},
    }


def _extras() -> dict[str, dict[str, str | None]]:
    """extra -> {distribution: installed version or None}."""
    out: dict[str, dict[str, str | None]] = {}
    for module, (dist, extra) in EXTRAS.items():
        if module == "tomli" and sys.version_info >= (3, 11):
            continue  # the standard library's tomllib is used instead
        version = None
        if installed(module):
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = "unknown"
        out.setdefault(extra, {})[dist] = version
    return out


def _surface() -> dict[str, Any]:
    """Where the surface distances (HD, ASSD, NSD) run: always on the CPU (CUDA tensors are copied there), with
    ``edt`` for the distance transform when it is installed, else scipy."""
    tool = "edt" if find_spec("edt") is not None else ("scipy" if find_spec("scipy") is not None else None)
    return {"device": "cpu", "cuda_inputs": "copied to the CPU (no GPU surface distances yet)", "transform": tool}


def info() -> dict[str, Any]:
    """Everything ``seglab info`` reports, as a JSON-serializable dict."""
    extras = _extras()
    return {
        "seglab": __version__,
        "location": os.path.dirname(os.path.abspath(__file__)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "torch": torch.__version__,
        "numpy": metadata.version("numpy"),
        "platform": platform.platform(),
        "devices": _devices(),
        "fused_cpu_float32": _fused(),
        "fused_cuda": _fused_cuda(),
        "surface_distances": _surface(),
        "extras": extras,
        "extras_installed": sorted(e for e, pkgs in extras.items() if all(v is not None for v in pkgs.values())),
    }


def format_text(d: dict[str, Any]) -> str:
    f = d["fused_cpu_float32"]
    cuda = d["devices"]["cuda"]
    lines = [
        f"seglab    {d['seglab']}  ({d['location']})",
        f"python    {d['python']}",
        f"torch     {d['torch']}  (numpy {d['numpy']})",
        f"platform  {d['platform']}",
        f"devices   cpu ({d['devices']['cpu']['threads']} threads)"
        + (f"; cuda {cuda['version']}: " + ", ".join(cuda["devices"]) if cuda["available"] else "; cuda: not available"),
        f"fused     CPU float32 losses: {f['backend'] or 'none (reference losses)'}" + (f" — {f['reason']}" if f["reason"] else ""),
    ]
    g = d.get("fused_cuda")
    if g is not None:
        tv = g["triton"]["version"]
        name = f"triton {tv}" if g["backend"] == "triton" else (g["backend"] or "none (reference losses)")
        lines.append(f"fused     CUDA losses: {name}" + (f" — {g['reason']}" if g["reason"] else "")
                     + ("" if cuda["available"] else " (no CUDA device here)"))
    sd = d.get("surface_distances")
    if sd is not None:
        lines.append(f"metrics   surface distances on the CPU ({sd['transform'] or 'needs the metrics extra'}); "
                     f"CUDA tensors are {sd['cuda_inputs']}")
    width = max((len(e) for e in d["extras"]), default=0) + 2  # the longest extra's name never runs into its state
    for extra, pkgs in d["extras"].items():
        state = ", ".join(f"{p} {v}" if v else f"{p} missing" for p, v in pkgs.items())
        lines.append(f"extra     {extra:<{width}}{state}")
    return "\n".join(lines)
