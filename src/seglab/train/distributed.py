"""Data-parallel helpers: torchrun environment, rank slicing, gradient and metric all-reduces.

Training wraps the model in ``DistributedDataParallel``, which averages the training loss's gradient across
ranks during its backward. The gradients of the *monitored* losses (taken with ``torch.autograd.grad`` for
their norm curves only, never applied) are not seen by DDP's reducer; they are averaged with one extra
``all_reduce`` per step, so every recorded norm is that of the global batch. Losses with batch statistics
get ``process_group="world"``.

Teardown: :func:`shutdown` (or the :func:`process_group` context) ends every process group the same way on
every rank and on every way out: a barrier first, so that no rank destroys its group while a peer still has a
collective in flight with it, then ``destroy_process_group``. A rank that tears its group down (or exits) while
its peer is still inside the last all-reduce is the teardown race behind the rare ``terminate called without an
active exception`` abort of a 2-process gloo check (issue 14).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from collections.abc import Iterator

import torch


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device: str | None = None) -> DistInfo:
    """Initialise ``torch.distributed`` from torchrun's environment (gloo on CPU, NCCL on CUDA) if launched
    with more than one process; otherwise return a single-process :class:`DistInfo`. A group initialised here
    is also shut down (:func:`shutdown`) at interpreter exit if nothing ended it before."""
    import torch.distributed as dist

    want_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if not launched_by_torchrun():
        dev = torch.device(device or ("cuda" if want_cuda else "cpu"))
        return DistInfo(device=dev)
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
        atexit.register(shutdown)  # every way out ends the group cleanly (a no-op when it already ended)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def current() -> DistInfo:
    """The :class:`DistInfo` of an already initialised process group (single process otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", "0")), device=dev)
    return DistInfo()


def shard(n: int, info: DistInfo) -> slice:
    """Contiguous slice of ``range(n)`` held by this rank (``n`` must be divisible by the world size)."""
    if n % info.world_size:
        raise ValueError(f"batch size {n} is not divisible by the number of processes {info.world_size}")
    k = n // info.world_size
    return slice(info.rank * k, (info.rank + 1) * k)


def shard_uneven(n: int, info: DistInfo) -> slice:
    """Slice of ``range(n)`` for this rank when ``n`` need not divide evenly (validation sets)."""
    base, extra = divmod(n, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return t
    return all_reduce_sum(t, info) / info.world_size


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DDP does at construction)."""
    if not info.enabled:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if not info.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(barrier_timeout_s: float = 60.0) -> None:
    """End the default process group cleanly, if one is initialised (else nothing): a barrier, so that every rank
    has finished its collectives before any rank tears down, then ``destroy_process_group``. Call it on every
    rank, in a ``finally``; calling it twice is harmless. When a peer is gone the barrier fails or times out
    (``barrier_timeout_s``, gloo) and the group is destroyed anyway.

    Example::

        info = setup()
        try:
            ...  # training
        finally:
            shutdown()
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=barrier_timeout_s), wait_all_ranks=True)
        else:
            dist.barrier()
    except Exception:  # a peer died or timed out: nothing to wait for
        pass
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | None = None) -> Iterator[DistInfo]:
    """:func:`setup` on the way in, :func:`shutdown` on every way out (return, exception, Ctrl-C)."""
    info = setup(device)
    try:
        yield info
    finally:
        if info.enabled:
            shutdown()
