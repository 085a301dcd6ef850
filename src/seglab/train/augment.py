"""Training-time augmentation of a batch: random flips, 90° rotations and intensity changes, pure torch.

Deterministic: the draws of step ``k`` of a run with seed ``s`` come from their own generator seeded by ``(s, k)``
(never torch's global one), so a run is reproducible bit for bit, resumes exactly and does not change with the
number of processes (the global batch is augmented before it is split across ranks). Works for 2D and 3D
samples; targets (class indices ``(B, *S)`` or channel masks ``(B, C, *S)``) get the same geometric transform
as their images, never the intensity one.

Why pure torch: per-sample flips and ``rot90`` of small tensors are a few lines, exact (no interpolation), and add
no dependency; kornia and MONAI offer the same transforms but draw from global generators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: the transforms ``--augment`` accepts
AUGMENTS = ("flips", "rot90", "intensity")


def check_augment(names: Sequence[str]) -> None:
    """Raise ValueError for an unknown or repeated transform name."""
    unknown = [n for n in names if n not in AUGMENTS]
    if unknown:
        raise ValueError(f"augment: unknown transform(s) {unknown}; choose from {', '.join(AUGMENTS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"augment: a transform is given twice in {list(names)}")


def _generator(seed: int, step: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 0x5EED) % (2**63 - 1))
    return g


def augment_batch(x: torch.Tensor, y: torch.Tensor, names: Sequence[str], *, spatial_dims: int, seed: int,
                  step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` transformed per sample by ``names`` (in the order of :data:`AUGMENTS`):

    * ``flips``: each spatial axis flipped with probability 1/2;
    * ``rot90``: a rotation by k·90° (k uniform in 0..3; 0 or 180° only when the plane is not square) in the
      plane of the last two spatial axes;
    * ``intensity``: the image scaled by a factor in [0.9, 1.1] and shifted by [-0.1, 0.1] (per sample).
    """
    if not names:
        return x, y
    g = _generator(seed, step)
    B = x.shape[0]
    sd = int(spatial_dims)
    xs, ys = [], []
    for i in range(B):
        xi, yi = x[i], y[i]
        if "flips" in names:
            flip = torch.rand(sd, generator=g) < 0.5
            dims = [-(sd - a) for a in range(sd) if bool(flip[a])]
            if dims:
                xi, yi = xi.flip(dims), yi.flip(dims)
        if "rot90" in names:
            k = int(torch.randint(0, 4, (1,), generator=g))
            if xi.shape[-1] != xi.shape[-2]:
                k = 2 * (k % 2)
            if k:
                xi, yi = torch.rot90(xi, k, dims=(-2, -1)), torch.rot90(yi, k, dims=(-2, -1))
        if "intensity" in names:
            scale = 0.9 + 0.2 * torch.rand((), generator=g)
            shift = -0.1 + 0.2 * torch.rand((), generator=g)
            xi = xi * scale.to(xi.dtype) + shift.to(xi.dtype)
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)
