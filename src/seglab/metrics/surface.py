"""Boundary metrics: Hausdorff distance (HD, HD95), average symmetric surface distance, normalised surface Dice.

Three named definitions (``definition=``), each equal to the library it is named after (docs/metrics.md has
the conventions table and a worked example where they differ):

``"monai"`` (default; MONAI, Metrics Reloaded)
    The boundary of a mask is its voxels with at least one face neighbour outside it (the mask minus its
    binary erosion, outside the image counts as background). ``d(A→B)`` are the Euclidean distances, in the
    units of ``spacing``, from each boundary voxel of A to the nearest boundary voxel of B. HD95 is the larger
    of the two directed 95th percentiles; ASSD and NSD count boundary voxels.
``"pooled"`` (medpy 0.5's ``medpy.metric.binary``)
    The same boundaries and distances; HD95 is one percentile of both directed distance sets pooled
    (``hd95``); ASSD the mean of the pooled distances (``assd``); NSD (medpy has none) as ``"monai"``.
``"surface_weighted"`` (DeepMind's ``surface-distance``)
    The surface lies on the grid of voxel corners: each corner whose 2×2(×2) neighbourhood of voxels is
    neither all inside nor all outside is a surface element, weighted by the length (2D, marching squares) or
    area (3D, marching cubes) of the surface through that neighbourhood. HD95 is the larger of the two
    directed area-weighted 95th percentiles (``compute_robust_hausdorff``: the smallest distance whose
    cumulative area fraction reaches 0.95, no interpolation); ASSD the area-weighted mean of both directions'
    distances; NSD the area within the tolerance over the total area (``compute_surface_dice_at_tolerance``).

Distances (within the union's bounding box; :func:`_distances`): an exact local search over the voxel lattice
settles the elements within two of the largest spacings of the other surface, a KD-tree (scipy) the few
farther ones; when many are far, one exact Euclidean distance transform of the other surface: the ``edt``
package's (multi-threaded, ``torch.get_num_threads()`` threads) when it is installed, scipy.ndimage's otherwise
(both in the ``metrics`` extra). ``edt`` computes in float32: its distances agree with scipy's float64 ones to a
few 1e-8 relative (an ASSD inherits that), while surface-Dice decisions ``d ≤ τ`` and the order statistics a
Hausdorff distance picks are settled exactly on the lattice in float64, so HD/HD95 are bit-equal to scipy's
and NSD counts the same elements.

**Empty-mask policy** (per image and class; Metrics Reloaded, Maier-Hein et al. 2024; every definition):

============================  ==========================  ================
case                          HD / HD95 / ASD             surface Dice
============================  ==========================  ================
both masks non-empty          the distance                the fraction
prediction and target empty   ``empty`` (NaN: skipped)    ``empty`` (NaN)
only one of them empty        ``inf`` + a RuntimeWarning  0
============================  ==========================  ================

NaN entries are left out of ``aggregate="mean"``; an ``inf`` is kept (the mean is then ``inf``): a missed or
hallucinated structure is the worst case, not a missing value. MONAI agrees except for HD95 with one mask
empty, which it returns as NaN (the percentile of infinities); medpy raises and DeepMind's returns inf.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import warnings
from typing import Any, NamedTuple
from collections.abc import Sequence

import numpy as np
import torch

from seglab._checks import check_bool, check_number
from seglab._extras import require
from seglab.metrics.overlap import aggregate_scores, check_aggregate, check_empty, class_masks

SpacingArg = float | Sequence[float] | None
SURFACE_AGGREGATES = ("mean", "none")
#: the named definitions of the boundary metrics (module docstring, docs/metrics.md)
DEFINITIONS = ("monai", "pooled", "surface_weighted")


def check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    """``spacing``: None (1 per axis), one positive number, or one positive number per spatial axis."""
    if spacing is None:
        return (1.0,) * ndim
    if isinstance(spacing, torch.Tensor | np.ndarray):
        spacing = spacing.tolist()
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        return (check_number("spacing", spacing, low=0, low_open=True),) * ndim
    if not isinstance(spacing, Sequence) or isinstance(spacing, str) or len(spacing) != ndim:
        raise ValueError(f"spacing must be None, a positive number or {ndim} positive numbers (one per spatial axis), "
                         f"got {spacing!r}")
    return tuple(check_number("spacing", s, low=0, low_open=True) for s in spacing)


def check_percentile(percentile: Any) -> float | None:
    """``percentile``: None (the maximum: the Hausdorff distance) or a number in [0, 100] (95: HD95)."""
    return None if percentile is None else check_number("percentile", percentile, low=0, high=100)


def check_tolerance(tolerance: Any, num_classes: int) -> tuple[float, ...]:
    """``tolerance``: one non-negative number, or one per class."""
    if isinstance(tolerance, torch.Tensor | np.ndarray):
        tolerance = tolerance.tolist()
    if isinstance(tolerance, numbers.Real) and not isinstance(tolerance, bool):
        return (check_number("tolerance", tolerance, low=0),) * num_classes
    if not isinstance(tolerance, Sequence) or isinstance(tolerance, str) or len(tolerance) != num_classes:
        raise ValueError(f"tolerance must be a non-negative number or {num_classes} of them (one per class), "
                         f"got {tolerance!r}")
    return tuple(check_number("tolerance", t, low=0) for t in tolerance)


#: relative slack of the surface-Dice comparison ``d <= tolerance``: a distance that equals the tolerance up to
#: float64 rounding (``3 * 0.8 = 2.4000000000000004`` against a tolerance written as ``2.4``) is at the tolerance.
#: Distinct distances on a voxel grid differ by far more than this for any spacing in use.
TOLERANCE_RTOL = 1e-9


def at_tolerance(tolerance: float) -> float:
    """The largest distance counted as within ``tolerance``: ``tolerance · (1 + TOLERANCE_RTOL)``.

    >>> 3 * 0.8 <= at_tolerance(2.4)
    True
    """
    return tolerance * (1.0 + TOLERANCE_RTOL)


def check_definition(definition: Any) -> str:
    """``definition``: one of :data:`DEFINITIONS`."""
    if definition not in DEFINITIONS:
        raise ValueError(f"definition must be one of {', '.join(map(repr, DEFINITIONS))}, got {definition!r}")
    return str(definition)


def _ndimage(feature: str) -> Any:
    return require("scipy.ndimage", feature)


def _edt_module() -> Any | None:
    """The ``edt`` package, or None when it is not installed (scipy.ndimage's transform is used then)."""
    try:
        return importlib.import_module("edt")
    except ImportError:
        return None


def distance_backend() -> str:
    """``"edt"`` when the ``edt`` package is installed (it then computes the distance transforms), else ``"scipy"``."""
    return "edt" if _edt_module() is not None else "scipy"


# ---- surfaces --------------------------------------------------------------------------------------------------

def _crop_box(union: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The bounding box of ``union`` grown by ``pad`` voxels, clipped to the image."""
    box = []
    for ax in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
        box.append(slice(max(int(hit[0]) - pad, 0), int(hit[-1]) + 1 + pad))
    return tuple(box)


def _voxel_boundary(mask: np.ndarray) -> np.ndarray:
    """``mask`` minus its erosion by the face-neighbour cross, outside the array counting as background
    (``scipy.ndimage.binary_erosion``'s defaults), by shifted ANDs."""
    interior = mask.copy()
    nd = mask.ndim
    for ax in range(nd):
        lo = tuple(slice(1, None) if a == ax else slice(None) for a in range(nd))
        hi = tuple(slice(None, -1) if a == ax else slice(None) for a in range(nd))
        interior[lo] &= mask[hi]
        interior[hi] &= mask[lo]
        interior[tuple(0 if a == ax else slice(None) for a in range(nd))] = False
        interior[tuple(-1 if a == ax else slice(None) for a in range(nd))] = False
    return mask & ~interior


#: 3D surface elements: for neighbour codes 0..127 (code c and 255 - c have the same surface), the marching-cubes
#: triangles through a unit cube of voxel centres, each as the absolute components of its area vector in eighths
#: ("400222111": three triangles, (4, 0, 0)/8, (2, 2, 2)/8, (1, 1, 1)/8; "-": no surface). These are the
#: triangulations of DeepMind's surface-distance (Apache-2.0, lookup_tables.py), re-encoded: its ambiguous
#: cases are its own, and tests/metrics/test_surface_definitions.py checks every code against it.
_CUBE_TRIANGLES = (
    "- 111 111 220220 111 202202 111111 400222111 111 111111 202202 400222111 220220 400222111 400222111 "
    "400400 111 022022 111111 040222111 111111 004222111 111111111 111222222111 111111 022022111 "
    "202202111 111333022202 111220220 333022111220 400111222111 400111222 111 111111 022022 040111222 "
    "111111 111202202 022022111 333022111202 111111 111111111 004222111 222222111111 111220220 "
    "400222111111 022333111220 400222111 220220 040222111 040111222 040040 220220111 333202111220 "
    "111040222111 040222111 111220220 040222111111 333220111202 040222111 220220220220 220220111 "
    "111220220 220220 111 111111 111111 111220220 022022 004222111 022022111 333022111220 111111 "
    "111111111 111202202 400222111111 040222111 222222111111 202333022111 400222111 202202 004222111 "
    "111202202 202333220111 004222111 004004 111111222004 111222004 202202111 004222111111 202202202202 "
    "111202202 202333220111 004222111 111202202 202202 111111 111111111 111022022 040111222111 022022111 "
    "004222111111 022022022022 022022111 111111111 111111111111 004222111111 111111111 040222111111 "
    "111111111 022022111 111111 400222111 222111222111 333022111202 040222111 333220022111 111222004 "
    "111022022 022022 400222111111 111111111 202202111 111111 220220111 111111 111111 111 "
)


@functools.lru_cache(maxsize=1)
def _cube_normals() -> tuple[np.ndarray, ...]:
    """Per neighbour code 0..255, the ``(k, 3)`` area vectors (unit spacing) of its marching-cubes triangles."""
    half = []
    for word in _CUBE_TRIANGLES.split():
        digits = [] if word == "-" else [int(ch) for ch in word]
        half.append(np.asarray(digits, dtype=np.float64).reshape(-1, 3) / 8.0)
    assert len(half) == 128
    return tuple(half) + tuple(half[255 - c] for c in range(128, 256))


def surface_element_sizes(spacing: Sequence[float]) -> np.ndarray:
    """Length (2D, 16 codes) or area (3D, 256 codes) of the surface through each corner neighbourhood.

    The code of a corner sets bit ``2**(2**d - 1 - i)`` for the ``i``-th voxel of its 2×2(×2) neighbourhood
    in C order (the first voxel is the most significant bit), as DeepMind's ``ENCODE_NEIGHBOURHOOD_*_KERNEL``.
    2D: marching squares through the voxel centres: one inside (or outside) corner cuts a diagonal half-segment
    ``√(s0² + s1²)/2``, two side by side a straight segment (``s1`` across rows, ``s0`` across columns), two
    opposite two diagonal ones. 3D: each triangle's unit-cube area vector ``n`` scales to
    ``(n0·s1·s2, n1·s0·s2, n2·s0·s1)``; the code's area is the sum of the norms.
    """
    if len(spacing) == 2:
        s0, s1 = float(spacing[0]), float(spacing[1])
        diag = 0.5 * math.sqrt(s0 ** 2 + s1 ** 2)
        out = np.zeros(16)
        for code in range(16):
            bits = [(code >> (3 - i)) & 1 for i in range(4)]  # top-left, top-right, bottom-left, bottom-right
            n = sum(bits)
            if n in (1, 3):
                out[code] = diag
            elif n == 2:
                if bits[0] == bits[1]:      # one row inside: a segment along the rows' axis (axis 1)
                    out[code] = s1
                elif bits[0] == bits[2]:    # one column inside: along axis 0
                    out[code] = s0
                else:                       # opposite corners: two diagonal cuts
                    out[code] = 2 * diag
        return out
    s0, s1, s2 = (float(s) for s in spacing)
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.array([float(np.linalg.norm(n * scale, axis=1).sum()) if len(n) else 0.0 for n in _cube_normals()])


def _corner_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour codes on the corner grid of ``mask`` (which has a background margin of one voxel on every side
    of its content): corner ``c`` sees voxels ``c .. c + 1`` along each axis; shape ``mask.shape - 1``."""
    nd = mask.ndim
    out_shape = tuple(s - 1 for s in mask.shape)
    code = np.zeros(out_shape, dtype=np.uint8)
    m8 = mask.view(np.uint8)
    for i in range(2 ** nd):
        off = [(i >> (nd - 1 - a)) & 1 for a in range(nd)]
        sl = tuple(slice(o, o + n) for o, n in zip(off, out_shape, strict=True))
        code |= m8[sl] << np.uint8(2 ** nd - 1 - i)
    return code


class Surfaces(NamedTuple):
    """The two surfaces of one prediction/target pair, cropped to a common box.

    ``pred``/``target``: boolean masks of the surface elements (voxels or corners); ``pred_w``/``target_w``:
    their weights (None: one per element); ``spacing``: per axis.
    """

    pred: np.ndarray
    target: np.ndarray
    pred_w: np.ndarray | None
    target_w: np.ndarray | None
    spacing: tuple[float, ...]


def surfaces(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float],
             definition: str = "monai") -> Surfaces | None:
    """The surfaces of two boolean masks ``(*spatial)`` under ``definition`` (None when both masks are empty)."""
    union = pred | target
    if not union.any():
        return None
    sp = tuple(float(s) for s in spacing)
    if definition != "surface_weighted":
        box = _crop_box(union, 1)  # +1 voxel: the voxel boundaries are unchanged
        return Surfaces(_voxel_boundary(pred[box]), _voxel_boundary(target[box]), None, None, sp)
    box = _crop_box(union, 0)
    cp = np.pad(pred[box], 1)
    ct = np.pad(target[box], 1)
    cp_code, ct_code = _corner_codes(cp), _corner_codes(ct)
    full = np.uint8(2 ** (2 ** pred.ndim) - 1)
    sp_, st_ = (cp_code != 0) & (cp_code != full), (ct_code != 0) & (ct_code != full)
    table = surface_element_sizes(sp)
    return Surfaces(sp_, st_, table[cp_code[sp_]], table[ct_code[st_]], sp)


# ---- distances -------------------------------------------------------------------------------------------------

#: the local search looks this many times the largest spacing far; farther elements go to a KD-tree or the EDT
_LOCAL_REACH = 2.0
#: at most this fraction of the elements unresolved by the local search: a KD-tree for them; more: one EDT
_KD_FRACTION = 0.25


@functools.lru_cache(maxsize=32)
def _ball(spacing: tuple[float, ...], radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Lattice offsets of length ≤ ``radius`` sorted by length, and their lengths (float64, as scipy's transform
    computes a distance: ``sqrt(Σ ((k_i) s_i)²)`` summed in axis order)."""
    sp = np.asarray(spacing)
    reach = np.floor(radius / sp).astype(int)
    grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    offs = np.stack([g.ravel() for g in grids], axis=1)
    length = np.sqrt(((offs * sp) ** 2).sum(axis=1))
    keep = np.flatnonzero(length <= radius)
    order = keep[np.argsort(length[keep], kind="stable")]
    return offs[order], length[order]


def _edt_distances(ref: np.ndarray, at: np.ndarray, spacing: tuple[float, ...],
                   ndimage: Any) -> tuple[np.ndarray, bool]:
    """One transform of ``~ref`` over the box, read at ``at``: (distances, exact?) — ``edt``'s float32 values
    when it is installed, scipy's float64 ones otherwise."""
    e = _edt_module() if ref.ndim in (2, 3) else None
    if e is not None:
        d2 = e.edtsq(np.ascontiguousarray(~ref), anisotropy=spacing, parallel=max(1, torch.get_num_threads()))
        return np.sqrt(d2[at].astype(np.float64)), False
    return ndimage.distance_transform_edt(~ref, sampling=spacing)[at], True


def _distances(ref: np.ndarray, at: np.ndarray, spacing: tuple[float, ...], ndimage: Any) -> tuple[np.ndarray, bool]:
    """Distances (float64) from each element of ``at`` to the nearest element of ``ref`` (non-empty), and
    whether they are exact float64 values or float32-derived ones (``edt``).

    Most elements of one surface lie within a few voxels of the other: a local search over the lattice offsets
    of length ≤ ``_LOCAL_REACH × max(spacing)``, shortest first, gives their exact distance (the first offset
    that lands on ``ref``). The rest, when few, get theirs from a KD-tree of ``ref``'s elements (the distance then
    recomputed from the integer offset); when many, from one distance transform of the box.
    """
    flat_at = np.flatnonzero(at)
    m = flat_at.size
    sp = np.asarray(spacing)
    offs, lengths = _ball(spacing, _LOCAL_REACH * max(spacing))
    reach = np.abs(offs).max(axis=0)
    padded = np.pad(ref, [(int(r), int(r)) for r in reach])
    strides = np.asarray(padded.strides, dtype=np.int64) // padded.itemsize
    coords = np.unravel_index(flat_at, at.shape)
    cur = np.zeros(m, dtype=np.int64)
    for c, r, st in zip(coords, reach, strides, strict=True):
        cur += (c + r) * st
    deltas = offs @ strides
    pflat = padded.ravel()
    d = np.full(m, np.inf)
    rem = np.arange(m)
    half = int(np.searchsorted(lengths, lengths[-1] / 2, side="right"))
    for i, (delta, length) in enumerate(zip(deltas, lengths, strict=True)):
        if i == half and rem.size > m / 2:
            break  # the surfaces are far apart: the transform will be needed anyway
        hit = pflat[cur + delta]
        if hit.any():
            d[rem[hit]] = length
            keep = ~hit
            rem, cur = rem[keep], cur[keep]
            if rem.size == 0:
                return d, True
    if rem.size <= _KD_FRACTION * m:
        spatial = require("scipy.spatial", "surface distances")
        ref_pts = np.argwhere(ref)
        q = np.stack([c[rem] for c in coords], axis=1)
        tree = spatial.cKDTree(ref_pts * sp, leafsize=64, balanced_tree=False, compact_nodes=False)  # 3x faster built
        _, j = tree.query(q * sp)
        d[rem] = np.sqrt((((ref_pts[j] - q) * sp) ** 2).sum(axis=1))
        return d, True
    full, exact = _edt_distances(ref, at, spacing, ndimage)
    d[rem] = full[rem]
    return d, exact


#: relative band around a surface-Dice tolerance in which float32 distances are settled on the lattice
_BAND = 1e-5


def _within(d: np.ndarray, exact: bool, tolerance: float, at: np.ndarray, ref: np.ndarray,
            spacing: tuple[float, ...]) -> np.ndarray:
    """Which distances ``d`` (from the elements of ``at`` to ``ref``) are within ``tolerance`` (+ TOLERANCE_RTOL).

    Exact distances are compared directly. Float32 ones that lie within ``_BAND`` of the tolerance are settled
    exactly: such an element is within iff some lattice offset ``k`` of length in
    ``[τ(1 - 2·_BAND), at_tolerance(τ)]`` (float64) leads to an element of ``ref``.
    """
    lim = at_tolerance(tolerance)
    ok = d <= lim
    if exact or tolerance <= 0:
        return ok  # float32 distances are 0 exactly where they are 0
    band = np.flatnonzero(np.abs(d - tolerance) <= _BAND * tolerance)
    if band.size == 0:
        return ok
    sp = np.asarray(spacing)
    reach = np.floor(lim / sp).astype(int)
    grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    offs = np.stack([g.ravel() for g in grids], axis=1)
    length = np.sqrt(((offs * sp) ** 2).sum(axis=1))
    offs = offs[(length >= tolerance * (1 - 2 * _BAND)) & (length <= lim)]
    pts = np.stack(np.unravel_index(np.flatnonzero(at)[band], at.shape), axis=1)
    hit = np.zeros(band.size, dtype=bool)
    shape = np.asarray(ref.shape)
    for k in offs:  # a thin shell: a handful of offsets
        q = pts + k
        inside = np.all((q >= 0) & (q < shape), axis=1)
        hit[inside] |= ref[tuple(q[inside].T)]
    ok[band] = hit
    return ok


#: bound on the relative error of ``edt``'s float32 squared distances (observed: about 1e-7)
_SNAP = 1e-6


def _shell(d2: float, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lattice offsets ``k`` whose squared length ``Σ (k_i s_i)²`` lies within ``_SNAP`` of ``d2``, and their
    float64 lengths (computed as scipy's transform computes its distances)."""
    sp = np.asarray(spacing)
    lo, hi = d2 * (1 - _SNAP), d2 * (1 + _SNAP)
    reach = np.floor(np.sqrt(hi) / sp[:-1]).astype(int)
    heads = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), -1).reshape(-1, sp.size - 1)
    rest_lo = np.maximum(lo - ((heads * sp[:-1]) ** 2).sum(axis=1), 0.0)
    rest_hi = hi - ((heads * sp[:-1]) ** 2).sum(axis=1)
    ok = rest_hi >= 0
    heads, first = heads[ok], np.ceil(np.sqrt(rest_lo[ok]) / sp[-1])
    # the band is far thinner than a voxel: at most two last coordinates per head
    cand = [np.concatenate([heads, sign * (first + extra)[:, None]], axis=1) for extra in (0, 1) for sign in (1, -1)]
    offs = np.unique(np.concatenate(cand).astype(np.int64), axis=0)
    sq = ((offs * sp) ** 2).sum(axis=1)
    keep = (sq >= lo) & (sq <= hi)
    return offs[keep], np.sqrt(sq[keep])


def _snap(d: np.ndarray, idx: np.ndarray, at: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Replace the float32-derived distances ``d[idx]`` (from elements of ``at`` to ``ref``) by their exact float64
    values, found on the lattice: the shortest offset within ``_SNAP`` of the approximation that reaches ``ref``."""
    flat = np.flatnonzero(at)
    shape = np.asarray(ref.shape)
    for val in np.unique(d[idx]):
        grp = idx[d[idx] == val]
        pts = np.stack(np.unravel_index(flat[grp], at.shape), axis=1)
        best = np.full(grp.size, np.inf)
        offs, lengths = _shell(float(val) ** 2, spacing)
        for k, length in zip(offs, lengths, strict=True):
            q = pts + k
            inside = np.all((q >= 0) & (q < shape), axis=1)
            hit = np.zeros(grp.size, dtype=bool)
            hit[inside] = ref[tuple(q[inside].T)]
            best[hit] = np.minimum(best[hit], length)
        d[grp] = np.where(np.isfinite(best), best, d[grp])


class SurfaceDistances(NamedTuple):
    """Directed distances between two surfaces; weights None means one per element (voxel definitions).

    ``exact``: float64 distances (scipy); otherwise float32-derived (``edt``), and ``pred``/``target`` (the
    surfaces) and ``spacing`` let :meth:`exact_near` settle chosen values exactly.
    """

    pred_to_target: np.ndarray
    target_to_pred: np.ndarray
    pred_w: np.ndarray | None
    target_w: np.ndarray | None
    pred_within: np.ndarray | None = None
    target_within: np.ndarray | None = None
    exact: bool = True
    pred: np.ndarray | None = None
    target: np.ndarray | None = None
    spacing: tuple[float, ...] = ()

    def exact_near(self, anchors: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """Both distance arrays with every value within ``2·_SNAP`` (relative) of an anchor made exact: the order
        statistics a Hausdorff distance picks (the anchors being their approximations) are then exact, and the
        values that could swap places with them are too."""
        out = [self.pred_to_target, self.target_to_pred]
        if self.exact or self.pred is None or self.target is None:
            return out[0], out[1]
        for side, (at, ref) in enumerate(((self.pred, self.target), (self.target, self.pred))):
            d = out[side]
            near = np.zeros(d.size, dtype=bool)
            for a in anchors:
                if a > 0 and math.isfinite(a):
                    near |= np.abs(d - a) <= 2 * _SNAP * a
            idx = np.flatnonzero(near)
            if idx.size:
                d = d.copy()
                _snap(d, idx, at, ref, self.spacing)
                out[side] = d
        return out[0], out[1]


def surface_distances(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], definition: str = "monai",
                      *, tolerance: float | None = None, both: bool = True,
                      ndimage: Any | None = None) -> SurfaceDistances | None:
    """Directed surface distances between two boolean masks ``(*spatial)`` under ``definition``.

    None when both masks are empty; an empty array on the side whose mask is empty when only one is (the
    other side's distances are then ``inf``). ``tolerance``: also say which distances are within it
    (``pred_within``/``target_within``, exact). ``both=False`` leaves ``target_to_pred`` empty (one transform).
    """
    ndimage = ndimage if ndimage is not None else _ndimage("surface distances")
    s = surfaces(pred, target, spacing, check_definition(definition))
    if s is None:
        return None
    if not s.pred.any() or not s.target.any():
        n_other = int(s.target.sum() if not s.pred.any() else s.pred.sum())
        inf = np.full(n_other, np.inf)
        d_pt, d_tp = (np.empty(0), inf) if not s.pred.any() else (inf, np.empty(0))
        no = np.zeros(n_other, dtype=bool)
        w_in = (np.empty(0, bool), no) if not s.pred.any() else (no, np.empty(0, bool))
        return SurfaceDistances(d_pt, d_tp, s.pred_w, s.target_w, *(w_in if tolerance is not None else (None, None)))
    d_pt, exact_pt = _distances(s.target, s.pred, s.spacing, ndimage)
    d_tp, exact_tp = (_distances(s.pred, s.target, s.spacing, ndimage) if both or tolerance is not None
                      else (np.empty(0), True))
    exact = exact_pt and exact_tp
    within = (None, None) if tolerance is None else (
        _within(d_pt, exact_pt, tolerance, s.pred, s.target, s.spacing),
        _within(d_tp, exact_tp, tolerance, s.target, s.pred, s.spacing))
    return SurfaceDistances(d_pt, d_tp, s.pred_w, s.target_w, within[0], within[1], exact=exact,
                            pred=None if exact else s.pred, target=None if exact else s.target, spacing=s.spacing)


def boundary_distances(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float],
                       ndimage: Any | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(d(pred→target), d(target→pred))`` between the voxel boundaries of two boolean masks ``(*spatial)``
    (the ``"monai"`` definition; :func:`surface_distances` for the others).

    None when both masks are empty; an empty array on the side whose mask is empty when only one is (the
    other side's distances are then ``inf``).
    """
    d = surface_distances(pred, target, spacing, "monai", ndimage=ndimage)
    return None if d is None else (d.pred_to_target, d.target_to_pred)


# ---- reductions ------------------------------------------------------------------------------------------------

def weighted_percentile(d: np.ndarray, w: np.ndarray, percentile: float) -> float:
    """The smallest distance whose cumulative weight fraction (distances ascending, ties by weight) reaches
    ``percentile``/100 (DeepMind's ``compute_robust_hausdorff``; no interpolation)."""
    order = np.lexsort((w, d))
    ds, ws = d[order], w[order]
    cum = np.cumsum(ws) / np.sum(ws)
    return float(ds[min(int(np.searchsorted(cum, percentile / 100.0)), ds.size - 1)])


def _order_statistics(d: np.ndarray, percentile: float) -> list[float]:
    """The (at most two) values that ``np.percentile(d, percentile)`` interpolates between."""
    pos = (d.size - 1) * percentile / 100.0
    ks = sorted({int(math.floor(pos)), min(int(math.ceil(pos)), d.size - 1)})
    part = np.partition(d, ks)
    return [float(part[k]) for k in ks]


def _hd_value(d_pt: np.ndarray, d_tp: np.ndarray, s: SurfaceDistances, definition: str,
              percentile: float | None, directed: bool) -> float:
    sides = [(d_pt, s.pred_w)] + ([] if directed else [(d_tp, s.target_w)])
    if percentile is None:
        return max(float(d.max()) for d, _ in sides)
    if definition == "pooled":
        return float(np.percentile(np.concatenate([d for d, _ in sides]), percentile))
    if definition == "surface_weighted":
        return max(weighted_percentile(d, _weights(w), percentile) for d, w in sides)
    return max(float(np.percentile(d, percentile)) for d, _ in sides)


def _weights(w: np.ndarray | None) -> np.ndarray:
    assert w is not None  # surface_weighted surfaces carry their element sizes
    return w


def _hd(s: SurfaceDistances, definition: str, percentile: float | None, directed: bool) -> float:
    value = _hd_value(s.pred_to_target, s.target_to_pred, s, definition, percentile, directed)
    if s.exact:
        return value
    # float32-derived distances (edt): make the picked order statistics exact (and whatever could tie with them)
    sides = [s.pred_to_target] + ([] if directed else [s.target_to_pred])
    if percentile is None or definition == "surface_weighted":
        anchors = [value] if percentile is None else [
            weighted_percentile(d, _weights(w), percentile) for d, w in zip(sides, (s.pred_w, s.target_w), strict=False)]  # directed: one side
    elif definition == "pooled":
        anchors = _order_statistics(np.concatenate(sides), percentile)
    else:
        anchors = [a for d in sides for a in _order_statistics(d, percentile)]
    d_pt, d_tp = s.exact_near(anchors)
    return _hd_value(d_pt, d_tp, s, definition, percentile, directed)


def _asd(s: SurfaceDistances, definition: str, symmetric: bool) -> float:
    if definition == "surface_weighted":
        assert s.pred_w is not None and s.target_w is not None
        if not symmetric:
            return float(np.sum(s.pred_to_target * s.pred_w) / np.sum(s.pred_w))
        return float((np.sum(s.pred_to_target * s.pred_w) + np.sum(s.target_to_pred * s.target_w))
                     / (np.sum(s.pred_w) + np.sum(s.target_w)))
    if not symmetric:
        return float(s.pred_to_target.mean())
    return float(np.concatenate([s.pred_to_target, s.target_to_pred]).mean())


def _nsd(s: SurfaceDistances, definition: str) -> float:
    assert s.pred_within is not None and s.target_within is not None
    if definition == "surface_weighted":
        assert s.pred_w is not None and s.target_w is not None
        return float((np.sum(s.pred_w[s.pred_within]) + np.sum(s.target_w[s.target_within]))
                     / (np.sum(s.pred_w) + np.sum(s.target_w)))
    return (np.count_nonzero(s.pred_within) + np.count_nonzero(s.target_within)) / (
        s.pred_within.size + s.target_within.size)


def per_image_values(kind: str, pred: torch.Tensor, target: torch.Tensor, *, mode: str, num_classes: int,
               ignore_index: int | None, spacing: Any, empty: float, percentile: float | None = None,
               directed: bool = False, symmetric: bool = True,
               tolerance: tuple[float, ...] | None = None, definition: str = "monai") -> torch.Tensor:
    """``(N, C)`` float64 values of one boundary metric (``kind``: "hd", "asd" or "nsd") under ``definition``."""
    definition = check_definition(definition)
    pm, tm = class_masks(pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    sp = check_spacing(spacing, pm.ndim - 2)
    ndimage = _ndimage({"hd": "hausdorff_distance", "asd": "average_surface_distance",
                        "nsd": "surface_dice"}[kind])
    pn, tn = pm.cpu().numpy(), tm.cpu().numpy()
    n, c = pn.shape[:2]
    out = np.empty((n, c), dtype=np.float64)
    one_empty: list[tuple[int, int]] = []
    both = not ((kind == "hd" and directed) or (kind == "asd" and not symmetric))
    for i in range(n):
        for k in range(c):
            tol = (tolerance[k] if tolerance is not None else 0.0) if kind == "nsd" else None
            d = surface_distances(pn[i, k], tn[i, k], sp, definition, tolerance=tol, both=both, ndimage=ndimage)
            if d is None:
                out[i, k] = empty
            elif kind == "nsd":
                out[i, k] = _nsd(d, definition)
            elif not pn[i, k].any() or not tn[i, k].any():
                one_empty.append((i, k))
                out[i, k] = math.inf
            elif kind == "hd":
                out[i, k] = _hd(d, definition, percentile, directed)
            else:
                out[i, k] = _asd(d, definition, symmetric)
    if one_empty:
        classes = sorted({k for _, k in one_empty})
        warnings.warn(f"{len(one_empty)} image/class pair(s) (classes {classes}) have an empty prediction or an "
                      "empty target: their distance is inf (empty-mask policy, docs/metrics.md)",
                      RuntimeWarning, stacklevel=3)
    return torch.from_numpy(out).to(pred.device)


def hausdorff_distance(pred: torch.Tensor, target: torch.Tensor, percentile: float | None = 95,
                       spacing: SpacingArg = None, *, mode: str, num_classes: int, ignore_index: int | None = None,
                       directed: bool = False, aggregate: str = "mean", empty: float = float("nan"),
                       definition: str = "monai") -> torch.Tensor:
    """Per-class (percentile) Hausdorff distance between boundaries, in units of ``spacing``.

    ``HD_p = max(P_p(d(pred→target)), P_p(d(target→pred)))`` with ``P_p`` the ``percentile``-th percentile
    (linear interpolation); ``percentile=None`` takes the maximum (the Hausdorff distance), 95 gives HD95.
    ``directed=True`` keeps only ``d(pred→target)``. Inputs as :func:`seglab.metrics.dice_score`: class maps
    ``(N, *spatial)`` (multiclass) or masks ``(N, C, *spatial)``, 2D or 3D; ``spacing`` one number or one per
    axis. ``aggregate="mean"``: mean over images ``(C,)``; ``"none"``: ``(N, C)``. Empty masks: module docstring.
    ``definition="monai"`` equals MONAI's ``compute_hausdorff_distance(..., include_background=True)``;
    ``"pooled"`` takes one percentile of both directions pooled (medpy's ``hd95``/``hd``); ``"surface_weighted"``
    the larger directed area-weighted percentile on the corner grid (DeepMind's ``compute_robust_hausdorff``).

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> p = torch.zeros(1, 8, 8, dtype=torch.long); p[0, 2:6, 2:7] = 1
    >>> hausdorff_distance(p, t, percentile=None, spacing=(1.0, 0.5), mode="multiclass", num_classes=2).tolist()
    [0.5, 0.5]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    v = per_image_values("hd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), percentile=check_percentile(percentile),
                   directed=check_bool("directed", directed), definition=check_definition(definition))
    return aggregate_scores(v, aggregate)


def average_surface_distance(pred: torch.Tensor, target: torch.Tensor, spacing: SpacingArg = None, *, mode: str,
                             num_classes: int, ignore_index: int | None = None, symmetric: bool = True,
                             aggregate: str = "mean", empty: float = float("nan"),
                             definition: str = "monai") -> torch.Tensor:
    """Per-class average (symmetric) surface distance, in units of ``spacing``.

    ``ASSD = (Σ d(pred→target) + Σ d(target→pred)) / (|∂pred| + |∂target|)`` (``symmetric=True``, Metrics
    Reloaded's ASSD); ``symmetric=False`` averages ``d(pred→target)`` only (MONAI's default). Equals MONAI's
    ``compute_average_surface_distance(..., include_background=True, symmetric=symmetric)`` and, symmetric,
    medpy's ``assd`` (``definition="pooled"``). ``"surface_weighted"``: each distance weighted by its surface
    element's area, ``(Σ a·d(pred→target) + Σ a·d(target→pred)) / (Σ a_pred + Σ a_target)`` (symmetric) or
    the second value of DeepMind's ``compute_average_surface_distance`` (not symmetric). Inputs,
    ``aggregate`` and empty masks as :func:`hausdorff_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> average_surface_distance(t, t, mode="multiclass", num_classes=2).tolist()
    [0.0, 0.0]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    v = per_image_values("asd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), symmetric=check_bool("symmetric", symmetric),
                   definition=check_definition(definition))
    return aggregate_scores(v, aggregate)


def surface_dice(pred: torch.Tensor, target: torch.Tensor, tolerance: float | Sequence[float],
                 spacing: SpacingArg = None, *, mode: str, num_classes: int, ignore_index: int | None = None,
                 aggregate: str = "mean", empty: float = float("nan"), definition: str = "monai") -> torch.Tensor:
    """Per-class normalised surface Dice (NSD, Nikolov et al. 2021) at ``tolerance`` (units of ``spacing``).

    ``NSD = (|{d(pred→target) ≤ τ}| + |{d(target→pred) ≤ τ}|) / (|∂pred| + |∂target|)``, boundaries counted
    in voxels; ``tolerance`` one number or one per class. Equals MONAI's ``compute_surface_dice(...,
    include_background=True, use_subvoxels=False)`` (``definition="monai"`` and ``"pooled"``).
    ``"surface_weighted"``: surface elements weighted by area on the corner grid, DeepMind's
    ``compute_surface_dice_at_tolerance``. Inputs, ``aggregate`` and empty masks as :func:`hausdorff_distance`.

    >>> t = torch.zeros(1, 8, 8, dtype=torch.long); t[0, 2:6, 2:6] = 1
    >>> p = torch.zeros(1, 8, 8, dtype=torch.long); p[0, 2:6, 2:7] = 1
    >>> surface_dice(p, t, 1.0, mode="multiclass", num_classes=2).tolist()
    [1.0, 1.0]
    """
    aggregate = check_aggregate(aggregate, SURFACE_AGGREGATES)
    tol = check_tolerance(tolerance, num_classes)
    v = per_image_values("nsd", pred, target, mode=mode, num_classes=num_classes, ignore_index=ignore_index,
                   spacing=spacing, empty=check_empty(empty), tolerance=tol, definition=check_definition(definition))
    return aggregate_scores(v, aggregate)
