"""Training: one run = model × task × loss × optimizer × seed × steps × batch size, given as a frozen
:class:`RunSpec`; the one :class:`Trainer` returns a :class:`RunRecord`.

Example::

    from seglab.train import RunSpec, Trainer
    rec = Trainer().run(RunSpec(loss="dice[include_background=false]", task="threshold", task_kw={"fg_ratio": 0.95},
                                model="tiny", model_kw={"norm": None}, optimizer="adam", lr=1e-3,
                                steps=2000, batch_size=2, seed=0))
    rec.summary["converged"], rec.steps["train_loss"][:5], rec.evals[-1]["dice"]

"""

from .config import ConfigError, RunSpec, TaskFacts, resolve, validate_runs
from .distributed import DistInfo
from .evaluate import convergence, evaluate, meets
from .loop import summarize, train_run
from .record import RunRecord
from .specs import build_loss, default_monitors, resolve_loss
from .trainer import Trainer

__all__ = [
    "RunSpec", "RunRecord", "TaskFacts", "Trainer", "ConfigError", "DistInfo",
    "train_run", "validate_runs", "resolve", "summarize", "evaluate", "convergence", "meets",
    "build_loss", "default_monitors", "resolve_loss",
]
