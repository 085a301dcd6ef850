"""Lovász losses (Berman et al. 2018): Lovász-softmax (multiclass) and Lovász hinge (binary/multilabel).

All classes (and, with ``per_image``, all images) are sorted in one batched ``torch.sort`` — no Python loop
over classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seglab.losses.base import Loss, prologue


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors, batched over leading dims."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


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
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
    x, tgt, _ = prologue(logits, target, mode, ignore_index=ignore_index, reduction=reduction, validate=validate)
    n, c = x.shape[:2]
    b = n if per_image else 1
    if mode == "multiclass":
        p = torch.softmax(x, dim=1)
        pf = p.reshape(n, c, -1).transpose(0, 1).reshape(c, b, -1).transpose(0, 1)  # (B, C, P)
        if tgt.is_index:
            idx = tgt.index.reshape(b, 1, -1).expand(b, c, -1)
            cls = torch.arange(c, device=x.device).view(1, c, 1)
            fg = (idx == cls).to(x.dtype)
        else:
            fg = tgt.dense.reshape(n, c, -1).transpose(0, 1).reshape(c, b, -1).transpose(0, 1)
        errors = (fg - pf).abs()
    else:
        fg = tgt.dense.reshape(n, c, -1).transpose(0, 1).reshape(c, b, -1).transpose(0, 1)
        signs = 2.0 * fg - 1.0
        xf = x.reshape(n, c, -1).transpose(0, 1).reshape(c, b, -1).transpose(0, 1)
        errors = 1.0 - xf * signs
    if tgt.valid is not None:
        v = tgt.valid
        if v.ndim == x.ndim - 1:
            v = v.unsqueeze(1).expand_as(x)
        vf = v.reshape(n, c, -1).transpose(0, 1).reshape(c, b, -1).transpose(0, 1)
        # ignored pixels: error pushed below every real one (sorted last) and no foreground -> contribute 0
        fg = fg * vf
        errors = torch.where(vf, errors, torch.full_like(errors, -1e4) if mode != "multiclass" else torch.zeros_like(errors))
    errors_sorted, perm = torch.sort(errors, dim=-1, descending=True)
    fg_sorted = fg.gather(-1, perm)
    grad = _lovasz_grad(fg_sorted)
    if mode != "multiclass":
        errors_sorted = F.relu(errors_sorted)
    loss = (errors_sorted * grad).sum(-1)  # (B, C)
    if classes == "present":
        present = fg.sum(-1) > 0
        if mode == "multiclass":
            count = present.sum(-1).clamp_min(1)
            loss = torch.where(present, loss, torch.zeros_like(loss))
            per_b = loss.sum(-1) / count
            if reduction == "none":
                return loss if per_image else loss[0]
            return per_b.sum() if reduction == "sum" else per_b.mean()
    if reduction == "none":
        return loss if per_image else loss[0]
    return loss.sum() if reduction == "sum" else loss.mean()


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

    def __init__(self, mode: str, per_image: bool = False, classes: str = "present", ignore_index: int | None = None,
                 reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        if classes not in ("present", "all"):
            raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
        self.per_image = bool(per_image)
        self.classes = classes
        self.ignore_index = ignore_index

    def options(self) -> dict[str, Any]:
        return dict(mode=self.mode, per_image=self.per_image, classes=self.classes, ignore_index=self.ignore_index,
                    reduction=self.reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return lovasz_loss(logits, target, **self.options())
