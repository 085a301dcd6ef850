"""Check an installed seglab wheel from outside the repository (run by ``make wheel-check``; not a pytest file).

Usage, from a working directory outside the repository, with the python of a virtualenv that holds only
torch, numpy and the wheel::

    VENV/bin/python REPO/tests/wheel_check.py --wheel DIST/seglab-*.whl --repo REPO

Asserts: the wheel ships the C++ kernel source, ``py.typed`` and the LICENSE; seglab is imported from the
virtualenv, not the repository; ``seglab --version`` and ``seglab info --json`` work and report the C++
backend; ``get_loss("dice+ce", mode="multiclass")`` runs forward and backward and matches a pure-torch
reference; a subcommand that needs an extra exits 2 with one line naming it; the extras are really absent.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

EXTRA_MODULES = ("rich", "matplotlib", "PIL", "nibabel", "pyarrow", "yaml", "nilearn", "monai")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"wheel check FAILED: {what}")
    print(f"  ok  {what}")


def reference_dice_ce(logits, target):
    """Softmax Dice per sample (smooth 1e-5, mean over classes then samples) + cross-entropy, in plain torch."""
    import torch.nn.functional as F

    C = logits.shape[1]
    p = logits.double().softmax(1)
    y = F.one_hot(target, C).movedim(-1, 1).double()
    dims = tuple(range(2, logits.ndim))
    tp, ps, ys = (p * y).sum(dims), p.sum(dims), y.sum(dims)
    dice = 1 - (2 * tp + 1e-5) / (ps + ys + 1e-5)
    return dice.mean() + F.cross_entropy(logits.double(), target)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True, type=Path)
    ap.add_argument("--repo", required=True, type=Path)
    a = ap.parse_args()
    repo = a.repo.resolve()
    bin_dir = Path(sys.executable).parent
    t0 = time.perf_counter()

    names = zipfile.ZipFile(a.wheel).namelist()
    check("seglab/kernels/csrc/fused_cpu.cpp" in names, "the wheel ships seglab/kernels/csrc/fused_cpu.cpp")
    check("seglab/py.typed" in names, "the wheel ships seglab/py.typed")
    check("seglab/advise/evidence.json" in names, "the wheel ships seglab/advise/evidence.json (advise's evidence)")
    check(any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel ships LICENSE")
    meta = next(zipfile.ZipFile(a.wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    check("License-Expression: MIT" in meta, "METADATA has License-Expression: MIT")
    requires = sorted(l.split(":", 1)[1].strip() for l in meta.splitlines()
                      if l.startswith("Requires-Dist:") and "extra ==" not in l)
    check([r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires] == ["numpy", "torch"],
          f"core dependencies are torch and numpy only ({requires})")

    cwd = Path.cwd().resolve()
    check(repo not in (cwd, *cwd.parents), f"working directory {cwd} is outside the repository")

    # the command-line checks run as subprocesses, started now, in parallel (each one imports torch)
    exe = str(bin_dir / "seglab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGLAB_FUSED")}
    cli_cmds = {"version": ["--version"], "info": ["info", "--json"],
                "report": ["report", str(cwd / "no-results")], "sweep": ["sweep", "--list"]}
    procs = {k: subprocess.Popen([exe, *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k, c in cli_cmds.items()}

    def result(k: str) -> subprocess.CompletedProcess:
        out, err = procs[k].communicate(timeout=600)
        return subprocess.CompletedProcess(procs[k].args, procs[k].returncode, out, err)
    import seglab

    where = Path(seglab.__file__).resolve()
    check(repo not in where.parents and Path(sys.prefix).resolve() in where.parents,
          f"seglab is imported from the virtualenv ({where.parent})")

    for mod in EXTRA_MODULES:
        try:
            importlib.import_module(mod)
        except ImportError:
            continue
        check(False, f"{mod} is absent from the core install")
    check(True, f"extras absent: import of {', '.join(EXTRA_MODULES)} fails")

    out = result("version")
    check(out.returncode == 0 and out.stdout.strip() == f"seglab {seglab.__version__}",
          f"seglab --version prints {out.stdout.strip()!r}")

    out = result("info")
    check(out.returncode == 0, f"seglab info --json exits 0 ({out.stderr.strip()[-300:]})")
    info = json.loads(out.stdout)
    fused = info["fused_cpu_float32"]
    check(fused["cpp"]["source_present"] and fused["backend"] == "cpp",
          f"seglab info reports the C++ backend (backend={fused['backend']!r}, reason={fused['reason']!r})")
    check(info["seglab"] == seglab.__version__ and info["extras_installed"] == [],
          f"seglab info: version {info['seglab']}, extras installed {info['extras_installed']}")

    import torch

    from seglab.kernels import cpu_ext

    check(cpu_ext.available(), "the C++ kernels build from the installed source")
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 32, 32, requires_grad=True)
    target = torch.randint(0, 3, (4, 32, 32))
    loss = seglab.get_loss("dice+ce", mode="multiclass")(logits, target)
    loss.backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = reference_dice_ce(ref_logits, target)
    ref.backward()
    check(torch.isfinite(logits.grad).all().item() and logits.grad.abs().sum().item() > 0, "dice+ce backward gives a gradient")
    check(abs(loss.item() - ref.item()) < 1e-5, f"dice+ce = {loss.item():.6f} matches the torch reference {ref.item():.6f}")
    check(torch.allclose(logits.grad, ref_logits.grad.float(), atol=1e-6, rtol=1e-4), "dice+ce gradient matches the reference")

    import numpy as np
    from seglab.advise import advise

    masks = [np.zeros((16, 16), np.uint8) for _ in range(4)]
    for m in masks:
        m[2:6, 2:6] = 1
    adv = advise(masks)
    rules = {e["rule"]: e["status"] for e in adv.evidence}
    check(adv.loss == "dice+ce" and rules.get("ce_term") == "measured benefit" and "pos_weight" in rules,
          f"advise runs from the wheel and states each rule's evidence from the packaged table ({rules})")

    for k in ("report", "sweep"):
        out = result(k)
        lines = out.stderr.strip().splitlines()
        check(out.returncode == 2 and len(lines) == 1 and "pip install 'seglab[cli]'" in lines[0],
              f"seglab {k} without the cli extra exits 2 with one line: {lines[-1] if lines else ''!r}")

    print(f"wheel check passed in {time.perf_counter() - t0:.1f} s ({a.wheel.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
