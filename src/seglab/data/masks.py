"""One mask reader for ``seglab advise`` and the folder task: format detection, decoding, and the label space.

Both consumers read a mask file the same way, in two steps:

1. :func:`decode` (per file): infer the encoding of the stored array (or apply a forced ``format``) and split
   it into images. Encodings (``Decoded.encoding``):

   - ``"index"``: an integer label map ``(*spatial)``, one class id per pixel (greyscale PNG/TIFF, ``.npy``,
     NIfTI 3D volumes). A greyscale PNG holding only 0 and 255 is read as a binary mask (255 -> class 1).
     A colour PNG whose pixels are all grey (R = G = B) is read as a greyscale index mask.
   - ``"palette"``: a palette PNG/TIFF: the stored values are class indices (colours are only the display).
   - ``"onehot"`` / ``"multihot"``: a channel-first array ``(C, *spatial)`` (or stacked ``(N, C, *spatial)``;
     NIfTI stores channels last ``(X, Y, Z, C)``) with 0/1 values; one-hot when every pixel has exactly one
     channel set, multi-hot otherwise. Float arrays in [0, 1] with non-integer values are soft labels,
     thresholded at 0.5.
   - ``"rgb"``: colour-coded ``(H, W, 3|4)`` images (alpha ignored).

2. :func:`label_space` (over all files, from a :class:`LabelSummary`): decide the classes and the mode the same
   way for every consumer — the void label of index masks (a value outside the palette, or 255 apart from
   the class labels; :func:`detect_void`), whether label values are class indices (:func:`dense_labels`), the
   reading of colour masks (each colour a class, or R/G/B channels as labels; :func:`rgb_default_reading`),
   the implicit background of channel masks that never overlap but leave pixels unlabelled, and the mode
   (any overlap: ``"multilabel"``; else 2 classes: ``"binary"``, more: ``"multiclass"``).
   :meth:`LabelSpace.encode` turns one decoded file into the training target.

:func:`read_masks` does both for a list of files and returns one :class:`Mask` per file::

    >>> from seglab.data.masks import read_masks
    >>> masks = read_masks(["masks/a.png", "masks/b.png"])          # doctest: +SKIP
    >>> masks[0].mode, masks[0].names, masks[0].labels.shape          # doctest: +SKIP
    ('multiclass', ('background', 'class 1', 'class 2'), (16, 16))

:func:`image_like` tells folders of images (photos, intensity scans) from folders of label maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable

import numpy as np

from .readers import read_mask

FORMATS = ("auto", "index", "onehot", "multihot", "rgb")  # "onehot" and "multihot" both force a channel-first 0/1 array
MODES = ("multiclass", "multilabel", "binary")
MAX_CHANNELS = 32  # a leading axis longer than this is spatial, not a channel axis
MAX_COLOURS = 1024  # more distinct colours than this is a photo or an anti-aliased render, not a label mask
MAX_LABELS = 1024  # more distinct label values than this is an intensity image, not a label mask
MAX_LABEL_VALUE = 65535  # a larger label value is not a class index (a 16-bit PNG holds at most 65535)
DENSE_UP_TO = 32  # label values below this are class indices even with gaps (see dense_labels)
#: image_like: more distinct values (or colours) than this in one file, together with ...
IMAGE_LIKE_VALUES = 64
#: ... at least this fraction of neighbouring pixels that differ (a label map is piecewise constant; a photo or
#: scan is not), or a histogram that fills at least IMAGE_LIKE_FILL of its value range, is an image
IMAGE_LIKE_EDGES = 0.25
IMAGE_LIKE_FILL = 0.9
IMAGE_LIKE_ROUGH = 0.2  # smooth: neighbouring values' pixel counts differ by at most this fraction of the mean count

COLOUR_NAMES = {
    (0, 0, 0): "black", (255, 255, 255): "white", (255, 0, 0): "red", (0, 255, 0): "green", (0, 0, 255): "blue",
    (255, 255, 0): "yellow", (255, 0, 255): "magenta", (0, 255, 255): "cyan",
}


def colour_name(rgb: tuple[int, int, int]) -> str:
    """``#rrggbb`` plus a plain name for the eight primary/secondary colours."""
    hexa = "#{:02x}{:02x}{:02x}".format(*rgb)
    return f"{hexa} ({COLOUR_NAMES[rgb]})" if rgb in COLOUR_NAMES else hexa


def rgb_code(im: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 colours -> ``(H, W)`` uint32 codes ``0xRRGGBB``."""
    return (im[..., 0].astype(np.uint32) << 16) | (im[..., 1].astype(np.uint32) << 8) | im[..., 2].astype(np.uint32)


def code_rgb(code: int) -> tuple[int, int, int]:
    return ((code >> 16) & 255, (code >> 8) & 255, code & 255)


# ---------------------------------------------------------------------------------------------- per file


@dataclass
class Decoded:
    """One file, decoded. ``kind`` picks the accumulator path: ``"index"``, ``"channels"`` or ``"rgb"``."""

    encoding: str
    kind: str
    images: list[np.ndarray]  # index: int (*spatial); channels: bool (C, *spatial); rgb: uint8 (H, W, 3)
    ambiguous: bool = False
    note: str = ""
    meta: dict = field(default_factory=dict)  # what the file says: palette_size, spacing (NIfTI header)


def _is_integer_valued(a: np.ndarray) -> bool:
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return True
    if np.issubdtype(a.dtype, np.floating):
        return bool(np.all(np.isfinite(a)) and np.all(a == np.round(a)))
    return False


def _is_binary(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is 0 or 1 (any dtype)."""
    if a.dtype == bool:
        return True
    mn, mx = a.min(initial=0), a.max(initial=0)
    if mn < 0 or mx > 1:
        return False
    return bool(np.all((a == 0) | (a == 1)))


def _is_soft(a: np.ndarray) -> bool:
    return bool(np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.isfinite(a)) and a.min() >= 0 and a.max() <= 1)


def _channels(a: np.ndarray, stacked: bool) -> list[np.ndarray]:
    """Binarise a channel-first array (soft labels at 0.5) into a list of per-image bool ``(C, *spatial)``."""
    b = a.astype(bool) if _is_binary(a) else (a > 0.5)
    return [b[i] for i in range(b.shape[0])] if stacked else [b]


def _channel_layout(a: np.ndarray, kind: str) -> tuple[np.ndarray, bool] | None:
    """Return ``(channel_first_array, stacked)`` if ``a`` plausibly is a channel-first label array, else None."""
    if kind == "nifti":  # NIfTI stores channels last; a 3D NIfTI is one volume
        return (np.moveaxis(a, -1, 0), False) if a.ndim == 4 and a.shape[-1] <= MAX_CHANNELS else None
    if a.ndim == 3 and a.shape[0] <= MAX_CHANNELS and a.shape[0] < min(a.shape[1:]):
        return a, False
    if a.ndim >= 4 and a.shape[1] <= MAX_CHANNELS:
        return a, True
    if a.ndim == 4 and a.shape[0] <= MAX_CHANNELS:
        return a, False
    return None


def decode(arr: np.ndarray, meta: dict, fmt: str = "auto") -> Decoded:
    """Infer (or apply a forced ``fmt``, one of :data:`FORMATS`) the encoding of one file's array and split it
    into images.

    ``meta`` is what :func:`seglab.data.readers.read_mask` returns beside the array (``kind``, ``palette``,
    ``palette_size``, ``spacing``); ``{"kind": "numpy"}`` for an in-memory array. Raises ``ValueError``
    (without the file name; the caller adds it) when the array cannot be a mask in the requested or any
    encoding. ``palette_size`` and ``spacing`` are passed on in ``Decoded.meta``.
    """
    d = _decode(arr, meta, fmt)
    d.meta = {k: meta[k] for k in ("palette_size", "spacing") if meta.get(k) is not None}
    return d


def _decode(arr: np.ndarray, meta: dict, fmt: str = "auto") -> Decoded:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    kind = meta.get("kind", "numpy")
    a = np.asarray(arr)
    if a.ndim < 2 or a.size == 0:
        raise ValueError(f"array of shape {a.shape} is not a mask (need at least 2 dimensions)")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"dtype {a.dtype} is not a mask dtype")
    if fmt == "auto":
        return _decode_auto(a, meta, kind)
    return _decode_as(a, meta, kind, fmt)


def _decode_as(a: np.ndarray, meta: dict, kind: str, fmt: str) -> Decoded:
    """``a`` decoded in the format the user forced (``rgb``, ``index``, ``onehot`` or ``multihot``)."""
    if fmt == "rgb":
        if not (a.ndim == 3 and a.shape[-1] in (3, 4)):
            raise ValueError(f"--format rgb needs an (H, W, 3|4) colour image, got shape {a.shape}")
        return Decoded("rgb", "rgb", [a[..., :3].astype(np.uint8, copy=False)])
    if fmt == "index":
        if not _is_integer_valued(a):
            raise ValueError(f"--format index needs integer labels, got non-integer {a.dtype} values")
        return _index(a, meta)
    lay = _channel_layout(a, kind)
    if lay is None:
        raise ValueError(f"--format {fmt} needs a channel-first (C, *spatial) or (N, C, *spatial) array with C <= {MAX_CHANNELS}, "
                         f"got shape {a.shape}")
    ch, stacked = lay
    if not (_is_binary(ch) or _is_soft(ch)):
        raise ValueError(f"--format {fmt} needs 0/1 (or soft [0, 1]) values")
    return _channel_decoded(ch, stacked, soft=not _is_binary(ch))


def _decode_auto(a: np.ndarray, meta: dict, kind: str) -> Decoded:
    """``a`` decoded in the encoding its file kind, shape and values imply (``fmt="auto"``)."""
    if meta.get("palette"):
        d = _index(a, meta)
        d.encoding = "palette"
        return d
    colour_like = a.ndim == 3 and a.shape[-1] in (3, 4) and (kind == "image" or (a.dtype == np.uint8 and a.max() > 1))
    if colour_like:
        rgb = a[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            d = _index(rgb[..., 0], meta)
            d.note = "colour image whose pixels are all grey (R=G=B): read as a greyscale index mask"
            return d
        return Decoded("rgb", "rgb", [rgb.astype(np.uint8, copy=False)])
    if kind == "image" or a.ndim == 2:
        if not _is_integer_valued(a):
            raise ValueError(f"2D array of non-integer {a.dtype} values is not a label mask")
        return _index(a, meta)
    lay = _channel_layout(a, kind)
    if lay is not None and (_is_binary(lay[0]) or (_is_soft(lay[0]) and not _is_integer_valued(lay[0]))):
        ch, stacked = lay
        return _channel_decoded(ch, stacked, soft=not _is_binary(ch), may_be_volume=not stacked and kind != "nifti")
    if not _is_integer_valued(a):
        raise ValueError(f"array of shape {a.shape} with non-integer values outside [0, 1] is neither labels nor probabilities")
    return _index(a, meta)


def _index(a: np.ndarray, meta: dict) -> Decoded:
    note = ""
    if meta.get("kind") == "image" and not meta.get("palette") and a.ndim == 2:
        mx = int(a.max(initial=0))
        if mx == 255 and np.all((a == 0) | (a == 255)):
            a = (a == 255).astype(np.uint8)
            note = "greyscale image holding only 0 and 255: read as a binary mask (255 -> class 1)"
    return Decoded("index", "index", [a], note=note)


def _channel_decoded(ch: np.ndarray, stacked: bool, soft: bool, may_be_volume: bool = False) -> Decoded:
    images = _channels(ch, stacked)
    one_hot = all(bool(np.all(im.sum(axis=0, dtype=np.uint8) == 1)) for im in images)
    enc = "onehot" if one_hot else "multihot"
    ambiguous = False
    note = "soft labels (float probabilities): a pixel counts as a class where its probability > 0.5" if soft else ""
    if may_be_volume and not one_hot:
        ambiguous = True
        note = (note + "; " if note else "") + (
            f"shape {tuple(ch.shape)} with 0/1 values is read as {ch.shape[0]} channels of a {ch.ndim - 1}D mask; "
            f"it could also be one binary {ch.ndim}D volume — pass --format index for that reading"
        )
    return Decoded(enc, "channels", images, ambiguous=ambiguous, note=note)


def spatial_shape(dec: Decoded) -> tuple[int, ...]:
    """The spatial shape of the first image of ``dec`` (without its channel or colour axis)."""
    im = dec.images[0]
    return tuple(im.shape[1:] if dec.kind == "channels" else im.shape[:2] if dec.kind == "rgb" else im.shape)


# ---------------------------------------------------------------------------------------------- images vs masks


def image_like(dec: Decoded, distinct: list[np.ndarray] | None = None) -> str | None:
    """Why ``dec`` looks like an image (a photo, an intensity scan) rather than a label map, or ``None``.

    A file is image-like when it holds more than :data:`IMAGE_LIKE_VALUES` distinct values (colours for
    ``rgb``) and either at least :data:`IMAGE_LIKE_EDGES` of its neighbouring pixel pairs differ (label maps
    are piecewise constant) or its values fill at least :data:`IMAGE_LIKE_FILL` of their range with a smooth
    histogram (mean |count(v + 1) - count(v)| at most :data:`IMAGE_LIKE_ROUGH` of the mean count: an intensity
    image; instance ids have counts that jump; index files only). Channel (0/1) files never are.

    >>> noise = np.random.default_rng(0).permutation(256).reshape(16, 16)
    >>> image_like(decode(noise, {"kind": "numpy"}))[:26]
    '256 distinct values (> 64)'
    >>> image_like(decode(np.eye(16, dtype=np.uint8), {"kind": "numpy"})) is None
    True
    """
    if dec.kind == "channels":
        return None
    for i, im in enumerate(dec.images):
        if distinct is not None and distinct[i].size <= IMAGE_LIKE_VALUES:
            continue  # the caller's distinct values (codes for rgb) of image i: few, so a label map
        flat = rgb_code(im) if dec.kind == "rgb" else np.asarray(im)
        vals = np.unique(flat) if distinct is None else distinct[i]
        if vals.size <= IMAGE_LIKE_VALUES:
            continue
        what = "colours" if dec.kind == "rgb" else "values"
        diff = [np.count_nonzero(np.diff(flat, axis=ax)) / max(flat.size - flat.size // flat.shape[ax], 1)
                for ax in range(flat.ndim) if flat.shape[ax] > 1]
        edges = float(np.mean(diff)) if diff else 0.0
        if edges >= IMAGE_LIKE_EDGES:
            return (f"{vals.size} distinct {what} (> {IMAGE_LIKE_VALUES}) and {edges:.0%} of neighbouring pixels differ "
                    "(a label map is piecewise constant): this looks like an image, not a label mask")
        if dec.kind == "index" and vals[-1] - vals[0] < 1 << 20:
            span = int(vals[-1]) - int(vals[0]) + 1
            counts = np.bincount((flat.reshape(-1) - vals[0]).astype(np.int64), minlength=span).astype(np.float64)
            rough = float(np.mean(np.abs(np.diff(counts))) / max(np.mean(counts), 1e-12))
            if vals.size >= IMAGE_LIKE_FILL * span and rough <= IMAGE_LIKE_ROUGH:
                return (f"{vals.size} distinct values (> {IMAGE_LIKE_VALUES}) filling {vals.size / span:.0%} of the range "
                        f"{int(vals[0])}..{int(vals[-1])} with a smooth histogram (neighbouring values differ in count by "
                        f"{rough:.0%} of the mean): this looks like an intensity image, not a label mask")
    return None


# ---------------------------------------------------------------------------------------------- folder-level rules


def dense_labels(labels: list[int]) -> bool:
    """Whether sorted label values are taken as the class indices 0..max (a class missing in between is absent
    from these masks): when max < ``DENSE_UP_TO`` or at most half of 0..max is missing. Otherwise (a stray
    5000, 0/100, 16-bit ids) the classes are the distinct labels in increasing order."""
    return labels[-1] + 1 <= max(2 * len(labels), DENSE_UP_TO)


def detect_void(labels: Iterable[int], palette_size: int | None = None) -> tuple[int | None, str]:
    """The void label of index masks with label values ``labels`` (and the smallest palette size of palette
    files, if any), and why: a single value outside the palette's colour table (with other labels present),
    else 255 when it stands apart from the class labels (254 absent, some label in 1..253 present: the
    PASCAL VOC / Cityscapes convention). ``(None, "")`` when there is none."""
    labels = set(int(v) for v in labels)
    if palette_size is not None:
        outside = sorted(v for v in labels if v >= palette_size)
        if len(outside) == 1 and len(labels) > 1:
            return outside[0], f"it lies outside the palette's colour table ({palette_size} entries)"
    if 255 in labels and 254 not in labels and any(1 <= v <= 253 for v in labels):
        return 255, "it stands apart from the class labels, the PASCAL VOC / Cityscapes convention for 'void'"
    return None, ""


def rgb_decomposable(colours: Iterable[int]) -> bool:
    """Whether every colour code is made of primary channels: each of R, G, B is 0 or one 'on' value."""
    on: list[set[int]] = [set(), set(), set()]
    for c in colours:
        for i, x in enumerate(code_rgb(int(c))):
            if x:
                on[i].add(x)
    return all(len(s) <= 1 for s in on)


def rgb_mixed(colours: Iterable[int]) -> list[int]:
    """Colour codes with two or more channels on (sums of primaries), when the colours are decomposable."""
    cols = [int(c) for c in colours]
    if not rgb_decomposable(cols):
        return []
    return [c for c in sorted(cols) if sum(1 for x in code_rgb(c) if x) >= 2]


def rgb_default_reading(colours: Iterable[int]) -> str:
    """``"multilabel"`` (R/G/B channels are labels) when some colours are sums of primaries, else ``"classes"``."""
    return "multilabel" if rgb_mixed(colours) else "classes"


@dataclass
class LabelSummary:
    """What the folder-level rules need to know about all files, accumulated one decoded file at a time.

    ``ignore_index``: a void label given by the user, left out of ``labels``."""

    ignore_index: int | None = None
    kind: str | None = None
    labels: set = field(default_factory=set)  # index: label values (ignore_index excluded)
    palette_sizes: set = field(default_factory=set)
    colours: set = field(default_factory=set)  # rgb: colour codes
    channels: int | None = None
    overlap: bool = False  # channels: some pixel with more than one channel set
    unlabelled: bool = False  # channels: some pixel with no channel set

    def add(self, dec: Decoded, distinct: list[np.ndarray] | None = None) -> None:
        """Add one decoded file; ``ValueError`` (and nothing added) when it is not a mask or conflicts with the
        files added before. ``distinct``: index files: the sorted distinct values of each image, when the caller
        has them (saves a pass)."""
        if self.kind is not None and dec.kind != self.kind:
            raise ValueError(f"encoding {dec.encoding!r} differs from the earlier files ({self.kind!r}); pass a format to force one")
        labels, colours, overlap, unlabelled = self.labels, self.colours, self.overlap, self.unlabelled
        found: list[np.ndarray] | None = None  # index: each image's sorted distinct values; rgb: its colour codes
        if dec.kind == "channels":
            overlap, unlabelled = self._channel_flags(dec)
        elif dec.kind == "index":
            labels, found = self._index_labels(dec, distinct)
        else:
            colours, found = self._colour_codes(dec)
        why = image_like(dec, found)
        if why:
            raise ValueError(why)
        if dec.kind == "channels":
            self.channels = dec.images[0].shape[0]
        self.labels, self.colours, self.overlap, self.unlabelled = labels, colours, overlap, unlabelled
        if dec.meta.get("palette_size") is not None:
            self.palette_sizes.add(int(dec.meta["palette_size"]))
        self.kind = dec.kind


    def _channel_flags(self, dec: Decoded) -> tuple[bool, bool]:
        """``(overlap, unlabelled)`` after adding the channel masks of ``dec`` (its channel count checked)."""
        c = dec.images[0].shape[0]
        if self.channels is not None and c != self.channels:
            raise ValueError(f"{c} channels, but earlier files have {self.channels}")
        overlap, unlabelled = self.overlap, self.unlabelled
        for im in dec.images:
            k = im.sum(axis=0, dtype=np.uint8)
            overlap = overlap or bool(np.any(k > 1))
            unlabelled = unlabelled or bool(np.any(k == 0))
        return overlap, unlabelled

    def _index_labels(self, dec: Decoded, given: list[np.ndarray] | None) -> tuple[set, list[np.ndarray]]:
        """The label set with the index masks of ``dec`` added (``ignore_index`` left out; ValueError for a
        negative, too large or too many labels), and each mask's sorted distinct values (``given`` or computed)."""
        labels = set(self.labels)
        distinct = []
        for i, im in enumerate(dec.images):
            vals = np.unique(im) if given is None else np.asarray(given[i])
            distinct.append(vals)
            if self.ignore_index is not None:
                vals = vals[vals != self.ignore_index]
            if vals.size and vals[0] < 0:
                raise ValueError(f"negative label {int(vals[0])} (if it marks 'void', pass --ignore-index {int(vals[0])})")
            if vals.size and vals[-1] > MAX_LABEL_VALUE:
                raise ValueError(f"label {int(vals[-1])} is too large for a class index (> {MAX_LABEL_VALUE})")
            labels.update(int(v) for v in vals.tolist())
            if len(labels) > MAX_LABELS:
                raise ValueError(f"more than {MAX_LABELS} distinct label values: not a label mask (an intensity image?)")
        return labels, distinct

    def _colour_codes(self, dec: Decoded) -> tuple[set, list[np.ndarray]]:
        """The colour set with the colour masks of ``dec`` added (ValueError beyond ``MAX_COLOURS``), and each
        mask's distinct colour codes."""
        colours = set(self.colours)
        distinct = []
        for im in dec.images:
            cols = np.unique(rgb_code(im))
            distinct.append(cols)
            colours.update(cols.tolist())
            if len(colours) > MAX_COLOURS:
                raise ValueError(f"more than {MAX_COLOURS} distinct colours ({cols.size} in this image): not a colour-coded label mask "
                                 "(anti-aliased, JPEG-compressed or a photograph?)")
        return colours, distinct

@dataclass(frozen=True)
class LabelSpace:
    """The classes and the mode of a set of masks, decided once for all files by :func:`label_space`.

    Attributes:
        kind: ``"index"``, ``"channels"`` or ``"rgb"`` (the decoded files' kind).
        mode: ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        values: per class, what marks it in the files: a label value (index), a colour code ``0xRRGGBB``
            (rgb, classes reading), a channel number (channels; R=0, G=1, B=2 for the rgb multilabel
            reading); ``-1`` for the implicit background ("no channel set").
        names: per class.
        void: the label value that marks void pixels (index masks), or ``None``.
        void_reason: why ``void`` was taken as void (auto-detected), else ``""``.
        rgb_reading: colour masks: ``"classes"`` or ``"multilabel"``.
        implicit_background: channel masks: class 0 is "no channel set".
        remap: index masks whose label values are not the class indices 0..C-1.
    """

    kind: str
    mode: str
    values: tuple
    names: tuple
    void: int | None = None
    void_reason: str = ""
    rgb_reading: str | None = None
    implicit_background: bool = False
    remap: bool = False

    @property
    def num_classes(self) -> int:
        """Classes, the background included (2 for binary): the length of ``names``."""
        return len(self.names)

    def encode(self, dec: Decoded, index: int = 0) -> np.ndarray:
        """Image ``index`` of one decoded file as a target in this label space.

        ``"multiclass"``: int64 ``(*spatial)`` class indices 0..C-1, void pixels keep the void value.
        ``"multilabel"``: bool ``(C, *spatial)``. ``"binary"``: bool ``(1, *spatial)`` (class 1 of the two), or
        int64 ``(1, *spatial)`` holding the void value at void pixels when the masks have a void label.
        """
        if dec.kind != self.kind:
            raise ValueError(f"a {dec.encoding!r} mask in a label space of {self.kind!r} masks")
        im = dec.images[index]
        if self.kind == "channels" or (self.kind == "rgb" and self.rgb_reading == "multilabel"):
            if self.kind == "rgb":
                chans = np.stack([im[..., c] > 0 for c in self.values if c >= 0])
            else:
                chans = np.asarray(im, dtype=bool)
            if self.mode == "multilabel":
                return chans
            bg = ~chans.any(axis=0)
            lab = (np.concatenate([np.expand_dims(bg, 0), chans]) if self.implicit_background else chans).argmax(axis=0).astype(np.int64)
        elif self.kind == "rgb":
            code = rgb_code(im)
            lut = {v: i for i, v in enumerate(self.values)}
            cols, inv = np.unique(code, return_inverse=True)
            missing = [code_rgb(int(c)) for c in cols.tolist() if int(c) not in lut]
            if missing:
                raise ValueError(f"colour {colour_name(missing[0])} is not one of the classes ({', '.join(self.names)})")
            lab = np.asarray([lut[int(c)] for c in cols.tolist()], dtype=np.int64)[inv.reshape(-1)].reshape(code.shape)
        else:
            raw = np.asarray(im).astype(np.int64)
            void = raw == self.void if self.void is not None else None
            if self.remap:
                vals = np.asarray(self.values, dtype=np.int64)
                pos = np.searchsorted(vals, raw)
                ok = (pos < vals.size) & (vals[np.minimum(pos, vals.size - 1)] == raw)
                if void is not None:
                    ok |= void
                if not ok.all():
                    raise ValueError(f"label {int(raw[~ok][0])} is not one of the class labels {list(self.values)[:8]}")
                lab = np.minimum(pos, vals.size - 1)
            else:
                lab = raw.copy()
                bad = (lab < 0) | (lab >= len(self.values))
                if void is not None:
                    bad &= ~void
                if bad.any():
                    raise ValueError(f"label {int(lab[bad][0])} is outside the classes 0..{len(self.values) - 1}")
            if void is not None:
                lab[void] = self.void
            if self.mode == "binary":
                out = lab[None]
                return out if (void is not None and void.any()) else out == 1
            return lab
        return (lab == 1)[None] if self.mode == "binary" else lab


def _channel_space(kind: str, values: list[int], names: list[str], overlap: bool, unlabelled: bool, rgb_reading: str | None = None) -> LabelSpace:
    if overlap:
        return LabelSpace(kind, "multilabel", tuple(values), tuple(names), rgb_reading=rgb_reading)
    if unlabelled or len(values) == 1:  # one channel: its complement is the background
        values, names = [-1] + values, ["background (no class set)"] + names
    return LabelSpace(kind, "binary" if len(values) == 2 else "multiclass", tuple(values), tuple(names),
                      rgb_reading=rgb_reading, implicit_background=unlabelled)


def label_space(summary: LabelSummary, ignore_index: int | None | str = "auto", rgb_reading: str | None = None) -> LabelSpace:
    """Decide classes and mode from ``summary`` (the rules of the module docstring; those of ``seglab advise``).

    ``ignore_index``: an int (the void label; ``summary`` was built with it), ``None`` (no void label) or
    ``"auto"`` (:func:`detect_void`). ``rgb_reading``: ``None`` (:func:`rgb_default_reading`), ``"classes"``
    or ``"multilabel"``.
    """
    if summary.kind is None:
        raise ValueError("no readable mask")
    if summary.kind == "index":
        labels = set(summary.labels)
        void: int | None = None
        why = ""
        if isinstance(ignore_index, (int, np.integer)) and not isinstance(ignore_index, bool):
            void = int(ignore_index)
            labels.discard(void)
        elif ignore_index == "auto":
            void, why = detect_void(labels, min(summary.palette_sizes) if summary.palette_sizes else None)
            labels.discard(void)  # type: ignore[arg-type]
        elif ignore_index is not None:
            raise ValueError(f"ignore_index must be an int, None or 'auto', got {ignore_index!r}")
        lab = sorted(labels) or [0]
        if dense_labels(lab):
            values = list(range(lab[-1] + 1))
            if len(values) < 2:
                values = [0, 1]  # all background: still a binary task
            names = ["background"] + [f"class {c}" for c in range(1, len(values))]
            remap = False
        else:
            values = lab
            names = ["background" if v == 0 else f"label {v}" for v in values]
            remap = True
        return LabelSpace("index", "binary" if len(values) == 2 else "multiclass", tuple(values), tuple(names), void, why, remap=remap)
    if summary.kind == "channels":
        c = int(summary.channels or 0)
        return _channel_space("channels", list(range(c)), [f"channel {i}" for i in range(c)], summary.overlap, summary.unlabelled)
    # rgb
    cols = sorted(summary.colours)
    reading = rgb_reading or rgb_default_reading(cols)
    if reading not in ("classes", "multilabel"):
        raise ValueError(f"unknown rgb_reading {rgb_reading!r}; expected 'multilabel' or 'classes'")
    if reading == "classes":
        order = sorted(cols, key=lambda c: (c != 0, c))  # black first: the background when present
        names = [colour_name(code_rgb(c)) for c in order]
        return LabelSpace("rgb", "binary" if len(order) == 2 else "multiclass", tuple(order), tuple(names), rgb_reading="classes")
    if not rgb_decomposable(cols):
        raise ValueError("rgb_reading multilabel needs colours made of primary channels (each of R, G, B either 0 or one 'on' value); "
                         f"these colours are not: {', '.join(colour_name(code_rgb(c)) for c in cols[:8])}")
    used = [i for i in range(3) if any(code_rgb(c)[i] for c in cols)]
    bits = [[i for i in used if code_rgb(c)[i]] for c in cols]
    return _channel_space("rgb", used, [["red", "green", "blue"][i] for i in used], any(len(b) > 1 for b in bits),
                          any(not b for b in bits), rgb_reading="multilabel")


# ---------------------------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class Mask:
    """One mask file read into the label space of its folder (see :func:`read_masks`).

    Attributes:
        labels: the training target: ``"multiclass"``: int64 ``(*spatial)`` class indices (void pixels hold
            ``ignore_index``); ``"multilabel"``: bool ``(C, *spatial)``; ``"binary"``: ``(1, *spatial)``, 1 on
            the foreground (bool, or int64 with ``ignore_index`` at void pixels).
        mode: ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        values: per class, what marks it in the file (:attr:`LabelSpace.values`).
        names: per class (two for binary: background and foreground).
        spacing: voxel size per spatial axis from a NIfTI header, else ``None``.
        format: the encoding detected: ``"index"``, ``"palette"``, ``"onehot"``, ``"multihot"`` or ``"rgb"``.
        ignore_index: the void label (given or detected), else ``None``.
        source: the file.

    Example::

        >>> import numpy as np, tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> np.save(d / "m.npy", np.array([[0, 0], [1, 2]], np.uint8))
        >>> m = read_masks([d / "m.npy"])[0]
        >>> m.mode, m.names, m.format, m.labels.tolist()
        ('multiclass', ('background', 'class 1', 'class 2'), 'index', [[0, 0], [1, 2]])
    """

    labels: np.ndarray
    mode: str
    values: tuple
    names: tuple
    spacing: tuple | None = None
    format: str = "index"
    ignore_index: int | None = None
    source: str = ""


def read_decoded(path: str | Path, format: str = "auto") -> Decoded:
    """Read and decode one file (:func:`seglab.data.readers.read_mask` then :func:`decode`); errors name the file."""
    arr, meta = read_mask(path)
    try:
        return decode(arr, meta, format)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def read_masks(paths: Iterable[str | Path], format: str = "auto", ignore_index: int | None | str = "auto",
               rgb_reading: str | None = None) -> list[Mask]:
    """Read every file of ``paths`` (one mask each), decide the label space over all of them (:func:`label_space`)
    and return one :class:`Mask` per file. ``ValueError`` names the file that cannot be read, or is of another
    encoding than the others."""
    decs = []
    summary = LabelSummary(ignore_index=ignore_index if isinstance(ignore_index, int) and not isinstance(ignore_index, bool) else None)
    for p in paths:
        d = read_decoded(p, format)
        if len(d.images) != 1:
            raise ValueError(f"{p}: holds {len(d.images)} stacked masks; expected one mask per file")
        try:
            summary.add(d)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from e
        decs.append((str(p), d))
    space = label_space(summary, ignore_index, rgb_reading)
    out = []
    for p, d in decs:
        sp = d.meta.get("spacing")
        try:
            labels = space.encode(d)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from e
        out.append(Mask(labels, space.mode, space.values, space.names, tuple(sp) if sp is not None else None,
                        d.encoding, space.void, p))
    return out
