"""Soft clDice (Shit et al. 2021): Dice of the soft skeletons against the masks, for tubular structures."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._structure import (
    StructureTerm,
    check_include_background,
    check_spatial,
    dense_target,
    no_ignored_pixels,
    probabilities,
    reduce_loss,
)
from seglab.losses.base import LOSSES, Loss
from seglab.targets import Target

_POOL = (F.max_pool1d, F.max_pool2d, F.max_pool3d)


def soft_erode(img: torch.Tensor) -> torch.Tensor:
    """Soft erosion of ``img`` ``(B, C, *spatial)`` (1–3 spatial dims): the minimum over the cross-shaped
    neighbourhood, taken as the minimum of 3-pixel min-pools along each axis (Shit et al.'s code)."""
    d = img.ndim - 2
    pool = _POOL[d - 1]
    out = None
    for axis in range(d):
        k = tuple(3 if a == axis else 1 for a in range(d))
        p = tuple(1 if a == axis else 0 for a in range(d))
        e = -pool(-img, k, 1, p)
        out = e if out is None else torch.minimum(out, e)
    assert out is not None
    return out


def soft_dilate(img: torch.Tensor) -> torch.Tensor:
    """Soft dilation: the maximum over the 3^d neighbourhood."""
    d = img.ndim - 2
    return _POOL[d - 1](img, (3,) * d, 1, (1,) * d)


def soft_skeleton(img: torch.Tensor, iterations: int) -> torch.Tensor:
    """Soft skeleton (Shit et al. 2021, Alg. 1): ``skel = relu(img - open(img))``, then ``iterations`` times
    ``img = erode(img)``, ``delta = relu(img - open(img))``, ``skel += relu(delta - skel * delta)``."""
    skel = F.relu(img - soft_dilate(soft_erode(img)))
    for _ in range(iterations):
        img = soft_erode(img)
        delta = F.relu(img - soft_dilate(soft_erode(img)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def check_cldice_options(*, mode: str, iterations: Any = 3, smooth: Any = 1.0, eps: Any = 1e-4,
                         include_background: Any = True, reduction: Any = "mean") -> Options:
    """clDice's options, checked (:class:`ClDiceLoss` and :func:`cldice_loss` both call it)."""
    mode = _checks.check_mode(mode)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer (soft-skeleton iterations), got {iterations!r}")
    return dict(mode=mode, iterations=int(iterations), smooth=_checks.check_number("smooth", smooth, low=0.0),
                eps=_checks.check_number("eps", eps, low=0.0, low_open=True),
                include_background=check_include_background(mode, include_background),
                reduction=_checks.check_reduction(reduction))


def _cldice(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    no_ignored_pixels(tgt, "cldice")
    check_spatial(x, "cldice", (1, 2, 3))
    p = probabilities(x, o["mode"])
    y = dense_target(tgt, x)
    if not o["include_background"]:
        p, y = p[:, 1:], y[:, 1:]
    it, s = o["iterations"], o["smooth"]
    skel_p = soft_skeleton(p, it)
    with torch.no_grad():
        skel_y = soft_skeleton(y, it)
    # per sample, pooled over the classes and the image (as Shit et al. and MONAI)
    tprec = ((skel_p * y).flatten(1).sum(-1) + s) / (skel_p.flatten(1).sum(-1) + s)
    tsens = ((skel_y * p).flatten(1).sum(-1) + s) / (skel_y.flatten(1).sum(-1) + s)
    loss = 1.0 - 2.0 * tprec * tsens / (tprec + tsens + o["eps"])
    return reduce_loss(loss, o["reduction"])


CLDICE = StructureTerm(_cldice)


def cldice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    iterations: int = 3,
    smooth: float = 1.0,
    eps: float = 1e-4,
    include_background: bool = True,
    reduction: str = "mean",
    validate: bool | None = None,
) -> torch.Tensor:
    """Soft clDice loss from logits; see :class:`ClDiceLoss`.

    Example:
        >>> cldice_loss(torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float(), mode="binary").shape
        torch.Size([])
    """
    o = check_cldice_options(mode=mode, iterations=iterations, smooth=smooth, eps=eps,
                             include_background=include_background, reduction=reduction)
    return run_terms([(CLDICE, o)], logits, target, validate=validate)[0]


@LOSSES.register("cldice")
class ClDiceLoss(Loss):
    r"""Soft clDice loss (Shit et al. 2021, CVPR), as MONAI's ``SoftclDiceLoss``.

    With ``p`` the probabilities (softmax for ``multiclass``, sigmoid otherwise), ``y`` the target (one-hot for
    index maps) and ``S(.)`` the soft skeleton (:func:`soft_skeleton`, ``iterations`` erosions; the target's
    skeleton carries no gradient), per sample, summing over the classes and the image::

        Tprec = (sum S(p) * y + smooth) / (sum S(p) + smooth)     # topology precision
        Tsens = (sum S(y) * p + smooth) / (sum S(y) + smooth)     # topology sensitivity
        L     = 1 - 2 Tprec Tsens / (Tprec + Tsens + eps)

    then the mean over samples (``reduction="none"``: ``(N,)``). ``include_background=False`` drops channel 0.
    Shit et al. train with a Dice term beside it: ``get_loss("0.5*dice[smooth=1] + 0.5*cldice", mode=...)``
    equals MONAI's ``SoftDiceclDiceLoss(alpha=0.5)``. ``iterations`` should reach the largest radius of the
    tubes (MONAI's and the paper's default: 3). 1–3 spatial dims; max-pooling only, so it is cheap and traceable.

    Example:
        >>> loss = ClDiceLoss("multilabel", iterations=5)
        >>> loss(torch.randn(2, 2, 32, 32), (torch.rand(2, 2, 32, 32) > 0.5).float())
    """

    name = "cldice"
    description = "soft clDice (Shit 2021), 3 soft-skeleton iterations, for tubular structures (MONAI SoftclDiceLoss)"
    term = CLDICE
    fn = staticmethod(cldice_loss)

    def __init__(self, mode: str, iterations: int = 3, smooth: float = 1.0, eps: float = 1e-4,
                 include_background: bool = True, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_cldice_options(mode=mode, iterations=iterations, smooth=smooth, eps=eps,
                                             include_background=include_background, reduction=reduction))
