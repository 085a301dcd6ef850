"""The Triton backend (seglab.kernels.triton_backend) on CPU tensors through Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before the kernels are defined and stays fixed for the process, so the checks run
in one subprocess (this file run as a script) and each test here asserts one of its results: nothing in the pytest
process flips a global switch, and a GPU test in the same process would still get real kernels.

Compared, values and gradients:
* backend level: ``triton_backend.<kind>_forward/backward`` against ``eager`` (the contract's other implementation)
  with random upstream gradients on every statistic, for every kind and option (squared, label smoothing, class
  weights, pos_weight, focal gamma 0 / 0.5 / 2 with alpha, ignore_index), float64 (1e-12), float32 (1e-5) and
  bfloat16 logits (statistics in float32: same values as eager on the same bf16 input; gradient rounded to bf16);
* loss level: losses run with ``SEGLAB_FUSED_BACKEND=triton`` against the reference code (fused off), 2D and 3D, index / one-hot / soft / multi-hot targets, with and without ignore_index;
* ``torch.autograd.gradcheck`` (fast mode: the interpreter is slow) of the registered op ``seglab::fused_stats`` with ``backend="triton"`` (float64);
* out-of-range labels raise the validation error from the Triton kernel's count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import zlib

import pytest

from seglab._extras import installed

KINDS = ("mc", "mcd", "ml")
# (squared, label_smoothing, focal, gamma, ignore): all options on, plain, focal gamma 0 and 0.5
CONFIGS = {"plain": (False, 0.0, False, 0.0, False), "all": (True, 0.1, True, 2.0, True),
           "focal_g0": (False, 0.0, True, 0.0, False), "focal_g05_ign": (True, 0.2, True, 0.5, True)}
DTYPES = ("float64", "float32", "bfloat16")


def backend_cases() -> list[str]:
    out = []
    for kind in KINDS:
        for cfg in CONFIGS:
            for dt in DTYPES:
                if (dt == "bfloat16" and cfg != "all") or (dt == "float64" and cfg == "focal_g0"):
                    continue
                out.append(f"backend/{kind}/{cfg}/{dt}/{'3d' if (len(out) % 2) else '2d'}")
        out.append(f"backend/{kind}/all/float32/multi")  # 300 pixels: several tiles per sample (partials reduced)
    return out


def loss_cases() -> list[str]:
    return ["loss/multiclass/index/2d/ignore", "loss/multiclass/index/3d/noignore", "loss/multiclass/onehot/3d/ignore",
            "loss/multiclass/soft/2d/noignore", "loss/multilabel/hard/2d/ignore", "loss/multilabel/soft/3d/noignore",
            "loss/binary/hard/3d/ignore", "loss/multiclass/index/2d/bfloat16", "loss/multilabel/hard/3d/bfloat16"]


def large_cases() -> list[str]:
    """Multi-tile shapes, many classes (BC = 32, 256), a 3D volume: for a GPU (too slow for the interpreter)."""
    return [f"backend/{k}/{c}/{d}/{s}" for k in KINDS for c in ("all", "plain") for d in ("float32", "bfloat16")
            for s in (("big", "wide") if k != "ml" else ("big3d",))]


OTHER = ["gradcheck/mc", "gradcheck/mcd", "gradcheck/ml", "labels/out_of_range", "dispatch/forced_triton",
         "compile/fullgraph"]


# ------------------------------------------------------------------ worker (runs under TRITON_INTERPRET=1)
def _worker(dev: str = "cpu", large: bool = False) -> dict[str, str]:  # pragma: no cover - runs in the subprocess
    """Run every case on ``dev`` ("cpu": under the interpreter; "cuda": the compiled kernels, used by
    benchmarks/gpu_check.sh); ``large`` adds multi-tile shapes and many classes. Returns case -> "ok" or the error."""
    import warnings

    import torch

    import seglab
    import seglab.losses as L
    from seglab.kernels import dispatch, eager, triton_backend
    from seglab.kernels.ops import KernelCfg

    # the interpreter evaluates both sides of tl.where with numpy (masked 0 * inf): not an error of the kernels
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"triton\..*")
    # a kernel that fails makes the backend run eager (same numbers!): that must fail the case, not pass it
    warnings.filterwarnings("error", message="seglab: Triton kernel")
    if dev == "cpu":
        assert triton_backend.interpreted(), "TRITON_INTERPRET=1 was not in effect"
    else:
        assert torch.cuda.is_available() and not triton_backend.interpreted(), "no CUDA device (or TRITON_INTERPRET set)"
    DT = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}

    def close(a, b, tol, what):
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")

    def backend_case(name):
        _, kind, cfgname, dtn, dims = name.split("/")
        sq, eps, focal, gamma, ign = CONFIGS[cfgname]
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()) % 1000)
        N, C, sp = {"2d": (2, 5, (6, 7)), "3d": (2, 5, (3, 4, 5)), "multi": (2, 5, (20, 15)), "big": (2, 21, (96, 130)),
                     "wide": (1, 150, (20, 30)), "big3d": (2, 3, (24, 40, 33))}[dims]
        dt = DT[dtn]
        x = (torch.randn(N, C, *sp, generator=g, dtype=torch.float64) * 3).to(dt)
        ydt = torch.float32 if dt == torch.bfloat16 else dt
        ignore = None
        if kind == "mc":
            t = torch.randint(0, C, (N, *sp), generator=g)
            if ign:
                ignore = 255
                t[torch.rand(t.shape, generator=g) < 0.25] = ignore
            t[0].view(-1)[:3] = t[0].view(-1)[:3].clamp(0, C - 1)
            x.view(N, C, -1)[0, :, 0] = 0  # ties for the max
            args = (t.reshape(N, -1),)
        elif kind == "mcd":
            y = torch.softmax(torch.randn(N, C, *sp, generator=g, dtype=torch.float64) * 2, 1).to(ydt)
            y.view(N, C, -1)[:, :, :4] = torch.nn.functional.one_hot(torch.arange(4) % C, C).T.to(ydt)
            valid = (torch.rand(N, *sp, generator=g) > 0.25) if ign else None
            args = (y, valid)
        else:
            y = (torch.rand(N, C, *sp, generator=g) < 0.4).to(ydt)
            y.view(N, C, -1)[:, :, :5] = torch.rand(N, C, 5, generator=g).to(ydt)  # some soft targets
            if ign:
                ignore = -1
                y[torch.rand(y.shape, generator=g) < 0.2] = ignore
            args = (y,)
        w = lambda: torch.rand(C, generator=g, dtype=torch.float64) + 0.2  # noqa: E731
        cfg = KernelCfg(ignore_index=ignore, squared=sq, weight=w(), alpha=w(), alpha_neg=w(), pos_weight=w(),
                        label_smoothing=eps if kind != "ml" else 0.0, focal=focal, gamma=gamma)
        x, args = x.to(dev), tuple(None if a is None else a.to(dev) for a in args)
        cfg = KernelCfg(**{k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in vars(cfg).items()})
        s1, c1 = getattr(triton_backend, f"{kind}_forward")(x, *args, cfg)
        s2, c2 = getattr(eager, f"{kind}_forward")(x, *args, cfg)
        assert s1.dtype == c1.dtype == torch.float64 and s1.shape == s2.shape and c1.shape == (4,)
        tol = 1e-12 if dt == torch.float64 else 2e-5
        close(s1, s2, tol * max(1.0, float(s2.abs().max())), "stats")
        close(c1, c2, tol * max(1.0, float(c2.abs().max())), "sums")
        gs = torch.randn(s1.shape, generator=g, dtype=torch.float64).to(dev)
        gc = torch.randn(4, generator=g, dtype=torch.float64).to(dev)
        g1 = getattr(triton_backend, f"{kind}_backward")(x, *args, cfg, gs, gc)
        g2 = getattr(eager, f"{kind}_backward")(x, *args, cfg, gs, gc)
        assert g1.dtype == x.dtype and g1.shape == x.shape
        scale = max(1.0, float(g2.double().abs().max()))
        if dt == torch.bfloat16:  # both round a float32 gradient to bf16: at most one bf16 ulp apart
            close(g1, g2, 2 ** -7 * scale, "grad")
        else:
            close(g1, g2, tol * scale, "grad")

    def make_loss_data(mode, tk, dims, ignore, dt, g):
        N, C = 2, (1 if mode == "binary" else 4)
        sp = (5, 6) if dims == 2 else (3, 4, 3)
        x = (torch.randn(N, C, *sp, generator=g) * 3).to(dt)
        ign = None
        if mode == "multiclass":
            t = torch.randint(0, C, (N, *sp), generator=g)
            if tk == "onehot":
                t = torch.nn.functional.one_hot(t, C).movedim(-1, 1).float()
            elif tk == "soft":
                t = torch.softmax(torch.randn(N, C, *sp, generator=g), 1)
            if ignore:
                ign = 255
                drop = torch.rand((N, *sp), generator=g) < 0.2
                t = t.masked_fill(drop.unsqueeze(1), 255.0) if t.is_floating_point() else t.masked_fill(drop, 255)
        else:
            t = (torch.rand(x.shape, generator=g) < 0.3).float() if tk == "hard" else torch.rand(x.shape, generator=g)
            if ignore:
                ign = -1
                t = t.masked_fill(torch.rand(x.shape, generator=g) < 0.2, -1.0)
        return x.to(dev), t.to(dev), ign

    def losses(mode, C, ign):
        g = torch.Generator().manual_seed(3)
        cw = torch.rand(C, generator=g) + 0.1
        kw = {} if ign is None else {"ignore_index": ign}
        out = [("dice+ce_w", L.DiceLoss(mode, **kw) + L.CrossEntropyLoss(mode, class_weights=cw, **kw)),
               ("dice_sq+focal_a", L.DiceLoss(mode, squared=True, batch=True, **kw)
                + 0.5 * L.FocalLoss(mode, gamma=1.5, alpha=torch.rand(C, generator=g), **kw)),
               ("tversky+gdice", L.TverskyLoss(mode, alpha=0.3, beta=0.7, **kw) + L.GeneralizedDiceLoss(mode, **kw))]
        if mode == "multiclass":
            out.append(("jaccard+ce_ls", L.JaccardLoss(mode, class_weights=cw, **kw)
                        + L.CrossEntropyLoss(mode, label_smoothing=0.1, **kw)))
        else:
            out.append(("dice_log+bce_pos", L.DiceLoss(mode, log=True, **kw)
                        + L.CrossEntropyLoss(mode, pos_weight=torch.rand(C, generator=g) * 3, **kw)))
        return out

    def run(loss, x, t, fused, backend):
        os.environ["SEGLAB_FUSED_BACKEND"] = backend  # (on CUDA, "triton" is also what runs unforced)
        xx = x.detach().clone().requires_grad_(True)
        with dispatch.fused(fused):
            v = loss(xx, t)
        v.backward()
        return v.detach(), xx.grad

    calls: list[str] = []
    for fn in ("mc_forward", "mcd_forward", "ml_forward"):
        orig = getattr(triton_backend, fn)
        setattr(triton_backend, fn, (lambda o, n: (lambda *a: calls.append(n) or o(*a)))(orig, fn))

    def loss_case(name):
        parts = name.split("/")
        mode, tk, dims = parts[1], parts[2], int(parts[3][0])
        dt = torch.bfloat16 if parts[4] == "bfloat16" else torch.float32
        ignore = parts[4] == "ignore"
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()) % 1000)
        x, t, ign = make_loss_data(mode, tk, dims, ignore, dt, g)
        for lname, loss in losses(mode, x.shape[1], ign):
            loss = loss.to(dev)
            calls.clear()
            vt, gt = run(loss, x, t, True, "triton")
            assert calls, f"{lname}: the Triton kernel did not run"
            vr, gr = run(loss, x, t, False, "triton")
            assert gt.dtype == x.dtype
            bf = dt == torch.bfloat16  # the reference computes in bf16 where the kernel holds float32
            close(vt, vr, 1e-4 if bf else 1e-5, f"{lname} value vs reference")
            close(gt, gr, 1e-2 if bf else 1e-5, f"{lname} grad vs reference")

    def gradcheck_case(name):
        kind = name.split("/")[1]
        g = torch.Generator().manual_seed(0)
        N, C, S = 1, 3, 5
        x = torch.randn(N, C, S, generator=g, dtype=torch.float64, requires_grad=True)
        valid = None
        if kind == "mc":
            t = torch.tensor([[0, 2, -100, 1, 2]])
            ignore = -100
        elif kind == "mcd":
            t = torch.softmax(torch.randn(N, C, S, generator=g, dtype=torch.float64), 1)
            valid, ignore = torch.tensor([[True, True, False, True, True]]), None
        else:
            t = torch.rand(N, C, S, generator=g, dtype=torch.float64)
            t[0, 0, :2] = torch.tensor([0.0, 1.0])
            ignore = None
        ones = lambda: torch.rand(C, generator=g, dtype=torch.float64) + 0.5  # noqa: E731
        w, pw, a, an = ones(), ones(), ones(), ones()
        K = 3 if kind == "mc" else 4
        ws, wc = torch.randn(N, K, C, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
        ws[:, 2] = 0  # sum y does not depend on the logits
        wc[1] = 0
        x = x.detach().to(dev).requires_grad_(True)
        t, w, pw, a, an, ws, wc = (v.to(dev) for v in (t, w, pw, a, an, ws, wc))
        valid = None if valid is None else valid.to(dev)
        for squared, eps, gamma in ((True, 0.1 if kind != "ml" else 0.0, 1.5), (False, 0.0, 0.0)):
            def f(x):
                st, sc = torch.ops.seglab.fused_stats(x, t, valid, w, pw, a, an, kind, "triton", ignore, squared, eps,
                                                      True, gamma)
                return (st * ws).sum() + (sc * wc).sum()

            assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, fast_mode=True)

    def labels_case(_):
        from seglab.targets import label_range_error

        os.environ["SEGLAB_FUSED_BACKEND"] = "triton"
        x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
        t = torch.randint(0, 3, (2, 4, 5))
        t[1, 2, 3] = 7
        t[0, 0, 0] = 255
        x, t = x.to(dev), t.to(dev)
        loss = L.DiceLoss("multiclass", ignore_index=255) + L.CrossEntropyLoss("multiclass", ignore_index=255)
        calls.clear()
        with seglab.validation(False):
            try:
                loss(x, t)
            except ValueError as e:
                assert str(e) == str(label_range_error([7], 3, 255)), str(e)
            else:
                raise AssertionError("no error for label 7 with 3 classes")
        assert calls == ["mc_forward"], calls

    def dispatch_case(_):
        if dev != "cpu":  # CUDA: Triton unforced, eager when forced or beyond MAX_CLASSES
            os.environ.pop("SEGLAB_FUSED_BACKEND", None)
            x = torch.randn(2, 3, 4, device=dev)
            assert [dispatch.backend_name(x, k) for k in ("mc", "mcd", "ml")] == ["triton"] * 3
            big = torch.randn(1, triton_backend.MAX_CLASSES + 1, 4, device=dev)
            assert dispatch.backend_name(big, "mc") == "eager"
            os.environ["SEGLAB_FUSED_BACKEND"] = "eager"
            assert dispatch.backend_name(x, "mc") == "eager"
            return
        os.environ["SEGLAB_FUSED_BACKEND"] = "triton"
        x = torch.randn(2, 3, 4)
        assert dispatch.backend_name(x, "mc") == "triton" and dispatch.backend_name(x, "mcd") == "triton"
        big = torch.randn(1, triton_backend.MAX_CLASSES + 1, 4)
        assert dispatch.backend_name(big, "mc") == "eager"  # too many classes for one tile: eager
        os.environ["SEGLAB_FUSED_BACKEND"] = "eager"
        assert dispatch.backend_name(x, "mc") == "eager"
        os.environ.pop("SEGLAB_FUSED_BACKEND")
        assert dispatch.backend_name(x, "mcd") is None  # CPU tensors never pick Triton unless forced

    def compile_case(_):
        """torch.compile(fullgraph=True) traces a loss whose dispatch picks Triton (no graph break: the backend choice,
        which may import triton, is a constant of the trace) and gives the eager call's value and gradient."""
        os.environ["SEGLAB_FUSED_BACKEND"] = "triton"
        g = torch.Generator().manual_seed(5)
        x = torch.randn(2, 3, 5, 6, generator=g).to(dev)
        t = torch.randint(0, 3, (2, 5, 6), generator=g).to(dev)
        loss = L.DiceLoss("multiclass") + L.FocalLoss("multiclass", gamma=1.5)
        calls.clear()
        compiled = torch.compile(loss, fullgraph=True, backend="eager")  # dynamo only: the trace is what is tested
        vc, gc = run(compiled, x, t, True, "triton")
        assert calls, "the Triton kernel did not run under torch.compile"
        ve, ge = run(loss, x, t, True, "triton")
        close(vc, ve, 1e-6, "compiled value")
        close(gc, ge, 1e-6, "compiled grad")

    results: dict[str, str] = {}
    todo = [(c, backend_case) for c in backend_cases() + (large_cases() if large else [])]
    todo += [(c, loss_case) for c in loss_cases()]
    todo += [(c, gradcheck_case) for c in OTHER if c.startswith("gradcheck")]
    todo += [("labels/out_of_range", labels_case), ("dispatch/forced_triton", dispatch_case),
             ("compile/fullgraph", compile_case)]
    for case, fn in todo:
        t0 = time.perf_counter()
        try:
            fn(case)
            assert not triton_backend.broken(), f"kernels fell back to eager: {triton_backend.broken()}"
            results[case] = "ok"
        except Exception:
            results[case] = traceback.format_exc(limit=6)
        results[case + "#s"] = f"{time.perf_counter() - t0:.2f}"
    return results


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="run the Triton checks (cpu: under TRITON_INTERPRET=1; cuda: compiled)")
    ap.add_argument("--device", default="cpu", help="cpu (interpreter) or cuda")
    ap.add_argument("--large", action="store_true", help="add multi-tile and many-class shapes (for a GPU)")
    ap.add_argument("--json", default="", help="also write {case: 'ok' | error, case#s: seconds} to this file")
    cli = ap.parse_args()
    res = _worker(cli.device, cli.large)
    if cli.json:
        with open(cli.json, "w") as fh:
            json.dump(res, fh, indent=1)
    print("@@RESULTS@@" + json.dumps(res))
    failed = [k for k, v in res.items() if not k.endswith("#s") and v != "ok"]
    print(f"{len(res) // 2 - len(failed)} of {len(res) // 2} Triton checks passed on {cli.device}"
          + (": FAILED " + ", ".join(failed) if failed else ""), file=sys.stderr)
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ the tests (pytest process)
if not installed("triton"):
    pytest.skip("triton is not installed (pip install 'seglab[gpu]'): the Triton kernel tests need its interpreter",
                allow_module_level=True)


@pytest.fixture(scope="module")
def interp_results() -> dict[str, str]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "SEGLAB_FUSED": "1"}
    env.pop("SEGLAB_FUSED_BACKEND", None)
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout.rpartition("@@RESULTS@@")[2]
    if not out:  # (exit status 1 only says that some case failed: each test reports its own)
        pytest.fail(f"the interpreter worker failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out)


@pytest.mark.parametrize("case", backend_cases() + loss_cases() + OTHER)
def test_triton_interpreter(interp_results, case):
    assert case in interp_results, f"{case} was not run by the worker"
    assert interp_results[case] == "ok", f"{case}:\n{interp_results[case]}"


# ------------------------------------------------------------------ dispatch and `seglab info` (no kernel runs here)
def test_triton_import_is_lazy():
    """seglab imports its Triton code (and through it triton) only when a non-CPU tensor asks: CPU losses never do.
    (torch._dynamo itself imports an installed triton package; that is torch's doing, not seglab's.)"""
    code = ("import sys, torch, seglab, seglab.losses as L\n"
            "x = torch.randn(2, 3, 8, 8, requires_grad=True); t = torch.randint(0, 3, (2, 8, 8))\n"
            "(L.DiceLoss('multiclass') + L.CrossEntropyLoss('multiclass'))(x, t).backward()\n"
            "print([m for m in ('seglab.kernels.triton_backend', 'seglab.kernels._triton_kernels') if m in sys.modules])")
    env = {k: v for k, v in os.environ.items() if k != "SEGLAB_FUSED_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_dispatch_order_on_non_cpu_devices(monkeypatch):
    """Non-CPU logits: Triton where it supports them, else eager; forced eager wins (a meta tensor stands in for CUDA)."""
    import torch

    from seglab.kernels import dispatch, triton_backend

    monkeypatch.delenv("SEGLAB_FUSED_BACKEND", raising=False)
    x = torch.empty(2, 3, 4, device="meta")
    assert not triton_backend.supports(x)
    assert dispatch.backend_name(x, "mc") == "eager"
    monkeypatch.setattr(triton_backend, "runs_on", lambda *a: True)
    for kind in ("mc", "mcd", "ml"):
        assert dispatch.backend_name(x, kind) == "triton"
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", "eager")
    assert dispatch.backend_name(x, "mc") == "eager"


def test_info_names_the_cuda_backend(monkeypatch, capsys):
    from seglab import info
    from seglab.cli import main
    from seglab.kernels import triton_backend

    monkeypatch.delenv("SEGLAB_FUSED_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["info", "--json"]) == 0
    g = json.loads(capsys.readouterr().out)["fused_cuda"]
    assert g["triton"]["installed"] and g["triton"]["version"]
    assert g["backend"] == ("triton" if triton_backend.available() else "eager")
    assert main(["info"]) == 0
    assert "fused     CUDA losses: " in capsys.readouterr().out
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", "eager")
    assert info._fused_cuda()["backend"] == "eager"
    monkeypatch.setenv("SEGLAB_FUSED_BACKEND", "triton")  # CPU tensors without the interpreter: eager runs, and says so
    f = info._fused()
    assert f["backend"] == "eager" and "TRITON_INTERPRET=1" in f["reason"]
    monkeypatch.delenv("SEGLAB_FUSED_BACKEND")
    monkeypatch.setattr(triton_backend, "_state", {"reason": "importing triton failed: test"})
    g = info._fused_cuda()
    assert g["backend"] == "eager" and "importing triton failed: test" in g["reason"]
    assert not g["triton"]["available"]


def test_a_failing_triton_kernel_falls_back_to_eager(monkeypatch):
    """A Triton compilation error: one RuntimeWarning, the eager result, and eager from then on for that dtype."""
    import types

    import torch

    from seglab.kernels import eager, triton_backend
    from seglab.kernels.ops import KernelCfg

    class CompilationError(Exception):
        pass

    CompilationError.__module__ = "triton.compiler.errors"
    launches = []

    class Kernel:
        def __getitem__(self, grid):
            def launch(*a, **k):
                launches.append(grid)
                raise CompilationError("ptxas: out of registers")
            return launch

    fake = types.SimpleNamespace(mc_fwd=Kernel(), INTERPRETED=True, tl_dtype=lambda cd: cd)
    monkeypatch.setattr(triton_backend, "_state", {"kernels": fake})
    monkeypatch.setattr(triton_backend, "_BROKEN", {})
    x, t = torch.randn(2, 3, 10), torch.randint(0, 3, (2, 10))
    ones = torch.ones(3, dtype=torch.float64)
    cfg = KernelCfg(None, False, ones, ones, ones, ones)
    with pytest.warns(RuntimeWarning, match="mc_forward .*failed to compile or launch.*ptxas: out of registers"):
        got = triton_backend.mc_forward(x, t, cfg)
    want = eager.mc_forward(x, t, cfg)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        triton_backend.mc_forward(x, t, cfg)  # no second warning, no second launch
    assert len(launches) == 1
    assert list(triton_backend.broken()) == ["mc_forward/float32/cpu"]


def test_gpu_check_fails_clearly_without_a_gpu(tmp_path):
    """benchmarks/gpu_check.sh on a machine without CUDA: exit 2 and one line saying so, nothing written."""
    import pathlib

    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: benchmarks/gpu_check.sh would run for real")
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    before = sorted(p.name for p in script.parent.glob("gpu_*.json"))
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("gpu_check: no CUDA GPU visible") and len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in script.parent.glob("gpu_*.json")) == before
