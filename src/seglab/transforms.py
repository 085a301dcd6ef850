"""Target transforms for the structure-aware losses: distance maps and tubed skeletons.

Each map depends on the target only, so it can be computed once per sample in a ``DataLoader`` (the transform
classes below) and passed to the loss, or left to the loss, which computes it on the fly from the target:

* :func:`signed_distance_map` — Kervadec's signed distance of each class mask (the ``boundary`` loss):
  ``-(d_in - 1)`` inside the class (0 on its inner border, negative deeper), ``d_out`` outside, where ``d_in`` is
  the Euclidean distance of a pixel of the class to the nearest pixel outside it and ``d_out`` the distance of a
  pixel outside to the nearest pixel of the class (MONAI ``BoundaryLoss.compute_distance_map``);
* :func:`distance_field` — ``d_in + d_out``, the distance of every pixel to the nearest pixel of the other
  side (the ``hausdorff`` loss; MONAI ``HausdorffDTLoss.distance_field``);
* :func:`skeleton_target` — the tubed skeleton of the target (the ``skeleton_recall`` loss; Kirchhoff et al.
  2024): scikit-image's ``skeletonize`` of the foreground, dilated twice with the cross-shaped (connectivity-1)
  footprint, kept inside the foreground and labelled with its classes (nnU-Net Skeleton-Recall's
  ``SkeletonTransform(do_tube=True)``).

A class mask that is empty or covers the whole image has no border: its maps are 0 (MONAI's policy).

The batched functions take targets as the losses see them after checking: a multiclass class-index map
``(N, *spatial)`` or a dense ``(N, C, *spatial)`` target (one-hot / multi-hot, thresholded at 0.5). The
``DataLoader`` transforms (:class:`SignedDistanceMap`, :class:`DistanceField`, :class:`TubedSkeleton`) take one
sample's target (no batch dim) or a sample ``dict`` and return the map (or the dict with the map added);
the default collate stacks them into the batched maps the losses accept.

The distance transform is scipy.ndimage's exact Euclidean transform (extra ``metrics``), the skeleton
scikit-image's (extra ``structure``). Both run on the CPU inside custom ops (``seglab::distance_map``,
``seglab::skeleton``), so a loss that calls them still traces with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from seglab import _checks
from seglab._extras import require

DISTANCE_KINDS = ("signed", "field")


# ------------------------------------------------------------------------------------------ the host ops
@torch.library.custom_op("seglab::distance_map", mutates_args=())
def _distance_map_op(mask: torch.Tensor, kind: str, dtype: torch.dtype) -> torch.Tensor:
    """Per item of ``mask`` ``(B, *spatial)`` (bool): the ``kind`` distance map, 0 for an empty or full item."""
    ndimage = require("scipy.ndimage", "distance maps (boundary and hausdorff losses)")
    m = mask.detach().cpu().numpy().astype(bool, copy=False)
    out = np.zeros(m.shape, dtype=np.float64)
    for i in range(m.shape[0]):
        fg = m[i]
        if fg.ndim == 0 or not fg.any() or fg.all():
            continue
        d_in = ndimage.distance_transform_edt(fg)  # fg pixels: distance to the nearest background pixel
        d_out = ndimage.distance_transform_edt(~fg)  # background pixels: distance to the nearest fg pixel
        out[i] = np.where(fg, 1.0 - d_in, d_out) if kind == "signed" else d_in + d_out
    return torch.from_numpy(out).to(dtype=dtype, device=mask.device)


@_distance_map_op.register_fake
def _(mask: torch.Tensor, kind: str, dtype: torch.dtype) -> torch.Tensor:
    return mask.new_empty(mask.shape, dtype=dtype)


@torch.library.custom_op("seglab::skeleton", mutates_args=())
def _skeleton_op(mask: torch.Tensor) -> torch.Tensor:
    """Per item of ``mask`` ``(B, *spatial)`` with 2 or 3 spatial dims: scikit-image's ``skeletonize``."""
    morphology = require("skimage.morphology", "skeletons (skeleton_recall loss)")
    m = mask.detach().cpu().numpy().astype(bool, copy=False)
    out = np.zeros(m.shape, dtype=bool)
    for i in range(m.shape[0]):
        if m[i].any():
            out[i] = morphology.skeletonize(m[i]) > 0
    return torch.from_numpy(out).to(mask.device)


@_skeleton_op.register_fake
def _(mask: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(mask, dtype=torch.bool)


# ------------------------------------------------------------------------------------------ batched maps
def _check_mode_target(target: torch.Tensor, mode: str, num_classes: int | None) -> tuple[torch.Tensor, int]:
    """``target`` as a dense bool ``(N, C, *spatial)`` class mask (index maps one-hot), and C."""
    _checks.check_mode(mode)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if mode == "multiclass" and not target.is_floating_point() and target.dtype != torch.bool:
        if num_classes is None or isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 for a multiclass class-index target, got {num_classes!r}")
        if target.ndim < 1:
            raise ValueError(f"a multiclass class-index target must have shape (N, *spatial), got {tuple(target.shape)}")
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
            raise ValueError(f"target values must be class indices in [0, {num_classes}), "
                             f"got range [{int(target.min())}, {int(target.max())}]")
        return F.one_hot(target.long(), num_classes).movedim(-1, 1).bool(), num_classes
    if target.ndim < 2:
        raise ValueError(f"a dense {mode} target must have shape (N, C, *spatial), got {tuple(target.shape)}")
    return target > 0.5, target.shape[1]


def distance_maps_of_masks(masks: torch.Tensor, kind: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``kind`` (``"signed"`` or ``"field"``) distance map of each bool mask of ``masks`` ``(N, C, *spatial)``.

    No gradient flows through it (it is a function of a mask). Used by the losses and by the batched functions.
    """
    _checks.check_choice("kind", kind, DISTANCE_KINDS)
    n, c = masks.shape[:2]
    flat = masks.reshape(n * c, *masks.shape[2:])
    return _distance_map_op(flat, kind, dtype).reshape(masks.shape)


def signed_distance_map(target: torch.Tensor, *, mode: str, num_classes: int | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Signed distance map ``(N, C, *spatial)`` of each class of ``target`` (Kervadec 2019; MONAI's convention).

    ``phi = -(d_in - 1)`` inside a class, ``d_out`` outside (see the module docstring); 0 for a class that is
    empty or fills the image. ``target``: multiclass index map ``(N, *spatial)`` (give ``num_classes``) or a
    dense ``(N, C, *spatial)`` target, thresholded at 0.5.

    Example:
        >>> t = torch.zeros(1, 5, 5, dtype=torch.long); t[0, 1:4, 1:4] = 1
        >>> signed_distance_map(t, mode="multiclass", num_classes=2)[0, 1, 2]
        tensor([ 1.,  0., -1.,  0.,  1.])
    """
    masks, _ = _check_mode_target(target, mode, num_classes)
    return distance_maps_of_masks(masks, "signed", dtype)


def distance_field(target: torch.Tensor, *, mode: str, num_classes: int | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Distance field ``d_in + d_out`` ``(N, C, *spatial)`` of each class of ``target`` (Karimi 2019; MONAI's).

    Every pixel gets its Euclidean distance to the nearest pixel on the other side of the class border; 0 for
    a class that is empty or fills the image. Targets as :func:`signed_distance_map`.

    Example:
        >>> t = torch.zeros(1, 1, 5, 5); t[0, 0, 1:4, 1:4] = 1
        >>> distance_field(t, mode="binary")[0, 0, 2]
        tensor([1., 1., 2., 1., 1.])
    """
    masks, _ = _check_mode_target(target, mode, num_classes)
    return distance_maps_of_masks(masks, "field", dtype)


def dilate_cross(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary dilation of ``mask`` ``(B, *spatial)`` (1–3 spatial dims) by the cross-shaped (connectivity-1)
    footprint, ``iterations`` times (scikit-image's and scipy's default footprint)."""
    x = mask.unsqueeze(1).to(torch.float32)
    d = x.ndim - 2
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[d - 1]
    for _ in range(iterations):
        lines = []
        for axis in range(d):
            k = tuple(3 if a == axis else 1 for a in range(d))
            p = tuple(1 if a == axis else 0 for a in range(d))
            lines.append(pool(x, k, 1, p))
        out = lines[0]
        for line in lines[1:]:
            out = torch.maximum(out, line)
        x = out
    return x[:, 0] > 0


def _tubed(fg: torch.Tensor, tube: int) -> torch.Tensor:
    """Tubed skeleton of each item of the bool ``fg`` ``(B, *spatial)`` (2 or 3 spatial dims), inside ``fg``."""
    if fg.ndim - 1 not in (2, 3):
        raise ValueError(f"skeletons need 2 or 3 spatial dims, got {fg.ndim - 1} (target shape {tuple(fg.shape)})")
    sk = _skeleton_op(fg)
    if tube:
        sk = dilate_cross(sk, tube)
    return sk & fg


def check_tube(tube: Any) -> int:
    if isinstance(tube, bool) or not isinstance(tube, int) or tube < 0:
        raise ValueError(f"tube must be a non-negative integer (dilations of the skeleton), got {tube!r}")
    return tube


def skeleton_target(target: torch.Tensor, *, mode: str, tube: int = 2) -> torch.Tensor:
    """The tubed skeleton of ``target``, as the ``skeleton_recall`` loss uses it (nnU-Net Skeleton-Recall's).

    * ``multiclass``: the foreground (all classes > 0, merged) is skeletonized per image, dilated ``tube``
      times with the cross-shaped footprint, kept inside the foreground and labelled with the target's classes:
      an int64 class map ``(N, *spatial)`` (0 off the skeleton). ``target``: index map ``(N, *spatial)`` or
      dense ``(N, C, *spatial)`` (its argmax is used).
    * ``multilabel`` / ``binary``: each channel's mask (``> 0.5``) on its own: float ``(N, C, *spatial)`` in {0, 1}.

    2 or 3 spatial dims (scikit-image's ``skeletonize``; Lee's method in 3D).

    Example:
        >>> t = torch.zeros(1, 9, 9, dtype=torch.long); t[0, 3:6, :] = 2
        >>> skeleton_target(t, mode="multiclass", tube=0)[0, 4]    # the midline of the band, labelled 2
        tensor([2, 2, 2, 2, 2, 2, 2, 0, 0])
    """
    _checks.check_mode(mode)
    tube = check_tube(tube)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if mode == "multiclass":
        labels = target.argmax(1) if target.is_floating_point() else target.long()
        return torch.where(_tubed(labels > 0, tube), labels, 0)
    if target.ndim < 2:
        raise ValueError(f"a dense {mode} target must have shape (N, C, *spatial), got {tuple(target.shape)}")
    fg = target > 0.5
    n, c = fg.shape[:2]
    sk = _tubed(fg.reshape(n * c, *fg.shape[2:]), tube).reshape(fg.shape)
    return sk.to(target.dtype if target.is_floating_point() else torch.float32)


# ----------------------------------------------------------------------------------- DataLoader transforms
class _SampleTransform:
    """A per-sample target transform: ``t(target)`` returns the map, ``t(sample_dict)`` adds it under ``out_key``."""

    out_key_default = "map"

    def __init__(self, mode: str, *, spatial_dims: int, num_classes: int | None = None, key: str = "target",
                 out_key: str | None = None) -> None:
        self.mode = _checks.check_mode(mode)
        if spatial_dims not in (1, 2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.key = key
        self.out_key = out_key or self.out_key_default

    def _batched(self, target: Any) -> torch.Tensor:
        """One sample's target -> the batched form (1, ...) that the batched functions take."""
        t = torch.as_tensor(target)
        d = self.spatial_dims
        if self.mode == "multiclass" and not t.is_floating_point() and t.dtype != torch.bool:
            if t.ndim == d + 1 and t.shape[0] == 1:
                t = t[0]
            if t.ndim != d:
                raise ValueError(f"a multiclass class-index sample target must have shape (*spatial) or (1, *spatial) "
                                 f"with {d} spatial dims, got {tuple(t.shape)}")
            return t[None]
        if self.mode == "binary" and t.ndim == d:
            t = t[None]
        if t.ndim != d + 1:
            raise ValueError(f"a dense {self.mode} sample target must have shape (C, *spatial) with {d} spatial dims, "
                             f"got {tuple(t.shape)}")
        return t[None]

    def compute(self, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, sample: Any) -> Any:
        if isinstance(sample, Mapping):
            if self.key not in sample:
                raise KeyError(f"{type(self).__name__}: the sample has no key {self.key!r} (keys: {sorted(sample)})")
            out = dict(sample)
            out[self.out_key] = self.compute(self._batched(sample[self.key]))[0]
            return out
        return self.compute(self._batched(sample))[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r}, spatial_dims={self.spatial_dims}, out_key={self.out_key!r})"


class SignedDistanceMap(_SampleTransform):
    """DataLoader transform: the signed distance map ``(C, *spatial)`` of one sample's target
    (:func:`signed_distance_map`), for ``BoundaryLoss(...)(logits, target, distance_map=batch["distance_map"])``.

    Example:
        >>> tf = SignedDistanceMap("multiclass", spatial_dims=2, num_classes=3)
        >>> sample = tf({"image": torch.randn(1, 8, 8), "target": torch.randint(0, 3, (8, 8))})
        >>> sample["distance_map"].shape
        torch.Size([3, 8, 8])
    """

    out_key_default = "distance_map"

    def compute(self, target: torch.Tensor) -> torch.Tensor:
        return signed_distance_map(target, mode=self.mode, num_classes=self.num_classes)


class DistanceField(_SampleTransform):
    """DataLoader transform: the distance field ``(C, *spatial)`` of one sample's target (:func:`distance_field`),
    for ``HausdorffDTLoss(...)(logits, target, distance_map=batch["distance_field"])``."""

    out_key_default = "distance_field"

    def compute(self, target: torch.Tensor) -> torch.Tensor:
        return distance_field(target, mode=self.mode, num_classes=self.num_classes)


class TubedSkeleton(_SampleTransform):
    """DataLoader transform: the tubed skeleton of one sample's target (:func:`skeleton_target`) — an int64 class
    map ``(*spatial)`` (multiclass) or a float ``(C, *spatial)`` map — for
    ``SkeletonRecallLoss(...)(logits, target, skeleton=batch["skeleton"])``. nnU-Net Skeleton-Recall computes it
    the same way in its data loader (``SkeletonTransform(do_tube=True)``).

    Example:
        >>> tf = TubedSkeleton("multiclass", spatial_dims=2)
        >>> tf(torch.randint(0, 3, (16, 16))).shape
        torch.Size([16, 16])
    """

    out_key_default = "skeleton"

    def __init__(self, mode: str, *, spatial_dims: int, tube: int = 2, key: str = "target",
                 out_key: str | None = None) -> None:
        super().__init__(mode, spatial_dims=spatial_dims, key=key, out_key=out_key)
        if spatial_dims not in (2, 3):
            raise ValueError(f"skeletons need 2 or 3 spatial dims, got spatial_dims={spatial_dims!r}")
        self.tube = check_tube(tube)

    def compute(self, target: torch.Tensor) -> torch.Tensor:
        return skeleton_target(target, mode=self.mode, tube=self.tube)


__all__ = [
    "signed_distance_map", "distance_field", "skeleton_target", "distance_maps_of_masks", "dilate_cross",
    "SignedDistanceMap", "DistanceField", "TubedSkeleton",
]
