"""The training loop of one run: per-step monitor losses and (sparse) gradient norms, periodic validation,
convergence, divergence detection, checkpoints and resumption, progress lines, TensorBoard scalars; data
parallel under torchrun."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable

import torch

from seglab.results import run_provenance

from .augment import augment_batch
from .config import RunSpec, check_model_contract, lr_factor, measures_grad_norms, resolve, user_model
from .distributed import DistInfo, all_reduce_mean, shard
from .evaluate import convergence, evaluate
from .record import CLASS_METRICS, EVAL_METRICS, RunRecord

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[int], Any]


class ScalarWriter(Protocol):
    """What the loop needs of a TensorBoard ``SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...


class TrainInterrupted(Exception):
    """A run stopped at a step boundary because ``should_stop`` asked (a signal, a test hook).

    ``step``: optimizer steps taken; ``total``: the run's steps; ``reason``: what ``should_stop`` returned (the
    signal number for a signal); ``checkpoint``: the ``checkpoint_last.pt`` written, or None without a
    checkpoint folder."""

    def __init__(self, step: int, total: int, reason: Any, checkpoint: Path | None) -> None:
        super().__init__(f"stopped at step {step}/{total}")
        self.step, self.total, self.reason, self.checkpoint = step, total, reason, checkpoint


def _make_optimizer(cfg: RunSpec, params):
    wd = float(cfg.weight_decay or 0.0)
    if cfg.optimizer == "adam":  # decoupled weight decay (AdamW) when set; plain Adam (the study's) otherwise
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=wd) if wd else torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _flat(grads, params) -> torch.Tensor:
    """One flat vector of per-parameter gradients (zeros for parameters a loss does not reach)."""
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)])


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


def train_run(cfg: RunSpec, *, info: DistInfo | None = None, progress: ProgressFn | None = None,
              progress_every: int = 100, run_dir: str | Path | None = None,
              resume: dict[str, Any] | None = None, printer: Any = None,
              tensorboard: ScalarWriter | None = None, should_stop: StopFn | None = None) -> RunRecord:
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


def _train_run(cfg: RunSpec, *, info: DistInfo | None, progress: ProgressFn | None, progress_every: int,
               run_dir: str | Path | None, resume: dict[str, Any] | None, printer: Any,
               tensorboard: ScalarWriter | None, should_stop: StopFn | None) -> RunRecord:
    run = _SingleRun(cfg, info or DistInfo(), run_dir=run_dir, printer=printer, tensorboard=tensorboard)
    if resume is not None:
        run.resume_from(resume)
    if run.resumed_status != "running":  # the run had ended; its checkpoint holds the complete records
        status = run.resumed_status
        run.diverged_step = run.start if status == "diverged" else None
        steps_done = run.start
    else:
        status = run.train(fresh=resume is None, progress=progress, progress_every=progress_every,
                           should_stop=should_stop)
        steps_done = run.finish(status)
    return run.record(status, steps_done)


class _SingleRun:
    """One run trained alone (the strategy of :func:`train_run`): its task (built once), model, optimizer,
    losses, records and checkpoints."""

    def __init__(self, cfg: RunSpec, info: DistInfo, *, run_dir: str | Path | None, printer: Any,
                 tensorboard: ScalarWriter | None) -> None:
        from seglab.data import create_task
        from seglab.models import create_model
        from seglab.models.describe import norm_label

        self.t0 = time.perf_counter()
        self.info = info
        self.task = task = create_task(cfg.task, **cfg.task_kw)
        self.cfg = cfg = resolve(cfg) if cfg.facts is not None else resolve(cfg, task)  # facts: read once
        self.dev = dev = info.device
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, in_channels=task.in_channels, out_channels=task.num_classes,
                                  spatial_dims=task.spatial_dims, **cfg.model_kw).to(dev)
        self.model_norm = norm_label(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = _make_optimizer(cfg, self.params)
        self.main = info.is_main
        self.class_names = list(task.class_names)
        if cfg.amp == "fp16" and dev.type != "cuda":
            raise ValueError(f"amp fp16 needs a CUDA device (this run is on {dev.type}); use amp bf16")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp or "")
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        monitors = list(cfg.monitors or [])  # resolve fills them in
        self.names = monitors + ([] if cfg.loss in monitors else [cfg.loss])
        self.rec: dict[str, list] = {"step": [], "train_loss": []}
        for n in self.names:
            self.rec[f"loss/{n}"] = []
            self.rec[f"gnorm/{n}"] = []
        self.evals: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"step": None, "mean_dice": None}
        self.start, self.elapsed_before, self.resumed_status = 0, 0.0, "running"
        self.resumed_from: int | None = None
        self.diverged_step: int | None = None
        self.net = self._wrap(self.model)
        self.void = getattr(task, "ignore_index", None)
        self.losses = self._losses()
        self.train_idx = self.names.index(cfg.loss)
        self.xv, self.yv = task.validation()
        if user_model(cfg.model):  # before any step: one dry forward names a broken contract
            check_model_contract(self.model, task, self.xv[:1])
        self.run_dir = Path(run_dir) if run_dir is not None and self.main else None
        self.tb = tensorboard if self.main else None
        self.printer = printer if self.main else None

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The network to train: under torchrun PyTorch's DistributedDataParallel (it broadcasts rank 0's weights
        at construction and averages the training loss's gradient across ranks during backward; BatchNorm
        statistics stay per rank, as plain DDP), else the model."""
        if not self.info.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        dev = self.dev
        return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                       broadcast_buffers=False)

    def _losses(self) -> list[torch.nn.Module]:
        from .specs import build_loss

        pg = "world" if self.info.enabled else None
        return [build_loss(n, self.task.mode, process_group=pg, ignore_index=self.void).to(self.dev)
                for n in self.names]

    def resume_from(self, resume: dict[str, Any]) -> None:
        """Continue from a checkpoint of this run (:func:`seglab.train.checkpoint.load`)."""
        from . import checkpoint as ckpt

        if resume.get("run_id") != self.cfg.run_id:
            raise ValueError(f"resume: the checkpoint is of run {resume.get('run_id')!r}, not {self.cfg.run_id!r}")
        self.model.load_state_dict(resume["model"])
        self.opt.load_state_dict(resume["optimizer"])
        if self.scaler is not None and "scaler" in resume:
            self.scaler.load_state_dict(resume["scaler"])
        self.rec = {k: list(v) for k, v in resume["records"].items()}
        self.evals = [dict(e) for e in resume["evals"]]
        self.best = dict(resume["best"])
        self.start = int(resume["step"])
        self.elapsed_before = float(resume.get("elapsed_s", 0.0))
        self.resumed_from, self.resumed_status = self.start, resume.get("status", "running")
        ckpt.set_rng_state(resume["rng"])

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def save(self, done: int, status: str = "running", *, improved: bool = False) -> Path | None:
        """Write ``checkpoint_last.pt`` (and ``checkpoint_best.pt`` when ``improved``); None without a folder."""
        from . import checkpoint as ckpt

        if self.run_dir is None:
            return None
        payload = {
            "format": ckpt.FORMAT, "seglab_version": _version(), "run_id": self.cfg.run_id,
            "config": self.cfg.to_dict(), "step": done, "status": status, "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "rng": ckpt.rng_state(), "records": self.rec, "evals": self.evals,
            "best": dict(self.best), "elapsed_s": self.elapsed(), "model_norm": self.model_norm,
        }
        if self.scaler is not None:
            payload["scaler"] = self.scaler.state_dict()
        data = ckpt.encode(payload)
        last = self.run_dir / ckpt.CHECKPOINT_LAST
        ckpt.save(data, last)
        if improved:
            ckpt.save(data, self.run_dir / ckpt.CHECKPOINT_BEST)
        return last

    def do_eval(self, step: int) -> bool:
        """Validate at ``step``; returns whether the mean Dice is the best so far."""
        task = self.task
        m = evaluate(self.model, self.xv, self.yv, mode=task.mode, num_classes=task.num_classes, info=self.info,
                     ignore_index=self.void)
        m["step"] = step
        self.evals.append(m)
        md = m["mean_dice"]
        improved = _better(md, self.best["mean_dice"])
        if improved:
            self.best.update(step=step, mean_dice=md)
        if self.tb is not None:
            for k in ("mean_dice", "fg_dice", "accuracy", "mean_iou"):
                self.tb.add_scalar(f"val/{k}", m[k], step)
            for c, name in enumerate(self.class_names[:len(m["dice"])]):
                self.tb.add_scalar(tb_tag(f"val/dice/{name}"), m["dice"][c], step)
                self.tb.add_scalar(tb_tag(f"val/iou/{name}"), m["iou"][c], step)
        return improved

    def show(self, done: int, *, force: bool = False) -> None:
        if self.printer is None:
            return
        last = self.evals[-1] if self.evals else {}
        tl = self.rec["train_loss"][-1] if self.rec["train_loss"] else math.nan
        self.printer.update(done, loss=tl, dice=last.get("mean_dice", math.nan), dice_step=last.get("step"),
                            force=force)

    def train(self, *, fresh: bool, progress: ProgressFn | None, progress_every: int,
              should_stop: StopFn | None) -> str:
        """The steps from :attr:`start` to the end; returns ``"finished"`` or ``"diverged"`` (at
        :attr:`diverged_step`). Raises :class:`TrainInterrupted` when ``should_stop`` asks."""
        cfg = self.cfg
        if fresh:
            self.save(0, improved=self.do_eval(0))
        if self.printer is not None:
            self.printer.start(self.start, elapsed_before=self.elapsed_before)
        sl = shard(cfg.batch_size, self.info) if self.info.enabled else None
        for step in range(self.start, cfg.steps):
            if not self.step(step, sl):
                self.diverged_step = step
                return "diverged"
            done = step + 1
            if done % cfg.eval_every == 0 and done != cfg.steps:
                self.save(done, improved=self.do_eval(done))
            if progress is not None and (done % progress_every == 0 or done == cfg.steps):
                progress(done, cfg.steps)
            if done != cfg.steps:
                self.show(done)
            if should_stop is not None and done != cfg.steps:
                reason = should_stop(done)
                if reason:
                    raise TrainInterrupted(done, cfg.steps, reason, self.save(done))
        return "finished"

    def _batch(self, step: int, sl: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's batch: augmented (the global batch, before it is split: the same draws on any number of
        ranks), this rank's slice, on the device; also sets the step's learning rate."""
        cfg = self.cfg
        x, y = self.task.batch(step, cfg.batch_size, cfg.seed)
        if cfg.augment:
            x, y = augment_batch(x, y, cfg.augment, spatial_dims=self.task.spatial_dims, seed=cfg.seed, step=step)
        if cfg.schedule is not None or cfg.warmup > 0:
            for group in self.opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(cfg, step)
        if sl is not None:
            x, y = x[sl], y[sl]
        return x.to(self.dev), y.to(self.dev)

    def _forward(self, step: int, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor] | None:
        """Every loss's value on the batch; None when the logits of step 0 are not finite (diverged at once)."""
        from seglab._checks import validation

        self.model.train()
        with validation(step == 0):  # value checks once; afterwards NaN must reach the divergence test
            if self.amp_dtype is not None:  # the network under autocast; the losses in float32
                with torch.autocast(device_type=self.dev.type, dtype=self.amp_dtype):
                    logits = self.net(x)
                logits = logits.float()
            else:
                logits = self.net(x)
            if step == 0 and _nonfinite_anywhere(logits, self.info):
                return None
            return [fn(logits, y) for fn in self.losses]

    def _gradients(self, step: int, values: list[torch.Tensor]) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """Monitor gradients (for their norms, at the steps :func:`measures_grad_norms` picks) first, keeping the
        graph; the training loss's backward comes last and, under torchrun, goes through DDP, which averages it
        across ranks into ``p.grad``. Returns the flat gradient rows (None where not taken) and the training one."""
        params, train_idx = self.params, self.train_idx
        rows: list[torch.Tensor | None] = [None] * len(values)
        if measures_grad_norms(step, self.cfg.grad_norm_every):
            for i, v in enumerate(values):
                if i != train_idx:
                    rows[i] = _flat(torch.autograd.grad(v, params, retain_graph=True, allow_unused=True), params)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(values[train_idx]).backward()
            self.scaler.unscale_(self.opt)
        else:
            values[train_idx].backward()
        return rows, _flat([p.grad for p in params], params)

    def _record(self, step: int, values: list[torch.Tensor], rows: list[torch.Tensor | None],
                gtrain: torch.Tensor) -> float:
        """Record the step's loss values and gradient norms (averaged across ranks under torchrun, one
        all-reduce for all monitor gradients); returns the training loss."""
        info, train_idx, names = self.info, self.train_idx, self.names
        monitor_idx = [i for i, r in enumerate(rows) if r is not None]
        vals = torch.stack([v.detach().reshape(()) for v in values]).to(torch.float64)
        if info.enabled:
            vals = all_reduce_mean(vals, info)
            if monitor_idx:
                avg = all_reduce_mean(torch.stack([rows[i] for i in monitor_idx]), info)  # type: ignore[misc]
                for k, i in enumerate(monitor_idx):
                    rows[i] = avg[k]
        rows[train_idx] = gtrain
        norm_idx = [i for i, r in enumerate(rows) if r is not None]
        norms = dict(zip(norm_idx, torch.linalg.vector_norm(
            torch.stack([rows[i] for i in norm_idx]).double(), dim=1).tolist(), strict=True))  # type: ignore[misc]
        vals_l = vals.tolist()
        self.rec["step"].append(step)
        self.rec["train_loss"].append(vals_l[train_idx])
        for i, n in enumerate(names):
            self.rec[f"loss/{n}"].append(vals_l[i])
            self.rec[f"gnorm/{n}"].append(norms.get(i, math.nan))
        if self.tb is not None:
            self.tb.add_scalar("train/loss", vals_l[train_idx], step)
            for i in norm_idx:
                self.tb.add_scalar(tb_tag(f"grad_norm/{names[i]}"), norms[i], step)
        return vals_l[train_idx]

    def step(self, step: int, sl: Any) -> bool:
        """One optimizer step with its records; False when the run diverged at it (non-finite training loss or
        gradient; under fp16 a non-finite gradient is the scaler's overflow: it skips the step)."""
        x, y = self._batch(step, sl)
        values = self._forward(step, x, y)
        if values is None:  # diverged at once: a status, not an error
            self.rec["step"].append(step)
            self.rec["train_loss"].append(math.nan)
            for n in self.names:
                self.rec[f"loss/{n}"].append(math.nan)
                self.rec[f"gnorm/{n}"].append(math.nan)
            return False
        rows, gtrain = self._gradients(step, values)
        tl = self._record(step, values, rows, gtrain)
        if not _finite(tl) or (self.scaler is None and not bool(torch.isfinite(gtrain).all())):
            return False
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return True

    def finish(self, status: str) -> int:
        """The last validation and checkpoint, the example images; returns the steps done."""
        cfg = self.cfg
        if status == "finished":
            steps_done = len(self.rec["step"])
            self.save(cfg.steps, "finished", improved=self.do_eval(cfg.steps))
        else:
            steps_done = int(self.diverged_step or 0)
            self.save(steps_done, "diverged")
        if self.run_dir is not None:  # the best and worst validation images, for the report
            from . import examples

            task = self.task
            examples.save(examples.collect(self.model, self.xv, self.yv, mode=task.mode,
                                           num_classes=task.num_classes, spatial_dims=task.spatial_dims,
                                           ignore_index=self.void), self.run_dir)
        self.show(steps_done, force=True)
        return steps_done

    def record(self, status: str, steps_done: int) -> RunRecord:
        res = RunRecord(spec=self.cfg, steps=self.rec, evals=self.evals)
        res.summary = summarize(self.cfg, self.rec, self.evals, status=status, steps_done=steps_done,
                                diverged_step=self.diverged_step, wall_s=self.elapsed(),
                                world_size=self.info.world_size, class_names=self.class_names,
                                model_norm=self.model_norm, resumed_from_step=self.resumed_from,
                                device=str(self.info.device))
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


def summarize(cfg: RunSpec, rec: dict[str, list], evals: list[dict[str, Any]], *, status: str, steps_done: int,
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
        "loss_order": [k[len("loss/"):] for k in rec if k.startswith("loss/")],
        "metric_names": list(EVAL_METRICS),
        "class_metric_names": list(CLASS_METRICS),
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
