"""Training: one run = model × task × loss × optimizer × seed × steps × batch size.

Example::

    from seglab.train import RunConfig, train_run
    res = train_run(RunConfig(loss="study_dicefg", task="threshold", task_kw={"fg_ratio": 0.95},
                              model="tiny", model_kw={"norm": None}, optimizer="adam", lr=1e-3,
                              steps=2000, batch_size=2, seed=0))
    res.summary["converged"], res.steps["gnorm/study_cce"][:5], res.evals[-1]["dice"]
"""

from .config import ConfigError, RunConfig, resolve, validate_runs
from .distributed import DistInfo
from .evaluate import convergence, evaluate, meets
from .loop import RunResult, summarize, train_run
from .specs import STUDY_LOSSES, build_loss, default_monitors, resolve_loss

__all__ = [
    "RunConfig", "RunResult", "ConfigError", "DistInfo", "train_run", "validate_runs", "resolve", "summarize",
    "evaluate", "convergence", "meets", "STUDY_LOSSES", "build_loss", "default_monitors", "resolve_loss",
]
