"""Packed runs: many small runs trained together as the groups of one grouped-convolution network.

Runs that share the model (``tiny`` with the same width and norm), the task (``threshold`` with the same size;
the foreground ratio may differ), the optimizer (for Adam also its lr; SGD runs may differ in lr and momentum),
batch size, steps, validation and monitoring settings are trained as ``R`` groups of one network:

* conv1 ``Conv(R*in, R*w, 3, groups=R)`` [BN(R*w)] ReLU, conv2 ``Conv(R*w, R*w, 3, groups=R)`` [BN] ReLU,
  head ``Conv(R*w, R*C, 1, groups=R)``. Group ``r`` is initialised from the run's own model, built exactly as
  :func:`~seglab.train.loop.train_run` builds it (``torch.manual_seed(seed)`` then ``create_model``), and batch
  norm is per channel, hence per run.
* Each run's batch (``task.batch(step, batch_size, seed)``, shared between runs with the same task and seed)
  goes into its input channels; logits ``(B, R*C, *S)`` are viewed as ``(R, C, B, *S)`` so that the runs lie on
  the *sample* axis of seglab's own losses: per-sample Dice (``batch=False``, ``reduction="none"``) of that
  layout is each run's batch Dice (the study's ``batch=True``), CE with ``reduction="none"`` is averaged per run.
* Runs are independent, so one backward of ``sum_r L_{i,r}`` gives every run's gradient of its own loss ``i``
  in its parameter slices (one backward per monitor loss, as ``train_run`` takes one ``autograd.grad`` per
  monitor). Each run's gradient is laid out as one row ``(R, P)`` in the order of a single model's parameters,
  so norms are computed exactly as ``train_run`` does (float64 L2 over the row). The training gradient of run
  ``r`` is the row of its own training loss; Adam and SGD are elementwise, so one optimizer over the packed
  parameters steps every run independently. Every packed parameter's dim 0 is ``R`` x (the run's size) in run
  order (conv weights and biases, batch-norm weight and bias), so SGD packs use :class:`PackedSGD`, torch's SGD
  update with per-run lr and momentum broadcast over each parameter's ``(R, -1)`` view.
* A run whose training loss or gradient is not finite is marked diverged at that step (as ``train_run``):
  its records stop, its gradient rows are zeroed and its optimizer state (Adam moments, SGD momentum buffer
  slice) and weights are reset, so it stays
  frozen (and finite) while the others continue. Its result is handed out at once.
* Validation: each run's slice of the weights (and running statistics) is loaded into a plain model of its own
  and evaluated with :func:`~seglab.train.evaluate.evaluate`, so metrics are those of single runs.

Results are :class:`~seglab.train.loop.RunRecord` s with the same records and summary (via
:func:`~seglab.train.loop.summarize`) as ``train_run``; the summary adds ``pack_size`` and ``wall_s`` is the
run's share (pack wall time / pack size).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunSpec, measures_grad_norms, resolve
from .evaluate import evaluate
from .loop import _make_optimizer, summarize
from .record import RunRecord

PACKABLE_MODELS = ("tiny",)
PACKABLE_TASKS = ("threshold",)
_DICE_KEYS = {"batch", "smooth", "include_background", "squared"}
_CE_KEYS = {"clip_eps"}  # the study's clipped CCE (ce[clip_eps=1e-07], study_cce_clip)
_MODEL_KEYS = {"width", "norm", "init", "conv_bias", "bn_momentum", "bn_eps"}  # TinyFCN options a pack carries

ProgressFn = Callable[[int, int], None]
ResultFn = Callable[[RunRecord], None]


# ---------------------------------------------------------------------------------------------- packable?


def _model_kw(cfg: RunSpec) -> dict[str, Any]:
    kw = dict(cfg.model_kw)
    kw.setdefault("width", 4)
    kw.setdefault("norm", "batch")
    return kw


def _supported(base: str, kw: dict[str, Any]) -> bool:
    """Whether the single term ``base[kw]`` has a per-run value on the runs-as-samples layout
    (:class:`PackedLosses`): CE, and Dice over the run's whole batch (``batch=True``)."""
    if base in ("ce", "cce"):
        return set(kw) <= _CE_KEYS
    if base == "dice":
        return set(kw) <= _DICE_KEYS and kw.get("batch", False) is True
    return False


def _loss_supported(spec: str, mode: str) -> bool:
    from .specs import resolve_loss

    try:
        return _supported(*resolve_loss(spec, mode))
    except ValueError:
        return False


def packable(cfg: RunSpec) -> bool:
    """Whether ``cfg`` can be trained in a pack (the built-in tiny model with batch or no norm, a 2D multiclass
    task without void labels among :data:`PACKABLE_TASKS`, CE / batch-Dice losses, no trainer options; never a
    user model given as ``module:factory`` or ``file.py:factory``). Reads the task's facts (the task is built
    only when ``cfg`` carries none)."""
    from seglab.models.registry import is_external_model

    if is_external_model(cfg.model):  # the user's module:factory / file.py:factory: trained alone
        return False
    if cfg.trainer_options():  # augmentation, schedules, weight decay, clipping, mixed precision: the plain loop
        return False
    if cfg.model not in PACKABLE_MODELS or cfg.task not in PACKABLE_TASKS or set(cfg.model_kw) - _MODEL_KEYS:
        return False
    try:
        rc = resolve(cfg)
    except (ValueError, TypeError):
        return False
    f = rc.facts
    if f is None or _model_kw(rc)["norm"] not in ("batch", None):
        return False
    if f.spatial_dims != 2 or f.mode != "multiclass" or f.ignore_index is not None:
        return False
    return all(_loss_supported(n, f.mode) for n in [rc.loss, *(rc.monitors or [])])


def pack_key(cfg: RunSpec) -> str:
    """Runs with equal keys can share a pack: the same model, task name and tensor shapes (each run keeps its own
    task options and data), optimizer, batch size, steps, validation and monitoring; they may differ in loss,
    seed, the task's options and, for SGD, lr and momentum (:class:`PackedSGD` steps each run with its own)."""
    rc = resolve(cfg)
    f = rc.facts
    assert f is not None  # resolve fills them in
    per_run_opt = rc.optimizer == "sgd"
    return json.dumps({
        "model": rc.model, "model_kw": _model_kw(rc), "task": rc.task,
        "shape": [f.in_channels, f.num_classes, *f.sample_shape], "optimizer": rc.optimizer,
        "lr": None if per_run_opt else rc.lr, "momentum": None if per_run_opt else rc.momentum,
        "batch_size": rc.batch_size, "steps": rc.steps, "eval_every": rc.eval_every,
        "monitors": rc.monitors, "grad_norm_every": rc.grad_norm_every,
    }, sort_keys=True, default=str)


def group_packs(runs: list[RunSpec], *, max_size: int | None = None) -> list[list[RunSpec]]:
    """Group packable runs by :func:`pack_key` (in first-seen order), split into packs of at most ``max_size``
    (balanced sizes). Runs that are not packable are returned as packs of one."""
    groups: dict[str, list[RunSpec]] = {}
    singles: list[list[RunSpec]] = []
    for r in runs:
        if packable(r):
            groups.setdefault(pack_key(r), []).append(r)
        else:
            singles.append([r])
    out: list[list[RunSpec]] = []
    for g in groups.values():
        n = len(g)
        if max_size is None or n <= max_size:
            out.append(g)
            continue
        k = math.ceil(n / max_size)
        size = math.ceil(n / k)
        out.extend(g[i:i + size] for i in range(0, n, size))
    return out + singles


# ---------------------------------------------------------------------------------------------- the network


class PackedTinyFCN(nn.Module):
    """``R`` :class:`~seglab.models.TinyFCN` s as the groups of one network (see module docstring).

    Shapes: ``(N, R*in_channels, *S) -> (N, R*out_channels, *S)``; group ``r`` holds run ``r``.
    """

    def __init__(self, R: int, in_channels: int, out_channels: int, spatial_dims: int = 2, width: int = 4,
                 norm: str | None = "batch", init: str = "torch", conv_bias: bool | str = True,
                 bn_momentum: float = 0.1, bn_eps: float = 1e-5):
        super().__init__()
        from seglab.models.nets import conv_body_bias, make_norm

        # ``init`` is accepted for the model's option set only: every group's weights are loaded from its run's model
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bias = conv_body_bias(conv_bias, norm)
        bn = dict(bn_momentum=bn_momentum, bn_eps=bn_eps)
        self.R, self.in_channels, self.out_channels, self.width = R, in_channels, out_channels, width
        self.body = nn.Sequential(
            conv(R * in_channels, R * width, 3, padding=1, groups=R, bias=bias),
            make_norm(norm, R * width, spatial_dims, **bn),
            nn.ReLU(inplace=True),
            conv(R * width, R * width, 3, padding=1, groups=R, bias=bias),
            make_norm(norm, R * width, spatial_dims, **bn),
            nn.ReLU(inplace=True),
        )
        self.head = conv(R * width, R * out_channels, 1, groups=R)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward_runs(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, R*in, H, W) -> (R, C, B*H*W)`` logits, runs first (2D). Same function as :meth:`forward`, but
        the first convolution and the 1x1 head run as batched matrix products over the runs (``unfold`` +
        ``baddbmm``: much cheaper backward on CPU than grouped convolutions with 1 input channel or 1x1 kernels);
        the 3x3 convolution in the middle stays a grouped convolution."""
        R, w, C, cin = self.R, self.width, self.out_channels, self.in_channels
        B, _, H, W = x.shape
        c1, c2 = self.body[0], self.body[3]
        assert isinstance(c1, nn.Conv2d) and self.head.bias is not None  # 2D packs; the head has a bias
        cols = F.unfold(x, 3, padding=1).view(B, R, cin * 9, H * W).permute(1, 2, 0, 3).reshape(R, cin * 9, B * H * W)
        if c1.bias is None:
            z = torch.bmm(c1.weight.view(R, w, cin * 9), cols)  # (R, w, B*P)
        else:
            z = torch.baddbmm(c1.bias.view(R, w, 1), c1.weight.view(R, w, cin * 9), cols)
        z = z.view(R * w, B, H, W).transpose(0, 1)  # (B, R*w, H, W), channels-strided view
        h = self.body[2](self.body[1](z.contiguous()))
        h = self.body[5](self.body[4](c2(h)))
        h = h.view(B, R, w, H * W).permute(1, 2, 0, 3).reshape(R, w, B * H * W)
        return torch.baddbmm(self.head.bias.view(R, C, 1), self.head.weight.view(R, C, w), h)  # (R, C, B*P)

    @torch.no_grad()
    def load_runs(self, models: list[nn.Module]) -> None:
        """Copy each run's model (same architecture, ungrouped) into its group."""
        if len(models) != self.R:
            raise ValueError(f"expected {self.R} models, got {len(models)}")
        mine = self.state_dict()
        for r, m in enumerate(models):
            for k, v in m.state_dict().items():
                t = mine[k]
                if t.dim() == 0:
                    t.copy_(v)
                else:
                    t.view(self.R, -1)[r].copy_(v.reshape(-1))

    @torch.no_grad()
    def extract(self, r: int, model: nn.Module) -> nn.Module:
        """Load group ``r`` (weights and running statistics) into the plain model ``model``."""
        mine = self.state_dict()
        state = {}
        for k, v in model.state_dict().items():
            t = mine[k]
            state[k] = t.clone() if t.dim() == 0 else t.view(self.R, -1)[r].reshape(v.shape).clone()
        model.load_state_dict(state)
        return model


class PackedLosses:
    """Every monitor loss of every run of a pack, through the public loss API: ``(logits (R, C, N), labels
    (R, N)) -> (M, R)``.

    The runs lie on the *sample* axis, so a run's batch statistic (``batch=True``: sums over the run's batch and
    space) is the per-sample statistic of that layout: a Dice spec is built with :func:`seglab.get_loss`,
    ``batch=False`` and ``reduction="none"`` (per sample and class, ``(R, C)``) and its value is the mean over the
    kept classes; a spec that leaves out the background (``include_background=False``) reads the classes
    ``1..C-1`` of the module that keeps it, so specs that differ only there share one module (one softmax and one
    statistics pass). CE with ``reduction="none"`` is averaged over the run's pixels. Equal to the run's own loss
    module on its ``(B, C, *S)`` tensors (tests/train/test_packed.py)."""

    def __init__(self, specs: list[str], mode: str):
        from seglab.losses.registry import get_loss

        from .specs import resolve_loss

        if mode != "multiclass":
            raise ValueError("packed losses: multiclass tasks only")
        self.modules: list[nn.Module] = []
        self.parts: list[tuple[int, int]] = []  # (module index, first class kept) per spec
        keys: dict[str, int] = {}
        for spec in specs:
            base, kw = resolve_loss(spec, mode)
            if not _supported(base, kw):
                raise ValueError(f"loss {spec!r} cannot be computed in a pack")
            first = 0
            if base == "dice":
                first = 0 if kw.get("include_background", True) else 1
                kw = {**kw, "batch": False, "include_background": True}
            key = json.dumps([base, kw], sort_keys=True, default=str)
            if key not in keys:
                keys[key] = len(self.modules)
                self.modules.append(get_loss(base, mode, reduction="none", **kw))
            self.parts.append((keys[key], first))

    def __call__(self, lg: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        values = [m(lg, labels).reshape(lg.shape[0], -1) for m in self.modules]
        return torch.stack([values[i][:, first:].mean(1) for i, first in self.parts])


class PackedSGD(torch.optim.Optimizer):
    """torch.optim.SGD (no dampening, nesterov or weight decay) with per-run ``lr`` and ``momentum`` (shape ``(R,)``).

    Every parameter's dim 0 must be ``R`` x (the run's size) in run order, so ``p.view(R, -1)[r]`` is run ``r``'s
    slice. Per step, per parameter: ``buf = momentum * buf + grad`` (``buf`` starts at zero, so the first step gives
    ``buf = grad`` as torch does; with momentum 0 it is ``grad`` exactly), then ``p -= lr * buf``. The momentum
    buffer is kept as ``state[p]["momentum_buffer"]`` (shape of ``p``) so :func:`_freeze` resets a run's slice.
    """

    def __init__(self, params, lr, momentum, R: int):
        params = list(params)
        super().__init__(params, {})
        self.R = R
        for p in params:
            if p.dim() == 0 or p.shape[0] % R:
                raise ValueError(f"PackedSGD: parameter of shape {tuple(p.shape)} is not R={R} runs along dim 0")
        lr = torch.as_tensor(lr, dtype=torch.float64).reshape(R, 1)
        mom = torch.as_tensor(momentum, dtype=torch.float64).reshape(R, 1)
        self._neg_lr = {p.dtype: (-lr).to(p.dtype) for p in params}
        self._mom = {p.dtype: mom.to(p.dtype) for p in params}
        self._any_mom = bool((mom != 0).any())

    @torch.no_grad()
    def step(self, closure=None):
        R = self.R
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.reshape(R, -1)
                st = self.state[p]
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                buf = st["momentum_buffer"].view(R, -1)
                if self._any_mom:
                    buf.mul_(self._mom[p.dtype]).add_(g)
                else:
                    buf.copy_(g)
                p.view(R, -1).addcmul_(buf, self._neg_lr[p.dtype])
        return


def _make_pack_optimizer(rcfgs: list[RunSpec], params) -> torch.optim.Optimizer:
    """Adam: torch's (one lr, in the pack key); SGD: :class:`PackedSGD` with each run's lr and momentum."""
    c0 = rcfgs[0]
    if c0.optimizer == "sgd":
        return PackedSGD(params, [float(c.lr) for c in rcfgs], [float(c.momentum) for c in rcfgs], len(rcfgs))
    return _make_optimizer(c0, params)


def _flat(grads, R: int) -> torch.Tensor:
    """Per-parameter gradients -> ``(R, P)``: row r = run r's gradient in a single model's parameter order."""
    return torch.cat([g.reshape(R, -1) for g in grads], 1)


# ---------------------------------------------------------------------------------------------- training


def train_pack(cfgs: list[RunSpec], *, progress: ProgressFn | None = None, progress_every: int = 100,
               on_result: ResultFn | None = None) -> list[RunRecord]:
    """Train the runs ``cfgs`` (same :func:`pack_key`) together; returns one :class:`RunRecord` per run, in
    order, equal (up to float rounding) to :func:`~seglab.train.loop.train_run` of each run alone. The packed
    strategy of :class:`~seglab.train.trainer.Trainer`.

    ``on_result(result)`` is called as soon as a run's result is final: at its divergence, or at the end.
    """
    if not cfgs:
        return []
    pack = _Pack(cfgs, on_result)
    steps = pack.c0.steps
    pack.do_eval(0)
    pack.net.train()
    for step in range(steps):
        pack.step(step)
        done = step + 1
        if done % pack.c0.eval_every == 0 and done != steps:
            pack.do_eval(done)
        if progress is not None and (done % progress_every == 0 or done == steps):
            progress(done, steps)
        if not bool(pack.active.any()):
            break
    if bool(pack.active.any()):
        pack.do_eval(steps)
    for r in range(pack.R):
        if bool(pack.active[r]):
            pack.finish(r, "finished", steps, steps)
    return [res for res in pack.results if res is not None]


class _Pack:
    """The state of one pack: its runs' specs and tasks (each distinct task built once), the packed network and
    optimizer, the loss values and gradient norms of every step ``(steps, M, R)`` (NaN where not computed),
    which runs are still training, their validations and finished records."""

    def __init__(self, cfgs: list[RunSpec], on_result: ResultFn | None) -> None:
        from seglab.data import create_task
        from seglab.models import create_model

        self.t0 = time.perf_counter()
        self.on_result = on_result
        self.R = R = len(cfgs)
        by_key: dict[str, Any] = {}
        self.tasks: list[Any] = []
        self.cfgs: list[RunSpec] = []
        for c in cfgs:
            key = json.dumps([c.task, c.task_kw], sort_keys=True, default=str)
            if key not in by_key:
                by_key[key] = create_task(c.task, **c.task_kw)
            self.tasks.append(by_key[key])
            self.cfgs.append(resolve(c, self.tasks[-1]) if c.facts is None else resolve(c))
        if len({pack_key(c) for c in self.cfgs}) != 1 or not all(packable(c) for c in self.cfgs):
            raise ValueError("train_pack: runs must be packable and share one pack key (see seglab.train.packed)")
        self.c0 = c0 = self.cfgs[0]
        t = self.tasks[0]
        self.mode, self.C, sd, cin = t.mode, t.num_classes, t.spatial_dims, t.in_channels
        self.models = []
        for c in self.cfgs:
            torch.manual_seed(c.seed)
            self.models.append(create_model(c.model, in_channels=cin, out_channels=self.C, spatial_dims=sd,
                                            **c.model_kw))
        self.net = PackedTinyFCN(R, cin, self.C, sd, **_model_kw(c0))
        self.net.load_runs(self.models)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = _make_pack_optimizer(self.cfgs, self.params)
        mons = [list(c.monitors or []) for c in self.cfgs]  # resolve fills them in
        self.run_names = [m + ([] if c.loss in m else [c.loss]) for m, c in zip(mons, self.cfgs, strict=True)]
        self.names: list[str] = list(dict.fromkeys(n for rn in self.run_names for n in rn))
        M = len(self.names)
        self.loss_fn = PackedLosses(self.names, self.mode)
        self.train_idx = torch.tensor([self.names.index(c.loss) for c in self.cfgs])
        self.ridx = torch.arange(R)
        self.vals_hist = torch.full((c0.steps, M, R), math.nan, dtype=torch.float64)
        self.norm_hist = torch.full((c0.steps, M, R), math.nan, dtype=torch.float64)
        self.active = torch.ones(R, dtype=torch.bool)
        self.diverged_at: list[int | None] = [None] * R
        self.evals: list[list[dict[str, Any]]] = [[] for _ in range(R)]
        self.results: list[RunRecord | None] = [None] * R
        self._val: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def do_eval(self, step: int) -> None:
        """Validate every run still training: its slice of the weights in a plain model of its own."""
        for r in range(self.R):
            if not bool(self.active[r]):
                continue
            t = self.tasks[r]
            if id(t) not in self._val:
                self._val[id(t)] = t.validation()
            xv, yv = self._val[id(t)]
            m = evaluate(self.net.extract(r, self.models[r]), xv, yv, mode=self.mode, num_classes=self.C,
                         ignore_index=getattr(t, "ignore_index", None))
            m["step"] = step
            self.evals[r].append(m)

    def finish(self, r: int, status: str, steps_done: int, n_rec: int) -> None:
        """Run ``r``'s record (its first ``n_rec`` steps), handed to ``on_result`` at once."""
        from seglab.models.describe import norm_label

        c = self.cfgs[r]
        rec: dict[str, list] = {"step": list(range(n_rec)),
                                "train_loss": self.vals_hist[:n_rec, int(self.train_idx[r]), r].tolist()}
        for n in self.run_names[r]:
            i = self.names.index(n)
            rec[f"loss/{n}"] = self.vals_hist[:n_rec, i, r].tolist()
            rec[f"gnorm/{n}"] = self.norm_hist[:n_rec, i, r].tolist()
        res = RunRecord(spec=c, steps=rec, evals=self.evals[r])
        res.summary = summarize(c, rec, self.evals[r], status=status, steps_done=steps_done,
                                diverged_step=self.diverged_at[r], wall_s=(time.perf_counter() - self.t0) / self.R,
                                world_size=1, class_names=list(self.tasks[r].class_names),
                                model_norm=norm_label(self.models[r]))
        res.summary["pack_size"] = self.R
        self.results[r] = res
        if self.on_result is not None:
            self.on_result(res)

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, R*in, *S)`` images (run ``r``'s batch in its input channels; runs with the same task and seed
        share one draw) and ``(R, B*S)`` labels."""
        cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        xs, ys = [], []
        for r, c in enumerate(self.cfgs):
            k = (id(self.tasks[r]), c.seed)
            if k not in cache:
                cache[k] = self.tasks[r].batch(step, c.batch_size, c.seed)
            xs.append(cache[k][0])
            ys.append(cache[k][1])
        return torch.cat(xs, 1), torch.stack(ys, 0).reshape(self.R, -1)

    def _gradients(self, step: int, V: torch.Tensor) -> torch.Tensor:
        """Every run's training gradient ``(R, P)``; with the gradient norms of every monitor at the steps
        :func:`measures_grad_norms` picks (one backward of ``sum_r L_{i,r}`` per loss ``i``), of the training
        loss at the others."""
        train_idx, ridx, R = self.train_idx, self.ridx, self.R
        if measures_grad_norms(step, self.c0.grad_norm_every):
            M = V.shape[0]
            G = torch.stack([_flat(torch.autograd.grad(V[i].sum(), self.params, retain_graph=i < M - 1), R)
                             for i in range(M)])  # (M, R, P)
            self.norm_hist[step] = torch.linalg.vector_norm(G.double(), dim=2)
            return G[train_idx, ridx]
        gtrain = _flat(torch.autograd.grad(V[train_idx, ridx].sum(), self.params), R)
        self.norm_hist[step, train_idx, ridx] = torch.linalg.vector_norm(gtrain.double(), dim=1)
        return gtrain

    def step(self, step: int) -> None:
        """One step of every run still training; a run whose training loss or gradient is not finite is
        frozen and its record handed out."""
        from seglab._checks import validation

        R = self.R
        x, y = self._batch(step)
        lg = self.net.forward_runs(x)  # (R, C, B*S): runs on the sample axis of the losses
        with validation(step == 0):  # value checks once, as train_run: afterwards NaN must reach the divergence test
            V = self.loss_fn(lg, y)  # (M, R)
        gtrain = self._gradients(step, V)
        vd = V.detach().double()
        self.vals_hist[step] = vd
        ok = torch.isfinite(vd[self.train_idx, self.ridx]) & torch.isfinite(gtrain).all(1)
        for r in (self.active & ~ok).nonzero().flatten().tolist():
            self.diverged_at[r] = step
            self.active[r] = False
            _freeze(self.net, self.opt, self.params, r, R)
            self.finish(r, "diverged", step, step + 1)
        gtrain = torch.where(self.active[:, None], gtrain, torch.zeros((), dtype=gtrain.dtype))
        off = 0
        for p in self.params:
            n_el = p.numel() // R
            p.grad = gtrain[:, off:off + n_el].reshape(p.shape).to(p.dtype)
            off += n_el
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


@torch.no_grad()
def _freeze(net: PackedTinyFCN, opt: torch.optim.Optimizer, params: Sequence[torch.Tensor], r: int, R: int) -> None:
    """Stop run ``r``: zero its weights and optimizer state (a zero gradient then leaves it unchanged)."""
    for p in params:
        p.view(R, -1)[r].zero_()
        st = opt.state.get(p, {})
        for v in st.values():
            if torch.is_tensor(v) and v.shape == p.shape:
                v.view(R, -1)[r].zero_()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and m.running_var is not None:
            m.running_mean.view(R, -1)[r].zero_()
            m.running_var.view(R, -1)[r].fill_(1.0)
