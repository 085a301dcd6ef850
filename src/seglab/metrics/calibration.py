"""Calibration of predicted probabilities: expected calibration error (ECE) and reliability-diagram bins.

**Multiclass (top-label).** Every kept pixel is one prediction with confidence ``conf = max_c p_c`` and
correctness ``correct = [argmax_c p_c == target]``. The confidences are put in ``M`` equal-width bins
``B_m = [(m-1)/M, m/M)`` (the last bin also holds ``conf = 1``), and

    ECE = sum_m (|B_m| / n) * | acc(B_m) - conf(B_m) |          (L1 norm)

with ``acc(B_m)`` the fraction of correct predictions in the bin, ``conf(B_m)`` their mean confidence and
``n`` the number of kept pixels. This is torchmetrics' ``MulticlassCalibrationError(norm="l1")`` (Guo et al.
2017), with one difference of convention: torchmetrics puts a confidence of exactly 1.0 into an extra,
``M+1``-th bin of its own, seglab into the last bin — and a saturated softmax gives exactly 1.0 often.

**Binary / multilabel (positive class).** Every kept pixel-channel is one prediction of "positive" with
probability ``p``: the bins are over ``p`` and ``acc(B_m)`` is the fraction of positive targets in the bin —
the usual binary reliability diagram (torchmetrics ``BinaryCalibrationError``, scikit-learn
``calibration_curve``), not top-label.

Inputs are probabilities, not logits: pass ``seglab.activations.activate(logits, mode)`` (softmax for
``multiclass``, sigmoid otherwise). The state of :class:`CalibrationError` is three float64 sums per bin
(count, Σ confidence, Σ correct), all-reduced across processes, so the ECE of several processes equals the
ECE of one process seeing all data.

>>> probs = torch.tensor([[[0.9, 0.6]], [[0.1, 0.4]]]).unsqueeze(0)   # (N=1, C=2, 1, 2)
>>> target = torch.tensor([[[0, 1]]])                                  # (N=1, 1, 2)
>>> b = reliability_bins(probs, target, n_bins=10)
>>> round(b.ece, 4)                          # (|1 - 0.9| + |0 - 0.6|) / 2
0.35
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from seglab._checks import check_ignore_index, check_mode
from seglab.metrics.stateful import SumsMetric

SUM_TOLERANCE = 1e-2  # multiclass: |sum_c p_c - 1| allowed for 16-bit probabilities; a tenth of it otherwise


def check_n_bins(n_bins: object) -> int:
    """``n_bins``: an integer >= 1."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be an integer >= 1, got {n_bins!r} ({type(n_bins).__name__})")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    return int(n_bins)


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin sums of a reliability diagram and the ECE they give.

    Attributes:
        edges: ``(M+1,)`` float64 bin edges ``0, 1/M, ..., 1``.
        count: ``(M,)`` float64 number of predictions in each bin.
        confidence: ``(M,)`` mean confidence of each bin (NaN where the bin is empty).
        accuracy: ``(M,)`` fraction correct (multiclass) or positive (binary/multilabel) in each bin (NaN if empty).
        ece: expected calibration error, ``sum_m count_m / n * |accuracy_m - confidence_m|`` (NaN when n = 0).
    """

    edges: torch.Tensor
    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor
    ece: float

    @property
    def n_bins(self) -> int:
        return int(self.count.numel())

    @property
    def total(self) -> int:
        """Number of predictions (kept pixels, or pixel-channels for binary/multilabel)."""
        return int(self.count.sum().item())

    @property
    def mce(self) -> float:
        """Maximum calibration error over the non-empty bins (torchmetrics ``norm="max"``)."""
        gap = (self.accuracy - self.confidence).abs()
        gap = gap[~gap.isnan()]
        return float(gap.max()) if gap.numel() else math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: lists of floats (``None`` for empty bins' confidence/accuracy)."""
        def listed(t: torch.Tensor) -> list[float | None]:
            return [None if math.isnan(v) else v for v in t.tolist()]

        return {"n_bins": self.n_bins, "ece": self.ece, "mce": self.mce, "edges": self.edges.tolist(),
                "count": self.count.tolist(), "confidence": listed(self.confidence), "accuracy": listed(self.accuracy)}

    @classmethod
    def from_sums(cls, sums: torch.Tensor) -> ReliabilityBins:
        """From a ``(3, M)`` tensor of per-bin sums: count, Σ confidence, Σ correct (the stateful metric's state)."""
        sums = sums.double()
        count, conf_sum, correct_sum = sums[0], sums[1], sums[2]
        n = float(count.sum())
        nonempty = count > 0
        safe = count.clamp_min(1)
        nan = torch.full_like(count, math.nan)
        confidence = torch.where(nonempty, conf_sum / safe, nan)
        accuracy = torch.where(nonempty, correct_sum / safe, nan)
        ece = float((correct_sum - conf_sum).abs().sum() / n) if n > 0 else math.nan  # |B|/n * |acc - conf|
        edges = torch.linspace(0, 1, count.numel() + 1, dtype=torch.float64)
        return cls(edges=edges, count=count.cpu(), confidence=confidence.cpu(), accuracy=accuracy.cpu(), ece=ece)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _predictions(probs: torch.Tensor, target: torch.Tensor, mode: str,
                 ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ``(confidence, correct)`` of the kept predictions, after checking the inputs."""
    for name, t in (("probs", probs), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor of probabilities, got dtype {probs.dtype}")
    if target.is_complex():
        raise TypeError(f"target must be a real tensor, got dtype {target.dtype}")
    if probs.ndim < 2:
        raise ValueError(f"probs must have shape (N, C, *spatial), got {_shape(probs)}")
    if mode == "multiclass":
        return _multiclass_predictions(probs, target, ignore_index)
    if target.shape != probs.shape:
        raise ValueError(f"target must have the shape of probs {_shape(probs)} for mode={mode!r}, got {_shape(target)}")
    p, t = probs.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    _check_range(p)
    if t.numel() and bool(((t != 0) & (t != 1)).any()):
        raise ValueError(f"target values must be 0 or 1 for mode={mode!r}"
                         + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    return p, t.bool()


def _multiclass_predictions(probs: torch.Tensor, target: torch.Tensor,
                            ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_predictions` for softmax probabilities ``(N, C, *spatial)`` and a class map: the top-class
    confidence and whether the top class is the target's."""
    if target.ndim == probs.ndim and target.ndim >= 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != probs.shape[:1] + probs.shape[2:]:
        raise ValueError(f"target must be a class map of shape (N, *spatial) = "
                         f"{_shape(probs)[:1] + _shape(probs)[2:]} for probs {_shape(probs)}, got {_shape(target)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must be an integer class map for mode='multiclass', got dtype {target.dtype}")
    c = probs.shape[1]
    if c < 2:
        raise ValueError(f"probs must have C >= 2 channels for mode='multiclass' (use mode='binary' for one "
                         f"sigmoid channel), got {_shape(probs)}")
    p = probs.movedim(1, -1).reshape(-1, c)
    t = target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    _check_range(p)
    tol = SUM_TOLERANCE if p.element_size() < 4 else SUM_TOLERANCE / 10
    if p.numel() and bool(((p.sum(1, dtype=torch.float64) - 1).abs() > tol).any()):
        worst = float((p.sum(1, dtype=torch.float64) - 1).abs().max())
        raise ValueError(f"probs must sum to 1 over the channel dim 1 for mode='multiclass' (largest deviation "
                         f"{worst:.3g}); pass softmax probabilities (seglab.activations.activate(logits, mode))")
    if t.numel() and bool(((t < 0) | (t >= c)).any()):
        raise ValueError(f"target values must lie in [0, {c})"
                         + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    conf, pred = p.max(dim=1)
    return conf, (pred == t)


def _check_range(p: torch.Tensor) -> None:
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):  # NaN fails too
        raise ValueError("probs must be probabilities in [0, 1] (no NaN); pass softmax/sigmoid outputs "
                         "(seglab.activations.activate(logits, mode)), not logits")


def bin_sums(probs: torch.Tensor, target: torch.Tensor, *, mode: str = "multiclass", n_bins: int = 15,
             ignore_index: int | None = None) -> torch.Tensor:
    """Per-bin sums ``(3, n_bins)`` float64 — count, Σ confidence, Σ correct — of one batch (summable across batches).

    Bin of a confidence ``c``: ``m`` with ``edges[m] <= c < edges[m+1]``, ``edges = linspace(0, 1, n_bins + 1)`` in
    ``c``'s dtype (as torchmetrics), ``c = 1`` in the last bin. Inputs: see :func:`reliability_bins`.
    """
    mode = check_mode(mode)
    n_bins = check_n_bins(n_bins)
    ignore_index = check_ignore_index(ignore_index)
    conf, correct = _predictions(probs, target, mode, ignore_index)
    if conf.element_size() < 4:  # float16/bfloat16: bin in float32, as torchmetrics (the values are unchanged)
        conf = conf.float()
    with torch.no_grad():
        edges = torch.linspace(0, 1, n_bins + 1, dtype=conf.dtype, device=conf.device)
        idx = (torch.bucketize(conf, edges, right=True) - 1).clamp_(0, n_bins - 1)
        sums = torch.zeros(3, n_bins, dtype=torch.float64, device=conf.device)
        sums[0].index_add_(0, idx, torch.ones_like(conf, dtype=torch.float64))
        sums[1].index_add_(0, idx, conf.double())
        sums[2].index_add_(0, idx, correct.double())
    return sums


def reliability_bins(probs: torch.Tensor, target: torch.Tensor, *, mode: str = "multiclass", n_bins: int = 15,
                     ignore_index: int | None = None) -> ReliabilityBins:
    """Reliability-diagram bins and ECE of probabilities against a target (formula: module docstring).

    Args:
        probs: ``(N, C, *spatial)`` probabilities — softmax over dim 1 for ``multiclass`` (each pixel sums to 1),
            per-channel sigmoid for ``binary``/``multilabel``. Any float dtype.
        target: ``multiclass``: integer class map ``(N, *spatial)`` (or ``(N, 1, *spatial)``) with values in
            ``[0, C)``; ``binary``/``multilabel``: ``(N, C, *spatial)`` of 0/1 (integer, bool or float).
        mode: ``"multiclass"`` (top-label) or ``"binary"``/``"multilabel"`` (positive class, per pixel-channel).
        n_bins: number of equal-width bins (default 15, as torchmetrics).
        ignore_index: target value of pixels (pixel-channels) left out.

    Returns:
        :class:`ReliabilityBins` (``edges``, ``count``, ``confidence``, ``accuracy``, ``ece``, ``mce``).

    Example:
        >>> p = torch.softmax(torch.randn(2, 3, 8, 8), dim=1)
        >>> y = torch.randint(0, 3, (2, 8, 8))
        >>> b = reliability_bins(p, y, n_bins=10)
        >>> b.count.shape, b.total
        (torch.Size([10]), 128)
    """
    return ReliabilityBins.from_sums(bin_sums(probs, target, mode=mode, n_bins=n_bins, ignore_index=ignore_index))


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, *, mode: str = "multiclass",
                               n_bins: int = 15, ignore_index: int | None = None) -> float:
    """Expected calibration error (L1, equal-width bins) of ``probs`` against ``target``; NaN if no pixel is kept.

    ``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`` — top-label for ``multiclass``, positive class for
    ``binary``/``multilabel``; inputs and bins as :func:`reliability_bins`. In ``[0, 1]``; 0 is perfectly calibrated.

    Example:
        >>> p = torch.tensor([[[0.8, 0.3], [0.2, 0.7]]])     # (N=1, C=2, W=2): predicts 0 (conf 0.8), 1 (conf 0.7)
        >>> y = torch.tensor([[0, 0]])                         # first right, second wrong
        >>> round(expected_calibration_error(p, y), 4)         # two bins: (|1 - 0.8| + |0 - 0.7|) / 2
        0.45
        >>> round(expected_calibration_error(p, y, n_bins=1), 4)   # one bin: |1/2 - 0.75|
        0.25
    """
    return reliability_bins(probs, target, mode=mode, n_bins=n_bins, ignore_index=ignore_index).ece


def adaptive_calibration_error(probs: torch.Tensor, target: torch.Tensor, *, mode: str = "multiclass",
                               n_bins: int = 15, ignore_index: int | None = None) -> float:
    """Adaptive calibration error (top-label, equal-mass bins; Nixon et al. 2019, "Measuring calibration in deep
    learning"): the kept predictions sorted by confidence are cut into ``n_bins`` ranges of (nearly) equal count,
    and ``ACE = mean_r |acc(r) - conf(r)|``. Unlike :func:`expected_calibration_error`'s equal-width bins, no bin is
    almost empty where confidences crowd near 1. Inputs as :func:`reliability_bins`; NaN if no pixel is kept.

    Example:
        >>> p = torch.tensor([[[0.8, 0.3, 0.6, 0.9], [0.2, 0.7, 0.4, 0.1]]])   # confidences 0.8, 0.7, 0.6, 0.9
        >>> y = torch.tensor([[0, 0, 0, 0]])                                  # right, wrong, right, right
        >>> round(adaptive_calibration_error(p, y, n_bins=2), 4)   # (|1/2 - 0.65| + |1 - 0.85|) / 2
        0.15
    """
    nb = check_n_bins(n_bins)
    conf, correct = _predictions(probs, target, mode, ignore_index)
    if conf.numel() == 0:
        return float("nan")
    order = torch.argsort(conf.double(), stable=True)
    conf, correct = conf.double()[order], correct.double()[order]
    gaps = [abs(float(a.mean()) - float(c.mean())) for c, a in zip(torch.tensor_split(conf, nb),
                                                                   torch.tensor_split(correct, nb), strict=True)
            if c.numel()]
    return sum(gaps) / len(gaps)


class CalibrationError(SumsMetric):
    """ECE and reliability bins over all updates; the state is the per-bin sums of :func:`bin_sums`.

    ``update(probs, target)`` per batch, ``compute()`` → ECE as a float64 scalar tensor, ``bins()`` →
    :class:`ReliabilityBins`. Under ``torch.distributed`` (``sync=True``) both all-reduce the sums of
    ``process_group`` first (every process must call them).

    >>> m = CalibrationError(mode="multiclass", n_bins=10)
    >>> m.update(torch.tensor([[[0.9]], [[0.1]]]).unsqueeze(0), torch.tensor([[[0]]]))
    >>> m.update(torch.tensor([[[0.6]], [[0.4]]]).unsqueeze(0), torch.tensor([[[1]]]))
    >>> round(m.compute().item(), 4)
    0.35
    """

    def __init__(self, mode: str = "multiclass", n_bins: int = 15, *, ignore_index: int | None = None,
                 process_group: Any = None, sync: bool = True) -> None:
        self.mode = check_mode(mode)
        self.n_bins = check_n_bins(n_bins)
        self.ignore_index = check_ignore_index(ignore_index)
        super().__init__(process_group=process_group, sync=sync)

    def _shape(self) -> tuple[int, int]:
        return (3, self.n_bins)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` are probabilities ``(N, C, *spatial)`` (see :func:`reliability_bins`)."""
        s = bin_sums(pred, target, mode=self.mode, n_bins=self.n_bins, ignore_index=self.ignore_index)
        self._follow(s.device)
        self._sums += s

    def bins(self) -> ReliabilityBins:
        return ReliabilityBins.from_sums(self._synced())

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.bins().ece, dtype=torch.float64)

    def _config(self) -> tuple[Any, ...]:
        return (self.mode, self.n_bins, self.ignore_index)
