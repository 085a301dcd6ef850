"""From accumulated statistics to a class table, then to a recommendation with reasons.

Decision rules (every threshold is named here and quoted in the reasons):

- **mode**: any pixel with more than one class -> ``multilabel`` (sigmoid per channel). Otherwise the classes
  are mutually exclusive: 2 classes -> ``binary`` (one sigmoid output), more -> ``multiclass`` (softmax).
  Channel masks whose channels never overlap but leave some pixels without any class get an implicit
  background class 0 ("no channel set") so that softmax has a class for every pixel.
- **loss**: single-label with imbalance ratio (largest / smallest class pixel frequency) <= ``BALANCED`` ->
  plain ``"ce"``; above -> ``"dice+ce[class_weights=[...]]"``: Dice + CE (nnU-Net's default loss) with class
  weights in the CE term only (:func:`dice_ce_weighted`; weights in the Dice term were a measured harm and are
  dropped, docs/analysis_plan.md amendment 6; the evidence status of each part is in docs/advise_evidence.md). Binary and multi-label: ``negatives / positives`` of the rarest channel <=
  ``BALANCED`` -> ``"ce"`` (BCE-with-logits), above -> ``"dice+ce"`` with ``pos_weight``.
- **include_background** (Dice): ``False`` when a background class holds at least ``BACKGROUND_DOMINANT`` of
  the pixels (a convention; its evidence status is in docs/advise_evidence.md), else ``True``.
- **batch Dice**: ``batch=True`` when at least ``EMPTY_FOR_BATCH_DICE`` of the images are empty or a class is
  rare (nnU-Net's batch Dice; a convention; its evidence status is in docs/advise_evidence.md).
- **rare class**: present in fewer than ``RARE_FRACTION`` of the masks (images or volumes), or in at most 2
  (with more than 2 masks). This is a presence statistic, not a pixel frequency.
- **void**: for index masks, see :func:`resolve_void` (decided before the class table is built).
- **weights cap**: class weights and ``pos_weight`` above ``MAX_WEIGHT`` are capped (and the capping stated).
- **structure** (:func:`structure_advice`; needs the ``structure`` extra): a class is *tubular* when its thin
  components (see :mod:`seglab.advise.stats`) hold at least ``TUBULAR_SHARE`` of its pixels, their typical
  width (2D: pixels / skeleton pixels; 3D: the diameter of a tube of that volume per skeleton voxel) is at most
  ``TUBULAR_WIDTH`` and they are at least ``TUBULAR_ELONGATION`` (3D: ``TUBULAR_ELONGATION_3D``) times longer than wide (from size and boundary,
  :func:`seglab.advise.stats.elongation`; a disc scores π, a ball 2.25) ->
  a topology-aware loss term (``skeleton_recall`` or ``cldice``) and clDice among the metrics. Its *thickness*
  ``2 · pixels / boundary pixels`` (the width of a ribbon, the radius of a disc) says how much of its Dice a
  one-pixel boundary shift costs (about 1 / thickness): at most ``BOUNDARY_THICKNESS`` -> boundaries matter,
  HD95 with NSD. At least ``SMALL_SHARE`` of a class's components smaller than ``SMALL_COMPONENT`` of an image
  -> a note on small-component recall.
- **evidence**: every rule applied is listed in ``Advice.evidence`` with its evidence status under the analysis
  plan (:mod:`seglab.advise.evidence`, docs/advise_evidence.md).
- **metrics** to report (Metrics Reloaded, Maier-Hein et al., Nature Methods 2024): Dice plus the normalised
  surface Dice (NSD) per class; per-image Dice (empty classes skipped) when a class is absent from at least
  ``EMPTY_FOR_BATCH_DICE`` of the images; HD95 when boundaries matter; clDice for tubular classes;
  per-component recall when small components are common.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seglab.advise import weights as W
from seglab.advise.advice import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: the --json schema
from seglab.advise.advice import Advice
from seglab.advise.evidence import rule_status
from seglab.advise.stats import SMALL_COMPONENT, MaskStats, colour_name
from seglab.advise.weights import MAX_WEIGHT as MAX_WEIGHT  # re-exported: the cap (defined beside the weights)
from seglab.data.masks import code_rgb, dense_labels, detect_void, rgb_decomposable, rgb_mixed
from seglab.losses import get_loss
from seglab.losses.registry import format_loss, parse_loss_spec
from seglab.regions import nested_chain

BALANCED = 3.0
BACKGROUND_DOMINANT = 0.5
EMPTY_FOR_BATCH_DICE = 0.1
RARE_FRACTION = 0.05
ANISOTROPY = 3.0  # max / min voxel spacing above which a volume is anisotropic (nnU-Net's threshold)
TUBULAR_WIDTH = 8.0  # typical width (pixels/voxels) at most this ...
TUBULAR_ELONGATION = 8.0  # ... and at least this many times longer than wide (stats.elongation): tubular (2D)
#: the same in 3D: digital boundaries undercount a thin tube's surface, so stats.elongation measures ~0.4 x its
#: length / diameter (a tube with length 11 diameters: 4.7; a ball: ~1); 3.5 is about 8 diameters
TUBULAR_ELONGATION_3D = 3.5
TUBULAR_SHARE = 0.5  # ... measured on the thin components (stats.SKELETON_THICKNESS), holding at least this share of its pixels
BOUNDARY_THICKNESS = 10.0  # thickness at most this: a one-pixel boundary shift costs >= ~10% of the Dice
SMALL_SHARE = 0.25  # share of a class's components below SMALL_COMPONENT of an image for the small-component note


@dataclass
class ClassTable:
    """Per-class statistics in one shape for every encoding."""

    names: list[str]
    pixel_counts: np.ndarray
    image_counts: np.ndarray
    image_pixel_totals: np.ndarray
    n_pixels: int
    n_images: int
    labelled: int
    overlap: int
    pairs: np.ndarray
    background: int | None
    implicit_background: bool = False
    empty_images: int = 0
    empty_files: list[str] = field(default_factory=list)
    label_values: list[int] | None = None  # index masks: the label value of each class
    remap: bool = False  # index masks whose labels are not 0..C-1: classes are the distinct labels in order


def _from_patterns(patterns: dict, pattern_files: dict, n_classes: int, key_to_classes, is_empty) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """Per-class image counts and image pixel totals, and the empty images (count, first 50 files), from the presence patterns."""
    img = np.zeros(n_classes, dtype=np.int64)
    tot = np.zeros(n_classes, dtype=np.int64)
    empty = 0
    files: list[str] = []
    for key, (n_img, n_pix, *_) in patterns.items():
        cls = key_to_classes(key)
        for c in cls:
            img[c] += n_img
            tot[c] += n_pix
        if is_empty(key):
            empty += n_img
            files.extend(pattern_files.get(key, [])[: max(0, 50 - len(files))])
    return img, tot, empty, files


def rgb_readings(stats: MaskStats) -> dict:
    """Distinct colours, whether they decompose into primary channels, and whether mixed colours occur."""
    cols = sorted(stats.colour_counts)
    decomposable, mixed = rgb_decomposable(cols), rgb_mixed(cols)  # the reader's rules (seglab.data.masks)
    return {
        "colours": [{"rgb": list(code_rgb(c)), "name": colour_name(code_rgb(c)), "pixels": int(stats.colour_counts[c])}
                    for c in cols],
        "decomposable": decomposable,
        "mixed_colours": [colour_name(code_rgb(c)) for c in mixed],
        "ambiguous": bool(decomposable and mixed),
    }


def resolve_void(stats: MaskStats, ignore_index) -> tuple[int | None, str | None, list[str]]:
    """Decide the void label of index masks before the class table is built.

    ``ignore_index``: an int (given by the user; already left out while reading), ``None`` (no void label) or
    ``"auto"``: a value outside every palette's colour table, else 255 when it stands apart from the class
    labels (254 absent, some label in 1..253 present: the PASCAL VOC / Cityscapes "void" convention) is taken
    as void and dropped from the statistics. Returns ``(void value or None, assumption sentence, warnings)``.
    """
    if stats.kind != "index":
        return (ignore_index if isinstance(ignore_index, int) else None), None, []
    if isinstance(ignore_index, int) and not isinstance(ignore_index, bool):
        return ignore_index, None, []
    if ignore_index is None:
        return None, None, []
    labels = set(stats.label_counts)
    warns: list[str] = []
    size = min(stats.palette_sizes) if stats.palette_sizes else None
    if size is not None:
        outside = sorted(v for v in labels if v >= size)
        if len(outside) > 1:
            warns.append(f"{len(outside)} label values lie outside the palette's colour table ({size} entries): "
                         f"{', '.join(map(str, outside[:10]))}; if one of them marks 'void', pass --ignore-index N")
    void, why = detect_void(labels, size)  # the reader's rule (seglab.data.masks), one truth with the folder task
    if void is None:
        return None, None, warns
    if void == 255 and "palette" not in why:
        why = (f"it stands apart from the class labels ({_label_range(sorted(labels - {255}))}), the PASCAL VOC / "
               "Cityscapes convention for 'void' (object boundaries, unlabelled regions)")
    n_imgs = sum(e[0] for k, e in stats.patterns.items() if void in k)
    n = stats.drop_label(void)
    pct = n / max(n + stats.n_pixels, 1)
    return void, (f"treating {void} as void (ignore_index={void}): {n:,} {{px}}s ({_pct(pct)}) in {n_imgs} {{img}}(s) are left out of every count and ignored by the loss, because {why}; pass --ignore-index none to count it "
                  "as a class, or --ignore-index N for another void value"), warns


def _label_range(vals: list[int]) -> str:
    """Label values in short form: ``a..b`` when contiguous, else the first eight."""
    if not vals:
        return "none"
    if vals == list(range(vals[0], vals[-1] + 1)):
        return f"{vals[0]}..{vals[-1]}" if len(vals) > 1 else str(vals[0])
    return ", ".join(map(str, vals[:8])) + (", ..." if len(vals) > 8 else "")


def class_table(stats: MaskStats, rgb_reading: str | None = None) -> tuple[ClassTable, dict | None]:
    """Turn a :class:`MaskStats` into a :class:`ClassTable` (and, for RGB, the colour report with the reading)."""
    if stats.kind is None:
        raise ValueError("no readable mask: nothing to advise on")
    if stats.kind == "index":
        labels = sorted(stats.label_counts) or [0]
        if dense_labels(labels):
            # the label value is the class index; labels missing in between are classes without pixels
            values = list(range(labels[-1] + 1))
            names = ["background"] + [f"class {c}" for c in range(1, len(values))]
            bg: int | None = 0
        else:
            # labels far from 0..C-1 (a stray value, 0/255, 16-bit ids): one class per distinct label, in order
            values = labels
            names = ["background" if v == 0 else f"label {v}" for v in values]
            bg = 0 if values[0] == 0 else None
        index = {v: i for i, v in enumerate(values)}
        C = len(values)
        n = np.array([stats.label_counts.get(v, 0) for v in values], dtype=np.int64)
        img, tot, empty, files = _from_patterns(stats.patterns, stats.pattern_files, C, lambda k: [index[v] for v in k], lambda k: set(k) <= {0})
        return ClassTable(names, n, img, tot, stats.n_pixels, stats.n_images, stats.labelled, 0, np.zeros((C, C), np.int64), bg, False, empty, files,
                          label_values=values, remap=values != list(range(C))), None

    if stats.kind == "channels":
        C = int(stats.n_channels or 0)
        names = [f"channel {c}" for c in range(C)]
        return _channel_table(stats, names, stats.pixel_counts, stats.labelled, stats.overlap, stats.pairs, stats.patterns, stats.pattern_files,
                              lambda k: [c for c in k if c >= 0], lambda k: -1 in k), None

    # rgb
    info = rgb_readings(stats)
    reading = rgb_reading or ("multilabel" if info["ambiguous"] else "classes")
    if reading == "multilabel" and not info["decomposable"]:
        raise ValueError("--rgb-reading multilabel needs colours made of primary channels (each of R, G, B either 0 or one 'on' value); "
                         f"these colours are not: {', '.join(c['name'] for c in info['colours'][:8])}")
    info["reading"] = reading
    cols = sorted(stats.colour_counts)
    if reading == "classes":
        order = sorted(cols, key=lambda c: (c != 0, c))  # black first: the background when present
        index = {c: i for i, c in enumerate(order)}
        n = np.array([stats.colour_counts[c] for c in order], dtype=np.int64)
        C = len(order)
        img, tot, empty, files = _from_patterns(stats.patterns, stats.pattern_files, C, lambda k: [index[c] for c in k], lambda k: set(k) <= {0})
        names = [colour_name(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in order]
        bg = 0 if 0 in index else None
        return ClassTable(names, n, img, tot, stats.n_pixels, stats.n_images, stats.n_pixels, 0, np.zeros((C, C), np.int64), bg, False, empty, files), info
    # multilabel: R, G, B channels that are used by at least one colour
    used = [i for i in range(3) if any((c >> (16 - 8 * i)) & 255 for c in cols)]
    bits = {c: [j for j, i in enumerate(used) if (c >> (16 - 8 * i)) & 255] for c in cols}
    C = len(used)
    pos = np.zeros(C, np.int64)
    pairs = np.zeros((C, C), np.int64)
    labelled = overlap = 0
    for c in cols:
        cnt, b = stats.colour_counts[c], bits[c]
        for j in b:
            pos[j] += cnt
        labelled += cnt if b else 0
        if len(b) > 1:
            overlap += cnt
            for x in b:
                for y in b:
                    if x != y:
                        pairs[x, y] += cnt
    names = [["red", "green", "blue"][i] for i in used]
    return _channel_table(stats, names, pos, labelled, overlap, pairs, stats.patterns, stats.pattern_files,
                          lambda k: sorted({j for c in k for j in bits[c]}), lambda k: 0 in k), info


def _channel_table(stats: MaskStats, names: list[str], pos: np.ndarray, labelled: int, overlap: int, pairs: np.ndarray, patterns: dict, pattern_files: dict,
                   key_to_classes, has_unlabelled) -> ClassTable:
    """The class table of channel masks (one-hot, exclusive with an implicit background, or multi-label)."""
    C = len(names)
    img, tot, _, _ = _from_patterns(patterns, pattern_files, C, key_to_classes, lambda k: False)
    nothing = lambda k: not key_to_classes(k)  # noqa: E731
    if overlap == 0 and labelled == stats.n_pixels:
        # one-hot: every pixel has exactly one class; channel 0 is taken as the background by convention
        _, _, empty, files = _from_patterns(patterns, pattern_files, C, key_to_classes, lambda k: set(key_to_classes(k)) <= {0})
        return ClassTable(names, pos.astype(np.int64), img, tot, stats.n_pixels, stats.n_images, labelled, 0, pairs, 0, False, empty, files)
    _, _, empty, files = _from_patterns(patterns, pattern_files, C, key_to_classes, nothing)
    if overlap == 0:
        # mutually exclusive channels with unlabelled pixels: add an implicit background class 0
        bg_img = sum(v[0] for k, v in patterns.items() if has_unlabelled(k))
        bg_tot = sum(v[1] for k, v in patterns.items() if has_unlabelled(k))
        n = np.concatenate([[stats.n_pixels - labelled], pos]).astype(np.int64)
        return ClassTable(["background (no class set)"] + names, n, np.concatenate([[bg_img], img]), np.concatenate([[bg_tot], tot]),
                          stats.n_pixels, stats.n_images, stats.n_pixels, 0, np.pad(pairs, ((1, 0), (1, 0))), 0, True, empty, files)
    return ClassTable(names, pos.astype(np.int64), img, tot, stats.n_pixels, stats.n_images, labelled, overlap, pairs, None, False, empty, files)


def _status(rule_id: str) -> str:
    """The evidence status of an advise rule (advise/evidence.py), as the reasons quote it."""
    return rule_status(rule_id)["status"]


def _fmt(x: float) -> str:
    """A weight in 4 significant digits."""
    return f"{x:.4g}"


def _tensor(vals: list[float]) -> str:
    """``torch.tensor([...])`` source for a list of weights."""
    return "torch.tensor([" + ", ".join(_fmt(v) for v in vals) + "])"


def _pct(x: float) -> str:
    """A fraction as a percentage in 3 significant digits."""
    return f"{100 * x:.3g}%"


def _spacing(stats: MaskStats) -> dict | None:
    """Median, min and max voxel spacing, the worst anisotropy and the number of distinct spacings (None without spacing)."""
    if not stats.spacings:
        return None
    sp = np.array([s for s, n in stats.spacings.items() for _ in range(n)], dtype=np.float64)
    med = np.median(sp, axis=0)
    aniso = [float(s.max() / s.min()) if s.min() > 0 else float("inf") for s in sp]
    return {"median": [float(x) for x in med], "min": [float(x) for x in sp.min(0)], "max": [float(x) for x in sp.max(0)],
            "anisotropy": max(aniso), "files": int(sum(stats.spacings.values())), "distinct": len(stats.spacings)}


def _cap(w: list[float], cap: float, names: list[str], what: str, why: str) -> tuple[list[float], list[str]]:
    """Cap ``w`` at ``cap``: ``(capped weights, the warning naming the capped classes, or [])``."""
    if not np.isfinite(cap) or not any(x > cap for x in w):
        return list(w), []
    big = [(names[i], x) for i, x in enumerate(w) if x > cap]
    return [min(x, cap) for x in w], [
        f"{what} capped at {cap:g} (--max-weight): " + ", ".join(f"{n} {x:.4g}" for n, x in big[:8]) + (" ..." if len(big) > 8 else "")
        + f" -> {cap:g}. {why}"]


def _cap_why() -> str:
    """Why weights are capped, with the cap's evidence status from the table."""
    return ("A weight w scales that class's gradient by w; far above ~50 the few pixels of a tiny (maybe mislabelled) class dominate "
            "every batch that holds them and early training swings (ENet bounds its class weights at 50 for this reason; the cap's "
            f"evidence: {_status('weight_cap')}, docs/advise_evidence.md#weight-cap). Pass --max-weight inf to keep the raw values")


@dataclass
class _Draft:
    """An advice being written: the class table, the measurements every rule reads, and the sentences and loss
    options gathered so far, in the order :func:`recommend` adds them."""

    stats: MaskStats
    t: ClassTable
    px: str
    img: str
    freq: np.ndarray
    present: np.ndarray
    img_frac: np.ndarray
    imbalance: float | None
    rare: list[int]
    reasons: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)


def _check_options(stats: MaskStats, weights: str, max_weight: float) -> None:
    """Raise ValueError for an unknown weight method, a cap <= 0 or no readable mask."""
    if weights not in W.METHODS:
        raise ValueError(f"unknown class-weight method {weights!r}; expected one of {', '.join(W.METHODS)}")
    if not max_weight > 0:
        raise ValueError(f"max_weight must be > 0 (inf for no cap), got {max_weight}")
    if stats.kind is None or stats.n_files == 0:
        raise ValueError("no readable mask: nothing to advise on")


def _name_classes(t: ClassTable, class_names: list[str] | None) -> None:
    """Replace the table's generic names with ``class_names`` (one per class, or one per channel beside an
    implicit background); ValueError when the count fits neither."""
    if class_names is None:
        return
    C = len(t.names)
    if len(class_names) == C:
        t.names = [str(n) for n in class_names]
    elif not (t.implicit_background and len(class_names) == C - 1):
        raise ValueError(f"{len(class_names)} class names given but the masks have {C} classes ({', '.join(t.names)})")
    else:
        t.names = t.names[:1] + [str(n) for n in class_names]


def _encoding(stats: MaskStats, t: ClassTable, rgb: dict | None) -> tuple[str, bool, list[str]]:
    """``(encoding, ambiguous, notes)``: the masks' dominant encoding and the reader's notes."""
    notes = list(stats.notes)
    enc_counts = dict(stats.encodings)
    encoding = max(enc_counts, key=lambda k: enc_counts[k]) if enc_counts else "unknown"
    if stats.kind == "channels":
        encoding = "onehot" if (t.overlap == 0 and not t.implicit_background) else "multihot"
    if len(enc_counts) > 1 and stats.kind != "channels":
        notes.append(f"files use several encodings: {enc_counts}")
    ambiguous = bool(stats.ambiguous_files) or bool(rgb and rgb["ambiguous"])
    return encoding, ambiguous, notes


def _remap_notes(stats: MaskStats, t: ClassTable, px: str) -> tuple[list[str], list[str]]:
    """``(assumptions, warnings)`` of index masks whose label values are not the class indices."""
    if not t.remap:
        return [], []
    C = len(t.names)
    lv = t.label_values or []
    assumptions = [f"the label values ({_label_range(lv)}) are not the class indices 0..{C - 1}: each distinct value is one class, in "
                   f"increasing order; remap targets before the loss (first line of the code below)"]
    warns = []
    strays = [v for v, c in zip(lv, t.pixel_counts, strict=True) if v != 0 and c <= max(0.0001 * t.n_pixels, 1) and v > 2 * max(len(lv), 4)]
    for v in strays[:3]:
        files = stats.label_files.get(v, [])
        warns.append(f"label {v} covers only {int(stats.label_counts[v])} {px}(s)" + (f", e.g. in {files[0]}" if files else "")
                     + ": a stray value? fix the mask, or the advice keeps it as a class of its own")
    return assumptions, warns


def _overlap_pairs(t: ClassTable) -> list[dict]:
    """The class pairs that share pixels, most pixels first."""
    ii, jj = np.nonzero(np.triu(t.pairs, 1)) if t.overlap else (np.zeros(0, int), np.zeros(0, int))
    pairs: list[dict[str, Any]] = [
        {"classes": [int(i), int(j)], "names": [t.names[i], t.names[j]], "pixels": int(t.pairs[i, j]), "fraction_of_labelled": float(t.pairs[i, j] / max(t.labelled, 1))}
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True)
    ]
    pairs.sort(key=lambda p: -p["pixels"])
    return pairs


def _zero_class_warnings(t: ClassTable, px: str) -> list[str]:
    """Warnings about classes without any pixel, and about masks with a single class."""
    C = len(t.names)
    zero = [c for c in range(C) if t.pixel_counts[c] == 0]
    warns: list[str] = []
    if len(zero) <= 3:
        warns += [w.replace("pixel", px) for w in W.zero_count_warnings(t.pixel_counts, t.names)]
    else:
        warns.append(f"{len(zero)} classes have no {px} in these masks ({', '.join(t.names[c] for c in zero[:6])}{', ...' if len(zero) > 6 else ''}): "
                     "their weights are set to 0 (not inf); the model cannot learn them from this data — if the labels are not contiguous, remap them")
    if C < 2 and t.overlap == 0:
        warns.append("only one class found in all masks: there is nothing to segment (are these masks all background?)")
    return warns


def _mode(d: _Draft, pairs: list[dict]) -> tuple[str, list[str] | None]:
    """``(mode, nested channels or None)``, with the reasons for both added to ``d``."""
    t, px, n_pix = d.t, d.px, max(d.t.n_pixels, 1)
    C = len(t.names)
    if t.overlap > 0:
        mode = "multilabel"
        overlap_frac = t.overlap / t.labelled if t.labelled else 0.0
        d.reasons.append(f"{_pct(overlap_frac)} of labelled {px}s carry more than one class ({t.overlap} {px}s)"
                         + (f", mostly {pairs[0]['names'][0]} + {pairs[0]['names'][1]}" if pairs else "")
                         + ": classes are not mutually exclusive, so each channel needs its own sigmoid (multilabel), not a softmax")
    else:
        mode = "binary" if C == 2 else "multiclass"
        if t.implicit_background:
            d.reasons.append(f"channels never overlap but {_pct(t.pixel_counts[0] / n_pix)} of {px}s have no class: added an implicit background "
                             "class 0 so that every pixel has exactly one class; build targets with "
                             "`target = torch.cat([1 - y.sum(1, keepdim=True), y], 1).argmax(1)`")
        if mode == "binary":
            d.reasons.append("2 mutually exclusive classes: binary mode, one output channel with a sigmoid "
                             "(equivalent to a 2-class softmax, with half the outputs)")
        else:
            d.reasons.append(f"{C} classes and no {px} with more than one class: classes are mutually exclusive, so softmax over {C} channels (multiclass)")
    chain = nested_chain([int(x) for x in t.pixel_counts], t.pairs) if mode == "multilabel" else None
    nested = [t.names[i] for i in chain] if chain else None
    if nested:
        d.reasons.append(f"the channels nest ({' ⊃ '.join(nested)}: each lies inside the one before): nested regions, as "
                         "BraTS's tumour sub-regions; one sigmoid per region on region targets is nnU-Net's region-based "
                         "training (seglab.RegionLoss builds the targets from label maps)")
    return mode, nested


def _softmax_loss(d: _Draft, cw: list[float], cw_cap_warn: list[str], weights: str, max_weight: float) -> tuple[str, bool]:
    """``(loss, include_background)`` for exclusive classes (multiclass); options into ``d.kwargs``."""
    t, px, freq, imbalance = d.t, d.px, d.freq, d.imbalance
    bg = t.background
    if bg is not None:
        d.reasons.append(f"every {px} has a class; class {bg} ({t.names[bg]}) is taken as the background: {_pct(freq[bg])} of {px}s")
    if imbalance is None or imbalance <= BALANCED:
        d.reasons.append(f"imbalance ratio {imbalance:.3g} (<= {BALANCED:g}): classes are roughly balanced, plain cross-entropy without weights"
                         if imbalance is not None else "plain cross-entropy")
        return "ce", True
    small = int(np.argmin(np.where(d.present, freq, np.inf)))
    big = int(np.argmax(freq))
    d.reasons.append(f"imbalance ratio {imbalance:.3g} (> {BALANCED:g}): {t.names[big]} covers {_pct(freq[big])} of {px}s, {t.names[small]} only "
                     f"{_pct(freq[small])}: Dice + CE (nnU-Net's default; on the evidence suite's tasks a CE term beside Dice: "
                     f"{_status('ce_term')}, a Dice term beside CE: {_status('dice_term')}; see the evidence below)")
    d.warns += cw_cap_warn
    d.reasons.append(f"class weights by {W.METHOD_NAMES[weights]}: {', '.join(_fmt(x) for x in cw)}, in the CE term only (their "
                     f"evidence: {_status('ce_class_weights')}; weights move errors from rare to frequent classes, check the trade "
                     "with `seglab compare --ablate advised`). Class weights in the Dice term are dropped from the default: "
                     f"{_status('dice_class_weights')}, docs/advise_evidence.md#dice-class-weights (analysis plan, amendment 6)"
                     + (f"; capped at {max_weight:g}" if cw_cap_warn else ""))
    include_bg = True
    if bg is not None and freq[bg] >= BACKGROUND_DOMINANT:
        include_bg = False
        d.reasons.append(f"Dice without background: the background holds {_pct(freq[bg])} of {px}s (>= {_pct(BACKGROUND_DOMINANT)}) and its Dice is near 1 "
                         f"(a convention, as MONAI's include_background=False; its evidence: {_status('background_exclusion')}, "
                         "see the evidence below)")
    else:
        d.reasons.append("Dice includes the background: " + ("there is no background class" if bg is None else
                         f"the background holds only {_pct(freq[bg])} of {px}s (< {_pct(BACKGROUND_DOMINANT)})"))
    d.kwargs["include_background"] = include_bg
    return dice_ce_weighted(cw), include_bg


def dice_ce_weighted(cw: list[float]) -> str:
    """The advised multiclass loss's spec: Dice + CE with the class weights ``cw`` in the CE term only (class
    weights in the Dice term: a measured harm, dropped from the default by docs/analysis_plan.md, amendment 6).
    The weights are written as the built loss holds them (float32), so the spec reads back to the same loss.

    >>> dice_ce_weighted([0.5, 2.0])
    'dice+ce[class_weights=[0.5,2.0]]'
    """
    return "dice+" + format_loss(get_loss("ce", "multiclass", class_weights=cw))


def _sigmoid_loss(d: _Draft, mode: str, max_weight: float) -> tuple[str, list[float] | None, list[float] | None]:
    """``(loss, pos_weight, raw pos_weight)`` for binary and multi-label masks; options into ``d.kwargs``."""
    t, px, n_pix = d.t, d.px, max(d.t.n_pixels, 1)
    pos_counts = t.pixel_counts[1:] if mode == "binary" else t.pixel_counts
    raw = [float(x) for x in W.pos_weight(pos_counts, t.n_pixels)]
    worst = max(raw)
    names = t.names[1:] if mode == "binary" else t.names
    pw: list[float] | None
    pw_raw: list[float] | None
    if worst > BALANCED:
        loss = "dice+ce"
        j = int(np.argmax(raw))
        d.reasons.append(f"{names[j]} is positive in {_pct(pos_counts[j] / n_pix)} of {px}s: negatives/positives = {worst:.3g} (> {BALANCED:g}); "
                         f"BCE-with-logits + Dice with pos_weight = negatives/positives per channel (its evidence: {_status('pos_weight')})")
        pw_raw = raw
        pw, cap_warn = _cap(raw, max_weight, names, "pos_weight", _cap_why())
        d.warns += cap_warn
        d.kwargs["pos_weight"] = pw
    else:
        loss = "ce"
        pw = pw_raw = None
        d.reasons.append(f"every channel has negatives/positives <= {BALANCED:g}: plain BCE-with-logits, no pos_weight")
    if mode == "binary":
        d.reasons.append("binary mode has a single (foreground) output channel: there is no background channel to exclude from Dice")
    else:
        d.reasons.append("multilabel channels are all foreground labels (no background channel), so Dice includes every channel")
    if loss != "ce":
        d.kwargs["include_background"] = True
    return loss, pw, pw_raw


def _batch_and_presence(d: _Draft, loss: str) -> None:
    """Batch Dice, the rare-class warning and the empty-mask count (into ``d``)."""
    t, img = d.t, d.img
    if t.n_images > 0 and "dice" in loss:
        efrac = t.empty_images / t.n_images
        if efrac >= EMPTY_FOR_BATCH_DICE or d.rare:
            d.kwargs["batch"] = True
            why = f"{_pct(efrac)} of {img}s are empty" if efrac >= EMPTY_FOR_BATCH_DICE else f"{len(d.rare)} class(es) are present in few {img}s"
            d.reasons.append(f"batch Dice (batch=True): {why}; pooled over the batch, an {img} without a class adds no empty-class "
                             f"term (nnU-Net's batch Dice, a convention; its evidence: {_status('batch_dice')}, see the evidence "
                             "below and docs/dice_per_image_vs_batch.md)")
    if d.rare:
        d.warns.append(f"classes present in < {_pct(RARE_FRACTION)} of {img}s (or in <= 2): "
                       + ", ".join(f"{t.names[c]} in {int(t.image_counts[c])}/{t.n_images} {img}s" for c in d.rare)
                       + f"; consider oversampling the {img}s that contain them")
    if t.empty_images:
        d.reasons.append(f"{t.empty_images} of {t.n_images} {img}s are empty (no foreground)")


def _void_and_spacing(d: _Draft, void: int | None, void_text: str | None, spacing: dict | None) -> None:
    """The void label's loss option, and the spacing warnings and notes (into ``d``)."""
    stats, px, img = d.stats, d.px, d.img
    if void is not None and stats.kind == "index":
        d.kwargs["ignore_index"] = int(void)
        if not void_text:
            d.reasons.append(f"{stats.n_ignored} {px}s equal ignore_index={void} and were left out of every count; the loss ignores them too")
    if spacing:
        sp_txt = " x ".join(f"{x:.3g}" for x in spacing["median"])
        if spacing["anisotropy"] > ANISOTROPY:
            d.warns.append(f"anisotropic {px}s: spacing up to {spacing['anisotropy']:.3g}x larger along one axis (> {ANISOTROPY:g}, nnU-Net's threshold; "
                           f"median spacing {sp_txt}): consider resampling, or 2D / in-plane patches")
        if spacing["distinct"] > 1:
            d.notes.append(f"{spacing['distinct']} different {px} spacings across the {img}s (median {sp_txt}): resample to one spacing before training")


def _reading_notes(d: _Draft, rgb: dict | None) -> None:
    """The RGB reading, ambiguous encodings and skipped files (into ``d``)."""
    stats = d.stats
    if rgb:
        other = "classes" if rgb["reading"] == "multilabel" else "multilabel"
        if rgb["ambiguous"]:
            d.reasons.append(f"RGB masks: {len(rgb['colours'])} colours; {', '.join(rgb['mixed_colours'])} are sums of primary colours. Two readings: "
                             "(a) multilabel — R, G, B are independent labels and a mixed colour is an overlap (magenta = red + blue); "
                             "(b) classes — every colour is its own, mutually exclusive class. "
                             f"This advice assumes the {rgb['reading']} reading; pass --rgb-reading {other} for the other")
            d.assumptions.append(f"RGB colours read as {rgb['reading']} (ambiguous); pass --rgb-reading {other} for the other reading")
        else:
            why = "the colours are not sums of primary channels" if not rgb["decomposable"] else "no colour mixes two primaries"
            d.reasons.append(f"RGB masks: {len(rgb['colours'])} distinct colours, each read as its own class ({why})")
    if stats.ambiguous_files:
        f, note = stats.ambiguous_files[0]
        more = len(stats.ambiguous_files) - 1
        d.warns.append(f"ambiguous encoding in {f}" + (f" and {more}{'+' if len(stats.ambiguous_files) >= 50 else ''} other file(s)" if more else "") + f": {note}")
    if stats.n_skipped:
        d.warns.append(f"{stats.n_skipped} file(s) skipped because they could not be read as masks (see 'skipped')")


def _code(t: ClassTable, loss: str, mode: str, kwargs: dict, void: int | None, struct_losses: list[dict]) -> str:
    """The lines that build the advised loss (and remap the labels when needed)."""
    C = len(t.names)
    args = [f'"{loss}"', f'mode="{mode}"']
    for k, v in kwargs.items():
        args.append(f"{k}={_tensor(v)}" if isinstance(v, list) else f"{k}={v!r}")
    code = "import torch\nimport seglab\n\n"
    if t.remap:
        lv = f"torch.tensor({list(t.label_values or [])})"
        remap = f"torch.searchsorted({lv}, target)"
        if void is not None:
            remap = f"torch.where(target == {void}, {void}, {remap})"
        code += f"# target = {remap}  # label value -> class index 0..{C - 1}\n"
    code += f"loss = seglab.get_loss({', '.join(args)})"
    if mode == "multiclass":
        code += f"\n# model outputs {C} raw logits (no softmax layer); prediction = seglab.predict(logits, \"multiclass\")  # argmax"
    elif mode == "binary":
        code += "\n# model outputs 1 raw logit (no sigmoid layer); prediction = seglab.predict(logits, \"binary\")  # logit > 0"
    else:
        code += f"\n# model outputs {C} raw logits (no sigmoid layer); prediction = seglab.predict(logits, \"multilabel\")  # per channel"
    for sl in struct_losses:
        code += (f"\n# tubular {', '.join(sl['classes'])}: consider adding a topology-aware term to the loss: "
                 + " or ".join(f'"+{x}"' for x in sl["losses"]) + " (see why)")
    return code


def _draft(stats: MaskStats, rgb_reading: str | None, ignore_index: int | str | None, class_names: list[str] | None
           ) -> tuple[_Draft, dict | None, int | None, str | None]:
    """Resolve the void label, build and name the class table, and measure it: ``(draft, RGB report, void,
    void assumption)``."""
    three_d = bool(stats.spatial_dims) and min(stats.spatial_dims) >= 3
    px, img = ("voxel", "volume") if three_d else ("pixel", "image")
    void, void_text, void_warns = resolve_void(stats, ignore_index)
    t, rgb = class_table(stats, rgb_reading)
    _name_classes(t, class_names)
    C = len(t.names)
    freq = t.pixel_counts / max(t.n_pixels, 1)
    present = t.pixel_counts > 0
    img_frac = t.image_counts / max(t.n_images, 1)
    imbalance = float(freq[present].max() / freq[present].min()) if present.any() else None
    rare = [c for c in range(C) if t.image_counts[c] > 0 and (img_frac[c] < RARE_FRACTION or t.image_counts[c] <= 2) and c != t.background and t.n_images > 2]
    d = _Draft(stats, t, px, img, freq, present, img_frac, imbalance, rare, warns=list(void_warns))
    if void_text:
        d.assumptions.append(void_text.format(px=px, img=img))
    return d, rgb, void, void_text


def recommend(stats: MaskStats, weights: str = "median", beta: float = 0.9999, rgb_reading: str | None = None, ignore_index="auto",
              class_names: list[str] | None = None, max_weight: float = MAX_WEIGHT) -> Advice:
    """Build the :class:`Advice` from accumulated statistics; ``class_names`` replaces the generic names
    when it has one name per class found. ``ignore_index``: an int, ``None`` or ``"auto"`` (see
    :func:`resolve_void`); ``max_weight``: cap on class weights and ``pos_weight`` (``inf``: no cap)."""
    _check_options(stats, weights, max_weight)
    d, rgb, void, void_text = _draft(stats, rgb_reading, ignore_index, class_names)
    t, px, img = d.t, d.px, d.img
    encoding, ambiguous, d.notes = _encoding(stats, t, rgb)
    remap_assumptions, remap_warns = _remap_notes(stats, t, px)
    d.assumptions += remap_assumptions
    d.warns += remap_warns
    spacing = _spacing(stats)
    n_pix = max(t.n_pixels, 1)
    unlabelled = float(t.pixel_counts[0] / n_pix) if t.implicit_background else (t.n_pixels - t.labelled) / n_pix
    pairs = _overlap_pairs(t)
    rare_rule = f"present in < {_pct(RARE_FRACTION)} of the {img}s (or in at most 2 {img}s), background excluded; counted only with > 2 {img}s"
    d.warns += _zero_class_warnings(t, px)
    cw_raw = [float(x) for x in W.class_weights(weights, t.pixel_counts, t.image_pixel_totals, beta=beta)]
    cw, cw_cap_warn = _cap(cw_raw, max_weight, t.names, "class weights", _cap_why())
    if weights == "effective" and d.present.any() and t.pixel_counts[d.present].min() > 10 / (1 - beta):
        d.warns.append(f"effective-number weights saturate: every class has more than {10 / (1 - beta):.0f} {px}s, so (1 - beta^n) ~ 1 and the weights "
                       f"are nearly uniform with beta={beta}; use a beta closer to 1 (--beta) or another method")
    mode, nested = _mode(d, pairs)
    pw: list[float] | None = None
    pw_raw: list[float] | None = None
    include_bg = True
    if mode == "multiclass":
        loss, include_bg = _softmax_loss(d, cw, cw_cap_warn, weights, max_weight)
    else:
        loss, pw, pw_raw = _sigmoid_loss(d, mode, max_weight)
    _batch_and_presence(d, loss)
    _void_and_spacing(d, void, void_text, spacing)
    _reading_notes(d, rgb)
    measures, struct_losses, metrics, s_reasons, s_warns, s_notes = structure_advice(stats, t, d.freq, d.img_frac, px, img)
    d.reasons += s_reasons
    d.warns += s_warns
    d.notes += s_notes
    kwargs = d.kwargs
    capped = ("class_weights" in loss and cw != cw_raw) or ("pos_weight" in kwargs and pw != pw_raw)
    return Advice(
        evidence=[rule_status(r) for r in applied_rules(loss, kwargs, capped, struct_losses)]
        + ([rule_status("nested_regions")] if nested else []), nested_regions=nested,
        encoding=encoding, encoding_ambiguous=ambiguous, encoding_notes=d.notes, num_classes=len(t.names), class_names=list(t.names), mode=mode,
        activation="softmax" if mode == "multiclass" else "sigmoid", out_channels=len(t.names) if mode != "binary" else 1, loss=loss,
        loss_kwargs=kwargs, code=_code(t, loss, mode, kwargs, void, struct_losses),
        class_frequencies=[float(x) for x in d.freq], class_pixel_counts=[int(x) for x in t.pixel_counts],
        class_image_counts=[int(x) for x in t.image_counts], class_image_fractions=[float(x) for x in d.img_frac],
        class_weights=[float(x) for x in cw], weights_method=weights, pos_weight=pw, include_background=include_bg,
        multilabel_overlap_fraction=float(t.overlap / t.labelled if t.labelled else 0.0), overlap_pairs=pairs,
        every_pixel_labelled=unlabelled == 0.0, unlabelled_fraction=float(unlabelled), background_class=t.background,
        imbalance_ratio=d.imbalance, rare_classes=d.rare, empty_masks=int(t.empty_images), empty_mask_files=t.empty_files,
        n_files=stats.n_files, n_images=stats.n_images, n_pixels=int(t.n_pixels), n_ignored_pixels=int(stats.n_ignored),
        skipped=[{"file": f, "error": e} for f, e in stats.skipped], n_skipped=stats.n_skipped, rgb=rgb, reasons=d.reasons,
        warnings=d.warns, assumptions=d.assumptions, void_label=None if void is None else int(void), label_values=t.label_values,
        element=px, sample=img, spacing=spacing, class_weights_uncapped=cw_raw, pos_weight_uncapped=pw_raw,
        max_weight=float(max_weight), rare_rule=rare_rule, structure=measures, structure_losses=struct_losses, metrics=metrics,
    )


def _class_of(stats: MaskStats, t: ClassTable) -> dict[int, int]:
    """Structure key (label value / channel) -> class index of the table."""
    if stats.kind == "index":
        return {v: i for i, v in enumerate(t.label_values or [])}
    if stats.kind == "channels":
        return {c: c + (1 if t.implicit_background else 0) for c in range(int(stats.n_channels or 0))}
    return {}


def applied_rules(loss: str, kwargs: dict, capped: bool, struct_losses: list[dict]) -> list[str]:
    """The ids (advise/evidence.RULES) of the rules behind an advice, in the order a reader meets them. A weight
    counts for a term when the term's brackets or ``kwargs`` (which go to every term that takes them) hold it."""
    rules = ["softmax_or_sigmoid"]
    terms = {t.name: t.options for t in parse_loss_spec(loss)}
    if "dice" in terms and len(terms) > 1:
        rules += ["dice_term", "ce_term"]

    def weighted(term: str) -> bool:
        """Whether ``term`` of the loss carries class weights."""
        return term in terms and ("class_weights" in terms[term] or "class_weights" in kwargs)

    rules += [r for r, on in (("ce_class_weights", weighted("ce")), ("dice_class_weights", weighted("dice")),
                              ("background_exclusion", kwargs.get("include_background") is False),
                              ("batch_dice", bool(kwargs.get("batch"))), ("pos_weight", "pos_weight" in kwargs),
                              ("weight_cap", capped), ("structure_losses", bool(struct_losses))) if on]
    return rules


def _structure_measures(stats: MaskStats, t: ClassTable, three_d: bool) -> tuple[list[dict], list[str]]:
    """``(measures, notes)``: the structure measures of each foreground class with pixels (module docstring)."""
    notes: list[str] = []
    st = stats.structure
    if st.error:
        notes.append(f"no structure measures (tubularity, connected components): {st.error}")
    elif stats.kind == "rgb":
        notes.append("no structure measures (tubularity, connected components) for colour masks")
    cls = _class_of(stats, t)
    min_elong = TUBULAR_ELONGATION_3D if three_d else TUBULAR_ELONGATION
    measures: list[dict] = []
    for key, e in sorted(st.classes.items()):
        c = cls.get(key)
        if c is None or c == t.background or not e.pixels:
            continue
        thin_share = e.thin_pixels / e.pixels
        if e.thin_pixels:
            tub = e.skeleton / e.thin_pixels
            width = 2 * float(np.sqrt(e.thin_pixels / (np.pi * e.skeleton))) if three_d else e.thin_pixels / e.skeleton
            elong = e.thin_elongation / e.thin_pixels
        else:
            tub, width, elong = 0.0, float("inf"), 0.0
        measures.append({
            "class": c, "name": t.names[c], "images": e.images, "components": e.components,
            "components_per_image": e.components / e.images, "max_components": e.max_components,
            "small_components": e.small_components, "small_pixel_fraction": e.small_pixels / e.pixels,
            "median_component_size": e.median_component_size(), "thin_fraction": thin_share, "skeleton_fraction": tub,
            "width": width, "thickness": 2 * e.pixels / max(e.boundary, 1), "elongation": elong,
            "tubular": bool(thin_share >= TUBULAR_SHARE and width <= TUBULAR_WIDTH and elong >= min_elong),
        })
    return measures, notes


def _has_small(m: dict) -> bool:
    """Whether a class has many small components (the small-component rule)."""
    return bool(m["components"] >= 3 and m["small_components"] >= SMALL_SHARE * m["components"])


def _structure_findings(measures: list[dict], min_elong: float, px: str, img: str
                        ) -> tuple[list[dict], list[str], list[str]]:
    """``(structure losses, reasons, warnings)`` from the measures: tubular classes and small components."""
    struct_losses: list[dict] = []
    reasons: list[str] = []
    tubular = [m for m in measures if m["tubular"]]
    if tubular:
        names = [m["name"] for m in tubular]
        why = "; ".join(f"{m['name']}: skeleton/foreground {m['skeleton_fraction']:.3g}, typical width {m['width']:.3g} {px}s "
                        f"(<= {TUBULAR_WIDTH:g}), {m['elongation']:.3g} times longer than wide (>= {min_elong:g})"
                        for m in tubular)
        struct_losses.append({"classes": names, "losses": ["skeleton_recall", "cldice"], "reason": why})
        reasons.append(f"tubular structures — {why}: overlap losses barely notice a broken thin branch (few {px}s), so add a "
                       "topology-aware term: skeleton_recall (Kirchhoff et al. 2024, recall of the target's tubed skeleton) or "
                       "cldice (Shit et al. 2021, soft centreline Dice)")
    warns = [f"{m['name']}: {m['small_components']} of its {m['components']} connected components "
             f"({_pct(m['small_components'] / m['components'])}) are smaller than {_pct(SMALL_COMPONENT)} of a {img} "
             f"but hold only {_pct(m['small_pixel_fraction'])} of its {px}s: Dice weighs components by size, so a model "
             "can miss the small ones at little cost — check small-component recall (per-component detection)"
             for m in measures if _has_small(m)]
    return struct_losses, reasons, warns


def _overlap_metric(t: ClassTable, img_frac: np.ndarray, img: str) -> dict:
    """Dice per image (a class often absent) or pooled Dice, for the foreground classes with pixels."""
    fg = [c for c in range(len(t.names)) if c != t.background and t.pixel_counts[c] > 0]
    fg_names = [t.names[c] for c in fg]
    often_absent = [c for c in fg if 1 - img_frac[c] >= EMPTY_FOR_BATCH_DICE]
    if often_absent:
        worst = max(often_absent, key=lambda c: 1 - img_frac[c])
        return {"metric": "Dice, per image", "call": "seglab.metrics.dice_score(pred, target, ...)  # aggregate='mean'",
                "classes": fg_names,
                "reason": f"{t.names[worst]} is absent from {_pct(1 - img_frac[worst])} of the {img}s (>= {_pct(EMPTY_FOR_BATCH_DICE)}): "
                          f"average the Dice of each {img}, leaving out {img}s where a class is absent from both prediction and "
                          f"target (NaN), and count false positives on {img}s without the class; pooled Dice hides per-{img} failures"}
    return {"metric": "Dice", "call": "seglab.metrics.dice_score(pred, target, ...)", "classes": fg_names,
            "reason": f"every class is present in more than {_pct(1 - EMPTY_FOR_BATCH_DICE)} of the {img}s: per-{img} "
                      "(default) and pooled Dice agree in meaning; Metrics Reloaded's overlap metric"}


def _structure_metrics(t: ClassTable, measures: list[dict], img_frac: np.ndarray, px: str, img: str) -> list[dict]:
    """The metrics to report (Metrics Reloaded): overlap, NSD, and HD95 / clDice / component recall where they apply."""
    metrics = [_overlap_metric(t, img_frac, img)]
    fg_names = metrics[0]["classes"]
    thin = [m for m in measures if m["thickness"] <= BOUNDARY_THICKNESS]
    if measures:
        m0 = min(measures, key=lambda m: m["thickness"])
        nsd_why = (f"{m0['name']} is {m0['thickness']:.3g} {px}s thick (2 x {px}s / boundary {px}s): a one-{px} boundary shift "
                   f"costs about {_pct(min(1.0, 1 / m0['thickness']))} of its Dice")
    else:
        nsd_why = "no structure measures"
    metrics.append({"metric": "NSD (normalised surface Dice)", "call": "seglab.metrics.surface_dice(pred, target, tolerance, spacing, ...)",
                    "classes": fg_names,
                    "reason": "Metrics Reloaded pairs an overlap metric with a boundary metric; choose the tolerance as the "
                              f"acceptable boundary error (e.g. the inter-rater variation); {nsd_why}"})
    if thin:
        metrics.append({"metric": "HD95", "call": "seglab.metrics.hausdorff_distance(pred, target, 95, spacing, ...)",
                        "classes": [m["name"] for m in thin],
                        "reason": "boundaries matter: " + ", ".join(f"{m['name']} {m['thickness']:.3g} {px}s thick" for m in thin)
                                  + f" (<= {BOUNDARY_THICKNESS:g}); HD95 reports the worst boundary errors, which Dice averages away "
                                  "(it is inf for a missed or hallucinated class: report how often)"})
    tubular = [m for m in measures if m["tubular"]]
    if tubular:
        metrics.append({"metric": "clDice", "call": "seglab.metrics.cldice_score(pred, target, ...)  # centreline Dice, Shit et al. 2021", "classes": [m["name"] for m in tubular],
                        "reason": "tubular classes: connectivity of the centreline matters more than their few pixels "
                                  "(measures above)"})
    small = [m for m in measures if _has_small(m)]
    if small:
        metrics.append({"metric": "per-component recall (detection)", "call": "connected components of target and prediction",
                        "classes": [m["name"] for m in small],
                        "reason": "many small components (see the warning): Dice and NSD are dominated by the large ones"})
    return metrics


def structure_advice(stats: MaskStats, t: ClassTable, freq: np.ndarray, img_frac: np.ndarray, px: str, img: str
                     ) -> tuple[list[dict], list[dict], list[dict], list[str], list[str], list[str]]:
    """Per-class structure measures and what follows from them: (measures, structure losses, metrics to report,
    reasons, warnings, notes). The rules are in the module docstring; ``freq`` is accepted for callers that pass
    it and not used."""
    three_d = bool(stats.spatial_dims) and min(stats.spatial_dims) >= 3
    measures, notes = _structure_measures(stats, t, three_d)
    min_elong = TUBULAR_ELONGATION_3D if three_d else TUBULAR_ELONGATION
    struct_losses, reasons, warns = _structure_findings(measures, min_elong, px, img)
    metrics = _structure_metrics(t, measures, img_frac, px, img)
    return measures, struct_losses, metrics, reasons, warns, notes
