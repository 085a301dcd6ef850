"""Data-parallel training (2 processes, gloo on CPU) equals one process with the same global batch and seed.

Tolerance: per-step losses and gradient norms rel 1e-4 and final validation metrics abs 1e-6 — the only
differences are float32 summation order (each rank sums half the batch, then the all-reduce adds the halves).
"""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from seglab.results import ResultsStore
from seglab.train import RunSpec, train_run

CFG = dict(loss="study_dice", task="threshold", task_kw={"fg_ratio": 0.3, "size": 16}, model="tiny", model_kw={"norm": None},
           optimizer="adam", lr=1e-2, seed=5, steps=30, batch_size=4, eval_every=10,
           grad_norm_every=1)  # monitor gradients (and their all-reduce) at every step


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    from seglab.train import distributed as D

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    info = D.setup("cpu")
    try:
        res = train_run(RunSpec(**CFG), info=info)
        if info.is_main:
            store = ResultsStore(out)
            store.root.mkdir(parents=True, exist_ok=True)
            store.write_config({"train": CFG}, [res.spec])
            store.write_run(res)
            store.write_summary_table()
    finally:
        D.shutdown()  # barrier + destroy on every way out


def test_two_process_ddp_matches_single_process(tmp_path):
    torch.set_num_threads(1)
    single = train_run(RunSpec(**CFG))
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True, start_method="spawn")
    store = ResultsStore(tmp_path / "ddp")
    rid = single.spec.run_id
    assert store.done_ids() == {rid}  # same run id; only rank 0 wrote, exactly once
    assert {"steps.parquet", "evals.parquet", "summary.json"} <= {p.name for p in store.run_dir(rid).iterdir()}
    assert (tmp_path / "ddp" / "summary.parquet").exists() and (tmp_path / "ddp" / "config.json").exists()
    s = store.summary(rid)
    assert s["world_size"] == 2 and s["status"] == "finished"
    steps = store.steps(rid)
    for col, ref in single.steps.items():
        if col == "step":
            assert steps[col] == ref
            continue
        for a, b in zip(steps[col], ref, strict=True):
            assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-7), (col, a, b)
    ev = store.evals(rid)
    for i, e in enumerate(single.evals):
        assert ev["accuracy"][i] == pytest.approx(e["accuracy"], abs=1e-6)
        assert ev["dice/foreground"][i] == pytest.approx(e["dice"][1], abs=1e-6)
    for k in ("final_accuracy", "final_fg_dice", "final_mean_dice"):
        assert s[k] == pytest.approx(single.summary[k], abs=1e-6)
