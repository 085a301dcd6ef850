"""Streaming mask statistics: infer each file's encoding, decode it, and accumulate per-class counts.

Nothing here holds more than one file's array at a time: :class:`MaskStats` keeps per-class counters,
per-pair overlap counters and a histogram of "which classes are present in an image" patterns (at most one
entry per distinct pattern), so memory stays bounded however many files are read.

Files are decoded by the one mask reader that the folder task uses too, :mod:`seglab.data.masks` (encodings
``index``, ``palette``, ``onehot``, ``multihot``, ``rgb``: see there); every file also goes through its
:class:`~seglab.data.masks.LabelSummary` (``MaskStats.summary``), which refuses a file that is not a mask (negative or
huge labels, too many colours, an image rather than a label map: :func:`~seglab.data.masks.image_like`), and
:meth:`MaskStats.label_space` decides the classes and mode with the same rules as the folder task.

**Structure** (:class:`StructureStats`, needs the ``structure`` extra: scipy and scikit-image; skipped with a
note without it): per class and image, the connected components (full connectivity: 8 in 2D, 26 in 3D) and
their sizes and boundary pixels, and the skeleton (``skimage.morphology.skeletonize``) of the components at
most ``SKELETON_THICKNESS`` thick (thicker ones cannot be tubular, and thinning them is slow) — summed into
per-class counters and a log2 histogram of component sizes, one image at a time. Index masks: label 0 (the background) is not
measured; colour masks are not measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# the one mask reader (decoding, format detection, the label space) is seglab.data.masks; these names are
# re-exported for the advise modules and for callers of seglab.advise.stats
from seglab.data.masks import (  # noqa: F401
    COLOUR_NAMES,
    FORMATS,
    MAX_CHANNELS,
    MAX_COLOURS,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    Decoded,
    LabelSpace,
    LabelSummary,
    colour_name,
    decode,
    label_space,
    rgb_code,
)

MAX_LISTED = 50  # file names kept for the "empty" / "skipped" lists (counts are always exact)


SMALL_COMPONENT = 0.001  # a connected component below this fraction of its image's pixels counts as small
SKELETON_THICKNESS = 16.0  # components thicker than this (2 x size / boundary pixels) are not skeletonised
MAX_STRUCTURE_LABELS = 64  # index images with more distinct labels are not measured (instance ids, not classes)
SIZE_BINS = 48  # log2 histogram of component sizes: bin k holds sizes in [2^k, 2^(k+1))


def elongation(size: np.ndarray, boundary: np.ndarray, ndim: int) -> np.ndarray:
    """Length / width of components from their size and boundary pixels, exact for ribbons and tubes.

    2D: a ribbon L x w has size Lw and boundary ~2L: ``boundary² / (4 size)`` = L / w (a disc gives π).
    3D: a tube of radius r has volume πr²L and surface ~2πrL: ``boundary³ / (16π size²)`` = L / 2r (a ball: 2.25).
    """
    b, n = boundary.astype(np.float64), np.maximum(size.astype(np.float64), 1)
    return b * b / (4 * n) if ndim == 2 else b ** 3 / (16 * np.pi * n * n)


@dataclass
class ClassStructure:
    """Summed structure measures of one class over the images where it is present."""

    images: int = 0  # images (volumes) where the class has pixels
    pixels: int = 0  # its pixels in them
    boundary: int = 0  # boundary pixels (with a face neighbour outside the class)
    components: int = 0  # connected components
    thin_components: int = 0  # components at most SKELETON_THICKNESS thick (2 x size / boundary pixels) ...
    thin_pixels: int = 0  # ... their pixels ...
    skeleton: int = 0  # ... and their skeleton pixels (a component whose skeleton vanishes counts as 1)
    thin_elongation: float = 0.0  # Σ size x elongation over thin components (length / width from size and boundary)
    small_components: int = 0  # components below SMALL_COMPONENT of their image
    small_pixels: int = 0  # pixels in those
    max_components: int = 0  # most components in one image
    size_hist: list[int] = field(default_factory=lambda: [0] * SIZE_BINS)

    def median_component_size(self) -> float:
        """Median component size, from the log2 histogram (the geometric middle of its bin)."""
        if not self.components:
            return float("nan")
        half, acc = self.components / 2, 0
        for k, n in enumerate(self.size_hist):
            acc += n
            if acc >= half:
                return float(2 ** (k + 0.5)) if k else 1.0
        return float("nan")


@dataclass
class StructureStats:
    """Per-class structure measures (see the module docstring); ``error`` says why nothing was measured."""

    enabled: bool = True
    error: str = ""
    classes: dict[int, ClassStructure] = field(default_factory=dict)  # label value (index) or channel -> measures
    _tools: Any = None

    def _load(self) -> bool:
        if not self.enabled or self.error:
            return False
        if self._tools is None:
            from seglab._extras import MissingExtraError, require

            try:
                self._tools = (require("scipy.ndimage", "structure measures of seglab advise"),
                               require("skimage.morphology", "structure measures of seglab advise"))
            except MissingExtraError as e:
                self.error = str(e)
                return False
        return True

    def measure(self, key: int, mask: np.ndarray) -> None:
        """Add one image's boolean mask of class ``key`` (skipped when the mask is empty)."""
        if not self._load() or not mask.any():
            return
        ndimage, morphology = self._tools
        box = tuple(slice(max(int(i[0]) - 1, 0), int(i[-1]) + 2) for i in
                    (np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax))) for ax in range(mask.ndim)))
        m = mask[box]
        labels, n = ndimage.label(m, structure=ndimage.generate_binary_structure(m.ndim, m.ndim))
        sizes = np.bincount(labels.reshape(-1), minlength=n + 1)[1:]
        edge = m & ~ndimage.binary_erosion(m)
        per_boundary = np.bincount(labels[edge], minlength=n + 1)[1:]
        # skeletons only of thin components: a thick one cannot be tubular, and thinning it is what costs time
        thin = 2 * sizes <= SKELETON_THICKNESS * np.maximum(per_boundary, 1)
        e = self.classes.setdefault(key, ClassStructure())
        if thin.any():
            tm = thin[np.maximum(labels - 1, 0)] & m
            skel = morphology.skeletonize(tm).astype(bool)
            with_skel = np.count_nonzero(np.unique(labels[skel]))
            e.skeleton += int(np.count_nonzero(skel)) + (int(thin.sum()) - with_skel)
            e.thin_components += int(thin.sum())
            e.thin_pixels += int(sizes[thin].sum())
            e.thin_elongation += float(np.sum(sizes[thin] * elongation(sizes[thin], per_boundary[thin], m.ndim)))
        small = sizes < SMALL_COMPONENT * mask.size
        e.images += 1
        e.pixels += int(sizes.sum())
        e.boundary += int(per_boundary.sum())
        e.components += n
        e.small_components += int(small.sum())
        e.small_pixels += int(sizes[small].sum())
        e.max_components = max(e.max_components, n)
        bins = np.minimum(np.floor(np.log2(sizes)).astype(np.int64), SIZE_BINS - 1)
        for k, c in zip(*np.unique(bins, return_counts=True), strict=True):
            e.size_hist[int(k)] += int(c)


@dataclass
class MaskStats:
    """Streaming accumulator over decoded images; see the module docstring."""

    ignore_index: int | None = None
    kind: str | None = None
    n_files: int = 0
    n_images: int = 0
    n_pixels: int = 0  # pixels considered (ignored pixels excluded)
    n_ignored: int = 0
    pixel_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # channels path
    n_channels: int | None = None
    labelled: int = 0
    overlap: int = 0
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    # index & channels: Counter{present-class tuple: [images, pixels]}; rgb: Counter{colour tuple: ...}
    patterns: dict = field(default_factory=dict)
    colour_counts: Counter = field(default_factory=Counter)
    encodings: Counter = field(default_factory=Counter)
    ambiguous_files: list[tuple[str, str]] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    n_skipped: int = 0
    pattern_files: dict = field(default_factory=dict)  # pattern -> up to MAX_LISTED file names
    # index path: label value -> pixels (a dict: as large as the number of distinct labels, whatever their values)
    label_counts: Counter = field(default_factory=Counter)
    label_files: dict = field(default_factory=dict)  # label value -> up to 3 file names (to point at stray values)
    spatial_dims: Counter = field(default_factory=Counter)  # 2 (pixels/images) or 3 (voxels/volumes) -> images
    spacings: Counter = field(default_factory=Counter)  # NIfTI voxel spacing (from the header) -> files
    palette_sizes: Counter = field(default_factory=Counter)  # palette PNG/TIFF: colour-table entries -> files
    structure: StructureStats = field(default_factory=StructureStats)  # components, skeletons (structure extra)
    summary: LabelSummary = field(default_factory=LabelSummary)  # the shared reader's view (seglab.data.masks)

    def __post_init__(self) -> None:
        self.summary.ignore_index = self.ignore_index

    def label_space(self, ignore_index: int | None | str = "auto", rgb_reading: str | None = None) -> LabelSpace:
        """Classes and mode of the masks read so far, by the rules the folder task applies
        (:func:`seglab.data.masks.label_space`)."""
        return label_space(self.summary, self.ignore_index if self.ignore_index is not None else ignore_index, rgb_reading)

    def skip(self, name: str, error: str) -> None:
        self.n_skipped += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append((name, error))

    def add(self, dec: Decoded, name: str) -> None:
        """Accumulate one decoded file; raises ``ValueError`` if it conflicts with files read before."""
        # validate the file before touching any counter (the kind included), so that a bad file leaves no
        # partial statistics and a folder of bad files leaves ``n_files == 0``: the shared reader's summary checks
        # labels, colours, channel counts and image-likeness and adds nothing when it raises
        uniques: list[tuple[np.ndarray, np.ndarray]] = []
        if dec.kind == "index":
            for im in dec.images:
                lab = im.reshape(-1)
                if self.ignore_index is not None:
                    lab = lab[lab != self.ignore_index]
                # distinct labels and their counts: memory and time follow the number of distinct labels,
                # never the largest label value
                vals, cnts = np.unique(lab, return_counts=True)
                uniques.append((vals.astype(np.int64), cnts.astype(np.int64)))
        self.summary.add(dec, [v for v, _ in uniques] if dec.kind == "index" else None)
        if dec.kind == "channels" and self.n_channels is None:
            c = dec.images[0].shape[0]
            self.n_channels = c
            self.pixel_counts = np.zeros(c, dtype=np.int64)
            self.pairs = np.zeros((c, c), dtype=np.int64)
        self.kind = dec.kind
        if dec.kind == "index":
            for im, (vals, cnts) in zip(dec.images, uniques, strict=True):
                self._add_index(im, vals, cnts, name)
        else:
            for im in dec.images:
                getattr(self, f"_add_{dec.kind}")(im, name)
        sd = dec.images[0].ndim - (1 if dec.kind == "channels" else 0) - (1 if dec.kind == "rgb" else 0)
        self.spatial_dims[sd] += len(dec.images)
        if meta := dec.meta:
            if meta.get("palette_size") is not None:
                self.palette_sizes[int(meta["palette_size"])] += 1
            if meta.get("spacing") is not None:
                sp = tuple(round(float(x), 4) for x in meta["spacing"])
                if sp in self.spacings or len(self.spacings) < MAX_LISTED:
                    self.spacings[sp] += 1
        self.n_files += 1
        self.n_images += len(dec.images)
        self.encodings[dec.encoding] += 1
        if dec.ambiguous:
            self.ambiguous_files.append((name, dec.note)) if len(self.ambiguous_files) < MAX_LISTED else None
        if dec.note:
            self.notes[dec.note] += 1

    def _pattern(self, key: tuple, pixels: int, name: str, per_label: dict | None = None) -> None:
        entry = self.patterns.setdefault(key, [0, 0, {}])
        entry[0] += 1
        entry[1] += pixels
        for k, v in (per_label or {}).items():  # index masks: pixels per label, so that a void label can be dropped later
            entry[2][k] = entry[2].get(k, 0) + v
        files = self.pattern_files.setdefault(key, [])
        if len(files) < MAX_LISTED:
            files.append(name)

    def _add_index(self, im: np.ndarray, vals: np.ndarray, cnts: np.ndarray, name: str) -> None:
        n = int(cnts.sum())
        self.n_ignored += int(im.size) - n
        per = dict(zip(vals.tolist(), cnts.tolist(), strict=True))
        for v, c in per.items():
            self.label_counts[v] += c
            files = self.label_files.setdefault(v, [])
            if len(files) < 3:
                files.append(name)
        self.n_pixels += n
        self.labelled += n
        self._pattern(tuple(vals.tolist()), n, name, per)
        if vals.size <= MAX_STRUCTURE_LABELS:  # more labels than this: an instance map, not measured per label
            for v in vals.tolist():
                if v != 0:
                    self.structure.measure(v, im == v)

    def drop_label(self, value: int) -> int:
        """Treat label ``value`` as void after the fact: remove its pixels from every count and pattern
        (index masks). Returns the number of pixels removed."""
        n = int(self.label_counts.pop(value, 0))
        self.label_files.pop(value, None)
        self.structure.classes.pop(value, None)
        if not n:
            return 0
        self.n_ignored += n
        self.n_pixels -= n
        self.labelled -= n
        patterns: dict = {}
        files: dict = {}
        for key, (n_img, n_pix, per) in self.patterns.items():
            per = dict(per)
            gone = per.pop(value, 0)
            k = tuple(v for v in key if v != value)
            e = patterns.setdefault(k, [0, 0, {}])
            e[0] += n_img
            e[1] += n_pix - gone
            for lv, c in per.items():
                e[2][lv] = e[2].get(lv, 0) + c
            fl = files.setdefault(k, [])
            fl.extend(self.pattern_files.get(key, [])[: max(0, MAX_LISTED - len(fl))])
        self.patterns, self.pattern_files = patterns, files
        return n

    def _add_channels(self, im: np.ndarray, name: str) -> None:
        c = im.shape[0]
        flat = im.reshape(c, -1)
        pos = np.count_nonzero(flat, axis=1).astype(np.int64)
        k = flat.sum(axis=0, dtype=np.uint8)
        p = flat.shape[1]
        self.pixel_counts += pos
        self.n_pixels += p
        self.labelled += int(np.count_nonzero(k))
        ov = int(np.count_nonzero(k > 1))
        self.overlap += ov
        if ov:
            for i in range(c):
                if pos[i] == 0:
                    continue
                for j in range(i + 1, c):
                    if pos[j]:
                        n = int(np.count_nonzero(flat[i] & flat[j]))
                        self.pairs[i, j] += n
                        self.pairs[j, i] += n
        # -1 in the pattern marks an image with pixels that carry no class at all
        key = ((-1,) if int(np.count_nonzero(k)) < p else ()) + tuple(np.flatnonzero(pos).tolist())
        self._pattern(key, p, name)
        for i in np.flatnonzero(pos).tolist():
            self.structure.measure(i, im[i])

    def _add_rgb(self, im: np.ndarray, name: str) -> None:
        code = rgb_code(im)
        cols, counts = np.unique(code.reshape(-1), return_counts=True)
        for col, cnt in zip(cols.tolist(), counts.tolist(), strict=True):
            self.colour_counts[col] += cnt
        self.n_pixels += int(code.size)
        self._pattern(tuple(cols.tolist()), int(code.size), name)

