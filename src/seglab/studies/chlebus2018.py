"""The Chlebus (2018) study: its preset grids, its built-in tasks and their defaults (monitor set, convergence
rule). The rest of the library names no study: it reads these through :mod:`seglab.studies`.

The preset grids:

``chlebus2018`` — the toy study of Chlebus (2018): the thresholding task (a pixel of a uniform-noise image is
foreground if its value exceeds a threshold set for 5/50/95 % foreground), the study's tiny FCN with and
without batch norm, the losses CCE, DICE, DICEFG, DICE_SQUARE, DICEFG_SQUARE (the presets ``study_cce``,
``study_dice``, ``study_dicefg``, ``study_dice_sq``, ``study_dicefg_sq``: Dice summed over batch and spatial axes,
smooth 1e-7), Adam and SGD at lr 1e-3, batch 2, 3 seeds, 10,001 iterations; all five losses are monitored
(value and gradient norm) at every step whatever the training loss.

Added to the study: an SGD variation (one seed) — SGD with lr 0.1 without momentum and SGD with lr 0.01 with
momentum 0.9 (both 100x the effective step of the study's SGD) — so "SGD does not converge" can be told apart
from "SGD at lr 1e-3 without momentum is too slow".

``quick`` shrinks it for a demo: one seed, fewer steps, the study's optimizers plus SGD lr 0.01 with momentum.

``chlebus2018-faithful`` — the same task, net, optimizers, batch size and steps, but as the study's code
(``code/semantic-segmentation-loss-functions`` of gchlebus/gchlebus.github.io, TF 1.x / Keras layers) sets them up:

* Glorot-uniform weights and zero biases (``init="glorot"``; Keras' defaults);
* no bias in the 3x3 convolutions under batch norm (``conv_bias="auto"``; the study's ``use_bias=not batch_norm``);
* TF's batch norm: momentum 0.99, eps 1e-3 (``bn_momentum=0.01`` in PyTorch's convention, ``bn_eps=1e-3``);
* the study's CCE with probabilities clipped to [1e-7, 1 - 1e-7] (``study_cce_clip``), trained and monitored;
* only the study's three losses (CCE, DICE, DICEFG; the study plots those three), which are also the monitors;
* more seeds than the study's 3, so that rates carry intervals: 10 for Adam, 5 for SGD lr 1e-3, 3 for the SGD
  variation (lr 0.1; lr 0.01 + momentum 0.9).

What still differs from the study's code is listed in ``docs/study_deviations.md`` (validation every 250 steps
on 64 images in eval mode vs the study's 100 images with batch statistics, convergence rule, data generator).
"""

from __future__ import annotations

import copy
from typing import Any

from seglab.losses.registry import STUDY_LOSSES

#: the built-in synthetic tasks of the study and its sequels: runs on them keep the study's defaults (its monitor
#: set, convergence at mean Dice >= 0.9), so that committed study data keep their run ids
STUDY_TASKS = ("threshold", "shapes", "overlap", "brain-tissue", "brain-tissue-nested")
#: the study's convergence rule, the default of runs on :data:`STUDY_TASKS`
STUDY_CONVERGE = {"metric": "mean_dice", "threshold": 0.9}


def study_task(name: str) -> bool:
    """Whether ``name`` is one of the study's built-in tasks (:data:`STUDY_TASKS`); a folder of the user's data
    (``folder``) or a task the user registered is not."""
    return name in STUDY_TASKS


def study_monitors(mode: str) -> list[str]:
    """The study's monitor set of a ``mode`` task: its CE (``bce`` for sigmoid tasks) and its Dice variants that
    apply to ``mode``."""
    if mode == "multiclass":
        return list(STUDY_LOSSES)
    if mode == "multilabel":
        return ["bce", "study_dice", "study_dicefg", "study_dice_sq"]
    return ["bce", "study_dice", "study_dice_sq"]


STUDY_STEPS = 10_001

CHLEBUS2018: dict[str, Any] = {
    "name": "chlebus2018",
    "description": "Chlebus (2018) toy thresholding study: CCE vs Dice variants, fg 5/50/95 %, BN on/off, Adam/SGD",
    "model": "tiny",
    "model_kw": {"width": 4},
    "task": "threshold",
    "task_kw": {"size": 32},
    "fg_ratios": [0.05, 0.5, 0.95],
    "norms": ["batch", None],
    "losses": list(STUDY_LOSSES),
    "steps": STUDY_STEPS,
    "batch_size": 2,
    "eval_every": 500,
    "grad_norm_every": 1,  # the study monitors every loss's gradient norm at every step (RunSpec's default is sparse)
    "converge": {"metric": "mean_dice", "threshold": 0.9},
    "grids": [
        {"optimizers": [{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 1e-3, "momentum": 0.0}], "seeds": [0, 1, 2]},
        {"optimizers": [{"name": "sgd", "lr": 0.1, "momentum": 0.0}, {"name": "sgd", "lr": 0.01, "momentum": 0.9}],
         "seeds": [0]},
    ],
}

QUICK_STEPS = 1500

#: the study's code, in seglab's options (see the module docstring and docs/study_deviations.md)
FAITHFUL_MODEL_KW: dict[str, Any] = {"width": 4, "init": "glorot", "conv_bias": "auto", "bn_momentum": 0.01,
                                     "bn_eps": 1e-3}
FAITHFUL_LOSSES = ["study_cce_clip", "study_dice", "study_dicefg"]
FAITHFUL_SEEDS = {"adam": 10, "sgd": 5, "sgd_variation": 3}

CHLEBUS2018_FAITHFUL: dict[str, Any] = {
    "name": "chlebus2018-faithful",
    "description": "Chlebus (2018) toy study as its code: Glorot init, no conv bias under BN, TF BN momentum/eps, "
                   "clipped CCE, the study's 3 losses; 10 seeds Adam, 5 SGD, 3 SGD variation",
    "model": "tiny",
    "model_kw": dict(FAITHFUL_MODEL_KW),
    "task": "threshold",
    "task_kw": {"size": 32},
    "fg_ratios": [0.05, 0.5, 0.95],
    "norms": ["batch", None],
    "losses": list(FAITHFUL_LOSSES),
    "monitors": list(FAITHFUL_LOSSES),
    "steps": STUDY_STEPS,
    "batch_size": 2,
    "eval_every": 250,
    "grad_norm_every": 1,  # as the study: every monitor's gradient norm at every step (same run ids as before)
    "converge": {"metric": "mean_dice", "threshold": 0.9},
    "grids": [
        {"optimizers": [{"name": "adam", "lr": 1e-3}], "seeds": list(range(FAITHFUL_SEEDS["adam"]))},
        {"optimizers": [{"name": "sgd", "lr": 1e-3, "momentum": 0.0}], "seeds": list(range(FAITHFUL_SEEDS["sgd"]))},
        {"optimizers": [{"name": "sgd", "lr": 0.1, "momentum": 0.0}, {"name": "sgd", "lr": 0.01, "momentum": 0.9}],
         "seeds": list(range(FAITHFUL_SEEDS["sgd_variation"]))},
    ],
}


def chlebus2018(*, quick: bool = False, steps: int | None = None) -> dict[str, Any]:
    """The ``chlebus2018`` grid (module docstring); ``quick``: the demo's (1 seed, 1,500 steps, three losses)."""
    cfg = copy.deepcopy(CHLEBUS2018)
    if quick:
        cfg["name"] = "chlebus2018-quick"
        cfg["steps"] = QUICK_STEPS
        cfg["eval_every"] = 250
        cfg["losses"] = ["study_cce", "study_dice", "study_dicefg"]
        cfg["grids"] = [{"optimizers": [{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 1e-3, "momentum": 0.0},
                                        {"name": "sgd", "lr": 0.01, "momentum": 0.9}], "seeds": [0]}]
    if steps is not None:
        cfg["steps"] = int(steps)
        cfg["eval_every"] = max(1, min(cfg["eval_every"], int(steps)))
    return cfg


def chlebus2018_faithful(*, quick: bool = False, steps: int | None = None) -> dict[str, Any]:
    """The ``chlebus2018-faithful`` grid (module docstring); ``quick``: 1 seed, 1,500 steps, Adam and SGD lr 1e-3."""
    cfg = copy.deepcopy(CHLEBUS2018_FAITHFUL)
    if quick:
        cfg["name"] = "chlebus2018-faithful-quick"
        cfg["steps"] = QUICK_STEPS
        cfg["grids"] = [{"optimizers": [{"name": "adam", "lr": 1e-3}, {"name": "sgd", "lr": 1e-3, "momentum": 0.0}],
                         "seeds": [0]}]
    if steps is not None:
        cfg["steps"] = int(steps)
        cfg["eval_every"] = max(1, min(cfg["eval_every"], int(steps)))
    return cfg


#: the study's preset grids by name (``seglab sweep --preset NAME``)
PRESETS = {"chlebus2018": chlebus2018, "chlebus2018-faithful": chlebus2018_faithful}
