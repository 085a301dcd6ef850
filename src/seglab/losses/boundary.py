"""Boundary loss (Kervadec et al. 2019): probabilities weighted by the signed distance map of the target."""

from __future__ import annotations

import math
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


def check_boundary_options(*, mode: str, include_background: Any = True, batch: Any = False,
                           reduction: Any = "mean") -> Options:
    """The boundary loss's options, checked (:class:`BoundaryLoss` and :func:`boundary_loss` both call it)."""
    mode = _checks.check_mode(mode)
    return dict(mode=mode, include_background=check_include_background(mode, include_background),
                batch=_checks.check_bool("batch", batch), reduction=_checks.check_reduction(reduction))


def _boundary(x: torch.Tensor, tgt: Target, o: Options) -> torch.Tensor:
    no_ignored_pixels(tgt, "boundary")
    p = probabilities(x, o["mode"])
    phi = check_map("distance_map", o.get("distance_map"), tuple(x.shape), x)
    if phi is None:
        phi = distance_maps_of_masks(dense_target(tgt, x) > 0.5, "signed", x.dtype)
    phi = phi.to(x.dtype)
    if not o["include_background"]:
        p, phi = p[:, 1:], phi[:, 1:]
    loss = (p * phi).flatten(2).sum(-1) / math.prod(x.shape[2:])  # (N, C'): the mean of p * phi over the image
    if o["batch"]:
        loss = loss.mean(0)
    return reduce_loss(loss, o["reduction"])


BOUNDARY = StructureTerm(_boundary)


def boundary_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mode: str,
    include_background: bool = True,
    batch: bool = False,
    reduction: str = "mean",
    distance_map: torch.Tensor | None = None,
    validate: bool | None = None,
) -> torch.Tensor:
    """Boundary loss from logits; see :class:`BoundaryLoss`.

    ``distance_map``: the target's signed distance map ``(N, C, *spatial)``
    (:func:`seglab.transforms.signed_distance_map`, or :class:`seglab.transforms.SignedDistanceMap` in a
    DataLoader); computed from ``target`` when None.

    Example:
        >>> boundary_loss(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16)), mode="multiclass").shape
        torch.Size([])
    """
    o = check_boundary_options(mode=mode, include_background=include_background, batch=batch, reduction=reduction)
    o["distance_map"] = distance_map
    return run_terms([(BOUNDARY, o)], logits, target, validate=validate)[0]


@LOSSES.register("boundary")
class BoundaryLoss(Loss):
    r"""Boundary loss (Kervadec et al. 2019, MIDL), as MONAI's ``BoundaryLoss``.

    With ``p`` the probabilities (softmax for ``multiclass``, sigmoid otherwise) and ``phi_c`` the signed distance
    map of the target's class ``c`` (:func:`seglab.transforms.signed_distance_map`: ``-(d_in - 1)`` inside the
    class, ``d_out`` outside; 0 for a class that is empty or fills the image)::

        L_{n,c} = mean over pixels of p_{n,c} * phi_{n,c}

    then the mean over classes and samples (``batch=True``: the mean over samples first, giving ``(C',)``). The
    loss is negative when the prediction lies inside the target (it is a boundary integral, minimal, not zero,
    at the target); Kervadec pairs it with a region loss (e.g. ``get_loss("dice + 0.01*boundary")``, raising the
    boundary weight during training).

    Targets: as :class:`~seglab.DiceLoss` (index maps, one-hot / multi-hot; soft targets are thresholded at 0.5
    for the distance map); ``include_background=False`` drops channel 0. The map depends on the target only:
    pass it precomputed as ``loss(logits, target, distance_map=...)`` (the DataLoader transform
    :class:`seglab.transforms.SignedDistanceMap`), otherwise it is computed per call with scipy's exact Euclidean
    distance transform (extra ``metrics``), in a custom op that ``torch.compile(fullgraph=True)`` traces.
    ``reduction="none"`` returns ``(N, C')`` (``batch=False``) or ``(C',)``. 1–3 spatial dims.

    Example:
        >>> loss = BoundaryLoss("multiclass", include_background=False)
        >>> loss(torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32)))
    """

    name = "boundary"
    description = "boundary loss (Kervadec 2019): probabilities times the target's signed distance map (MONAI BoundaryLoss)"
    term = BOUNDARY
    fn = staticmethod(boundary_loss)

    def __init__(self, mode: str, include_background: bool = True, batch: bool = False, reduction: str = "mean") -> None:
        super().__init__(mode, reduction)
        self._configure(check_boundary_options(mode=mode, include_background=include_background, batch=batch,
                                               reduction=reduction))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                distance_map: torch.Tensor | None = None) -> torch.Tensor:
        """``distance_map``: precomputed from the target (see the class docstring). ``mask`` is refused (TypeError): the
        loss has no ignored pixels."""
        return forward_with_target_map(self, logits, target, mask, distance_map=distance_map)
