"""Cross-entropy: softmax CE for single-label multi-class, BCE-with-logits for multi-label and binary."""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from seglab import _checks
from seglab.kernels.plan import FusedStats, StatsRequest
from seglab.losses._pipeline import Options, Term, run_terms
from seglab.losses._reduce import reduce_pixels
from seglab.losses.base import LOSSES, Loss, to_device
from seglab.targets import Target, check_dense_values, check_labels, plain


def channel_view(w: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-channel 1-D weight ``(C,)`` to ``(C, 1, ..., 1)`` so it broadcasts over ``(N, C, *spatial)``."""
    return w.view(-1, *([1] * (ndim - 2)))


#: largest accepted ``clip_eps``: probabilities are clipped to ``[eps, 1 - eps]``, an empty range from 0.5 on
MAX_CLIP_EPS = 0.5


def check_ce_options(*, mode: str, class_weights: Any = None, pos_weight: Any = None, ignore_index: Any = None,
                     label_smoothing: Any = 0.0, reduction: Any = "mean", clip_eps: Any = 0.0,
                     copy: bool = False) -> Options:
    """Cross-entropy's options, checked (called by :class:`CrossEntropyLoss` and :func:`cross_entropy`)."""
    mode = _checks.check_mode(mode)
    if pos_weight is not None and mode == "multiclass":
        raise ValueError("pos_weight applies to sigmoid outputs (mode='multilabel' or 'binary'); for softmax use class_weights")
    clip = 0.0 if clip_eps is None else _checks.check_number("clip_eps", clip_eps, low=0.0, high=MAX_CLIP_EPS,
                                                               high_open=True)
    return dict(mode=mode, class_weights=_checks.as_weight(class_weights, "class_weights", copy=copy),
                pos_weight=_checks.as_weight(pos_weight, "pos_weight", copy=copy),
                ignore_index=_checks.check_ignore_index(ignore_index),
                label_smoothing=_checks.check_number("label_smoothing", label_smoothing, low=0.0, high=1.0),
                reduction=_checks.check_reduction(reduction), clip_eps=clip)


def _clipped_reference(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    """CE on probabilities clipped to ``[eps, 1 - eps]`` (Keras / the Chlebus 2018 study): the log of the clipped
    softmax (sigmoid) probability in place of ``log_softmax`` (``logsigmoid``); its gradient is 0 where a
    probability is clipped. Weights, label smoothing, ``ignore_index`` and the ``"mean"`` denominators as the
    unclipped loss."""
    eps, mode, reduction, ls = o["clip_eps"], o["mode"], o["reduction"], o["label_smoothing"]
    cw = to_device(o["class_weights"], x)
    if mode == "multiclass":
        logp = torch.softmax(x, 1).clamp(eps, 1.0 - eps).log()
        c = x.shape[1]
        wlogp = logp if cw is None else logp * channel_view(cw, x.ndim)
        if tgt.is_index:
            idx = tgt.labels if tgt.valid is None else tgt.labels.masked_fill(~tgt.valid, 0)
            loss = -wlogp.gather(1, idx.unsqueeze(1)).squeeze(1)
            if ls:
                loss = (1.0 - ls) * loss - (ls / c) * wlogp.sum(1)
            w_t = torch.ones_like(loss) if cw is None else cw[idx]
            if tgt.valid is not None:
                loss, w_t = loss * tgt.valid, w_t * tgt.valid
            if reduction != "mean":
                return reduce_pixels(loss, reduction, tgt.valid)
            return reduce_pixels(loss, reduction, tgt.valid, denom=w_t.sum())
        y = tgt.y if not ls else tgt.y * (1.0 - ls) + ls / c
        loss = -(y * wlogp).sum(1)
        if tgt.valid is not None:
            loss = loss * tgt.valid
        return reduce_pixels(loss, reduction, tgt.valid)
    y = tgt.y
    if ls:
        y = y * (1.0 - ls) + 0.5 * ls
    p = torch.sigmoid(x)
    pos, neg = p.clamp(eps, 1.0 - eps).log(), (1.0 - p).clamp(eps, 1.0 - eps).log()
    pw = to_device(o["pos_weight"], x)
    loss = -((y * pos) if pw is None else (channel_view(pw, x.ndim) * y * pos)) - (1.0 - y) * neg
    if cw is not None:
        loss = loss * channel_view(cw, x.ndim)
    if tgt.valid is not None:
        loss = loss * tgt.valid
    return reduce_pixels(loss, reduction, tgt.valid)


class _CrossEntropyTerm(Term):
    weight_options = ("class_weights", "pos_weight")

    def request(self, o: Options) -> StatsRequest | None:
        if o["reduction"] == "none" or o["clip_eps"]:
            return None  # no fused kernel clips probabilities: the reference code runs
        return StatsRequest(mode=o["mode"], ignore_index=o["ignore_index"], ce=True, ce_weight=o["class_weights"],
                            pos_weight=o["pos_weight"], label_smoothing=o["label_smoothing"])

    def from_fused(self, fs: FusedStats, o: Options) -> torch.Tensor:
        if o["reduction"] == "sum":
            return fs.ce_sum
        return fs.ce_sum / fs.ce_norm.clamp_min(torch.finfo(fs.ce_sum.dtype).tiny)

    def reference(self, x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
        if o["clip_eps"]:
            return _clipped_reference(x, tgt, o)
        mode, reduction, label_smoothing = o["mode"], o["reduction"], o["label_smoothing"]
        cw = to_device(o["class_weights"], x)
        if mode == "multiclass":
            if tgt.is_index:
                idx = tgt.labels if tgt.valid is None else tgt.labels.masked_fill(~tgt.valid, -100)
                loss = F.cross_entropy(x, idx, weight=cw, ignore_index=-100, reduction="none", label_smoothing=label_smoothing)
                if reduction != "mean":
                    return reduce_pixels(loss, reduction, tgt.valid)
                w_t = torch.ones_like(loss) if cw is None else cw[tgt.labels]
                if tgt.valid is not None:
                    w_t = w_t * tgt.valid
                return reduce_pixels(loss, reduction, tgt.valid, denom=w_t.sum())
            loss = F.cross_entropy(x, tgt.y, weight=cw, reduction="none", label_smoothing=label_smoothing)
            if tgt.valid is not None:
                loss = loss * tgt.valid
            return reduce_pixels(loss, reduction, tgt.valid)
        y = tgt.y
        if label_smoothing:
            y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing
        pw = to_device(o["pos_weight"], x)
        loss = F.binary_cross_entropy_with_logits(
            x, y,
            weight=None if cw is None else channel_view(cw, x.ndim),
            pos_weight=None if pw is None else channel_view(pw, x.ndim),
            reduction="none",
        )
        if tgt.valid is not None:
            loss = loss * tgt.valid
        return reduce_pixels(loss, reduction, tgt.valid)


CROSS_ENTROPY = _CrossEntropyTerm()


#: torch's ``ignore_index`` when seglab's is None: a label no class map holds, so that torch ignores nothing and
#: reports -100 (its default ignore value) as out of range, as seglab does
_NO_IGNORE = -(2**63)
_NATIVE_DTYPES = (torch.float32, torch.float64)


def _native_ready(logits: Any, target: Any, o: Options) -> bool:
    """Whether torch's own op computes exactly this loss (no option torch lacks, no conversion of the inputs):
    float32/float64 logits; multiclass with an int64 class map, sigmoid modes with a float target of the logits'
    dtype and no ``ignore_index``; ``reduction`` mean or sum, no ``clip_eps``; eager (under ``torch.compile`` the
    pipeline runs, with its checks as ops). Shapes are left to torch's op: an error there sends the call to the
    pipeline, which words it."""
    if type(logits) is not torch.Tensor or type(target) is not torch.Tensor or o["clip_eps"]:
        return False
    if o["reduction"] == "none" or logits.dtype not in _NATIVE_DTYPES or torch.compiler.is_compiling():
        return False
    if o["mode"] == "multiclass":
        return target.dtype == torch.int64 and target.ndim == logits.ndim - 1 and 3 <= logits.ndim <= 5
    return o["ignore_index"] is None and target.dtype == logits.dtype and 2 <= logits.ndim <= 5 and not (
        target.requires_grad)


def native_cross_entropy(logits: Any, target: Any, o: Options, validate: bool | None) -> torch.Tensor | None:
    """Plain cross-entropy through torch's own op (``F.cross_entropy`` / ``F.binary_cross_entropy_with_logits``),
    with seglab's checks kept cheap; None where the options or inputs need seglab's pipeline (the caller runs it).

    The value is torch's, which is seglab's definition of this loss (see :func:`cross_entropy`). Checks, validation
    on: the target's values (sigmoid: one ``aminmax``, in [0, 1]); the logits are checked through the loss value — a
    non-finite logit that reaches the loss makes it non-finite, and only then does the pipeline scan the logits
    (seglab's error). Non-finite logits the loss never reads (a ``-inf`` of a class that is not the target's, an
    ignored pixel) are not reported on this path. Labels are bounds-checked whatever the validation setting: by
    torch's op on CPU (an error there sends the call to the pipeline, whose checks word it), with one ``aminmax`` on
    other devices. A non-finite value whose cause is not the logits (every pixel ignored, zero class weights:
    seglab's mean is then 0, torch's NaN) is also left to the pipeline, which computes seglab's value.
    """
    if not _native_ready(logits, target, o):
        return None
    v = _checks.resolve(validate)
    cw = o["class_weights"]
    if cw is not None:
        if cw.shape[0] != logits.shape[1] or cw.device != logits.device:
            return None  # the pipeline words the error
        if cw.dtype != logits.dtype:
            cw = cw.to(logits.dtype)
    try:
        if o["mode"] == "multiclass":
            ign = o["ignore_index"]
            if logits.device.type != "cpu":  # no device-side assert: check before the op
                check_labels(target, logits.shape[1], ign)
            loss = F.cross_entropy(logits, target, weight=cw, ignore_index=_NO_IGNORE if ign is None else ign,
                                   reduction=o["reduction"], label_smoothing=o["label_smoothing"])
            may_be_nan = v or ign is not None or cw is not None
        else:
            bce = _native_bce(logits, target, o, cw, v)
            if bce is None:
                return None
            loss, may_be_nan = bce, v
    except (IndexError, RuntimeError, ValueError):  # a label out of range, a shape torch refuses
        return None
    if may_be_nan and not math.isfinite(loss.item()):
        return None  # the pipeline checks the logits (seglab's error) or computes seglab's value
    return loss


def _native_bce(logits: torch.Tensor, target: torch.Tensor, o: Options, cw: torch.Tensor | None,
                validate: bool) -> torch.Tensor | None:
    """``F.binary_cross_entropy_with_logits`` with seglab's weights and smoothing; None (the pipeline) for a target
    whose shape it must word; a target outside [0, 1] raises the pipeline's error."""
    y = target
    if y.shape != logits.shape:
        if o["mode"] != "binary" or y.ndim != logits.ndim - 1 or y.shape != logits[:, 0].shape:
            return None
        y = y.unsqueeze(1)
    if validate and y.numel():
        check_dense_values(y, o["mode"], None, None)  # the pipeline's check of a sigmoid target, same error
    pw = o["pos_weight"]
    if pw is not None:
        if pw.shape[0] != logits.shape[1] or pw.device != logits.device:
            return None
        pw = channel_view(pw.to(logits.dtype), logits.ndim)
    ls = o["label_smoothing"]
    if ls:
        y = y * (1.0 - ls) + 0.5 * ls
    return F.binary_cross_entropy_with_logits(logits, y, weight=None if cw is None else channel_view(cw, logits.ndim),
                                              pos_weight=pw, reduction=o["reduction"])


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    pos_weight: Sequence[float] | torch.Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    clip_eps: float = 0.0,
    validate: bool | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy from logits ``(N, C, *spatial)``, in log space (no clipped probabilities unless ``clip_eps``).

    * ``multiclass``: ``l = -sum_c w_c * y_c * log_softmax(x)_c``; with an index target ``t``,
      ``l = -w_t * log_softmax(x)_t`` and ``"mean"`` divides by ``sum w_t`` over kept pixels — exactly
      ``torch.nn.functional.cross_entropy``. Soft/one-hot targets: ``"mean"`` divides by the number of kept pixels.
    * ``multilabel`` / ``binary``: ``l = -w_c [pos_weight_c * y log sigmoid(x) + (1 - y) log sigmoid(-x)]`` per
      element, ``"mean"`` over kept elements — ``binary_cross_entropy_with_logits`` with the weights reshaped to
      ``(C, 1, ..., 1)`` so they broadcast over every spatial dim.

    ``label_smoothing`` ε: multiclass as torch (``y <- (1 - ε) y + ε / C``); multilabel ``y <- (1 - ε) y + ε / 2``.
    Pixels (or, multilabel, elements) equal to ``ignore_index`` contribute nothing; if all are ignored the mean is 0.
    ``reduction="none"`` returns ``(N, *spatial)`` (multiclass) or ``(N, C, *spatial)``.

    ``clip_eps`` ε > 0 (default 0: off) computes the log of the probability clipped to ``[ε, 1 - ε]`` instead:
    ``l = -sum_c w_c y_c log(clip(softmax(x)_c, ε, 1 - ε))`` (sigmoid: ``clip(sigmoid(x))`` and
    ``clip(1 - sigmoid(x))``), as Keras' ``categorical_crossentropy`` and the Chlebus (2018) study's CCE
    (``ε = 1e-7``, vocabulary name ``study_cce_clip``). Each pixel's loss is then at most ``-log ε`` (16.1 for
    1e-7) and its gradient is 0 where the probability is clipped, so a collapsed network's CE saturates instead
    of growing. It has no fused kernel (the reference code runs); everything else (weights, smoothing,
    ``ignore_index``, reductions) is as without it. ``ε`` must be in ``[0, 0.5)``.

    Example:
        >>> x, t = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> bool(torch.isclose(cross_entropy(x, t, mode="multiclass"), torch.nn.functional.cross_entropy(x, t)))
        True
    """
    o = check_ce_options(mode=mode, class_weights=class_weights, pos_weight=pos_weight, ignore_index=ignore_index,
                         label_smoothing=label_smoothing, reduction=reduction, clip_eps=clip_eps)
    if mask is None:
        loss = native_cross_entropy(plain(logits), plain(target), o, validate)
        if loss is not None:
            return loss
    return run_terms([(CROSS_ENTROPY, o)], logits, target, validate=validate, mask=mask)[0]


@LOSSES.register("ce")
class CrossEntropyLoss(Loss):
    """Cross-entropy for segmentation: softmax CE (``multiclass``) or BCE-with-logits (``multilabel``/``binary``).

    Formula: see :func:`cross_entropy`. Shapes: logits ``(N, C, *spatial)`` (0–3 spatial dims); target an int
    class map ``(N, *spatial)`` or a float ``(N, C, *spatial)`` map (multiclass), float ``(N, C, *spatial)`` in
    [0, 1] (multilabel), ``(N, 1, *spatial)`` or ``(N, *spatial)`` (binary). ``class_weights`` and
    ``pos_weight`` are 1-D ``(C,)`` and broadcast over all spatial dims (stored as buffers). ``clip_eps`` > 0
    clips the probabilities to ``[clip_eps, 1 - clip_eps]`` (Keras / the Chlebus 2018 study; reference path).

    Example:
        >>> loss = CrossEntropyLoss("multilabel", pos_weight=torch.tensor([3.0, 20.0]))
        >>> loss(torch.randn(2, 2, 64, 64), torch.randint(0, 2, (2, 2, 64, 64)).float())
    """

    name = "ce"
    description = "cross-entropy: softmax CE (multiclass), BCE-with-logits (binary/multilabel)"
    term = CROSS_ENTROPY
    fn = staticmethod(cross_entropy)

    def __init__(
        self,
        mode: str,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        pos_weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        clip_eps: float = 0.0,
    ) -> None:
        super().__init__(mode, reduction)
        self._configure(check_ce_options(mode=mode, class_weights=class_weights, pos_weight=pos_weight,
                                         ignore_index=ignore_index, label_smoothing=label_smoothing,
                                         reduction=reduction, clip_eps=clip_eps, copy=True))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Torch's own op where it computes this loss (:func:`native_cross_entropy`), else the shared pipeline."""
        if mask is None:
            loss = native_cross_entropy(plain(logits), plain(target), self.options(), None)
            if loss is not None:
                return loss
        return super().forward(logits, target, mask)
