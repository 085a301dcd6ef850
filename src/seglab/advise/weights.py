"""Class-weight methods: pure functions of per-class pixel counts (and image pixel totals).

Zero-count policy (all methods): a class with no pixel gets weight ``0.0`` — never ``inf`` or ``NaN`` — and is
left out of every normalisation and median below ("present" classes are those with a nonzero count). The
model cannot learn such a class from the data; :func:`zero_count_warnings` phrases that for the advice.

- :func:`inverse_frequency`: ``w_c = N / (C * n_c)`` with ``N`` the total count over present classes and ``C``
  the number of present classes, then rescaled so the present weights average to 1.
- :func:`median_frequency`: median-frequency balancing (Eigen & Fergus, ICCV 2015):
  ``w_c = median(freq) / freq_c`` with ``freq_c = n_c / T_c``, ``T_c`` the total pixels of the images where
  class ``c`` is present. Not rescaled (a class at the median frequency gets weight 1).
- :func:`effective_number`: class-balanced weights of Cui et al. (CVPR 2019):
  ``w_c = (1 - beta) / (1 - beta ** n_c)``, rescaled so the present weights sum to ``C`` (present classes).
  With pixel counts, ``beta ** n_c`` vanishes once ``n_c >> 1 / (1 - beta)`` (about 46k pixels for the
  default ``beta = 0.9999``): every large class then gets the same weight — the effective number saturates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: cap on emitted class weights and pos_weight. A weight w multiplies that class's share of the CE gradient by w;
#: far above ~50, a handful of (possibly mislabelled) pixels of a tiny class dominate every batch that holds
#: them and early training swings. ENet's class weighting (Paszke et al. 2016) is bounded at 50 for this
#: reason. (Its evidence status: docs/advise_evidence.md#weight-cap.)
MAX_WEIGHT = 50.0
METHODS = ("inverse", "median", "effective")
METHOD_NAMES = {
    "inverse": "inverse frequency",
    "median": "median-frequency balancing (Eigen & Fergus 2015)",
    "effective": "effective number of samples (Cui et al. 2019)",
}


def _counts(pixel_counts: Sequence[float] | np.ndarray) -> np.ndarray:
    n = np.asarray(pixel_counts, dtype=np.float64).reshape(-1)
    if n.size == 0:
        raise ValueError("class weights need at least one class count")
    if np.any(n < 0) or not np.all(np.isfinite(n)):
        raise ValueError(f"class counts must be finite and >= 0, got {n.tolist()}")
    return n


def inverse_frequency(pixel_counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Inverse-frequency weights, averaging 1 over the classes present; 0 for absent classes."""
    n = _counts(pixel_counts)
    present = n > 0
    w = np.zeros_like(n)
    if not present.any():
        return w
    w[present] = n[present].sum() / (present.sum() * n[present])
    w[present] /= w[present].mean()
    return w


def median_frequency(pixel_counts: Sequence[float] | np.ndarray, image_pixel_totals: Sequence[float] | np.ndarray) -> np.ndarray:
    """Median-frequency balancing: ``median(freq) / freq_c``, ``freq_c = n_c / T_c``; 0 for absent classes.

    ``image_pixel_totals[c]`` is ``T_c``, the summed pixel count of the images in which class ``c`` appears.
    """
    n = _counts(pixel_counts)
    t = np.asarray(image_pixel_totals, dtype=np.float64).reshape(-1)
    if t.shape != n.shape:
        raise ValueError(f"pixel_counts and image_pixel_totals differ in length: {n.size} vs {t.size}")
    present = n > 0
    if np.any(t[present] < n[present]):
        raise ValueError("image_pixel_totals[c] must be >= pixel_counts[c] (pixels of c lie in images containing c)")
    w = np.zeros_like(n)
    if not present.any():
        return w
    freq = n[present] / t[present]
    w[present] = np.median(freq) / freq
    return w


def effective_number(pixel_counts: Sequence[float] | np.ndarray, beta: float = 0.9999) -> np.ndarray:
    """Class-balanced weights ``(1 - beta) / (1 - beta**n_c)`` summing to the number of present classes."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    n = _counts(pixel_counts)
    present = n > 0
    w = np.zeros_like(n)
    if not present.any():
        return w
    # 1 - beta**n computed as -expm1(n * log(beta)) so that it stays accurate for beta close to 1
    eff = -np.expm1(n[present] * np.log(beta)) if beta > 0 else np.ones(int(present.sum()))
    w[present] = (1.0 - beta) / eff
    w[present] *= present.sum() / w[present].sum()
    return w


def class_weights(method: str, pixel_counts: Sequence[float] | np.ndarray, image_pixel_totals: Sequence[float] | np.ndarray | None = None, beta: float = 0.9999) -> np.ndarray:
    """Dispatch by name: ``"inverse"``, ``"median"`` (needs ``image_pixel_totals``) or ``"effective"``."""
    if method == "inverse":
        return inverse_frequency(pixel_counts)
    if method == "median":
        if image_pixel_totals is None:
            raise ValueError("median-frequency weights need image_pixel_totals")
        return median_frequency(pixel_counts, image_pixel_totals)
    if method == "effective":
        return effective_number(pixel_counts, beta=beta)
    raise ValueError(f"unknown class-weight method {method!r}; expected one of {', '.join(METHODS)}")


def pos_weight(positives: Sequence[float] | np.ndarray, totals: Sequence[float] | np.ndarray | float) -> np.ndarray:
    """Per-channel ``pos_weight = negatives / positives`` for BCE-with-logits.

    A channel with no positive pixel gets ``1.0`` (neutral: there is nothing to up-weight), never ``inf``.
    """
    p = _counts(positives)
    t = np.broadcast_to(np.asarray(totals, dtype=np.float64), p.shape)
    out = np.ones_like(p)
    has = p > 0
    out[has] = (t[has] - p[has]) / p[has]
    return out


def zero_count_warnings(pixel_counts: Sequence[float] | np.ndarray, class_names: Sequence[str]) -> list[str]:
    """One plain-words warning per class with zero pixels (weight set to 0)."""
    n = _counts(pixel_counts)
    return [
        f"class {c} ({class_names[int(c)]}) has no pixel in these masks: its weight is set to 0 (not inf); "
        "the model cannot learn it from this data — if the labels are not contiguous, remap them"
        for c in np.flatnonzero(n == 0)
    ]
