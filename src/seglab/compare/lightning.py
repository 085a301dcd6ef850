"""``seglab compare --lightning MOD:Module --datamodule MOD:Data``: a LightningModule as the user's training code.

:func:`lightning_fn` turns the two classes into a ``run(loss, seed, **opts)`` function for
:func:`seglab.compare.fn.compare_fn`. For each loss x seed it seeds everything (``lightning.seed_everything``),
builds ``Module(loss=loss, **module_opts)`` and ``Data(**data_opts)``, fits with ``lightning.Trainer`` and
scores with ``trainer.validate``. Options (``--fn-opt K=V``): ``trainer.K=V`` goes to ``lightning.Trainer``
(e.g. ``trainer.max_steps=200``), ``data.K=V`` to the DataModule, anything else to the module.

The metrics: the module's ``compare_metrics()`` when it defines one (a mapping, as ``--fn`` returns); else what
``trainer.validate`` returns (the metrics logged during validation, ``trainer.callback_metrics``), where a key
``NAME/CLASS`` (e.g. ``dice/liver``, logged per class) becomes the per-class value ``{NAME: {CLASS: v}}``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

from .fn import FnError, resolve_callable

TRAINER_DEFAULTS: dict[str, Any] = {"max_epochs": 1, "logger": False, "enable_checkpointing": False,
                                    "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "auto",
                                    "devices": 1, "deterministic": True}


def group_metrics(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"dice/a": 0.9, "dice/b": 0.7, "loss": 0.2}`` -> ``{"dice": {"a": 0.9, "b": 0.7}, "loss": 0.2}`` (values as
    floats; tensors read with ``.item()``). A name that is both a scalar and a per-class prefix keeps the scalar
    under its own name and the classes under ``NAME/class``'s prefix."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        x = float(v.item()) if hasattr(v, "item") else float(v)
        name, sep, cls = str(k).partition("/")
        if sep and cls:
            per = out.setdefault(name, {})
            if not isinstance(per, dict):  # "dice" logged both as a scalar and per class
                per = out.setdefault(f"{name}_per_class", {})
            per[cls] = x
        else:
            if isinstance(out.get(k), dict):
                out[f"{k}_per_class"] = out.pop(k)
            out[str(k)] = x
    return out


def lightning_fn(module: str, datamodule: str) -> Callable[..., dict[str, Any]]:
    """A ``run(loss, seed, **opts)`` that trains ``module`` on ``datamodule`` with Lightning (see the module
    docstring). Raises :class:`~seglab.compare.fn.FnError` when Lightning is not installed or a class cannot be
    loaded."""
    try:
        import lightning  # noqa: F401
    except ImportError:
        raise FnError("--lightning needs the lightning package: pip install lightning") from None
    module_cls = resolve_callable(module, "--lightning")
    data_cls = resolve_callable(datamodule, "--datamodule")

    def run(loss: Any, seed: int, **opts: Any) -> dict[str, Any]:
        import lightning as L

        trainer_kw = {k[len("trainer."):]: v for k, v in opts.items() if k.startswith("trainer.")}
        data_kw = {k[len("data."):]: v for k, v in opts.items() if k.startswith("data.")}
        module_kw = {k: v for k, v in opts.items() if not k.startswith(("trainer.", "data."))}
        L.seed_everything(seed, workers=True, verbose=False)
        model = module_cls(loss=loss, **module_kw)
        data = data_cls(**data_kw)
        trainer = L.Trainer(**{**TRAINER_DEFAULTS, **trainer_kw})
        trainer.fit(model, datamodule=data)
        scored = trainer.validate(model, datamodule=data, verbose=False)
        own = getattr(model, "compare_metrics", None)
        if callable(own):
            return own()
        flat: dict[str, Any] = {}
        for d in scored or []:
            flat.update(d)
        if not flat:
            flat = dict(trainer.callback_metrics)
        return group_metrics(flat)

    run.__qualname__ = f"lightning({module}, {datamodule})"
    return run
