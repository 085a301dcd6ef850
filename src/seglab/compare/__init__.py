"""``seglab compare``: evidence behind a loss choice on the user's own data — paired seeds, intervals.

Every loss is trained with the same seeds (seed ``s`` gives every loss the same initial weights and the
same batches), so the per-seed difference ``a - baseline`` removes the seed-to-seed spread that two
unpaired means would carry. For each alternative and each class the verdict follows docs/analysis_plan.md:
the exact sign-flip p (:func:`seglab.stats.signflip_pvalue`), Holm-adjusted within the run's family for that
endpoint (:func:`seglab.stats.holm`), beside the Student-t 95 % interval; TOST within ``margin``
(:func:`seglab.stats.tost_paired`). Verdicts: ``better``, ``worse``, ``equivalent``, ``inconclusive``
(:func:`seglab.stats.plan_verdict`); the output says when the t-interval and the sign-flip test disagree.
:func:`upgrade` re-reads an older ``compare.json`` under these rules from its per-seed values.

Example::

    from seglab.compare import compare
    cmp = compare(["dice+ce", "ce"], task="shapes", seeds=3, steps=50, out="results/cmp")
    print(cmp.text())                   # ranking and paired differences
    cmp.to_dict()["differences"][0]     # {"a": "ce", "b": "dice + ce", "metric": "fg_dice", "verdict": ...}

:func:`compare_fn` asks the same question of the user's own training code (``seglab compare --fn``): it calls
``run(loss, seed, **opts)`` for every loss x seed and compares every metric the function returns
(:mod:`seglab.compare.fn`; a LightningModule: :mod:`seglab.compare.lightning`).
"""

from .analysis import Comparison, LossResult, assess, upgrade
from .core import ablations, compare
from .fn import FnError, compare_fn

__all__ = ["compare", "compare_fn", "Comparison", "FnError", "LossResult", "ablations", "assess", "upgrade"]
