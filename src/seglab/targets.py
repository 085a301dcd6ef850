"""Target handling shared by every loss: one normalised view of the many ways users pass targets.

An index target (integer class map) stays an index tensor: per-class sums are made with
``gather``/``scatter_add``, never by materialising a float one-hot copy of shape ``(N, C, *spatial)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seglab._checks import _shape


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Losses accumulate in float32 for half-precision inputs (float16/bfloat16), else in the input dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def label_range_error(bad_values: list[int], num_classes: int, ignore_index: int | None) -> ValueError:
    """The error for multiclass index labels outside ``[0, num_classes)`` (that are not ``ignore_index``).

    One message for every place that finds them: :func:`prepare_target` (validation on) and the fused kernels,
    which bounds-check the labels they read whatever the validation setting.
    """
    c = int(num_classes)
    extra = "" if ignore_index is None else f" other than ignore_index={ignore_index}"
    return ValueError(
        f"multiclass target values must be class indices in [0, {c}) for C={c} logit channels{extra}; "
        f"found values {sorted(set(int(v) for v in bad_values))[:10]}"
        + ("" if ignore_index is not None else "; if they mark pixels to skip, pass ignore_index")
    )


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
    """Check ``target`` against ``logits`` for ``mode`` and return its normalised :class:`Target`."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    n, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    if target.device != logits.device:
        raise ValueError(f"target is on {target.device} but logits are on {logits.device}; move them to the same device")

    if mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool:
        if target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]
        if tuple(target.shape) != (n, *spatial):
            raise ValueError(
                f"multiclass integer target must have shape (N, *spatial) = {(n, *spatial)} "
                f"(or (N, 1, *spatial)) to match logits {_shape(logits)}, got {_shape(target)}"
            )
        target = target.long()
        valid = None
        if ignore_index is not None:
            valid = target != ignore_index
            if bool(valid.all()):
                valid = None
            else:
                target = target.masked_fill(~valid, 0)
        if validate and target.numel():
            lo_t, hi_t = torch.aminmax(target.detach())
            lo, hi = int(lo_t), int(hi_t)
            if lo < 0 or hi >= c:
                bad = target[(target < 0) | (target >= c)]
                raise label_range_error(bad.unique().tolist(), c, ignore_index)
        return Target(index=target, dense=None, valid=valid)

    # dense targets: multiclass float (one-hot / soft), multilabel, binary
    if mode == "binary" and target.ndim == logits.ndim - 1:
        target = target.unsqueeze(1)
    if mode == "multiclass" and target.dtype == torch.bool:
        raise TypeError("multiclass target must be an integer class map or a float one-hot/soft map, got dtype torch.bool")
    if tuple(target.shape) != tuple(logits.shape):
        what = {
            "multiclass": "a float one-hot/soft-probability target (N, C, *spatial) or an integer class map (N, *spatial)",
            "multilabel": "a multi-hot target (N, C, *spatial) with values in [0, 1]",
            "binary": "a target (N, 1, *spatial) or (N, *spatial) with values in [0, 1]",
        }[mode]
        if target.ndim == logits.ndim and target.shape[0] == n and target.shape[2:] == logits.shape[2:]:
            raise ValueError(
                f"{mode} expects {what}; target has C={target.shape[1]} channels but logits have C={c} "
                f"(target {_shape(target)}, logits {_shape(logits)})"
            )
        raise ValueError(f"{mode} expects {what} matching logits {_shape(logits)}, got target {_shape(target)}")
    target = target.to(compute_dtype(logits.dtype))

    valid = None
    if ignore_index is not None:
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

    if validate and target.numel():
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
    return Target(index=None, dense=target, valid=valid)
