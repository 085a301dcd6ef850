"""Hausdorff distance-transform loss (Karimi & Salcudean 2019) and its log form."""

from __future__ import annotations

from typing import Any

import torch

from seglab import _checks
from seglab.losses._pipeline import Options, run_terms
from seglab.losses._structure import (
    forward_with_target_map,
    StructureTerm,
    check_include_background,
    check_map,
    dense_target,
    no_ignored_pixels,
    probabilities,
    reduce_loss,
)
from seglab.losses.base import LOSSES, Loss
from seglab.targets import Target
from seglab.transforms import distance_maps_of_masks


def check_hausdorff_options(*, mode: str, alpha: Any = 2.0, include_background: Any = True, batch: Any = False,
                            log: Any = False, reduction: Any = "mean") -> Options:
    """The Hausdorff loss's options, checked (:class:`HausdorffDTLoss` and :func:`hausdorff_loss` both call it)."""
    mode = _checks.check_mode(mode)
    return dict(mode=mode, alpha=_checks.check_number("alpha", alpha, low=0.0),
                include_background=check_include_background(mode, include_background),
                batch=_checks.check_bool("batch", batch), log=_checks.check_bool("log", log),
                reduction=_checks.check_reduction(reduction))


def _hausdorff(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    no_ignored_pixels(tgt, "hausdorff")
    p = probabilities(x, o["mode"])
    y = dense_target(tgt, x)
    dy = check_map("distance_map", o.get("distance_map"), tuple(x.shape), x)
    if not o["include_background"]:
        p, y = p[:, 1:], y[:, 1:]
        dy = None if dy is None else dy[:, 1:]
    if dy is None:
        dy = distance_maps_of_masks(y > 0.5, "field", x.dtype)
    dp = distance_maps_of_masks(p.detach() > 0.5, "field", x.dtype)  # of the thresholded prediction: no gradient
    alpha = o["alpha"]
    f = (p - y) ** 2 * (dp ** alpha + dy.to(x.dtype) ** alpha)
    loss = f.flatten(2).mean(-1)  # (N, C')
    if o["batch"]:
        loss = loss.mean(0)
    loss = reduce_loss(loss, o["reduction"])
    return torch.log1p(loss) if o["log"] else loss


HAUSDORFF = StructureTerm(_hausdorff)


def hausdorff_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    alpha: float = 2.0,
    include_background: bool = True,
    batch: bool = False,
    log: bool = False,
    reduction: str = "mean",
    distance_map: torch.Tensor | None = None,
    validate: bool | None = None,
) -> torch.Tensor:
    """Hausdorff distance-transform loss from logits; see :class:`HausdorffDTLoss`.

    ``distance_map``: the target's distance field ``(N, C, *spatial)`` (:func:`seglab.transforms.distance_field`,
    or :class:`seglab.transforms.DistanceField` in a DataLoader); computed from ``target`` when None.

    Example:
        >>> hausdorff_loss(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), mode="multiclass").shape
        torch.Size([])
    """
    o = check_hausdorff_options(mode=mode, alpha=alpha, include_background=include_background, batch=batch, log=log,
                                reduction=reduction)
    o["distance_map"] = distance_map
    return run_terms([(HAUSDORFF, o)], logits, target, validate=validate)[0]


@LOSSES.register("hausdorff")
class HausdorffDTLoss(Loss):
    r"""Hausdorff distance-transform loss (Karimi & Salcudean 2019, IEEE TMI), as MONAI's ``HausdorffDTLoss``;
    ``log=True`` is MONAI's ``LogHausdorffDTLoss``.

    With ``p`` the probabilities (softmax for ``multiclass``, sigmoid otherwise), ``y`` the target and ``d_q`` the
    distance field of a mask ``q`` (:func:`seglab.transforms.distance_field`: every pixel's distance to the
    nearest pixel across the mask's border; 0 for an empty or full mask)::

        L_{n,c} = mean over pixels of (p - y)^2 * (d_{p>0.5}^alpha + d_{y>0.5}^alpha)

    then the mean over classes and samples (``batch=True``: the mean over samples first, giving ``(C',)``).
    ``log=True``: ``log(1 + L)`` of the reduced loss (of each entry with ``reduction="none"``). The field of the
    prediction is recomputed every call from the thresholded probabilities (no gradient flows through it); the
    target's can be passed precomputed, ``loss(logits, target, distance_map=...)``
    (:class:`seglab.transforms.DistanceField`). Both use scipy's exact Euclidean distance transform (extra
    ``metrics``) in a custom op that ``torch.compile(fullgraph=True)`` traces.

    Defaults differ from MONAI's in one place: ``include_background=True`` (seglab's default for every loss;
    MONAI's HausdorffDTLoss drops channel 0 by default). ``reduction="none"`` returns ``(N, C')`` or ``(C',)``
    (MONAI keeps singleton spatial dims, ``(N, C', 1, ...)``). 1–3 spatial dims.

    Example:
        >>> loss = HausdorffDTLoss("multiclass", include_background=False, log=True)
        >>> loss(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "hausdorff"
    description = "Hausdorff distance-transform loss (Karimi 2019), alpha=2; log=true: MONAI LogHausdorffDTLoss"
    term = HAUSDORFF
    fn = staticmethod(hausdorff_loss)

    def __init__(self, mode: str, alpha: float = 2.0, include_background: bool = True, batch: bool = False,
                 log: bool = False, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_hausdorff_options(mode=mode, alpha=alpha, include_background=include_background,
                                                batch=batch, log=log, reduction=reduction))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                distance_map: torch.Tensor | None = None) -> torch.Tensor:
        """``distance_map``: precomputed from the target (see the class docstring). ``mask`` is refused (TypeError): the
        loss has no ignored pixels."""
        return forward_with_target_map(self, logits, target, mask, distance_map=distance_map)
