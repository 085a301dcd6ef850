"""Target handling shared by every loss: one normalised view of the many ways users pass targets.

An index target (integer class map) stays an index tensor: per-class sums are made with
``gather``/``scatter_add``, never by materialising a float one-hot copy of shape ``(N, C, *spatial)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seglab._checks import shape_str

#: the label written into the target at pixels a ``mask`` leaves out, when the loss has no ``ignore_index`` of its
#: own (with one, masked-out pixels take that value): the pipeline then treats them exactly as ignored pixels, on
#: the fused and the reference path alike. Exactly representable in every float dtype a target may have.
MASKED = -32768


def plain(x: Any) -> Any:
    """A MONAI ``MetaTensor`` (any tensor subclass with ``as_tensor()``) as a plain ``torch.Tensor``; else ``x``.

    ``as_tensor()`` keeps the autograd graph (it is ``as_subclass(torch.Tensor)``), so gradients reach the network
    whose output was a MetaTensor. seglab never imports MONAI for this.
    """
    if isinstance(x, torch.Tensor) and type(x) is not torch.Tensor:
        as_tensor = getattr(x, "as_tensor", None)
        if callable(as_tensor):
            return as_tensor()
    return x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses accumulate in float32 for half-precision inputs (float16/bfloat16), else in the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def label_range_error(bad_values: list[int], num_classes: int, ignore_index: int | None) -> ValueError:
    """The error for multiclass index labels outside ``[0, num_classes)`` (that are not ``ignore_index``).

    One message for every place that finds them: :func:`prepare_target` (validation on) and the fused kernels,
    which bounds-check the labels they read whatever the validation setting.
    """
    c = int(num_classes)
    if ignore_index == MASKED:  # the mask's placeholder, not the user's: speak of the mask
        extra, hint = " at the pixels kept by mask", ""
    else:
        extra = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
        hint = "" if ignore_index is not None else "; if they mark pixels to skip, pass ignore_index"
    return ValueError(
        f"multiclass target values must be class indices in [0, {c}) for C={c} logit channels{extra}; "
        f"found values {sorted(set(int(v) for v in bad_values))[:10]}" + hint
    )


def check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Raise :func:`label_range_error` if index ``labels`` hold values outside ``[0, num_classes)`` other than
    ``ignore_index``: one ``aminmax`` pass (ignored pixels may hold ``ignore_index`` or have been zeroed), the
    offending values only looked for on error. The check of :func:`prepare_target` and the eager kernels."""
    if labels.numel() == 0:
        return
    lo_t, hi_t = torch.aminmax(labels.detach())
    c = int(num_classes)
    if int(lo_t) < 0 or int(hi_t) >= c:
        bad = (labels < 0) | (labels >= c)
        if ignore_index is not None:
            bad &= labels != ignore_index
        if bool(bad.any()):
            raise label_range_error(labels[bad].unique().tolist(), c, ignore_index)


@torch.library.custom_op("seglab::check_labels", mutates_args=(),
                         schema="(Tensor labels, int num_classes, int? ignore_index) -> Tensor")
def _check_labels_op(labels: torch.Tensor, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """:func:`check_labels` as an op, for :func:`prepare_target` under ``torch.compile`` (a host-side check in Python
    would break the graph): raises the label-range error at run time, else returns a 0-dim zero of the labels' dtype.
    The caller adds it to the labels, which puts the check in the graph's data flow (an op whose result is unused
    would be removed as dead code) at the cost of one fused add."""
    check_labels(labels, num_classes, ignore_index)
    return labels.new_zeros(())


@_check_labels_op.register_fake
def _(labels, num_classes, ignore_index):
    return labels.new_empty(())


def _is_label_map(logits: torch.Tensor, target: torch.Tensor, mode: str) -> bool:
    """A multiclass float ``(N, 1, *spatial)`` target with C > 1 logits: a label map (MONAI's loaders), never a
    dense target (which has C channels)."""
    return (mode == "multiclass" and target.is_floating_point() and target.ndim == logits.ndim
            and target.shape[1] == 1 and logits.shape[1] > 1 and target.shape[0] == logits.shape[0]
            and target.shape[2:] == logits.shape[2:])


def label_map_to_index(target: torch.Tensor, *, validate: bool) -> torch.Tensor:
    """A float label map ``(N, 1, *spatial)`` as the int64 class map ``(N, *spatial)`` it encodes.

    With validation on, every value must be an integer (class index or ``ignore_index``); with it off, values are
    truncated toward zero as ``Tensor.long()`` does.
    """
    t = target[:, 0]
    if validate and t.numel():
        frac = t.detach() != torch.round(t.detach())  # NaN != NaN: caught too
        if bool(frac.any()):
            bad = t[frac].unique()[:10].tolist()
            raise ValueError(
                "multiclass float target of shape (N, 1, *spatial) is read as a label map (class indices, as MONAI's "
                f"loaders give) and must hold whole numbers; found values {bad}. For soft labels pass probabilities "
                "of shape (N, C, *spatial)")
    return t.long()


def check_mask(mask: Any, logits: torch.Tensor, *, validate: bool) -> torch.Tensor:
    """A spatial mask as a bool tensor ``(N, *spatial)`` (True = the pixel counts).

    Accepted: ``(N, 1, *spatial)`` or ``(N, *spatial)`` (a batch dim of 1 broadcasts over the batch), dtype bool or
    numbers 0/1 (checked when validating; otherwise any non-zero value keeps the pixel). A MONAI MetaTensor is
    unwrapped.
    """
    mask = plain(mask)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool or 0/1) or None, got {type(mask).__name__}")
    n, spatial = logits.shape[0], tuple(logits.shape[2:])
    if mask.device != logits.device:
        raise ValueError(f"mask is on {mask.device} but logits are on {logits.device}; move them to the same device")
    m = mask
    if m.ndim == logits.ndim and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != len(spatial) + 1 or tuple(m.shape[1:]) != spatial or m.shape[0] not in (1, n):
        raise ValueError(
            f"mask must have shape (N, 1, *spatial) or (N, *spatial) = {(n, *spatial)} (a batch dim of 1 broadcasts) "
            f"to match logits {shape_str(logits)}, got {shape_str(mask)}")
    if m.is_complex():
        raise TypeError(f"mask must be bool or real 0/1 values, got dtype {m.dtype}")
    if m.dtype != torch.bool:
        if validate and m.numel():
            odd = (m != 0) & (m != 1)
            if bool(odd.any()):
                raise ValueError(
                    f"mask must hold 0/1 or True/False values (1 = the pixel counts); found values "
                    f"{m[odd].unique()[:10].tolist()}. Per-pixel weights are not a mask")
        m = m != 0
    return m.expand(n, *spatial) if m.shape[0] != n else m


def canonical_target(logits: torch.Tensor, target: Any, mode: str, *, ignore_index: int | None,
                     mask: Any = None, validate: bool) -> tuple[Any, int | None]:
    """The target every path reads, and the ``ignore_index`` that goes with it.

    * a MONAI MetaTensor becomes a plain tensor;
    * multiclass: a float label map ``(N, 1, *spatial)`` with C > 1 logits becomes the int64 class map it encodes
      (:func:`label_map_to_index`), so it runs on the index-target kernels;
    * ``mask``: the pixels it leaves out get the ignore value — ``ignore_index`` if the loss has one, else
      :data:`MASKED` (returned as the new ``ignore_index``) — so every statistic, fused or reference, leaves them
      out exactly as ignored pixels. Index targets become int64 first and dense targets the compute dtype.

    Shape errors are left to :func:`prepare_target`, which words them.
    """
    target = plain(target)
    if not isinstance(target, torch.Tensor):
        return target, ignore_index  # prepare_target words the TypeError
    if _is_label_map(logits, target, mode):
        target = label_map_to_index(target, validate=validate)
    if mask is None:
        return target, ignore_index
    m = check_mask(mask, logits, validate=validate)
    fill = MASKED if ignore_index is None else ignore_index
    n, spatial = logits.shape[0], tuple(logits.shape[2:])
    index = mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool
    if index:
        if target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]
        if tuple(target.shape) != (n, *spatial):
            return target, fill
        return target.long().masked_fill(~m, fill), fill
    if target.device != logits.device:
        return target, fill
    if target.ndim == logits.ndim and target.shape[0] == n and tuple(target.shape[2:]) == spatial:
        mm = m.unsqueeze(1)
    elif mode == "binary" and tuple(target.shape) == (n, *spatial):
        mm = m
    else:
        return target, fill
    if target.dtype == torch.bool and mode == "multiclass":
        return target, fill  # prepare_target refuses it
    t = target.to(compute_dtype(logits.dtype)) if not target.is_floating_point() or target.dtype in (
        torch.float16, torch.bfloat16) else target
    return t.masked_fill(~mm, float(fill)), fill


@dataclass
class Target:
    """A validated target.

    ``index``: ``(N, *spatial)`` int64 class map (multiclass with integer targets); ignored pixels hold 0.
    ``dense``: ``(N, C, *spatial)`` float target (one-hot, soft probabilities, multi-hot); ignored entries hold 0.
    ``valid``: bool mask of kept pixels/elements — ``(N, *spatial)`` for index targets and dense multiclass
    targets, ``(N, C, *spatial)`` for multilabel/binary — or ``None`` when nothing is ignored.
    """

    index: torch.Tensor | None
    dense: torch.Tensor | None
    valid: torch.Tensor | None

    @property
    def is_index(self) -> bool:
        return self.index is not None

    @property
    def labels(self) -> torch.Tensor:
        """The index target (``is_index`` must be True)."""
        if self.index is None:
            raise TypeError("this target is dense, not a class-index map")
        return self.index

    @property
    def y(self) -> torch.Tensor:
        """The dense target (``is_index`` must be False)."""
        if self.dense is None:
            raise TypeError("this target is a class-index map, not dense")
        return self.dense


def prepare_target(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    *,
    ignore_index: int | None = None,
    validate: bool = True,
) -> Target:
    """Check ``target`` against ``logits`` for ``mode`` and return its normalised :class:`Target`.

    Accepted targets (``C`` = logit channels): multiclass — an integer class map ``(N, *spatial)`` or
    ``(N, 1, *spatial)``, a float label map ``(N, 1, *spatial)`` holding class indices (MONAI's convention, C > 1;
    made an index map by :func:`canonical_target`), or a float one-hot / soft ``(N, C, *spatial)``; multilabel —
    ``(N, C, *spatial)`` in [0, 1]; binary (C = 1) — ``(N, 1, *spatial)`` or ``(N, *spatial)`` in [0, 1], never a
    label map (with one channel there is nothing to index).
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}; move them to the same device")
    if mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool:
        return _index_target(logits, target, ignore_index=ignore_index, validate=validate)
    # dense targets: multiclass float (one-hot / soft), multilabel, binary
    if mode == "binary" and target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if mode == "multiclass" and target.dtype == torch.bool:
        raise TypeError("multiclass target must be an integer class map or a float one-hot/soft map, got dtype torch.bool")
    _check_dense_shape(logits, target, mode)
    target = target.to(compute_dtype(logits.dtype))
    target, valid = _mask_dense_ignored(target, mode, ignore_index)
    if validate and target.numel():
        check_dense_values(target, mode, valid, ignore_index)
    return Target(index=None, dense=target, valid=valid)


def _index_target(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None, validate: bool) -> Target:
    """A multiclass integer class map ``(N, *spatial)`` or ``(N, 1, *spatial)`` as an index :class:`Target`
    (ignored pixels set to class 0 and left out by ``valid``; labels bounds-checked)."""
    n, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if tuple(target.shape) != (n, *spatial):
        raise ValueError(
            f"multiclass integer target must have shape (N, *spatial) = {(n, *spatial)} "
            f"(or (N, 1, *spatial)) to match logits {shape_str(logits)}, got {shape_str(target)}"
        )
    target = target.long()
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        if bool(valid.all()):
            valid = None
        else:
            target = target.masked_fill(~valid, 0)
    # labels are bounds-checked whatever the validation setting (as the fused kernels do): an index out of
    # range would otherwise reach torch's gather / cross_entropy (IndexError, or a device assert)
    if validate or not torch.compiler.is_compiling():
        check_labels(target, c, ignore_index)
    else:  # traced: the same check as an op at run time (no host sync in the graph), in the data flow
        target = target + torch.ops.seglab.check_labels(target, c, ignore_index)
    return Target(index=target, dense=None, valid=valid)


def _check_dense_shape(logits: torch.Tensor, target: torch.Tensor, mode: str) -> None:
    """ValueError unless a dense target has the shape of ``logits`` (naming a channel-count mismatch as such)."""
    if tuple(target.shape) == tuple(logits.shape):
        return
    n, c = logits.shape[:2]
    what = {
        "multiclass": "a float one-hot/soft-probability target (N, C, *spatial) or an integer class map (N, *spatial)",
        "multilabel": "a multi-hot target (N, C, *spatial) with values in [0, 1]",
        "binary": "a target (N, 1, *spatial) or (N, *spatial) with values in [0, 1]",
    }[mode]
    if target.ndim == logits.ndim and target.shape[0] == n and target.shape[2:] == logits.shape[2:]:
        raise ValueError(
            f"{mode} expects {what}; target has C={target.shape[1]} channels but logits have C={c} "
            f"(target {shape_str(target)}, logits {shape_str(logits)})"
        )
    raise ValueError(f"{mode} expects {what} matching logits {shape_str(logits)}, got target {shape_str(target)}")


def _mask_dense_ignored(target: torch.Tensor, mode: str,
                        ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(target, valid)``: pixels holding ``ignore_index`` (in any channel, for multiclass) set to 0, and the
    mask of the others (None when no pixel is ignored)."""
    if ignore_index is None:
        return target, None
    ign = target == ignore_index
    if mode == "multiclass":
        ign = ign.any(dim=1)
        valid = None if not bool(ign.any()) else ~ign
        if valid is not None:
            target = target.masked_fill(ign.unsqueeze(1), 0.0)
    else:
        valid = None if not bool(ign.any()) else ~ign
        if valid is not None:
            target = target.masked_fill(ign, 0.0)
    return target, valid


def check_dense_values(target: torch.Tensor, mode: str, valid: torch.Tensor | None, ignore_index: int | None) -> None:
    """ValueError unless a dense target lies in [0, 1] and, for multiclass, sums to 1 over channels at valid pixels."""
    lo_t, hi_t = torch.aminmax(target.detach())
    flo, fhi = float(lo_t), float(hi_t)
    if not (flo >= 0.0 and fhi <= 1.0):  # also catches NaN
        raise ValueError(
            f"{mode} float target values must lie in [0, 1] (probabilities / one-hot / multi-hot), "
            f"got range [{flo:g}, {fhi:g}]" + ("" if ignore_index is not None else "; pass ignore_index for pixels to skip")
        )
    if mode == "multiclass":
        sums = target.sum(dim=1)
        if valid is not None:
            sums = sums[valid]
        if sums.numel() and float((sums - 1).abs().max()) > 1e-3:
            raise ValueError(
                "multiclass float target must be one-hot or soft probabilities whose channels sum to 1 at each pixel; "
                f"channel sums range over [{float(sums.min()):g}, {float(sums.max()):g}]. "
                "If pixels may carry several classes, use mode='multilabel' (sigmoid per channel)"
            )
