"""Batch Dice across 2 processes (gloo) equals the single-process Dice of the concatenated batch.

Convention (nnU-Net's): each rank's input gradient is P times its slice of the single-process gradient, so
DDP's averaging of parameter gradients over P ranks reproduces the single-process gradient.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglab import get_loss

WORLD = 2
CASES = [
    # (loss, mode, spatial, kwargs)
    ("dice", "multiclass", (6, 5), {}),
    ("dice", "multiclass", (3, 4, 5), {"include_background": False, "squared": True}),
    ("dice", "multilabel", (6, 5), {"log": True}),
    ("dice", "multilabel", (3, 4, 5), {}),
    ("gdice", "multiclass", (6, 5), {}),
    ("tversky", "multilabel", (6, 5), {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}),
    ("jaccard", "multiclass", (3, 4, 5), {}),
    ("dice+ce", "multiclass", (6, 5), {}),
]


def make_case(k, mode, spatial):
    g = torch.Generator().manual_seed(100 + k)
    n, c = 4, 3
    x = torch.randn((n, c, *spatial), generator=g, dtype=torch.float64)
    if mode == "multiclass":
        y = torch.randint(0, 2, (n, *spatial), generator=g)  # classes 0 and 1 everywhere...
        y[0].view(-1)[:3] = 2  # ...class 2 only in sample 0, i.e. only on rank 0
    else:
        y = (torch.rand((n, c, *spatial), generator=g) > 0.5).double()
        y[2:, 2] = 0  # channel 2 present only in the first half of the batch (rank 0)
    return x, y


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    results = []
    try:
        for k, (name, mode, spatial, kw) in enumerate(CASES):
            x, y = make_case(k, mode, spatial)
            shard = slice(rank * 2, rank * 2 + 2)
            xs = x[shard].clone().requires_grad_(True)
            loss = get_loss(name, mode=mode, batch=True, process_group="world", **kw)
            value = loss(xs, y[shard])
            value.backward()
            results.append((value.detach(), xs.grad))
    finally:
        from seglab.train.distributed import shutdown

        shutdown()  # barrier, then destroy: no rank tears down while its peer is inside the last all-reduce
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("k", range(len(CASES)), ids=[f"{c[0]}-{c[1]}-{len(c[2])}d" for c in CASES])
def test_distributed_batch_dice_equals_single_process(distributed_results, k):
    name, mode, spatial, kw = CASES[k]
    x, y = make_case(k, mode, spatial)
    x = x.clone().requires_grad_(True)
    value = get_loss(name, mode=mode, batch=True, **kw)(x, y)
    value.backward()
    values = torch.stack([distributed_results[r][k][0] for r in range(WORLD)])
    if "+" in name:
        # the CE part of dice+ce is a per-rank mean (DDP averages it): the rank average is the global value
        torch.testing.assert_close(values.mean(), value.detach(), rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(values, value.detach().expand(WORLD), rtol=0, atol=1e-6)
    for rank in range(WORLD):
        g = distributed_results[rank][k][1]
        shard = slice(rank * 2, rank * 2 + 2)
        torch.testing.assert_close(g, WORLD * x.grad[shard], rtol=0, atol=1e-6)
    # and the local-only Dice on a shard is a different number: the reduction matters
    local = get_loss(name, mode=mode, batch=True, **kw)(x[:2].detach(), y[:2])
    assert abs(local.item() - value.item()) > 1e-4
