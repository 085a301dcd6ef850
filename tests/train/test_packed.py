"""Packed runs (seglab.train.packed) against single runs (train_run): losses, records, evals, divergence, resume."""

from __future__ import annotations

import math

import pytest
import torch

from seglab.train.config import RunSpec
from seglab.train.loop import train_run
from seglab.train.packed import PackedLosses, group_packs, packable, train_pack
from seglab.losses.registry import STUDY_LOSSES
from seglab.train.specs import build_loss

MIXED = [("study_cce", 0.05, 0), ("study_dice", 0.5, 1), ("study_dicefg", 0.95, 2), ("study_dice_sq", 0.5, 0),
         ("study_dicefg_sq", 0.05, 1), ("study_dicefg", 0.95, 0)]


def _cfgs(norm, steps=40, **kw):
    return [RunSpec(loss=name, task_kw={"size": 16, "fg_ratio": fg}, model_kw={"width": 4, "norm": norm}, seed=s,
                      steps=steps, eval_every=20, **kw) for name, fg, s in MIXED]


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _close(a, b, rtol, atol=0.0):
    a = torch.tensor(a, dtype=torch.float64)
    b = torch.tensor(b, dtype=torch.float64)
    assert a.shape == b.shape
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    ok = ~torch.isnan(a)
    torch.testing.assert_close(a[ok], b[ok], rtol=rtol, atol=atol)


def _compare(P, S, rtol, eval_atol):
    for p, s in zip(P, S, strict=True):
        assert p.summary["run_id"] == s.summary["run_id"]
        assert p.summary["status"] == s.summary["status"]
        assert p.summary["diverged_step"] == s.summary["diverged_step"]
        assert p.summary["steps_done"] == s.summary["steps_done"]
        assert set(p.steps) == set(s.steps)
        assert p.steps["step"] == s.steps["step"]
        for k in s.steps:
            if k != "step":
                _close(p.steps[k], s.steps[k], rtol=rtol, atol=1e-7 if rtol > 1e-6 else 0.0)
        assert [e["step"] for e in p.evals] == [e["step"] for e in s.evals]
        for ea, eb in zip(p.evals, s.evals, strict=True):
            for k in ("accuracy", "majority", "mean_dice", "fg_dice"):
                assert abs(ea[k] - eb[k]) <= eval_atol, (k, ea[k], eb[k])


def test_packed_losses_equal_build_loss():
    torch.manual_seed(0)
    R, B, C, H = 4, 2, 2, 8
    logits = torch.randn(B, R * C, H, H, dtype=torch.float64)
    y = (torch.rand(R, B, H, H) > torch.tensor([0.1, 0.5, 0.9, 0.95]).view(R, 1, 1, 1)).long()
    lg = logits.reshape(B, R, C, -1).permute(1, 2, 0, 3).reshape(R, C, -1)
    specs = [*STUDY_LOSSES, "study_cce_clip"]
    V = PackedLosses(specs, "multiclass")(lg, y.reshape(R, -1))
    for i, name in enumerate(specs):
        fn = build_loss(name, "multiclass")
        for r in range(R):
            ref = fn(logits[:, r * C:(r + 1) * C], y[r])
            torch.testing.assert_close(V[i, r], ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("norm", ["batch", None])
def test_pack_equals_single_runs_float64(float64, norm):
    """In float64 a pack reproduces every single run to rounding (records and evals)."""
    cfgs = _cfgs(norm)
    P = train_pack(cfgs)
    S = [train_run(c) for c in cfgs]
    _compare(P, S, rtol=1e-9, eval_atol=1e-9)
    assert all(p.summary["pack_size"] == len(cfgs) for p in P)


def test_pack_equals_single_runs_float32():
    """float32: grouped convolutions / batched matmuls and plain convolutions round differently; losses and grad
    norms agree to rtol 1e-3 after 40 steps (observed ~1e-6 typically, once 3.8e-4 at step 39 in a full-suite run),
    eval metrics (thresholded predictions, BN running statistics) to 1e-2 (observed up to ~5e-3 in accuracy with
    batch norm, exact without)."""
    cfgs = _cfgs("batch")
    _compare(train_pack(cfgs), [train_run(c) for c in cfgs], rtol=1e-3, eval_atol=1e-2)


SGD_MIX = [(1e-3, 0.0), (0.1, 0.0), (0.01, 0.9)]


def _sgd_mix(norm, steps=40):
    return [RunSpec(loss=name, task_kw={"size": 16, "fg_ratio": fg}, model_kw={"width": 4, "norm": norm}, seed=s,
                      steps=steps, eval_every=20, optimizer="sgd", lr=SGD_MIX[i % 3][0], momentum=SGD_MIX[i % 3][1])
            for i, (name, fg, s) in enumerate(MIXED)]


@pytest.mark.parametrize("norm", ["batch", None])
def test_sgd_pack_mixed_lr_momentum_float64(float64, norm):
    """SGD runs with different lr and momentum share one pack (PackedSGD, per-run lr / momentum) and reproduce
    every single run (torch.optim.SGD) to rounding; each run keeps its own lr / momentum in its config."""
    cfgs = _sgd_mix(norm)
    assert len(group_packs(cfgs)) == 1
    P = train_pack(cfgs)
    S = [train_run(c) for c in cfgs]
    _compare(P, S, rtol=1e-9, eval_atol=1e-9)
    for p, c in zip(P, cfgs, strict=True):
        assert (p.spec.lr, p.spec.momentum) == (c.lr, c.momentum)
        assert p.summary["pack_size"] == len(cfgs)


def test_packed_sgd_matches_torch_sgd_per_run(float64):
    """PackedSGD on an (R*n, k) parameter equals torch.optim.SGD on each run's slice, momentum 0 exactly."""
    from seglab.train.packed import PackedSGD

    torch.manual_seed(0)
    R, n, k = 3, 4, 5
    lrs, moms = [1e-3, 0.1, 0.01], [0.0, 0.0, 0.9]
    w = torch.randn(R * n, k, requires_grad=True)
    singles = [w.detach()[r * n:(r + 1) * n].clone().requires_grad_(True) for r in range(R)]
    opt = PackedSGD([w], lrs, moms, R)
    refs = [torch.optim.SGD([s], lr=lr, momentum=m) for s, lr, m in zip(singles, lrs, moms, strict=True)]
    for _ in range(5):
        g = torch.randn(R * n, k)
        w.grad = g.clone()
        opt.step()
        for r in range(R):
            singles[r].grad = g[r * n:(r + 1) * n].clone()
            refs[r].step()
    for r in range(R):
        if moms[r] == 0:
            assert torch.equal(w.detach()[r * n:(r + 1) * n], singles[r].detach())
        else:
            torch.testing.assert_close(w.detach()[r * n:(r + 1) * n], singles[r].detach(), rtol=1e-14, atol=1e-15)


def test_diverging_run_in_pack():
    """float32, SGD lr 1e12 without BN: the CCE run diverges at step 2, the Dice run finishes (as when run alone)."""
    cfgs = [RunSpec(loss=name, task_kw={"size": 16, "fg_ratio": 0.5}, model_kw={"norm": None}, optimizer="sgd",
                      lr=1e12, seed=0, steps=20, eval_every=10) for name in ("study_cce", "study_dice")]
    seen = []
    P = train_pack(cfgs, on_result=lambda r: seen.append((r.summary["status"], r.summary["steps_done"])))
    S = [train_run(c) for c in cfgs]
    assert [p.summary["status"] for p in P] == ["diverged", "finished"]
    assert seen[0] == ("diverged", 2)  # handed out at divergence, before the pack ends
    _compare(P, S, rtol=1e-4, eval_atol=1e-2)


def test_grouping_and_packable():
    cfgs = _cfgs("batch") + _cfgs(None) + [RunSpec(loss="study_dice", task="shapes", model="tiny")]
    assert [packable(c) for c in cfgs] == [True] * 12 + [False]
    assert not packable(RunSpec(loss="focal", task_kw={"size": 16}))
    assert not packable(RunSpec(loss="dice", task_kw={"size": 16}))  # per-sample Dice: not in a pack
    packs = group_packs(cfgs)
    assert sorted(len(p) for p in packs) == [1, 6, 6]
    assert sorted(len(p) for p in group_packs(cfgs, max_size=4)) == [1, 3, 3, 3, 3]
    # SGD lr / momentum are not in the pack key (PackedSGD), Adam's lr is; norms never share a pack
    sgd = _sgd_mix("batch") + _sgd_mix(None)
    assert sorted(len(p) for p in group_packs(sgd)) == [6, 6]
    adam = _cfgs("batch") + [RunSpec(loss="study_dice", task_kw={"size": 16}, lr=1e-2, steps=40, eval_every=20)]
    assert sorted(len(p) for p in group_packs(adam)) == [1, 6]


def _grid(tmp):
    return {"task": "threshold", "task_kw": {"size": 16}, "model": "tiny", "norms": [None], "optimizer": "sgd",
            "lr": 1e12, "losses": ["study_cce", "study_dice", "study_dicefg"], "fg_ratios": [0.5], "seeds": [0], "steps": 30,
            "eval_every": 10}


def test_interrupted_pack_resumes(tmp_path, monkeypatch):
    """Ctrl-C in the middle of a pack keeps the run that had already diverged; re-running trains only the rest
    and never rewrites a finished run."""
    from seglab.sweep import runner
    from seglab.results import ResultsStore

    class Stop:
        def put_nowait(self, item):
            if item[1] >= 12:
                raise KeyboardInterrupt

    out = tmp_path / "r"
    monkeypatch.setattr(runner, "_QUEUE", Stop())
    o1 = runner.run_sweep(_grid(tmp_path), out, workers=1, show_progress=False)
    assert o1.interrupted
    store = ResultsStore(out)
    done1 = store.done_ids()
    assert len(done1) == 1 and store.summary(next(iter(done1)))["status"] == "diverged"
    mtime = (store.run_dir(next(iter(done1))) / "summary.json").stat().st_mtime_ns
    monkeypatch.setattr(runner, "_QUEUE", None)
    o2 = runner.run_sweep(_grid(tmp_path), out, workers=1, show_progress=False)
    assert o2.ok and o2.skipped == 1 and o2.finished == 2
    assert len(store.done_ids()) == 3
    assert (store.run_dir(next(iter(done1))) / "summary.json").stat().st_mtime_ns == mtime
    sums = store.summaries()
    # 1 worker, packs capped at ceil(pending / 1) * 2 // 3 = 2: first a pack of 2 (the diverged run came from it) and a single
    # run; the resume has 2 pending runs -> two single runs
    assert sorted(s.get("pack_size", 1) for s in sums) == [1, 1, 2]
    # --no-pack path still works on the same grid
    o3 = runner.run_sweep(_grid(tmp_path), tmp_path / "single", workers=1, show_progress=False, pack=False)
    assert o3.ok and o3.finished == 3
    single = {s["run_id"]: s for s in ResultsStore(tmp_path / "single").summaries()}
    for s in sums:
        assert s["status"] == single[s["run_id"]]["status"]
        assert "pack_size" not in single[s["run_id"]]
        if s["status"] == "finished":
            assert math.isclose(s["final_train_loss"], single[s["run_id"]]["final_train_loss"], rel_tol=1e-4)
