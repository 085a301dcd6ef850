"""train one model with one loss (works under torchrun)

``seglab train``: one run; works unchanged under ``torchrun --nproc-per-node P`` (data parallel).

Examples::

    seglab train --loss dicefg --fg-ratio 0.95 --norm none --steps 2000 --out results/one
    seglab train --loss dice --model my_nets.py:make_net --model-opt width=32 --task-opt size=64 --out results/mine
    seglab train --loss dice+ce --task folder --task-opt path=my_data --out results/mine --resume --tensorboard
    torchrun --nproc-per-node 2 -m seglab train --loss study_dice --batch-size 4 --steps 500 --out results/ddp

Progress lines go to stderr (every ``--progress-interval`` seconds and at the end); stdout carries one JSON line
with the result. With ``--out D`` the run's checkpoints are ``D/runs/<run_id>/checkpoint_{last,best}.pt``
(``D/runs/.partial-<run_id>/`` while it trains); ``--resume`` continues an interrupted run from its last
checkpoint. SIGTERM or Ctrl-C writes the last checkpoint and exits 143 / 130. See docs/train.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from seglab._extras import require
from seglab._options import parse_kv as _kv  # one K=V parser for every command
from seglab.losses.registry import split_specs
from seglab.train.config import OPTIMIZERS, ConfigError, RunSpec, validate_runs

from ._common import MONITORS_HELP, check_device

_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


#: the defaults of a run (RunSpec's fields): the options' defaults, and what their help shows
_RUN = {f.name: f.default for f in dataclasses.fields(RunSpec) if f.default is not dataclasses.MISSING}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``seglab train``; the run options' defaults are :class:`RunSpec`'s."""
    p.add_argument("--loss", help="a seglab.get_loss spec: a name (ce, dice, dicefg, study_dice, ...; "
                   "see seglab.describe_losses()), options in brackets, weighted sums: '0.5*dice[batch=true]+ce'")
    p.add_argument("--task", default=_RUN["task"], help="a registered task (default %(default)s)")
    p.add_argument("--task-opt", action="append", default=[], metavar="K=V", help="task parameter (repeatable)")
    p.add_argument("--fg-ratio", type=float, help="shortcut for --task-opt fg_ratio=X")
    p.add_argument("--model", default=_RUN["model"], help="a registered model (tiny, unet) or your own factory: "
                   "package.module:factory or path/to/file.py:factory, called with in_channels, out_channels, "
                   "spatial_dims and the --model-opt options as keyword arguments; must return a torch.nn.Module")
    p.add_argument("--model-opt", action="append", default=[], metavar="K=V",
                   help="model parameter (repeatable), passed to the model factory")
    p.add_argument("--norm", help="shortcut for --model-opt norm=X (batch, none, ...)")
    p.add_argument("--optimizer", default=_RUN["optimizer"], choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=_RUN["lr"], help="learning rate (default %(default)g)")
    p.add_argument("--momentum", type=float, default=_RUN["momentum"], help="SGD momentum (default %(default)g)")
    p.add_argument("--seed", type=int, default=_RUN["seed"])
    p.add_argument("--steps", type=int, default=_RUN["steps"], help="training steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=_RUN["batch_size"], help="global batch size, split across ranks under torchrun (default %(default)s)")
    p.add_argument("--eval-every", type=int, default=_RUN["eval_every"], help="validation interval in steps (default %(default)s)")
    p.add_argument("--monitors", help=MONITORS_HELP)
    p.add_argument("--converge", help="METRIC>=T with METRIC in mean_dice, fg_dice, accuracy and T in [0, 1]: the "
                   "convergence verdict (default: mean_dice>=0.9 on the study's tasks, no verdict on user data)")
    p.add_argument("--grad-norm-every", type=int, default=_RUN["grad_norm_every"], metavar="K",
                   help="take every monitor loss's gradient norm at steps 0, K, 2K, ... (one extra backward pass per "
                   "monitor; default %(default)s); 0 = off. The training loss's norm is recorded at every step")
    p.add_argument("--augment", metavar="T,T", help="training augmentation, a comma list of flips, rot90, intensity "
                   "(deterministic per seed and step; 2D and 3D; default off)")
    p.add_argument("--schedule", choices=["cosine", "poly"], help="learning-rate schedule over the steps (default: constant)")
    p.add_argument("--warmup", type=int, default=_RUN["warmup"], metavar="N", help="linear learning-rate warm-up over the first N steps")
    p.add_argument("--weight-decay", type=float, default=_RUN["weight_decay"], help="weight decay (AdamW's decoupled decay for adam, "
                   "L2 for sgd; default %(default)g)")
    p.add_argument("--grad-clip", type=float, metavar="MAX_NORM", help="clip the global gradient norm to MAX_NORM (default off)")
    p.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision: bf16 autocast (CPU or CUDA), fp16 (CUDA, "
                   "with a gradient scaler); losses are computed in float32 (default off)")
    p.add_argument("--config", metavar="FILE", help="the run's configuration from a YAML or JSON file (as --print-config "
                   "writes it) instead of the run options on the command line")
    p.add_argument("--print-config", action="store_true", help="print the run's full configuration (YAML) and exit "
                   "without training; `seglab train --config FILE` reruns exactly that run")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", "-o", help="results folder to write the run into (same layout as a sweep), with its "
                   "checkpoints (checkpoint_last.pt, checkpoint_best.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue this run (same options) from the last checkpoint in --out, if there is one; without "
                   "--resume an interrupted run in --out starts over")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to OUT/tensorboard/<run_id> (needs the tensorboard extra)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress lines on stderr (default on)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines (same as --no-progress)")
    p.add_argument("--progress-interval", type=float, default=10.0, metavar="SECONDS",
                   help="seconds between progress lines (default %(default)g; 0 = every step); one line at the end always")


def _monitors(text: str) -> list[str]:
    return [m.strip() for m in split_specs(text) if m.strip()]


#: the options of ``seglab train`` that make the run's configuration (what ``--config FILE`` gives instead)
RUN_OPTIONS = ("loss", "task", "task_opt", "fg_ratio", "model", "model_opt", "norm", "optimizer", "lr", "momentum",
               "seed", "steps", "batch_size", "eval_every", "monitors", "converge", "grad_norm_every", "augment",
               "schedule", "warmup", "weight_decay", "grad_clip", "amp")


def _defaults() -> dict[str, object]:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return {a.dest: a.default for a in p._actions}


def config_from_file(path: str) -> RunSpec:
    """The :class:`RunSpec` in a YAML or JSON file (a mapping of its fields, optionally under ``train:``)."""
    f = Path(path)
    if not f.is_file():
        raise ValueError(f"--config {path!r}: no such file")
    text = f.read_text()
    if f.suffix.lower() == ".json":
        d = json.loads(text)
    else:
        yaml = require("yaml", "seglab train --config")
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"--config {path!r}: not valid YAML: {str(e).splitlines()[0]}") from None
    if isinstance(d, dict) and set(d) == {"train"}:
        d = d["train"]
    if not isinstance(d, dict) or "loss" not in d:
        raise ValueError(f"--config {path!r}: expected a mapping of run fields with at least 'loss'")
    return RunSpec.from_dict(d)


def config_text(cfg: RunSpec) -> str:
    """The resolved run configuration as YAML, for ``--print-config`` (``--config`` reads it back)."""
    yaml = require("yaml", "seglab train --print-config")

    return (f"# seglab train --config FILE reruns this run (run id {cfg.run_id})\n"
            + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None))


def config_from_args(args: argparse.Namespace) -> RunSpec:
    """The run's :class:`RunSpec`: from ``--config FILE`` (then no run option may be given too) or from the
    run options; ValueError naming the option."""
    if getattr(args, "config", None):
        defaults = _defaults()
        given = [o for o in RUN_OPTIONS if getattr(args, o, None) != defaults.get(o)]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise ValueError(f"--config gives the whole run; do not also give {flags} (edit the file instead)")
        return config_from_file(args.config)
    if not args.loss:
        raise ValueError("--loss is required (or --config FILE)")
    task_kw = _kv(args.task_opt)
    if args.fg_ratio is not None:
        task_kw["fg_ratio"] = args.fg_ratio
    model_kw = _kv(args.model_opt, "--model-opt")
    if args.norm is not None:
        model_kw["norm"] = None if args.norm.lower() in ("none", "null", "off") else args.norm
    converge = None
    if args.converge is not None:
        metric, sep, thr = args.converge.partition(">=")
        try:
            threshold = float(thr) if sep else None
        except ValueError:
            threshold = None
        if threshold is None:
            raise ValueError(f"--converge: expected METRIC>=T (e.g. mean_dice>=0.9), got {args.converge!r}")
        converge = {"metric": metric.strip(), "threshold": threshold}
    return RunSpec(loss=args.loss, task=args.task, task_kw=task_kw, model=args.model, model_kw=model_kw,
                     optimizer=args.optimizer, lr=args.lr, momentum=args.momentum if args.optimizer == "sgd" else 0.0,
                     seed=args.seed, steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every,
                     monitors=_monitors(args.monitors) if args.monitors else None,
                     converge=converge,
                     grad_norm_every=args.grad_norm_every,
                     augment=[a.strip() for a in args.augment.split(",") if a.strip()] if args.augment else None,
                     schedule=args.schedule, warmup=args.warmup, weight_decay=args.weight_decay,
                     grad_clip=args.grad_clip, amp=args.amp)


def check_run_options(args: argparse.Namespace) -> None:
    """The options of ``seglab train`` that need no configuration: raise ValueError naming the option."""
    if args.resume and not args.out:
        raise ValueError("--resume needs --out (the results folder of the run to continue)")
    if args.tensorboard and not args.out:
        raise ValueError("--tensorboard needs --out (event files are written to OUT/tensorboard/<run_id>)")
    iv = args.progress_interval
    if not (math.isfinite(iv) and iv >= 0):
        raise ValueError(f"--progress-interval: expected a number of seconds >= 0, got {iv!r}")


def _signal_name(sig: int) -> str:
    return "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name


class _StopOnSignal:
    """While training: SIGTERM, SIGINT (Ctrl-C) and SIGHUP ask the loop to stop at the next step boundary
    (``should_stop``), where it writes the last checkpoint. A second signal stops at once (the default action).
    Only in the main thread of a single process (under torchrun, torchrun handles signals)."""

    def __init__(self) -> None:
        self.fired: list[int] = []
        self.old: dict[int, Any] = {}  # signal -> the handler it had

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in _SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                with contextlib.suppress(ValueError, OSError):
                    self.old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.fired:  # the second signal: give up at once
            self.__exit__()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(signum)
            return
        self.fired.append(signum)

    def __call__(self, done: int) -> int | None:
        return self.fired[0] if self.fired else None

    def __exit__(self, *exc: object) -> None:
        for sig, h in self.old.items():
            signal.signal(sig, h)
        self.old = {}


def _final_line(s: dict) -> str:
    keep = ("run_id", "status", "steps_done", "converged", "converged_step", "final_accuracy", "majority",
            "final_dice", "final_fg_dice", "final_mean_dice", "final_train_loss", "wall_s", "world_size")
    return json.dumps({k: s.get(k) for k in keep}, default=str)


def _publish_checkpoints(pdir: Path, run_dir: Path) -> None:
    """Move the checkpoints of a finished run from its partial folder into its run folder."""
    if pdir.is_dir():
        for f in pdir.iterdir():
            if f.name.endswith(".pt"):
                os.replace(f, run_dir / f.name)
        shutil.rmtree(pdir, ignore_errors=True)


def _report_config_error(err: Any, e: Exception) -> None:
    """One line per problem of a run's configuration, naming the option."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    flags = {"loss": "--loss", "monitors": "--monitors"}
    model_problem = getattr(e, "model_problem", None)
    if model_problem:
        err.print(f"[red]error:[/red] --model: {escape(str(model_problem))}", soft_wrap=True)
    elif getattr(e, "only_fields", False):  # only loss spec errors: one line each, naming the option
        for fld, _spec, msg in getattr(e, "problems", ()):
            err.print(f"[red]error:[/red] {flags[fld]}: {escape(msg)}", soft_wrap=True)
    else:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)


def _checked_config(args: argparse.Namespace) -> RunSpec:
    """The run's validated configuration after every check that needs no training (ValueError/ConfigError)."""
    check_run_options(args)
    cfg = validate_runs([config_from_args(args)])[0]
    if getattr(args, "print_config", False):
        return cfg
    check_device(args.device)
    if cfg.amp == "fp16":
        import torch  # lazy: `seglab train --help` does not import torch

        if (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0] != "cuda":
            raise ValueError("--amp fp16 needs a CUDA device; use --amp bf16 on the CPU")
    if args.out:  # before training: a run must not be lost because its folder cannot be written
        from seglab.results import ResultsStore, check_out_dir  # optional extra (pyarrow), checked by run()

        check_out_dir(args.out, "--out")
        ResultsStore(args.out).read_config()  # a damaged config.json is found now, not after training
    return cfg


def run(args: argparse.Namespace) -> int:
    """``seglab train``: check everything, then train (exit status: docs/cli.md)."""
    require("rich", "seglab train")
    if args.out:
        require("pyarrow", "seglab train --out")
    if getattr(args, "tensorboard", False):
        require("tensorboard", "seglab train --tensorboard")
    from rich.console import Console  # optional extra (rich), checked above
    from rich.markup import escape  # optional extra (rich), checked by run()

    from seglab.train import distributed as D  # lazy: imports torch.distributed

    err = Console(stderr=True, emoji=False, highlight=False)

    def say(msg: str, style: str = "yellow") -> None:
        err.print(f"[{style}]{escape(msg)}[/{style}]", soft_wrap=True)

    try:
        cfg = _checked_config(args)
    except (ConfigError, ValueError) as e:  # ResultsError is a ValueError
        _report_config_error(err, e)
        return 2
    if getattr(args, "print_config", False):
        sys.stdout.write(config_text(cfg))
        return 0
    info = D.setup(args.device)
    if info.enabled and cfg.batch_size % info.world_size:
        if info.is_main:
            err.print(f"[red]error:[/red] --batch-size {cfg.batch_size} is not divisible by {info.world_size} processes")
        return 2
    with contextlib.ExitStack() as stack:
        return _train(args, cfg, info, stack, say, err)


def _prepare_out(args: argparse.Namespace, cfg: RunSpec, info: Any, stack: contextlib.ExitStack, say: Any,
                 err: Any) -> tuple[Any, Path, dict | None, int | None]:
    """With ``--out``: claim the run, load the checkpoint to resume from and make the partial folder.

    ``(store, partial folder, resume state or None, exit status to end with now or None)``."""
    from rich.markup import escape  # optional extra (rich), checked by run()

    from seglab.results import ResultsStore  # optional extra (pyarrow), checked by run()
    from seglab.train import checkpoint as C  # lazy: imports torch
    from seglab.train import distributed as D  # lazy: imports torch.distributed

    rid, main = cfg.run_id, info.is_main
    store = ResultsStore(args.out)
    pdir = C.partial_dir(store.root, rid)
    last = pdir / C.CHECKPOINT_LAST
    resume = None
    if args.resume and store.is_done(rid):  # every rank sees the same folder
        s = store.summary(rid)
        if main:
            say(f"run {rid} is already finished in {args.out}; nothing to resume (its result follows)")
            print(_final_line(s))
        return store, pdir, None, 0 if s.get("status") == "finished" else 1
    claim = store.claim(rid) if main else None
    if claim is not None:
        stack.callback(claim.release)
    if not D.broadcast_object(claim is not None if main else None, info):
        if main:
            err.print(f"[red]error:[/red] run {rid} is being trained into {escape(str(args.out))} by another "
                      f"process (pid {store.claim_owner(rid)}); wait for it or use another --out", soft_wrap=True)
        return store, pdir, None, 2
    if args.resume and last.exists():
        try:
            resume = C.load(last, run_id=rid)
        except C.CheckpointError as e:
            if main:
                err.print(f"[red]error:[/red] --resume: {escape(str(e))}", soft_wrap=True)
            return store, pdir, None, 2
        if main:
            say(f"resuming run {rid} from step {resume['step']}/{cfg.steps} ({last})")
    elif main and args.resume:
        say(f"--resume: no checkpoint of run {rid} in {args.out}; starting from step 0")
    elif main and last.exists():
        say(f"note: {args.out} holds an interrupted run of this configuration ({last}); starting over "
            "(pass --resume to continue it)")
    if main and resume is None and pdir.exists():
        shutil.rmtree(pdir, ignore_errors=True)  # no stale best checkpoint from an earlier attempt
    if main:
        pdir.mkdir(parents=True, exist_ok=True)
    return store, pdir, resume, None


def _train(args: argparse.Namespace, cfg: RunSpec, info: Any, stack: contextlib.ExitStack, say: Any, err: Any) -> int:
    """Claim, resume, train, write: everything after the checks (``stack`` releases the claim and closes the
    TensorBoard writer however this ends)."""
    from seglab.train import distributed as D  # lazy: imports torch.distributed
    from seglab.train import Trainer  # lazy: imports the models, data and torch
    from seglab.train.loop import TrainInterrupted

    rid, main = cfg.run_id, info.is_main
    store = pdir = writer = resume = None
    if args.out:
        store, pdir, resume, rc = _prepare_out(args, cfg, info, stack, say, err)
        if rc is not None:
            return rc
        if args.tensorboard and main:
            SummaryWriter = require("torch.utils.tensorboard", "seglab train --tensorboard").SummaryWriter
            writer = SummaryWriter(log_dir=str(store.root / "tensorboard" / rid),
                                   purge_step=resume["step"] if resume is not None else None)
            stack.callback(writer.close)
    printer = None
    if main and args.progress and not args.quiet:
        from seglab.train.progress import ProgressPrinter  # lazy: only with progress lines

        printer = ProgressPrinter(cfg.steps, interval=args.progress_interval, stream=sys.stderr)
    stopper = _StopOnSignal() if not info.enabled else None
    try:
        with (stopper if stopper is not None else contextlib.nullcontext()):
            res = Trainer(info=info).run(cfg, run_dir=pdir, resume=resume, printer=printer, tensorboard=writer,
                                         should_stop=stopper)
    except TrainInterrupted as e:
        where = (f"checkpoint saved: {e.checkpoint}; continue with the same command and --resume"
                 if e.checkpoint is not None else "nothing saved (no --out)")
        say(f"interrupted by {_signal_name(int(e.reason))} at step {e.step}/{e.total}: {where}")
        return 128 + int(e.reason)
    if main:
        if store is not None and pdir is not None:
            store.write_config({"train": cfg.to_dict()}, [cfg])
            if store.write_run(res):
                _publish_checkpoints(pdir, store.run_dir(rid))
            else:
                say(f"note: run {rid} was already in {args.out}; the earlier result and checkpoints are kept")
                shutil.rmtree(pdir, ignore_errors=True)
            store.write_summary_table()
        print(_final_line(res.summary))
    D.barrier(info)
    if info.enabled:
        import torch.distributed as dist  # lazy: only under torchrun

        dist.destroy_process_group()
    return 0 if res.summary["status"] == "finished" else 1
