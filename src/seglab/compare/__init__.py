"""``seglab compare``: evidence behind a loss choice on the user's own data — paired seeds, intervals.

Every loss is trained with the same seeds (seed ``s`` gives every loss the same initial weights and the
same batches), so the per-seed difference ``a - baseline`` removes the seed-to-seed spread that two
unpaired means would carry. For each alternative and each class, :func:`seglab.stats.paired_difference`
gives the mean difference with its Student-t 95 % interval and an exact sign-flip p-value; the verdict says
"no evidence of a difference" whenever the interval contains 0.

Example::

    from seglab.compare import compare
    cmp = compare(["dice+ce", "ce"], task="shapes", seeds=3, steps=50, out="results/cmp")
    print(cmp.text())                   # ranking and paired differences
    cmp.to_dict()["differences"][0]     # {"a": "ce", "b": "dice + ce", "metric": "mean_dice", ...}
"""

from .core import Comparison, LossResult, ablations, compare

__all__ = ["compare", "Comparison", "LossResult", "ablations"]
