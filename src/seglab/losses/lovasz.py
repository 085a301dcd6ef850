"""Lovász losses (Berman et al. 2018): Lovász-softmax (multiclass) and Lovász hinge (binary/multilabel).

All classes (and, with ``per_image``, all images) are sorted in one batched call — an O(P) radix argsort in
C++ (``seglab.kernels.cpu_ext``) on CPU while the fused kernels are on (``seglab.set_fused``), ``torch.sort``
otherwise — with no Python loop over classes. Index
targets are not expanded to a one-hot: errors come from a gather/scatter and the foreground indicator is
built directly in sorted order.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from seglab import _checks
from seglab.losses.base import LOSSES, Loss, prologue


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors, batched over leading dims."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def _use_cpp(t: torch.Tensor) -> bool:
    """Whether the C++ kernels may run on ``t``: CPU, a supported dtype, built, and the fused switch on
    (``seglab.set_fused(False)`` / ``SEGLAB_FUSED=0`` turn them off like every other fused kernel)."""
    if t.device.type != "cpu" or torch.compiler.is_compiling():  # ctypes calls cannot be traced: torch.sort
        return False
    from seglab.kernels import cpu_ext, dispatch

    return dispatch.fused_enabled() and cpu_ext.supports(t)


def _argsort_desc(errors: torch.Tensor) -> torch.Tensor:
    """Decreasing-order indices along the last dim: the C++ radix sort where allowed, else ``torch.sort``."""
    if _use_cpp(errors):
        from seglab.kernels import cpu_ext

        perm = cpu_ext.argsort_desc(errors)
        if perm is not None:
            return perm
    return torch.sort(errors.detach(), dim=-1, descending=True)[1]


def check_lovasz_options(*, mode: str, per_image: Any = False, classes: Any = "present", ignore_index: Any = None,
                         reduction: Any = "mean") -> dict[str, Any]:
    """Lovász's options, checked (called by :class:`LovaszLoss` and :func:`lovasz_loss`)."""
    return dict(mode=_checks.check_mode(mode), per_image=_checks.check_bool("per_image", per_image),
                classes=_checks.check_choice("classes", classes, ("present", "all")),
                ignore_index=_checks.check_ignore_index(ignore_index), reduction=_checks.check_reduction(reduction))


def lovasz_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    per_image: bool = False,
    classes: str = "present",
    ignore_index: int | None = None,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """Lovász loss from logits; see :class:`LovaszLoss`."""
    check_lovasz_options(mode=mode, per_image=per_image, classes=classes, ignore_index=ignore_index, reduction=reduction)
    x, tgt, _ = prologue(logits, target, mode, ignore_index=ignore_index, reduction=reduction, validate=validate)
    n, c = x.shape[:2]
    if n == 0:  # an empty batch: 0 with a zero gradient, as every seglab loss
        return x.sum() * 0 if reduction != "none" else x.new_zeros((0, c) if per_image else (c,))
    b = n if per_image else 1
    s = math.prod(x.shape[2:])

    def rows(t: torch.Tensor) -> torch.Tensor:  # (N, C, *spatial) -> (B, C, P): one row per (image, class)
        return t.reshape(n, t.shape[1], s).transpose(0, 1).reshape(t.shape[1], b, -1).transpose(0, 1)

    idx = None
    if mode == "multiclass":
        pf = rows(torch.softmax(x, dim=1))
        if tgt.is_index:
            # errors |y - p| without a one-hot: p everywhere, 1 - p at the target class (gather + scatter)
            idx = tgt.labels.reshape(b, 1, -1)
            errors = pf.scatter(1, idx, 1.0 - pf.gather(1, idx))
            fg = None
        else:
            fg = rows(tgt.y)
            errors = (fg - pf).abs()
    else:
        fg = rows(tgt.y)
        errors = 1.0 - rows(x) * (2.0 * fg - 1.0)
    vf = None  # kept pixels, (B, 1 or C, P)
    if tgt.valid is not None:
        vf = rows(tgt.valid.unsqueeze(1) if tgt.valid.ndim == x.ndim - 1 else tgt.valid)
    hinge = mode != "multiclass"
    fast = _lovasz_cpu(errors, idx, fg, vf, b, c, hinge=hinge)
    loss, present = fast if fast is not None else _lovasz_torch(errors, idx, fg, vf, b, c, hinge=hinge)
    if classes == "present" and mode == "multiclass":
        count = present.sum(-1).clamp_min(1)
        loss = torch.where(present, loss, torch.zeros_like(loss))
        per_b = loss.sum(-1) / count
        if reduction == "none":
            return loss if per_image else loss[0]
        return per_b.sum() if reduction == "sum" else per_b.mean()
    if reduction == "none":
        return loss if per_image else loss[0]
    return loss.sum() if reduction == "sum" else loss.mean()


def _lovasz_torch(errors, idx, fg, vf, b, c, *, hinge):
    """Reference path (any device): batched sort, then the Lovász gradient with cumsums. Returns (loss, present)."""
    if vf is not None:
        # ignored pixels: error pushed below every real one (sorted last) and no foreground -> contribute 0
        low = -1e4 if hinge else 0.0
        errors = torch.where(vf, errors, torch.full_like(errors, low))
        if fg is not None:
            fg = fg * vf
    perm = _argsort_desc(errors)
    errors_sorted = errors.gather(-1, perm)
    if fg is None:  # index target: foreground indicator of the sorted pixels, from the sorted labels
        cls = torch.arange(c, device=errors.device).view(1, c, 1)
        fg_sorted_b = idx.expand(b, c, -1).gather(-1, perm) == cls
        if vf is not None:
            fg_sorted_b &= vf.expand(b, c, -1).gather(-1, perm)
        fg_sorted = fg_sorted_b.to(errors.dtype)
    else:
        fg_sorted = fg.gather(-1, perm)
    grad = _lovasz_grad(fg_sorted)
    if hinge:
        errors_sorted = F.relu(errors_sorted)
    loss = (errors_sorted * grad).sum(-1)  # (B, C)
    return loss, fg_sorted.sum(-1) > 0


class _LovaszRows(torch.autograd.Function):
    """Lovász loss per row as computed by the C++ kernel; its backward is the kernel's d loss / d errors."""

    @staticmethod
    def forward(ctx, errors, loss, grad):  # type: ignore[override]
        ctx.save_for_backward(grad)
        return loss.to(dtype=errors.dtype, copy=True)

    @staticmethod
    def backward(ctx, g_loss):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return g_loss.to(grad.dtype).unsqueeze(-1) * grad, None, None


def _lovasz_cpu(errors, idx, fg, vf, b, c, *, hinge):
    """C++ path: radix argsort + one pass per row. None where it does not apply (not CPU, fused switched off,
    kernels unavailable, or rows the kernel declines), then the caller runs the torch path. Returns (loss, present).
    """
    if not _use_cpp(errors):
        return None
    from seglab.kernels import cpu_ext

    labels = fgr = None
    if idx is not None:  # index target: labels per pixel, -1 where ignored
        labels = idx.reshape(b, -1)
        if vf is not None:
            labels = labels.masked_fill(~vf.reshape(b, -1), -1)
    else:  # dense target: foreground per element, -1 where ignored
        fgr = fg if vf is None else torch.where(vf, fg, torch.full_like(fg, -1.0))
        fgr = fgr.reshape(b * c, -1)
    e = errors.reshape(b * c, -1).contiguous()
    out = cpu_ext.lovasz_rows(e.detach(), labels=labels, fg=fgr, num_classes=c, hinge=hinge)
    if out is None:  # e.g. rows of 2^31 elements or more (31-bit indices in the kernel)
        return None
    loss, grad, gts = out
    return _LovaszRows.apply(e, loss, grad).view(b, c), gts.view(b, c) > 0


@LOSSES.register("lovasz")
class LovaszLoss(Loss):
    r"""Lovász loss (Berman et al. 2018), a convex surrogate of the Jaccard loss optimised directly.

    * ``multiclass``: Lovász-softmax. Per class ``c``, errors ``e_i = |y_ic - p_ic|`` sorted in decreasing order and
      ``L_c = sum_i e_(i) * g_i`` with ``g`` the gradient of the Lovász extension of the Jaccard loss at the sorted
      ground truth. With ``classes="present"`` (default, as Berman) only classes present in the target are averaged.
    * ``binary`` / ``multilabel``: Lovász hinge per channel, errors ``1 - x * (2y - 1)`` from the logits,
      ``L_c = sum relu(e_(i)) * g_i``, averaged over channels.
    ``per_image=False`` (default, as smp) treats the batch as one image; ``True`` computes one loss per image
    and averages. Ignored pixels (``ignore_index``) are left out. Sorting is batched over images and classes.

    Example:
        >>> LovaszLoss("multiclass")(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "lovasz"
    description = "Lovasz-softmax/hinge loss (Berman 2018)"
    fn = staticmethod(lovasz_loss)

    def __init__(self, mode: str, per_image: bool = False, classes: str = "present", ignore_index: int | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_lovasz_options(mode=mode, per_image=per_image, classes=classes,
                                             ignore_index=ignore_index, reduction=reduction))
    # forward: Loss.forward calls fn (lovasz_loss) with the stored options; it also takes mask=
