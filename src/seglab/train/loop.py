"""The training loop of one run: per-step monitor losses and (sparse) gradient norms, periodic validation,
convergence, divergence detection, checkpoints and resumption, progress lines, TensorBoard scalars; data
parallel under torchrun."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

import torch

from seglab.results import run_provenance

from .augment import augment_batch
from .config import RunConfig, check_model_contract, lr_factor, measures_grad_norms, resolve, user_model
from .distributed import DistInfo, all_reduce_mean, shard
from .evaluate import convergence, evaluate

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[int], Any]


class ScalarWriter(Protocol):
    """What the loop needs of a TensorBoard ``SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...


@dataclass
class RunResult:
    """What one run produced: ``steps`` (column name -> list, one entry per step), ``evals`` (one dict per
    validation) and ``summary`` (one JSON-serialisable row)."""

    config: RunConfig
    steps: dict[str, list] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class TrainInterrupted(Exception):
    """A run stopped at a step boundary because ``should_stop`` asked (a signal, a test hook).

    ``step``: optimizer steps taken; ``total``: the run's steps; ``reason``: what ``should_stop`` returned (the
    signal number for a signal); ``checkpoint``: the ``checkpoint_last.pt`` written, or None without a
    checkpoint folder."""

    def __init__(self, step: int, total: int, reason: Any, checkpoint: Path | None) -> None:
        super().__init__(f"stopped at step {step}/{total}")
        self.step, self.total, self.reason, self.checkpoint = step, total, reason, checkpoint


def _make_optimizer(cfg: RunConfig, params):
    wd = float(cfg.weight_decay or 0.0)
    if cfg.optimizer == "adam":  # decoupled weight decay (AdamW) when set; plain Adam (the study's) otherwise
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd) if wd else torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _flat(grads, params) -> torch.Tensor:
    """One flat vector of per-parameter gradients (zeros for parameters a loss does not reach)."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def _nonfinite_anywhere(logits: torch.Tensor, info: DistInfo) -> bool:
    """Whether the logits hold a NaN or inf on this process (or, under torchrun, on any process)."""
    bad = (~torch.isfinite(logits.detach())).any().to(torch.float64).reshape(1)
    if info.enabled:
        bad = all_reduce_mean(bad, info)
    return bool(bad.item() > 0)


def _finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def tb_tag(text: str) -> str:
    """A TensorBoard tag from a name or loss spec (characters other than letters, digits, ``_ - . /`` -> ``_``)."""
    return re.sub(r"[^\w\-./]", "_", text)


def train_run(cfg: RunConfig, *, info: DistInfo | None = None, progress: ProgressFn | None = None,
              progress_every: int = 100, run_dir: str | Path | None = None,
              resume: dict[str, Any] | None = None, printer: Any = None,
              tensorboard: ScalarWriter | None = None, should_stop: StopFn | None = None) -> RunResult:
    """Train one run and return its records.

    Every step: forward the (global or, under data parallelism, this rank's slice of the) batch, evaluate every
    monitor loss on it, step the optimizer with the training loss's gradient and record the loss values and
    the global L2 norm (float64) of the training gradient over all weights. At the steps
    :func:`~seglab.train.config.measures_grad_norms` picks (``cfg.grad_norm_every``: default every 50th, the study
    preset every step, 0 never) also one gradient per monitor loss (``torch.autograd.grad``) and its norm;
    ``gnorm/<monitor>`` is NaN at the other steps. Under data parallelism the gradients are averaged across
    ranks (one all-reduce of all of them) before norms and the step, so records equal those of one process with
    the same global batch.

    Validation every ``cfg.eval_every`` steps (and at step 0 and the end). A non-finite training loss or
    gradient marks the run ``diverged`` and stops it.

    Args:
        progress: ``progress(done, total)`` every ``progress_every`` steps and at the end (sweep workers).
        run_dir: folder for ``checkpoint_last.pt`` (after every validation, at the end, when stopped) and
            ``checkpoint_best.pt`` (highest validation mean Dice); see :mod:`seglab.train.checkpoint`. Written by
            the main process only.
        resume: a checkpoint (:func:`seglab.train.checkpoint.load`) of this run to continue from; the result
            equals that of an uninterrupted run.
        printer: a :class:`~seglab.train.progress.ProgressPrinter` (main process only).
        tensorboard: a ``SummaryWriter`` (or anything with ``add_scalar``): ``train/loss`` every step,
            ``grad_norm/<loss>`` where measured, ``val/mean_dice``, ``val/fg_dice``, ``val/accuracy``,
            ``val/dice/<class>``, ``val/iou/<class>`` at every validation (main process only).
        should_stop: called with the steps done after every step; a truthy value stops the run there: the last
            checkpoint is written (with ``run_dir``) and :class:`TrainInterrupted` is raised carrying that value.

    The run seeds torch's random generators with ``cfg.seed``; the caller's generator states (CPU, and the
    run's CUDA device) are restored when it ends (``torch.random.fork_rng``): a library call leaves no
    process-global state changed.
    """
    dev = (info or DistInfo()).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        return _train_run(cfg, info=info, progress=progress, progress_every=progress_every, run_dir=run_dir,
                          resume=resume, printer=printer, tensorboard=tensorboard, should_stop=should_stop)


def _train_run(cfg: RunConfig, *, info: DistInfo | None, progress: ProgressFn | None, progress_every: int,
               run_dir: str | Path | None, resume: dict[str, Any] | None, printer: Any,
               tensorboard: ScalarWriter | None, should_stop: StopFn | None) -> RunResult:
    from seglab._checks import validation
    from seglab.data import create_task
    from seglab.models import create_model
    from seglab.models.describe import norm_label

    from . import checkpoint as ckpt
    from .specs import build_loss

    info = info or DistInfo()
    t0 = time.perf_counter()
    task = create_task(cfg.task, **cfg.task_kw)
    cfg = resolve(cfg, task)
    dev = info.device
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, in_channels=task.in_channels, out_channels=task.num_classes,
                         spatial_dims=task.spatial_dims, **cfg.model_kw).to(dev)
    model_norm = norm_label(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(cfg, params)
    main = info.is_main
    class_names = list(task.class_names)
    if cfg.amp == "fp16" and dev.type != "cuda":
        raise ValueError(f"amp fp16 needs a CUDA device (this run is on {dev.type}); use amp bf16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp or "")
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    scheduled = cfg.schedule is not None or cfg.warmup > 0

    names = list(cfg.monitors)
    if cfg.loss not in names:
        names.append(cfg.loss)
    rec: dict[str, list] = {"step": [], "train_loss": []}
    for n in names:
        rec[f"loss/{n}"] = []
        rec[f"gnorm/{n}"] = []
    evals: list[dict[str, Any]] = []
    best: dict[str, Any] = {"step": None, "mean_dice": None}
    start, elapsed_before, resumed_from, resumed_status = 0, 0.0, None, "running"
    if resume is not None:
        if resume.get("run_id") != cfg.run_id:
            raise ValueError(f"resume: the checkpoint is of run {resume.get('run_id')!r}, not {cfg.run_id!r}")
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        if scaler is not None and "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        rec = {k: list(v) for k, v in resume["records"].items()}
        evals = [dict(e) for e in resume["evals"]]
        best = dict(resume["best"])
        start = int(resume["step"])
        elapsed_before = float(resume.get("elapsed_s", 0.0))
        resumed_from, resumed_status = start, resume.get("status", "running")
        ckpt.set_rng_state(resume["rng"])

    net: torch.nn.Module = model
    if info.enabled:
        # PyTorch's DistributedDataParallel: broadcasts rank 0's weights at construction and averages the training
        # loss's gradient across ranks during backward. BatchNorm statistics stay per rank (as plain DDP).
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      broadcast_buffers=False)
    pg = "world" if info.enabled else None
    void = getattr(task, "ignore_index", None)
    losses = [build_loss(n, task.mode, process_group=pg, ignore_index=void).to(dev) for n in names]
    train_idx = names.index(cfg.loss)
    M = len(names)
    xv, yv = task.validation()
    if user_model(cfg.model):  # before any step: one dry forward names a broken contract
        check_model_contract(model, task, xv[:1])
    run_dir = Path(run_dir) if run_dir is not None and main else None
    tb = tensorboard if main else None

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t0

    def save(done: int, status: str = "running", *, improved: bool = False) -> Path | None:
        if run_dir is None:
            return None
        payload = {
            "format": ckpt.FORMAT, "seglab_version": _version(), "run_id": cfg.run_id, "config": cfg.to_dict(),
            "step": done, "status": status, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": ckpt.rng_state(), "records": rec, "evals": evals, "best": dict(best),
            "elapsed_s": elapsed(), "model_norm": model_norm,
        }
        if scaler is not None:
            payload["scaler"] = scaler.state_dict()
        data = ckpt.encode(payload)
        last = run_dir / ckpt.CHECKPOINT_LAST
        ckpt.save(data, last)
        if improved:
            ckpt.save(data, run_dir / ckpt.CHECKPOINT_BEST)
        return last

    def do_eval(step: int) -> bool:
        """Validate at ``step``; returns whether the mean Dice is the best so far."""
        m = evaluate(model, xv, yv, mode=task.mode, num_classes=task.num_classes, info=info,
                     ignore_index=void)
        m["step"] = step
        evals.append(m)
        md = m["mean_dice"]
        improved = _better(md, best["mean_dice"])
        if improved:
            best.update(step=step, mean_dice=md)
        if tb is not None:
            for k in ("mean_dice", "fg_dice", "accuracy", "mean_iou"):
                tb.add_scalar(f"val/{k}", m[k], step)
            for c, name in enumerate(class_names[:len(m["dice"])]):
                tb.add_scalar(tb_tag(f"val/dice/{name}"), m["dice"][c], step)
                tb.add_scalar(tb_tag(f"val/iou/{name}"), m["iou"][c], step)
        return improved

    def show(done: int, *, force: bool = False) -> None:
        if printer is None or not main:
            return
        last = evals[-1] if evals else {}
        tl = rec["train_loss"][-1] if rec["train_loss"] else math.nan
        printer.update(done, loss=tl, dice=last.get("mean_dice", math.nan), dice_step=last.get("step"), force=force)

    status, diverged_step = "finished", None
    if resumed_status != "running":  # the run had ended; its checkpoint holds the complete records
        status = resumed_status
        diverged_step = start if status == "diverged" else None
        steps_done = start
    else:
        if resume is None:
            save(0, improved=do_eval(0))
        if printer is not None and main:
            printer.start(start, elapsed_before=elapsed_before)
        sl = shard(cfg.batch_size, info) if info.enabled else None
        for step in range(start, cfg.steps):
            x, y = task.batch(step, cfg.batch_size, cfg.seed)
            if cfg.augment:  # the global batch, before it is split: the same draws on any number of ranks
                x, y = augment_batch(x, y, cfg.augment, spatial_dims=task.spatial_dims, seed=cfg.seed, step=step)
            if scheduled:
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * lr_factor(cfg, step)
            if sl is not None:
                x, y = x[sl], y[sl]
            x, y = x.to(dev), y.to(dev)
            model.train()
            with validation(step == 0):  # value checks once; afterwards NaN must reach the divergence test
                if amp_dtype is not None:  # the network under autocast; the losses in float32
                    with torch.autocast(device_type=dev.type, dtype=amp_dtype):
                        logits = net(x)
                    logits = logits.float()
                else:
                    logits = net(x)
                if step == 0 and _nonfinite_anywhere(logits, info):  # diverged at once: a status, not an error
                    rec["step"].append(step)
                    rec["train_loss"].append(math.nan)
                    for n in names:
                        rec[f"loss/{n}"].append(math.nan)
                        rec[f"gnorm/{n}"].append(math.nan)
                    status, diverged_step = "diverged", step
                    break
                values = [fn(logits, y) for fn in losses]
            full = measures_grad_norms(step, cfg.grad_norm_every)
            # monitor gradients (for their norms) first, keeping the graph; the training loss's backward comes
            # last and, under torchrun, goes through DDP, which averages it across ranks into p.grad
            rows: list[torch.Tensor | None] = [None] * M
            if full:
                for i, v in enumerate(values):
                    if i != train_idx:
                        gs = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
                        rows[i] = _flat(gs, params)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(values[train_idx]).backward()
                scaler.unscale_(opt)
            else:
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
            norms = dict(zip(norm_idx, torch.linalg.vector_norm(
                torch.stack([rows[i] for i in norm_idx]).double(), dim=1).tolist()))
            vals_l = vals.tolist()
            rec["step"].append(step)
            rec["train_loss"].append(vals_l[train_idx])
            for i, n in enumerate(names):
                rec[f"loss/{n}"].append(vals_l[i])
                rec[f"gnorm/{n}"].append(norms.get(i, math.nan))
            tl = vals_l[train_idx]
            if tb is not None:
                tb.add_scalar("train/loss", tl, step)
                for i in norm_idx:
                    tb.add_scalar(tb_tag(f"grad_norm/{names[i]}"), norms[i], step)
            # under fp16 a non-finite gradient is the scaler's overflow (it skips the step and lowers its scale)
            if not _finite(tl) or (scaler is None and not bool(torch.isfinite(gtrain).all())):
                status, diverged_step = "diverged", step
                break
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            done = step + 1
            if done % cfg.eval_every == 0 and done != cfg.steps:
                save(done, improved=do_eval(done))
            if progress is not None and (done % progress_every == 0 or done == cfg.steps):
                progress(done, cfg.steps)
            if done != cfg.steps:
                show(done)
            if should_stop is not None and done != cfg.steps:
                reason = should_stop(done)
                if reason:
                    last = save(done)
                    raise TrainInterrupted(done, cfg.steps, reason, last)
        steps_done = len(rec["step"]) if status == "finished" else diverged_step
        if status == "finished":
            improved = do_eval(cfg.steps)
            save(cfg.steps, "finished", improved=improved)
        else:
            save(diverged_step, "diverged")
        if run_dir is not None:  # the best and worst validation images, for the report
            from . import examples

            examples.save(examples.collect(model, xv, yv, mode=task.mode, num_classes=task.num_classes,
                                           spatial_dims=task.spatial_dims, ignore_index=void), run_dir)
        show(steps_done, force=True)
    res = RunResult(config=cfg, steps=rec, evals=evals)
    res.summary = summarize(cfg, rec, evals, status=status, steps_done=steps_done, diverged_step=diverged_step,
                            wall_s=elapsed(), world_size=info.world_size, class_names=class_names,
                            model_norm=model_norm, resumed_from_step=resumed_from, device=str(info.device))
    return res


def _version() -> str:
    from seglab._version import __version__

    return __version__


def _better(mean_dice: float, best: float | None) -> bool:
    """The best-checkpoint rule: a finite mean Dice strictly above the best so far (ties keep the earlier)."""
    return _finite(mean_dice) and (best is None or mean_dice > best)


def best_eval(evals: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The validation ``checkpoint_best.pt`` holds: the first with the highest finite mean Dice (None if none)."""
    out: dict[str, Any] | None = None
    for e in evals:
        if _better(e.get("mean_dice", math.nan), None if out is None else out["mean_dice"]):
            out = e
    return out


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if _finite(x)]
    return sum(xs) / len(xs) if xs else math.nan


def summarize(cfg: RunConfig, rec: dict[str, list], evals: list[dict[str, Any]], *, status: str, steps_done: int,
              diverged_step: int | None, wall_s: float, world_size: int = 1,
              class_names: list[str] | None = None, model_norm: str | None = None,
              resumed_from_step: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """One summary row: config, status, final smoothed losses, mean gradient norms (over the steps where they
    were measured), final validation, convergence.

    ``model_norm``: the normalisation of the trained model (:func:`seglab.models.describe.norm_label`:
    batch, instance, group, layer, none, mixed); ``best_step``, ``best_mean_dice``: the validation with the
    highest mean Dice (:func:`best_eval`, the state of ``checkpoint_best.pt``); ``resumed_from_step``: the step a
    resumed run continued from (None when it ran in one go). ``provenance``: what produced the run
    (:func:`seglab.results.run_provenance`: versions, command line, host, CPU/GPU, git commit of the working
    directory, time) with its ``seed``, ``device`` (packed runs train on the CPU) and ``wall_s``."""
    conv: bool | None
    if cfg.converge is None:  # no verdict unless one was asked for (user data)
        conv, conv_step = None, None
    else:
        conv, conv_step = (convergence(evals, cfg.converge) if status == "finished" else (False, None))
    last = evals[-1] if evals else {}
    best = best_eval(evals) or {}
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
        "model_norm": model_norm,
        "best_step": best.get("step"),
        "best_mean_dice": best.get("mean_dice", math.nan),
        "resumed_from_step": resumed_from_step,
        "provenance": run_provenance(seed=cfg.seed, device=device, world_size=world_size, wall_s=round(wall_s, 3)),
    }
    for k, v in rec.items():
        if k.startswith("loss/"):
            out[f"final_{k}"] = _mean(v[-tail:])
        elif k.startswith("gnorm/"):
            out[f"mean_{k}"] = _mean(v)
            out[f"early_{k}"] = _mean(v[:tail])
            out[f"max_{k}"] = max((x for x in v if _finite(x)), default=math.nan)
    return out
