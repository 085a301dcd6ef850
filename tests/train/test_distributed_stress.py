"""Stress test of the 2-process gloo batch-Dice check (issue 14): many process-group lifetimes and process exits,
each with the cases of tests/losses/test_distributed_dice.py, every value and gradient equal to one process,
no abort, and no deprecated collective (its FutureWarning) on the way.

``SEGLAB_DDP_STRESS=PAIRS,ROUNDS`` sets the size: PAIRS pairs of processes are started one after the other (each
ends with a process exit), each initialises, uses and shuts down (:func:`seglab.train.distributed.shutdown`) a
process group ROUNDS times. The default, 2 pairs x 3 rounds (6 checks), keeps ``make test`` short; the run of
record was ``SEGLAB_DDP_STRESS=10,3`` (30 checks), see docs/scale.md.
"""

import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglab import get_loss

WORLD = 2
CHECK = Path(__file__).resolve().parents[1] / "losses" / "test_distributed_dice.py"


def _cases():
    spec = importlib.util.spec_from_file_location("_ddp_dice_cases", CHECK)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.CASES, m.make_case


def _stress_size() -> tuple[int, int]:
    text = os.environ.get("SEGLAB_DDP_STRESS", "2,3")
    pairs, rounds = (int(v) for v in text.split(","))
    return pairs, rounds


def _worker(rank, root, rounds):
    from seglab.train import distributed as D

    torch.set_num_threads(1)
    cases, make_case = _cases()
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for r in range(rounds):
            store = dist.FileStore(os.path.join(root, f"store-{r}"), WORLD)
            dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
            try:
                res = []
                for k, (name, mode, spatial, kw) in enumerate(cases):
                    x, y = make_case(k, mode, spatial)
                    sl = slice(rank * 2, rank * 2 + 2)
                    xs = x[sl].clone().requires_grad_(True)
                    value = get_loss(name, mode=mode, batch=True, process_group="world", **kw)(xs, y[sl])
                    value.backward()
                    res.append((value.detach().clone(), xs.grad.clone()))
                out.append(res)
            finally:
                D.shutdown()
    deprecated = [str(w.message) for w in caught if "deprecated" in str(w.message)]
    torch.save({"rounds": out, "deprecated": deprecated}, os.path.join(root, f"rank{rank}.pt"))


def test_two_process_batch_dice_check_under_stress(tmp_path):
    pairs, rounds = _stress_size()
    cases, make_case = _cases()
    refs = []
    for k, (name, mode, spatial, kw) in enumerate(cases):
        x, y = make_case(k, mode, spatial)
        x = x.clone().requires_grad_(True)
        v = get_loss(name, mode=mode, batch=True, **kw)(x, y)
        v.backward()
        refs.append((v.detach(), x.grad))
    failures = []
    for p in range(pairs):
        root = tmp_path / f"pair{p}"
        root.mkdir()
        try:
            mp.start_processes(_worker, args=(str(root), rounds), nprocs=WORLD, join=True, start_method="spawn")
        except mp.ProcessExitedException as e:  # e.g. SIGABRT of one rank
            failures.append(f"pair {p}: rank {e.error_index} exited with {e.exit_code} (signal {e.signal_name})")
            continue
        got = [torch.load(root / f"rank{r}.pt") for r in range(WORLD)]
        for r in range(WORLD):
            assert got[r]["deprecated"] == [], got[r]["deprecated"]  # the supported collective only
            assert len(got[r]["rounds"]) == rounds
        for i in range(rounds):
            for k, (name, *_rest) in enumerate(cases):
                ref_v, ref_g = refs[k]
                vals = torch.stack([got[r]["rounds"][i][k][0] for r in range(WORLD)])
                if "+" in name:  # the CE part is a per-rank mean: the rank average is the global value
                    torch.testing.assert_close(vals.mean(), ref_v, rtol=0, atol=1e-6)
                else:
                    torch.testing.assert_close(vals, ref_v.expand(WORLD), rtol=0, atol=1e-6)
                for r in range(WORLD):
                    g = got[r]["rounds"][i][k][1]
                    torch.testing.assert_close(g, WORLD * ref_g[r * 2:r * 2 + 2], rtol=0, atol=1e-6)
    assert not failures, f"{len(failures)} of {pairs} pairs aborted: {failures}"


def test_shutdown_without_a_process_group_is_a_no_op():
    from seglab.train import distributed as D

    assert not dist.is_initialized()
    D.shutdown()  # nothing to do, nothing raised
    with D.process_group("cpu") as info:  # not under torchrun: a single process, no group
        assert not info.enabled and not dist.is_initialized()


def test_shutdown_destroys_the_group_and_is_idempotent(tmp_path):
    from seglab.train import distributed as D

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        assert dist.is_initialized()
        D.shutdown()
        assert not dist.is_initialized()
        D.shutdown()  # twice: harmless
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
