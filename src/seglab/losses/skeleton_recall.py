"""Skeleton Recall (Kirchhoff et al. 2024, ECCV): soft recall of the target's tubed skeleton."""

from __future__ import annotations

from typing import Any

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._structure import (
    forward_with_target_map,
    StructureTerm,
    check_spatial,
    dense_target,
    no_ignored_pixels,
    probabilities,
    reduce_loss,
)
from seglab.losses.base import LOSSES, Loss
from seglab.targets import Target
from seglab.transforms import check_tube, skeleton_target


def check_skeleton_recall_options(*, mode: str, batch: Any = False, smooth: Any = 1e-5, tube: Any = 2,
                                  reduction: Any = "mean") -> Options:
    """Skeleton recall's options, checked (:class:`SkeletonRecallLoss` and :func:`skeleton_recall_loss` call it)."""
    return dict(mode=_checks.check_mode(mode), batch=_checks.check_bool("batch", batch),
                smooth=_checks.check_number("smooth", smooth, low=0.0), tube=check_tube(tube),
                reduction=_checks.check_reduction(reduction))


def _skeleton_channels(skeleton: Any, x: torch.Tensor, mode: str) -> torch.Tensor:
    """A given skeleton (:func:`seglab.transforms.skeleton_target`'s form) as float ``(N, C, *spatial)``."""
    if not isinstance(skeleton, torch.Tensor):
        raise TypeError(f"skeleton must be a torch.Tensor or None, got {type(skeleton).__name__}")
    n, c, *spatial = x.shape
    if skeleton.device != x.device:
        raise ValueError(f"skeleton is on {skeleton.device} but logits are on {x.device}; move them to the same device")
    if mode == "multiclass":
        if skeleton.is_floating_point() or skeleton.dtype == torch.bool:
            raise TypeError(f"a multiclass skeleton is an integer class map (N, *spatial), got dtype {skeleton.dtype}")
        if skeleton.ndim == x.ndim and skeleton.shape[1] == 1:
            skeleton = skeleton[:, 0]
        if tuple(skeleton.shape) != (n, *spatial):
            raise ValueError(f"a multiclass skeleton must have shape (N, *spatial) = {(n, *spatial)} "
                             f"(or (N, 1, *spatial)), got {tuple(skeleton.shape)}")
        skeleton = skeleton.long()
        if skeleton.numel() and not torch.compiler.is_compiling():
            lo, hi = int(skeleton.min()), int(skeleton.max())
            if lo < 0 or hi >= c:
                raise ValueError(f"skeleton values must be class indices in [0, {c}), got range [{lo}, {hi}]")
        return torch.zeros_like(x).scatter_(1, skeleton.unsqueeze(1), 1.0)
    if mode == "binary" and skeleton.ndim == x.ndim - 1:
        skeleton = skeleton.unsqueeze(1)
    if tuple(skeleton.shape) != tuple(x.shape):
        raise ValueError(f"a {mode} skeleton must have the logits' shape {tuple(x.shape)}, got {tuple(skeleton.shape)}")
    return skeleton.to(x.dtype)


def _skeleton_recall(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    no_ignored_pixels(tgt, "skeleton_recall")
    mode = o["mode"]
    given = o.get("skeleton")
    if given is not None:
        s = _skeleton_channels(given, x, mode)
    else:
        check_spatial(x, "skeleton_recall", (2, 3))
        with torch.no_grad():
            if mode == "multiclass":
                labels = tgt.labels if tgt.is_index else tgt.y.argmax(1)
                s = _skeleton_channels(skeleton_target(labels, mode=mode, tube=o["tube"]), x, mode)
            else:
                s = skeleton_target(dense_target(tgt, x), mode=mode, tube=o["tube"]).to(x.dtype)
    p = probabilities(x, mode)
    if mode == "multiclass":  # the background has no skeleton
        p, s = p[:, 1:], s[:, 1:]
    inter = (p * s).flatten(2).sum(-1)  # (N, C')
    total = s.flatten(2).sum(-1)
    if o["batch"]:
        inter, total = inter.sum(0), total.sum(0)
    recall = (inter + o["smooth"]) / (total + o["smooth"]).clamp_min(1e-8)
    return reduce_loss(1.0 - recall, o["reduction"])


SKELETON_RECALL = StructureTerm(_skeleton_recall)


def skeleton_recall_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    batch: bool = False,
    smooth: float = 1e-5,
    tube: int = 2,
    reduction: str = "mean",
    skeleton: torch.Tensor | None = None,
    validate: bool | None = None,
) -> torch.Tensor:
    """Skeleton recall loss from logits; see :class:`SkeletonRecallLoss`.

    ``skeleton``: the target's tubed skeleton as :func:`seglab.transforms.skeleton_target` gives it (an int
    class map ``(N, *spatial)`` for multiclass, ``(N, C, *spatial)`` otherwise), e.g. from the DataLoader
    transform :class:`seglab.transforms.TubedSkeleton`; computed from ``target`` when None.

    Example:
        >>> t = torch.zeros(2, 16, 16, dtype=torch.long); t[:, 6:10, :] = 1
        >>> skeleton_recall_loss(torch.randn(2, 2, 16, 16), t, mode="multiclass").shape
        torch.Size([])
    """
    o = check_skeleton_recall_options(mode=mode, batch=batch, smooth=smooth, tube=tube, reduction=reduction)
    o["skeleton"] = skeleton
    return run_terms([(SKELETON_RECALL, o)], logits, target, validate=validate)[0]


@LOSSES.register("skeleton_recall")
class SkeletonRecallLoss(Loss):
    r"""Skeleton Recall loss (Kirchhoff et al. 2024, ECCV; nnU-Net's Skeleton-Recall repository).

    The target's *tubed skeleton* ``s`` (:func:`seglab.transforms.skeleton_target`: scikit-image's skeleton of
    the foreground, dilated ``tube`` times with the cross-shaped footprint, kept inside the foreground, carrying
    the target's classes) is compared with the probabilities ``p`` (softmax for ``multiclass``, sigmoid
    otherwise) by a soft recall per class::

        R_{n,c} = (sum p_{n,c} * s_{n,c} + smooth) / (sum s_{n,c} + smooth)
        L       = 1 - mean_{n,c} R_{n,c}          # batch=True: sums over the batch too, mean over c

    ``multiclass``: classes 1..C-1 (the background has no skeleton; channel 0 is always dropped), skeleton of
    the merged foreground labelled by class, as nnU-Net's ``SkeletonTransform``. ``multilabel`` / ``binary``:
    every channel, each with its own skeleton. nnU-Net's ``SoftSkeletonRecallLoss`` returns ``-R`` (this loss is
    ``1 - R``: the same gradients, a minimum of 0); its trainer adds it with weight 1 to Dice + CE
    (``get_loss("dicefg[batch=true] + ce + skeleton_recall[batch=true]")`` with nnU-Net's batch Dice).

    The skeleton depends on the target only. nnU-Net computes it once per sample in the data loader; do the
    same with :class:`seglab.transforms.TubedSkeleton` and ``loss(logits, target, skeleton=batch["skeleton"])``.
    Without it the loss skeletonizes the target on every call (scikit-image, extra ``structure``, in a custom op
    that ``torch.compile(fullgraph=True)`` traces). 2 or 3 spatial dims. ``reduction="none"`` returns
    ``(N, C')`` or ``(C',)``.

    Example:
        >>> t = torch.zeros(2, 32, 32, dtype=torch.long); t[:, 12:18, :] = 1; t[:, :, 3:6] = 2
        >>> SkeletonRecallLoss("multiclass")(torch.randn(2, 3, 32, 32), t)
    """

    name = "skeleton_recall"
    description = "Skeleton Recall (Kirchhoff 2024): soft recall of the target's tubed skeleton, foreground classes"
    term = SKELETON_RECALL
    fn = staticmethod(skeleton_recall_loss)

    def __init__(self, mode: str, batch: bool = False, smooth: float = 1e-5, tube: int = 2,
                 reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_skeleton_recall_options(mode=mode, batch=batch, smooth=smooth, tube=tube,
                                                      reduction=reduction))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                skeleton: torch.Tensor | None = None) -> torch.Tensor:
        """``skeleton``: precomputed from the target (see the class docstring). ``mask`` is refused (TypeError): the
        loss has no ignored pixels."""
        return forward_with_target_map(self, logits, target, mask, skeleton=skeleton)
