"""The training loop of one run: per-step monitor losses and gradient norms, periodic validation,
convergence, divergence detection; data parallel under torchrun."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .config import RunConfig, resolve
from .distributed import DistInfo, all_reduce_mean, shard
from .evaluate import convergence, evaluate

ProgressFn = Callable[[int, int], None]


@dataclass
class RunResult:
    """What one run produced: ``steps`` (column name -> list, one entry per step), ``evals`` (one dict per
    validation) and ``summary`` (one JSON-serialisable row)."""

    config: RunConfig
    steps: dict[str, list] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _make_optimizer(cfg: RunConfig, params):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _flat(grads, params) -> torch.Tensor:
    """One flat vector of per-parameter gradients (zeros for parameters a loss does not reach)."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def train_run(cfg: RunConfig, *, info: Optional[DistInfo] = None, progress: Optional[ProgressFn] = None,
              progress_every: int = 100) -> RunResult:
    """Train one run and return its records.

    Every step: forward the (global or, under data parallelism, this rank's slice of the) batch, evaluate every
    monitor loss on it, take one gradient per monitor loss (``torch.autograd.grad``), record the loss values and
    the global L2 norm of each gradient over all weights, and step the optimizer with the training loss's
    gradient. Under data parallelism the gradients are averaged across ranks (one all-reduce of all of them)
    before norms and the step, so records equal those of one process with the same global batch.

    Validation every ``cfg.eval_every`` steps (and at step 0 and the end). A non-finite training loss or
    gradient marks the run ``diverged`` and stops it.
    """
    from seglab._checks import validation
    from seglab.data import create_task
    from seglab.models import create_model

    from .specs import build_loss

    info = info or DistInfo()
    t0 = time.perf_counter()
    task = create_task(cfg.task, **cfg.task_kw)
    cfg = resolve(cfg, task)
    dev = info.device
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, in_channels=task.in_channels, out_channels=task.num_classes,
                         spatial_dims=task.spatial_dims, **cfg.model_kw).to(dev)
    net: torch.nn.Module = model
    if info.enabled:
        # PyTorch's DistributedDataParallel: broadcasts rank 0's weights at construction and averages the training
        # loss's gradient across ranks during backward. BatchNorm statistics stay per rank (as plain DDP).
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      broadcast_buffers=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(cfg, params)
    pg = "world" if info.enabled else None

    names = list(cfg.monitors)
    if cfg.loss not in names:
        names.append(cfg.loss)
    losses = [build_loss(n, task.mode, process_group=pg).to(dev) for n in names]
    train_idx = names.index(cfg.loss)
    M = len(names)

    xv, yv = task.validation()
    rec: dict[str, list] = {"step": [], "train_loss": []}
    for n in names:
        rec[f"loss/{n}"] = []
        rec[f"gnorm/{n}"] = []
    evals: list[dict[str, Any]] = []

    def do_eval(step: int) -> None:
        m = evaluate(model, xv, yv, mode=task.mode, num_classes=task.num_classes, info=info)
        m["step"] = step
        evals.append(m)

    status, diverged_step = "finished", None
    do_eval(0)
    sl = shard(cfg.batch_size, info) if info.enabled else None
    step = 0
    for step in range(cfg.steps):
        x, y = task.batch(step, cfg.batch_size, cfg.seed)
        if sl is not None:
            x, y = x[sl], y[sl]
        x, y = x.to(dev), y.to(dev)
        model.train()
        with validation(step == 0):  # value checks once; afterwards NaN must reach the divergence test
            logits = net(x)
            values = [fn(logits, y) for fn in losses]
        full = step % cfg.grad_norm_every == 0
        # monitor gradients (for their norms) first, keeping the graph; the training loss's backward comes last
        # and, under torchrun, goes through DDP, which averages it across ranks into p.grad
        rows: list[Optional[torch.Tensor]] = [None] * M
        if full:
            for i, v in enumerate(values):
                if i != train_idx:
                    gs = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
                    rows[i] = _flat(gs, params)
        opt.zero_grad(set_to_none=True)
        values[train_idx].backward()
        gtrain = _flat([p.grad for p in params], params)
        monitor_idx = [i for i in range(M) if rows[i] is not None]
        vals = torch.stack([v.detach().reshape(()) for v in values]).to(torch.float64)
        if info.enabled:
            vals = all_reduce_mean(vals, info)
            if monitor_idx:  # one all-reduce for all monitor gradients of this step
                avg = all_reduce_mean(torch.stack([rows[i] for i in monitor_idx]), info)
                for k, i in enumerate(monitor_idx):
                    rows[i] = avg[k]
        rows[train_idx] = gtrain
        norm_idx = [i for i in range(M) if rows[i] is not None]
        norms = dict(zip(norm_idx, torch.linalg.vector_norm(torch.stack([rows[i] for i in norm_idx]).double(), dim=1).tolist()))
        vals_l = vals.tolist()
        rec["step"].append(step)
        rec["train_loss"].append(vals_l[train_idx])
        for i, n in enumerate(names):
            rec[f"loss/{n}"].append(vals_l[i])
            rec[f"gnorm/{n}"].append(norms.get(i, math.nan))
        tl = vals_l[train_idx]
        if not _finite(tl) or not bool(torch.isfinite(gtrain).all()):
            status, diverged_step = "diverged", step
            break
        opt.step()
        done = step + 1
        if done % cfg.eval_every == 0 and done != cfg.steps:
            do_eval(done)
        if progress is not None and (done % progress_every == 0 or done == cfg.steps):
            progress(done, cfg.steps)
    steps_done = len(rec["step"]) if status == "finished" else diverged_step
    if status == "finished":
        do_eval(cfg.steps)
    res = RunResult(config=cfg, steps=rec, evals=evals)
    res.summary = summarize(cfg, rec, evals, status=status, steps_done=steps_done, diverged_step=diverged_step,
                            wall_s=time.perf_counter() - t0, world_size=info.world_size,
                            class_names=list(task.class_names))
    return res


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def summarize(cfg: RunConfig, rec: dict[str, list], evals: list[dict[str, Any]], *, status: str, steps_done: int,
              diverged_step: Optional[int], wall_s: float, world_size: int = 1,
              class_names: Optional[list[str]] = None) -> dict[str, Any]:
    """One summary row: config, status, final smoothed losses, mean gradient norms, final validation,
    convergence."""
    conv, conv_step = (convergence(evals, cfg.converge) if status == "finished" else (False, None))
    last = evals[-1] if evals else {}
    tail = 100
    out: dict[str, Any] = {
        "run_id": cfg.run_id,
        "label": cfg.label,
        "status": status,
        "steps_done": steps_done,
        "diverged_step": diverged_step,
        "wall_s": round(wall_s, 3),
        "world_size": world_size,
        "config": cfg.to_dict(),
        "class_names": class_names or [],
        "final_train_loss": _mean(rec["train_loss"][-tail:]),
        "converged": conv,
        "converged_step": conv_step,
        "final_accuracy": last.get("accuracy", math.nan),
        "majority": last.get("majority", math.nan),
        "final_dice": last.get("dice", []),
        "final_iou": last.get("iou", []),
        "final_mean_dice": last.get("mean_dice", math.nan),
        "final_fg_dice": last.get("fg_dice", math.nan),
        "final_eval_step": last.get("step"),
    }
    for k, v in rec.items():
        if k.startswith("loss/"):
            out[f"final_{k}"] = _mean(v[-tail:])
        elif k.startswith("gnorm/"):
            out[f"mean_{k}"] = _mean(v)
            out[f"early_{k}"] = _mean(v[:tail])
            out[f"max_{k}"] = max((x for x in v if _finite(x)), default=math.nan)
    return out
