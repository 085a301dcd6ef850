"""Stateful metrics in a real 2-process gloo group: the synchronised result equals one process seeing all data.

Rank 0 sees 3 images, rank 1 sees 2 (uneven on purpose): averaging the two per-process results would differ.
"""

from __future__ import annotations

import datetime
import time

import pytest
import torch
import torch.multiprocessing as mp

from seglab.metrics import (
    DiceScore,
    GeneralizedDiceScore,
    HausdorffDistance,
    IoU,
    SurfaceDice,
    SurfaceDistance,
)

C, SPACING = 3, (0.8, 1.25)


def _data():
    g = torch.Generator().manual_seed(11)
    x = torch.nn.functional.avg_pool2d(torch.randn(5, C, 20, 16, generator=g), 3, stride=1, padding=1)
    y = torch.nn.functional.avg_pool2d(torch.randn(5, C, 20, 16, generator=g), 3, stride=1, padding=1)
    return x.argmax(1), y.argmax(1)


def _metrics():
    kw = dict(mode="multiclass", num_classes=C)
    return {
        "dice_mean": DiceScore(**kw), "dice_pooled": DiceScore(aggregate="pooled", **kw),
        "iou_mean": IoU(**kw), "gds": GeneralizedDiceScore(**kw),
        "hd95": HausdorffDistance(spacing=SPACING, **kw), "assd": SurfaceDistance(spacing=SPACING, **kw),
        "nsd": SurfaceDice(tolerance=1.0, spacing=SPACING, **kw),
    }


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))
    try:
        pred, target = _data()
        part = slice(0, 3) if rank == 0 else slice(3, 5)
        ms = _metrics()
        for m in ms.values():
            m.update(pred[part], target[part])
        synced = {k: m.compute() for k, m in ms.items()}
        for m in ms.values():
            m.sync = False
        unsynced = {k: m.compute() for k, m in ms.items()}  # the state itself was not changed by compute
        torch.save({"synced": synced, "local": unsynced}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_sync_equals_single_process(tmp_path):
    ctx = mp.get_context("spawn")  # fork after the parent used torch's thread pool can hang the children
    out = str(tmp_path / "res")
    procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), out)) for r in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(max(deadline - time.monotonic(), 1))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "the 2-process gloo group did not finish within 120 s"
    assert [p.exitcode for p in procs] == [0, 0]

    pred, target = _data()
    res = [torch.load(f"{out}.{r}") for r in range(2)]
    whole = _metrics()
    for m in whole.values():
        m.update(pred, target)
    for k, m in whole.items():
        expect = m.compute()
        for r in range(2):
            torch.testing.assert_close(res[r]["synced"][k], expect, rtol=1e-12, atol=1e-12, equal_nan=True)
        # the two ranks' own results are different from the whole, and their average is not the answer
        avg = (res[0]["local"][k] + res[1]["local"][k]) / 2
        assert not torch.allclose(avg, expect, rtol=1e-6, atol=1e-9), k


def test_sync_is_skipped_without_a_process_group():
    pred, target = _data()
    m = DiceScore(mode="multiclass", num_classes=C)
    m.update(pred, target)
    assert m._group() == (False, None)
    with pytest.raises(TypeError, match="sync must be True or False"):
        DiceScore(mode="multiclass", num_classes=C, sync="yes")
