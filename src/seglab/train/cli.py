"""``seglab train``: one run; works unchanged under ``torchrun --nproc-per-node P`` (data parallel).

Examples::

    seglab train --loss dicefg --fg-ratio 0.95 --norm none --steps 2000 --out results/one
    seglab train --loss dice --model my_nets.py:make_net --model-opt width=32 --task-opt size=64 --out results/mine
    torchrun --nproc-per-node 2 -m seglab train --loss study_dice --batch-size 4 --steps 500 --out results/ddp
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loss", required=True, help="a seglab.get_loss spec: a name (ce, dice, dicefg, study_dice, ...; "
                   "see seglab.describe_losses()), options in brackets, weighted sums: '0.5*dice[batch=true]+ce'")
    p.add_argument("--task", default="threshold")
    p.add_argument("--task-opt", action="append", default=[], metavar="K=V", help="task parameter (repeatable)")
    p.add_argument("--fg-ratio", type=float, help="shortcut for --task-opt fg_ratio=X")
    p.add_argument("--model", default="tiny", help="a registered model (tiny, unet) or your own factory: "
                   "package.module:factory or path/to/file.py:factory, called with in_channels, out_channels, "
                   "spatial_dims and the --model-opt options as keyword arguments; must return a torch.nn.Module")
    p.add_argument("--model-opt", action="append", default=[], metavar="K=V",
                   help="model parameter (repeatable), passed to the model factory")
    p.add_argument("--norm", help="shortcut for --model-opt norm=X (batch, none, ...)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=2, help="global batch size (split across ranks under torchrun)")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--monitors", help="comma list of monitored losses (default: the task mode's set)")
    p.add_argument("--converge", default="mean_dice>=0.9", help="METRIC>=T with METRIC in mean_dice, fg_dice, accuracy")
    p.add_argument("--grad-norm-every", type=int, default=1)
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", "-o", help="results folder to write the run into (same layout as a sweep)")


def _parse_value(text: str):
    """A task/model option value: true/false, none/null, a JSON value, else the text itself."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return t


def _kv(items: list[str], flag: str = "--task-opt") -> dict:
    out = {}
    for it in items:
        if "=" not in it:
            raise ValueError(f"{flag}: expected K=V, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


def _monitors(text: str) -> list[str]:
    from seglab.losses.registry import split_specs

    return [m.strip() for m in split_specs(text) if m.strip()]


def check_device(device: str | None) -> None:
    """Raise ValueError naming ``--device`` unless ``device`` is None, cpu, an available cuda[:N] or mps."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r}: unknown device; use cpu or cuda (cuda:N for one GPU)") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"--device {device!r}: CUDA is not available ({why}); use --device cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device!r}: there are {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        return
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"--device {device!r}: MPS is not available on this machine; use --device cpu")
        return
    raise ValueError(f"--device {device!r}: unsupported device type {dev.type!r}; use cpu or cuda")


def config_from_args(args: argparse.Namespace):
    from seglab.train.config import RunConfig

    task_kw = _kv(args.task_opt)
    if args.fg_ratio is not None:
        task_kw["fg_ratio"] = args.fg_ratio
    model_kw = _kv(args.model_opt, "--model-opt")
    if args.norm is not None:
        model_kw["norm"] = None if args.norm.lower() in ("none", "null", "off") else args.norm
    metric, sep, thr = args.converge.partition(">=")
    try:
        threshold = float(thr) if sep else None
    except ValueError:
        threshold = None
    if threshold is None:
        raise ValueError(f"--converge: expected METRIC>=T (e.g. mean_dice>=0.9), got {args.converge!r}")
    return RunConfig(loss=args.loss, task=args.task, task_kw=task_kw, model=args.model, model_kw=model_kw,
                     optimizer=args.optimizer, lr=args.lr, momentum=args.momentum if args.optimizer == "sgd" else 0.0,
                     seed=args.seed, steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every,
                     monitors=_monitors(args.monitors) if args.monitors else None,
                     converge={"metric": metric.strip(), "threshold": threshold},
                     grad_norm_every=args.grad_norm_every)


def run(args: argparse.Namespace) -> int:
    from seglab._extras import require

    require("rich", "seglab train")
    if args.out:
        require("pyarrow", "seglab train --out")
    from rich.console import Console

    from seglab.train import distributed as D
    from seglab.train.config import ConfigError, validate_runs
    from seglab.train.loop import train_run

    from rich.markup import escape

    err = Console(stderr=True)
    try:
        cfg = validate_runs([config_from_args(args)])[0]
        check_device(args.device)
        if args.out:  # before training: a run must not be lost because its folder cannot be written
            from seglab.results import ResultsStore, check_out_dir

            check_out_dir(args.out, "--out")
            ResultsStore(args.out).read_config()  # a damaged config.json is found now, not after training
    except (ConfigError, ValueError) as e:  # ResultsError is a ValueError
        flags = {"loss": "--loss", "monitors": "--monitors"}
        if getattr(e, "only_fields", False):  # only loss spec errors: one line each, naming the option
            for fld, spec, msg in e.problems:
                err.print(f"[red]error:[/red] {flags[fld]}: {escape(msg)}", soft_wrap=True)
        else:
            err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        return 2
    info = D.setup(args.device)
    if info.enabled and cfg.batch_size % info.world_size:
        if info.is_main:
            err.print(f"[red]error:[/red] --batch-size {cfg.batch_size} is not divisible by {info.world_size} processes")
        return 2
    res = train_run(cfg, info=info)
    if info.is_main:
        if args.out:
            from seglab.results import ResultsStore

            store = ResultsStore(args.out)
            store.write_config({"train": cfg.to_dict()}, [cfg])
            store.write_run(res)
            store.write_summary_table()
        s = res.summary
        keep = ("run_id", "status", "steps_done", "converged", "converged_step", "final_accuracy", "majority",
                "final_dice", "final_fg_dice", "final_mean_dice", "final_train_loss", "wall_s", "world_size")
        print(json.dumps({k: s[k] for k in keep}, default=str))
    D.barrier(info)
    if info.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0 if res.summary["status"] == "finished" else 1
