"""CPU backend: the C++ kernels of ``csrc/fused_cpu.cpp``, compiled on first use and called via ctypes.

Build: ``g++ -O3 -march=native -fopenmp-simd -shared`` (no torch headers, no pybind11, no ninja), about 2 s,
cached in ``$SEGLAB_KERNEL_CACHE`` (default ``~/.cache/seglab/kernels``) under a name that hashes the
source, the flags and the compiler, written atomically (safe with pytest-xdist). If no compiler is found
or the build fails, :func:`available` returns False once with a warning and the losses run their
reference code; :func:`unavailable_reason` says why.

Cache robustness: every library is written with a stamp ``<name>.so.stamp`` (size and sha256 of the file as
built), checked *before* ``dlopen`` together with the file's ELF structure (every mapped segment inside the file:
a truncated library would kill the process with SIGBUS, also when its stamp was rewritten to match); a missing
or mismatching stamp, or an incomplete file, means rebuild. Builds go to ``.tmp-seglab_fused_*`` files, removed
on failure; such files older than 10 minutes (a build killed midway) are deleted before building. ``CXX`` is honoured strictly: if it is set
and not found, the backend is unavailable and the reason names it.

Same interface as :mod:`seglab.kernels.eager` (see there for the meaning of the statistics). The multiclass
kernels bounds-check the labels they read and raise the same ``ValueError`` as input validation.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

_SRC = Path(__file__).with_name("csrc") / "fused_cpu.cpp"
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-std=c++17", "-shared", "-fPIC"]
_ABI = 4
_TMP_PREFIX = ".tmp-seglab_fused_"
_STALE_TMP_S = 600.0
# Lovász rows travel as 31-bit element indices in the kernel: longer rows are declined (None)
LOVASZ_MAX_ROW = 2**31 - 1
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_failed: str | None = None

DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def cache_dir() -> Path:
    d = os.environ.get("SEGLAB_KERNEL_CACHE")
    return Path(d) if d else Path.home() / ".cache" / "seglab" / "kernels"


def _compiler() -> list[str] | None:
    """The compiler command (``$CXX`` split like a shell word list, else g++/c++/clang++), or None if none.

    Raises RuntimeError if ``CXX`` is set but its program is not found: a set CXX is never silently replaced.
    """
    cxx = os.environ.get("CXX", "").strip()
    if cxx:
        words = shlex.split(cxx)
        path = shutil.which(words[0])
        if path is None:
            raise RuntimeError(f"CXX={cxx!r} is set but {words[0]!r} was not found (not an executable file or not "
                               "on PATH); fix or unset CXX")
        return [path, *words[1:]]
    for cand in ("g++", "c++", "clang++"):
        path = shutil.which(cand)
        if path:
            return [path]
    return None


def _digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _stamp_path(so: Path) -> Path:
    return so.with_name(so.name + ".stamp")


def elf_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete ELF shared library (None: it is; also None off Linux, where the compiler
    writes another format): every program header's bytes (``p_offset + p_filesz``, what the loader maps) and the
    header tables must lie inside the file. A truncated library fails this whatever its stamp says, so it is
    never mapped (``dlopen`` of a library cut short dies with SIGBUS, not an error)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 16 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
                return "not an ELF file"
            wide, end = head[4] == 2, "<" if head[5] == 1 else ">"
            if len(head) < (64 if wide else 52):
                return "ELF header cut short"
            if wide:
                phoff, shoff = struct.unpack_from(end + "QQ", head, 32)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 54)
            else:
                phoff, shoff = struct.unpack_from(end + "II", head, 28)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 42)
            if phnum == 0 or phoff + phnum * phentsize > size:
                return f"program headers outside the file ({size} bytes)"
            if shoff and shoff + shnum * shentsize > size:
                return f"section headers outside the file ({size} bytes)"
            f.seek(phoff)
            table = f.read(phnum * phentsize)
        for i in range(phnum):
            # p_offset and p_filesz: at bytes 8 and 32 of an ELF64 program header, 4 and 16 of an ELF32 one
            at = i * phentsize
            word = end + ("Q" if wide else "I")
            offset = struct.unpack_from(word, table, at + (8 if wide else 4))[0]
            filesz = struct.unpack_from(word, table, at + (32 if wide else 16))[0]
            if offset + filesz > size:
                return f"segment {i} ends at byte {offset + filesz}, past the end of the file ({size} bytes)"
    except (OSError, struct.error) as e:
        return f"unreadable ({e})"
    return None


def _verified(so: Path) -> bool:
    """Whether ``so`` exists, matches its stamp (size, then the sha256 of the library as built) and is a complete
    ELF file: checked before it is ever dlopen'ed. The structural check catches a library cut short even when
    its stamp was rewritten to match it (a stamp only proves that the file is the one it describes)."""
    try:
        stamp = json.loads(_stamp_path(so).read_text())
        if so.stat().st_size != stamp.get("size"):
            return False
        return _digest(so) == stamp and elf_problem(so) is None
    except (OSError, ValueError, AttributeError):
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".stamp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale_temps(out_dir: Path) -> None:
    """Delete temporary files of builds that died midway (older than 10 minutes: no live build is that slow)."""
    now = time.time()
    for f in out_dir.glob(_TMP_PREFIX + "*"):
        with contextlib.suppress(OSError):  # gone already (another process), or not ours to delete
            if now - f.stat().st_mtime > _STALE_TMP_S:
                f.unlink()


def _compile(cxx: list[str], so: Path) -> None:
    """Build into a temp file, then stamp and rename atomically; the temp file never outlives a failure."""
    out_dir = so.parent
    _remove_stale_temps(out_dir)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        cmd = [*cxx, *_FLAGS, "-o", tmp, str(_SRC), "-lpthread"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
            raise RuntimeError(f"compiling {_SRC.name} failed: `{shlex.join(cmd)}` exited with code {proc.returncode}"
                               + (f":\n{tail}" if tail else " and printed nothing"))
        stamp = _digest(Path(tmp))
        if stamp["size"] == 0:
            raise RuntimeError(f"compiling {_SRC.name}: `{shlex.join(cmd)}` exited with code 0 but wrote an empty file")
        bad = elf_problem(Path(tmp))
        if bad:
            raise RuntimeError(f"compiling {_SRC.name}: `{shlex.join(cmd)}` exited with code 0 but wrote an incomplete "
                               f"library ({bad}); not loading it")
        os.replace(tmp, so)
        _write_atomic(_stamp_path(so), json.dumps(stamp).encode())
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build() -> ctypes.CDLL:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (g++/c++/clang++; set CXX)")
    if not _SRC.is_file():
        raise RuntimeError(f"kernel source {_SRC} is missing")
    src = _SRC.read_bytes()
    try:
        ver = subprocess.run([*cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:  # pragma: no cover
        ver = ""
    key = hashlib.sha256(src + " ".join(_FLAGS).encode() + " ".join(cxx).encode() + ver.encode()
                         + platform.machine().encode() + platform.node().encode()).hexdigest()[:16]
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / f"seglab_fused_{key}.so"
    for _ in range(3):  # missing, truncated, corrupt or unstamped: (re)build; never dlopen an unchecked file
        if _verified(so):
            break
        _compile(cxx, so)  # (a concurrent build may swap library and stamp in between: check again)
    else:
        raise RuntimeError(f"kernel library {so} does not match its stamp {_stamp_path(so).name} or is incomplete "
                           f"({elf_problem(so) or 'sha256 differs'}) after building it; not loading it")
    lib = ctypes.CDLL(str(so))
    if lib.seglab_abi_version() != _ABI:
        raise RuntimeError(f"stale kernel library {so} (ABI {lib.seglab_abi_version()}, expected {_ABI})")
    P, I64, I32, D = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suf in DTYPES.values():
        getattr(lib, f"mc_fwd_{suf}").argtypes = [P, P, I64, I64, I64, I64, I32, I32, I32, D, P, P, P, P, P, I32]
        getattr(lib, f"mc_bwd_{suf}").argtypes = [P, P, I64, I64, I64, I64, I32, I32, I32, D, P, P, P, P, P, P, I32]
        getattr(lib, f"ml_fwd_{suf}").argtypes = [P, P, I64, I64, I64, I32, D, I32, I32, D, P, P, P, P, P, P, I32]
        getattr(lib, f"ml_bwd_{suf}").argtypes = [P, P, I64, I64, I64, I32, D, I32, I32, D, P, P, P, P, P, P, P, I32]
        getattr(lib, f"mc_fwd_cd_{suf}").argtypes = [P, P, I64, I64, I64, I64, I32, I32, I32, D, P, P, P, P, P, I32]
        getattr(lib, f"mc_bwd_cd_{suf}").argtypes = [P, P, I64, I64, I64, I64, I32, I32, I32, D, P, P, P, I64, I64, P, I64,
                                                     I64, D, D, D, D, P, P, I32]
        getattr(lib, f"argsort_desc_{suf}").argtypes = [P, I64, I64, P, I32]
        getattr(lib, f"lovasz_{suf}").argtypes = [P, I64, I64, I64, P, P, I32, P, P, P, I32]
        for k in ("mc_fwd", "mc_bwd", "mc_fwd_cd", "mc_bwd_cd", "ml_fwd", "ml_bwd", "argsort_desc", "lovasz"):
            getattr(lib, f"{k}_{suf}").restype = None
    return lib


def load() -> ctypes.CDLL | None:
    """The compiled library, building it on first call; None (warned once) if that is impossible."""
    global _lib, _failed
    if _lib is not None or _failed is not None:
        return _lib
    with _lock:
        if _lib is None and _failed is None:
            try:
                _lib = _build()
            except Exception as exc:  # no compiler, failed build, unloadable library
                _failed = str(exc) or type(exc).__name__
                warnings.warn(f"seglab: fused C++ kernels unavailable, using the reference losses ({_failed})",
                              RuntimeWarning, stacklevel=3)
    return _lib


def available() -> bool:
    return load() is not None


def unavailable_reason() -> str | None:
    """Why the C++ kernels cannot be used (after trying to load them), or None when they are available."""
    return None if load() is not None else (_failed or "unknown reason")


def supports(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in DTYPES and available()


def _p(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _ign(cfg) -> int:
    return -(2**63) if cfg.ignore_index is None else int(cfg.ignore_index)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _xin(x: torch.Tensor) -> torch.Tensor:
    """Kernel input: float32/64 as is, half types upcast to float32 (accumulation in float32)."""
    if x.dtype is torch.float32 and x.is_contiguous():
        return x
    if x.dtype not in DTYPES:
        x = x.float()
    return x if x.is_contiguous() else x.contiguous()


def _f64(v: torch.Tensor) -> torch.Tensor:
    return v.detach().to(device="cpu", dtype=torch.float64).contiguous()


# ----- multiclass softmax, index target -----
def _raise_bad_labels(nbad: int, t: torch.Tensor, C: int, ignore_index) -> None:
    """The kernel counted labels outside [0, C) that are not ignore_index: raise the validation error."""
    if nbad:
        from seglab.targets import label_range_error

        bad = (t < 0) | (t >= C)
        if ignore_index is not None:
            bad &= t != ignore_index
        raise label_range_error(t[bad].unique().tolist(), C, ignore_index)


def _fn(name: str, x: torch.Tensor):
    """The ctypes function ``<name>_<f32|f64>`` of the loaded library (looked up once per library)."""
    lib = _lib if _lib is not None else load()
    fns = lib.__dict__.setdefault("_seglab_fns", {})
    f = fns.get((name, x.dtype))
    if f is None:
        f = fns[(name, x.dtype)] = getattr(lib, f"{name}_{DTYPES[x.dtype]}")
    return f


_F64 = torch.float64


def _w64(v: torch.Tensor) -> torch.Tensor:
    """A (C,) weight as a contiguous CPU float64 tensor (the cached defaults already are: returned as is)."""
    if v.dtype is _F64 and v.device.type == "cpu" and v.is_contiguous():
        return v
    return _f64(v)


def mc_forward(x: torch.Tensor, t: torch.Tensor, cfg, split: bool = False) -> tuple[torch.Tensor, ...]:
    """``(stats (N, 3, C), scal (4,))`` in float64; with ``split=True`` the fields as separate tensors in the
    compute dtype (float32 for half inputs), ``tp, ps, ys`` ``(N, C)`` and the 4 sums ``()``, written by the kernel
    itself (accumulated in float64, rounded once: the same values as ``stats.to(cd)``), no conversions here."""
    N, C = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:])
    x = _xin(x)
    if not t.is_contiguous():
        t = t.contiguous()
    if split:
        st = torch.empty(3, N, C, dtype=x.dtype)
        sc = torch.empty(4, dtype=x.dtype)
        nbad = ctypes.c_int64(0)
        w, a = _w64(cfg.weight), _w64(cfg.alpha)
        _fn("mc_fwd_cd", x)(
            x.data_ptr(), t.data_ptr(), N, C, S, _ign(cfg), cfg.squared, cfg.label_smoothing > 0, cfg.focal,
            cfg.gamma, w.data_ptr(), a.data_ptr(), st.data_ptr(), sc.data_ptr(), ctypes.addressof(nbad),
            _threads())
        _raise_bad_labels(nbad.value, t, C, cfg.ignore_index)
        return st.unbind(0) + sc.unbind(0)
    stats = torch.empty(N, 3, C, dtype=_F64)
    scal = torch.empty(4, dtype=_F64)
    nbad = ctypes.c_int64(0)
    w, a = _w64(cfg.weight), _w64(cfg.alpha)
    _fn("mc_fwd", x)(
        x.data_ptr(), t.data_ptr(), N, C, S, _ign(cfg), int(cfg.squared), int(cfg.smoothing), int(cfg.focal),
        float(cfg.gamma), w.data_ptr(), a.data_ptr(), stats.data_ptr(), scal.data_ptr(), ctypes.addressof(nbad),
        _threads())
    _raise_bad_labels(nbad.value, t, C, cfg.ignore_index)
    return stats, scal


def mc_backward(x, t, cfg, g_stats: torch.Tensor, g_scal: torch.Tensor) -> torch.Tensor:
    N, C = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:])
    dtype = x.dtype
    x = _xin(x)
    t = t.contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    gst, g = _w64(g_stats), _w64(g_scal)  # (N, 3, C): the kernel reads the tp and ps rows
    w, a = _w64(cfg.weight), _w64(cfg.alpha)
    nbad = ctypes.c_int64(0)
    _fn("mc_bwd", x)(
        x.data_ptr(), t.data_ptr(), N, C, S, _ign(cfg), int(cfg.squared), int(cfg.smoothing), int(cfg.focal),
        float(cfg.gamma), w.data_ptr(), a.data_ptr(), gst.data_ptr(), g.data_ptr(), gx.data_ptr(),
        ctypes.addressof(nbad), _threads())
    _raise_bad_labels(nbad.value, t, C, cfg.ignore_index)
    return gx if gx.dtype == dtype else gx.to(dtype)


def mc_backward_split(x, t, cfg, g_tp: torch.Tensor | None, g_ps: torch.Tensor | None,
                      g_scal: list[float]) -> torch.Tensor:
    """:func:`mc_backward` from the gradients of ``mc_forward(..., split=True)``'s fields as they come: ``g_tp``,
    ``g_ps`` ``(N, C)`` in the compute dtype, any strides (None = 0), the 4 sums' gradients as Python floats."""
    N, C = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:])
    dtype = x.dtype
    x = _xin(x)
    if not t.is_contiguous():
        t = t.contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    if g_tp is not None and g_tp.dtype != x.dtype:
        g_tp = g_tp.to(x.dtype)
    if g_ps is not None and g_ps.dtype != x.dtype:
        g_ps = g_ps.to(x.dtype)
    tp_s = (0, 0) if g_tp is None else g_tp.stride()
    ps_s = (0, 0) if g_ps is None else g_ps.stride()
    w, a = _w64(cfg.weight), _w64(cfg.alpha)
    nbad = ctypes.c_int64(0)
    _fn("mc_bwd_cd", x)(
        x.data_ptr(), t.data_ptr(), N, C, S, _ign(cfg), cfg.squared, cfg.label_smoothing > 0, cfg.focal,
        cfg.gamma, w.data_ptr(), a.data_ptr(), _p(g_tp), tp_s[0], tp_s[1], _p(g_ps), ps_s[0], ps_s[1],
        g_scal[0], g_scal[1], g_scal[2], g_scal[3], gx.data_ptr(), ctypes.addressof(nbad), _threads())
    _raise_bad_labels(nbad.value, t, C, cfg.ignore_index)
    return gx if gx.dtype == dtype else gx.to(dtype)


# ----- multilabel / binary sigmoid, float target -----
def ml_forward(x: torch.Tensor, y: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    lib = load()
    N, C = x.shape[0], x.shape[1]
    S = x[0, 0].numel() if x.numel() else 0
    x = _xin(x)
    y = y.to(x.dtype).contiguous()
    stats = torch.empty(N, 4, C, dtype=torch.float64)
    scal = torch.empty(4, dtype=torch.float64)
    w, pw, a, an = _f64(cfg.weight), _f64(cfg.pos_weight), _f64(cfg.alpha), _f64(cfg.alpha_neg)
    has_ign = cfg.ignore_index is not None
    getattr(lib, f"ml_fwd_{DTYPES[x.dtype]}")(
        _p(x), _p(y), N, C, S, int(has_ign), float(cfg.ignore_index if has_ign else 0.0), int(cfg.squared),
        int(cfg.focal), float(cfg.gamma), _p(w), _p(pw), _p(a), _p(an), _p(stats), _p(scal), _threads())
    return stats, scal


def ml_backward(x, y, cfg, g_stats: torch.Tensor, g_scal: torch.Tensor) -> torch.Tensor:
    lib = load()
    N, C = x.shape[0], x.shape[1]
    S = x[0, 0].numel() if x.numel() else 0
    dtype = x.dtype
    x = _xin(x)
    y = y.to(x.dtype).contiguous()
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    gst = torch.stack([g_stats[:, 0], g_stats[:, 1], g_stats[:, 3]], 1).to(torch.float64).contiguous()
    g = _f64(g_scal)
    w, pw, a, an = _f64(cfg.weight), _f64(cfg.pos_weight), _f64(cfg.alpha), _f64(cfg.alpha_neg)
    has_ign = cfg.ignore_index is not None
    getattr(lib, f"ml_bwd_{DTYPES[x.dtype]}")(
        _p(x), _p(y), N, C, S, int(has_ign), float(cfg.ignore_index if has_ign else 0.0), int(cfg.squared),
        int(cfg.focal), float(cfg.gamma), _p(w), _p(pw), _p(a), _p(an), _p(gst), _p(g), _p(gx), _threads())
    return gx.to(dtype)


def argsort_desc(v: torch.Tensor) -> torch.Tensor | None:
    """Indices sorting the last dim of ``v`` in decreasing order (stable radix sort), or None if unsupported."""
    if not supports(v) or v.ndim < 1:
        return None
    lib = load()
    vc = v.detach().contiguous()
    n = vc.shape[-1]
    rows = vc.numel() // max(n, 1)
    out = torch.empty(vc.shape, dtype=torch.int64)
    if vc.numel():
        getattr(lib, f"argsort_desc_{DTYPES[vc.dtype]}")(vc.data_ptr(), rows, n, out.data_ptr(), _threads())
    return out


def lovasz_rows(errors: torch.Tensor, *, labels: torch.Tensor | None = None, fg: torch.Tensor | None = None,
                num_classes: int = 1, hinge: bool = False):
    """Lovász loss per row of ``errors`` (R, P) and its gradient w.r.t. ``errors``.

    Foreground from ``labels`` (B, P) int64 (row r is class r % num_classes of image r // num_classes; label < 0
    ignored) or from ``fg`` (R, P) (< 0 ignored). Returns ``(loss (R,) float64, grad (R, P), gts (R,) float64)``,
    or None if the C++ kernels are unavailable or a row is longer than :data:`LOVASZ_MAX_ROW`.
    """
    if not supports(errors) or errors.shape[-1] > LOVASZ_MAX_ROW:  # element indices travel as 31-bit payloads
        return None
    lib = load()
    e = errors.detach().contiguous()
    R, n = e.shape
    grad = torch.empty_like(e)
    loss = torch.zeros(R, dtype=torch.float64)
    gts = torch.zeros(R, dtype=torch.float64)
    lab = None if labels is None else labels.contiguous()
    f = None if fg is None else fg.detach().to(e.dtype).contiguous()
    getattr(lib, f"lovasz_{DTYPES[e.dtype]}")(e.data_ptr(), R, n, num_classes, _p(lab), _p(f), int(hinge),
                                                grad.data_ptr(), loss.data_ptr(), gts.data_ptr(), _threads())
    return loss, grad, gts
