"""seglab.sweep: grids, config files, resume after a killed worker, shards and merge, up-front errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seglab.sweep import ResultsStore, expand, get_preset, load_config, merge, plan, run_sweep
from seglab.train import ConfigError

torch.set_num_threads(1)

GRID = {"losses": ["cce", "dicefg"], "fg_ratios": [0.5, 0.95], "norms": ["none"], "seeds": [0],
        "task_kw": {"size": 16}, "steps": 15, "eval_every": 5}


def test_preset_is_the_study_grid_plus_sgd_variation():
    runs = expand(get_preset("chlebus2018"))
    study = [r for r in runs if (r.optimizer, r.lr, r.momentum) in (("adam", 1e-3, 0.0), ("sgd", 1e-3, 0.0))]
    assert len(study) == 5 * 3 * 2 * 2 * 3  # losses x fg x BN x optimizer x seeds
    assert {r.steps for r in runs} == {10_001} and {r.batch_size for r in runs} == {2}
    assert {r.task_kw["fg_ratio"] for r in runs} == {0.05, 0.5, 0.95}
    assert {r.model_kw["norm"] for r in runs} == {"batch", None}
    extra = [r for r in runs if r not in study]
    assert {(r.lr, r.momentum) for r in extra} == {(0.1, 0.0), (0.01, 0.9)}
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.loss for r in runs} == {"study_cce", "study_dice", "study_dicefg", "study_dice_sq", "study_dicefg_sq"}
    quick = expand(get_preset("chlebus2018", quick=True))
    assert len(quick) < len(runs) and {r.seed for r in quick} == {0}


def test_config_files_toml_and_yaml(tmp_path):
    (tmp_path / "g.toml").write_text('losses = ["cce", "dice"]\nfg_ratios = [0.05, 0.95]\nnorms = ["batch", "none"]\n'
                                     'steps = 20\n[[grids]]\noptimizers = ["adam"]\n[[grids]]\n'
                                     'optimizers = [{name = "sgd", lr = 0.01, momentum = 0.9}]\nseeds = [0, 1]\n')
    (tmp_path / "g.yaml").write_text("losses: [cce]\ntasks: [threshold]\nfg_ratios: [0.5]\nseeds: [0, 1, 2]\n")
    t = expand(load_config(tmp_path / "g.toml"))
    assert len(t) == 2 * 2 * 2 * 1 + 2 * 2 * 2 * 2
    assert any(r.model_kw["norm"] is None for r in t)
    assert len(expand(load_config(tmp_path / "g.yaml"))) == 3
    (tmp_path / "bad.toml").write_text('losses = ["cce"]\nlearning_rate = 3\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        expand(load_config(tmp_path / "bad.toml"))


def test_bad_sweep_config_fails_before_anything_runs(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ConfigError, match="fg_ratio"):
        run_sweep(dict(GRID, fg_ratios=[0.5, 1.0]), out, workers=1, show_progress=False)
    with pytest.raises(ConfigError, match="unknown task"):
        run_sweep(dict(GRID, tasks=["threshold", "nope"]), out, workers=1, show_progress=False)
    with pytest.raises(ConfigError, match="multiclass"):
        run_sweep(dict(GRID, losses=["cce", "bce"]), out, workers=1, show_progress=False)
    assert not (out / "runs").exists()


def _children(pid):
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _workers_of(pid):
    out = []
    for c in _children(pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(c)
    return out


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find the worker processes")
def test_sweep_resumes_after_a_worker_is_killed(tmp_path):
    out = tmp_path / "res"
    grid = dict(GRID, seeds=[0, 1], steps=300, eval_every=100)
    (tmp_path / "g.json").write_text(json.dumps(grid))
    cmd = [sys.executable, "-m", "seglab", "sweep", "--config", str(tmp_path / "g.json"), "--out", str(out),
           "--workers", "2", "--no-progress"]
    planned = {r.run_id for r in plan(grid)}
    assert len(planned) == 8
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = ResultsStore(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(store.done_ids()) < 1:
        time.sleep(0.2)
    assert store.done_ids(), "no run finished in time"
    workers = _workers_of(proc.pid)
    assert workers
    os.kill(workers[0], signal.SIGKILL)  # a worker dies mid-run
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    first = store.done_ids()
    assert first < planned  # something was lost in flight ...
    mtimes = {r: (store.run_dir(r) / "summary.json").stat().st_mtime_ns for r in first}
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
    assert store.done_ids() == planned  # ... and redone; nothing lost
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(planned)  # no duplicates, no tmp leftovers
    assert {r: (store.run_dir(r) / "summary.json").stat().st_mtime_ns for r in first} == mtimes  # finished runs kept
    assert f"{len(first)} already finished" in r2.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out / "summary.parquet").num_rows == 8
    for rid in planned:
        assert len(store.steps(rid)["step"]) == 300
    cfg = json.loads((out / "config.json").read_text())
    assert {r["run_id"] for r in cfg["runs"]} == planned


def test_shards_and_merge(tmp_path):
    full = {r.run_id for r in plan(GRID)}
    for i in range(2):
        o = run_sweep(GRID, tmp_path / f"s{i}", workers=1, show_progress=False, shard=(i, 2))
        assert o.finished == 2
    assert ResultsStore(tmp_path / "s0").done_ids().isdisjoint(ResultsStore(tmp_path / "s1").done_ids())
    added, skipped = merge(tmp_path / "all", [tmp_path / "s0", tmp_path / "s1", tmp_path / "s0"])
    assert (added, skipped) == (4, 2)
    assert ResultsStore(tmp_path / "all").done_ids() == full
    # shards writing into one folder, and --run-index, also compose: a re-run skips everything
    o = run_sweep(GRID, tmp_path / "all", workers=1, show_progress=False, run_index=[0, 3])
    assert (o.finished, o.skipped) == (0, 2)


def test_cli_list_and_errors(capsys):
    from seglab.cli import main

    assert main(["sweep", "--losses", "cce,dice", "--fg-ratios", "0.05,0.95", "--list"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert main(["sweep", "--losses", "cce", "--fg-ratios", "1.2", "--out", "/tmp/never"]) == 2
    assert "fg_ratio" in capsys.readouterr().err
    # a bad loss spec: one line naming the option, whatever the number of runs it appears in
    assert main(["sweep", "--losses", "study_cce,dice[include_background=no]", "--fg-ratios", "0.05,0.95", "--list"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --losses") and "include_background" in err, err


def test_grid_trainer_options():
    """The trainer options are grid keys: every run gets them (and its id changes), and a bad value is one
    configuration error naming the option."""
    from seglab.sweep.grid import expand
    from seglab.train.config import ConfigError, validate_runs

    base = {"losses": ["ce"], "seeds": [0, 1], "steps": 4, "task_kw": {"size": 8}}
    opts = {"augment": ["flips"], "schedule": "cosine", "warmup": 1, "weight_decay": 0.01, "grad_clip": 1.0,
            "amp": "bf16"}
    plain = expand(base)
    runs = expand({**base, **opts})
    assert len(runs) == 2
    for r in runs:
        assert r.trainer_options() == opts
    assert {r.run_id for r in runs}.isdisjoint({r.run_id for r in plain})
    assert [r.trainer_options() for r in validate_runs(runs)] == [opts, opts]
    with pytest.raises(ConfigError, match="unknown schedule 'linear'"):
        validate_runs(expand({**base, "schedule": "linear"}))


@pytest.mark.parametrize("pack", [True, False])
def test_task_built_once_per_run(tmp_path, monkeypatch, pack):
    """A sweep builds each distinct task once to validate it and once per run (once per pack) to train: the
    packing decisions and the trainer read the spec's task facts instead of building the task again."""
    import seglab.data
    from seglab.sweep.runner import run_sweep

    real = seglab.data.create_task
    built = []

    def counting(name, **kw):
        built.append(name)
        return real(name, **kw)

    monkeypatch.setattr(seglab.data, "create_task", counting)
    grid = {"losses": ["study_cce", "study_dice", "study_dicefg"], "steps": 2, "eval_every": 2, "task_kw": {"size": 8}}
    out = run_sweep(grid, tmp_path / "r", workers=1, show_progress=False, pack=pack)
    assert out.finished == 3
    sizes = sorted(s.get("pack_size", 1) for s in ResultsStore(tmp_path / "r").summaries())
    # one build to validate; then one per job: a pack of 2 (cap: 2/3 of the runs) and a single run, or 3 singles
    assert sizes == ([1, 2, 2] if pack else [1, 1, 1])
    assert len(built) == 1 + (2 if pack else 3)
