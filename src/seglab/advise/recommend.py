"""From accumulated statistics to a class table, then to a recommendation with reasons.

Decision rules (every threshold is named here and quoted in the reasons):

- **mode**: any pixel with more than one class -> ``multilabel`` (sigmoid per channel). Otherwise the classes
  are mutually exclusive: 2 classes -> ``binary`` (one sigmoid output), more -> ``multiclass`` (softmax).
  Channel masks whose channels never overlap but leave some pixels without any class get an implicit
  background class 0 ("no channel set") so that softmax has a class for every pixel.
- **loss**: single-label with imbalance ratio (largest / smallest class pixel frequency) <= ``BALANCED`` ->
  plain ``"ce"``; above -> ``"dice+ce"`` with class weights (Dice is insensitive to class size, CE keeps
  gradients well behaved). Binary and multi-label: ``negatives / positives`` of the rarest channel <=
  ``BALANCED`` -> ``"ce"`` (BCE-with-logits), above -> ``"dice+ce"`` with ``pos_weight``.
- **include_background** (Dice): ``False`` when a background class holds at least ``BACKGROUND_DOMINANT`` of
  the pixels (its near-perfect Dice would dilute the foreground classes' signal), else ``True``.
- **batch Dice**: ``batch=True`` when at least ``EMPTY_FOR_BATCH_DICE`` of the images are empty or a class is
  rare: per-image Dice of a class absent from an image is undefined/noisy.
- **rare class**: present in fewer than ``RARE_FRACTION`` of the images (or in at most 2 images).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from seglab.advise import weights as W
from seglab.advise.stats import MaskStats, colour_name

BALANCED = 3.0
BACKGROUND_DOMINANT = 0.5
EMPTY_FOR_BATCH_DICE = 0.1
RARE_FRACTION = 0.05


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


def _from_patterns(patterns: dict, pattern_files: dict, n_classes: int, key_to_classes, is_empty) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    img = np.zeros(n_classes, dtype=np.int64)
    tot = np.zeros(n_classes, dtype=np.int64)
    empty, files = 0, []
    for key, (n_img, n_pix) in patterns.items():
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
    rgb = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in cols]
    on_values = [set(v[i] for v in rgb if v[i]) for i in range(3)]
    decomposable = all(len(s) <= 1 for s in on_values)
    mixed = [v for v in rgb if sum(1 for x in v if x) >= 2] if decomposable else []
    return {
        "colours": [{"rgb": list(v), "name": colour_name(v), "pixels": int(stats.colour_counts[c])} for v, c in zip(rgb, cols)],
        "decomposable": decomposable,
        "mixed_colours": [colour_name(v) for v in mixed],
        "ambiguous": bool(decomposable and mixed),
    }


def class_table(stats: MaskStats, rgb_reading: str | None = None) -> tuple[ClassTable, dict | None]:
    """Turn a :class:`MaskStats` into a :class:`ClassTable` (and, for RGB, the colour report with the reading)."""
    if stats.kind is None:
        raise ValueError("no readable mask: nothing to advise on")
    if stats.kind == "index":
        n = stats.pixel_counts.copy()
        C = max(n.size, 1)
        n = np.pad(n, (0, C - n.size))
        img, tot, empty, files = _from_patterns(stats.patterns, stats.pattern_files, C, lambda k: k, lambda k: set(k) <= {0})
        names = ["background"] + [f"class {c}" for c in range(1, C)]
        return ClassTable(names, n, img, tot, stats.n_pixels, stats.n_images, stats.labelled, 0, np.zeros((C, C), np.int64), 0, False, empty, files), None

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


@dataclass
class Advice:
    """What :func:`seglab.advise.advise` found and recommends. ``to_dict()`` is the ``--json`` object."""

    encoding: str
    encoding_ambiguous: bool
    encoding_notes: list[str]
    num_classes: int
    class_names: list[str]
    mode: str
    activation: str
    out_channels: int
    loss: str
    loss_kwargs: dict
    code: str
    class_frequencies: list[float]
    class_pixel_counts: list[int]
    class_image_counts: list[int]
    class_image_fractions: list[float]
    class_weights: list[float]
    weights_method: str
    pos_weight: list[float] | None
    include_background: bool
    multilabel_overlap_fraction: float
    overlap_pairs: list[dict]
    every_pixel_labelled: bool
    unlabelled_fraction: float
    background_class: int | None
    imbalance_ratio: float | None
    rare_classes: list[int]
    empty_masks: int
    empty_mask_files: list[str]
    n_files: int
    n_images: int
    n_pixels: int
    n_ignored_pixels: int
    skipped: list[dict]
    n_skipped: int
    rgb: dict | None
    reasons: list[str]
    warnings: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def __str__(self) -> str:
        from seglab.advise.report import render_text

        return render_text(self)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _tensor(vals: list[float]) -> str:
    return "torch.tensor([" + ", ".join(_fmt(v) for v in vals) + "])"


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def recommend(stats: MaskStats, weights: str = "median", beta: float = 0.9999, rgb_reading: str | None = None, ignore_index: int | None = None,
              class_names: list[str] | None = None) -> Advice:
    """Build the :class:`Advice` from accumulated statistics; ``class_names`` replaces the generic names
    when it has one name per class found."""
    if weights not in W.METHODS:
        raise ValueError(f"unknown class-weight method {weights!r}; expected one of {', '.join(W.METHODS)}")
    t, rgb = class_table(stats, rgb_reading)
    C = len(t.names)
    if class_names is not None:
        if len(class_names) == C:
            t.names = [str(n) for n in class_names]
        elif not (t.implicit_background and len(class_names) == C - 1):
            raise ValueError(f"{len(class_names)} class names given but the masks have {C} classes ({', '.join(t.names)})")
        else:
            t.names = t.names[:1] + [str(n) for n in class_names]
    reasons: list[str] = []
    warns: list[str] = []
    notes = list(stats.notes)
    enc_counts = dict(stats.encodings)
    encoding = max(enc_counts, key=enc_counts.get) if enc_counts else "unknown"
    if stats.kind == "channels":
        encoding = "onehot" if (t.overlap == 0 and not t.implicit_background) else "multihot"
    if len(enc_counts) > 1 and stats.kind != "channels":
        notes.append(f"files use several encodings: {enc_counts}")
    ambiguous = bool(stats.ambiguous_files) or bool(rgb and rgb["ambiguous"])

    n_pix = max(t.n_pixels, 1)
    freq = t.pixel_counts / n_pix
    present = t.pixel_counts > 0
    img_frac = t.image_counts / max(t.n_images, 1)
    overlap_frac = t.overlap / t.labelled if t.labelled else 0.0
    # measured on the masks as given: the implicit background class is exactly the unlabelled pixels
    unlabelled = float(t.pixel_counts[0] / n_pix) if t.implicit_background else (t.n_pixels - t.labelled) / n_pix
    imbalance = float(freq[present].max() / freq[present].min()) if present.any() else None
    pairs = [
        {"classes": [i, j], "names": [t.names[i], t.names[j]], "pixels": int(t.pairs[i, j]), "fraction_of_labelled": float(t.pairs[i, j] / max(t.labelled, 1))}
        for i in range(C) for j in range(i + 1, C) if t.pairs[i, j] > 0
    ]
    pairs.sort(key=lambda p: -p["pixels"])
    rare = [c for c in range(C) if t.image_counts[c] > 0 and (img_frac[c] < RARE_FRACTION or t.image_counts[c] <= 2) and c != t.background and t.n_images > 2]
    warns += W.zero_count_warnings(t.pixel_counts, t.names)
    if C < 2 and t.overlap == 0:
        warns.append("only one class found in all masks: there is nothing to segment (are these masks all background?)")
    cw = W.class_weights(weights, t.pixel_counts, t.image_pixel_totals, beta=beta)
    if weights == "effective" and present.any() and t.pixel_counts[present].min() > 10 / (1 - beta):
        warns.append(f"effective-number weights saturate: every class has more than {10 / (1 - beta):.0f} pixels, so (1 - beta^n) ~ 1 and the weights "
                     f"are nearly uniform with beta={beta}; use a beta closer to 1 (--beta) or another method")

    # findings as reasons
    if t.overlap > 0:
        mode = "multilabel"
        reasons.append(f"{_pct(overlap_frac)} of labelled pixels carry more than one class ({t.overlap} pixels)"
                       + (f", mostly {pairs[0]['names'][0]} + {pairs[0]['names'][1]}" if pairs else "")
                       + ": classes are not mutually exclusive, so each channel needs its own sigmoid (multilabel), not a softmax")
    else:
        mode = "binary" if C == 2 else "multiclass"
        if t.implicit_background:
            reasons.append(f"channels never overlap but {_pct(t.pixel_counts[0] / n_pix)} of pixels have no class: added an implicit background "
                           "class 0 so that every pixel has exactly one class; build targets with "
                           "`target = torch.cat([1 - y.sum(1, keepdim=True), y], 1).argmax(1)`")
        if mode == "binary":
            reasons.append("2 mutually exclusive classes: binary mode, one output channel with a sigmoid "
                           "(equivalent to a 2-class softmax, with half the outputs)")
        else:
            reasons.append(f"{C} classes and no pixel with more than one class: classes are mutually exclusive, so softmax over {C} channels (multiclass)")
    activation = "softmax" if mode == "multiclass" else "sigmoid"
    out_channels = C if mode != "binary" else 1

    kwargs: dict = {}
    pw: list[float] | None = None
    include_bg = True
    if mode == "multiclass":
        bg = t.background
        if bg is not None:
            reasons.append(f"every pixel has a class; class {bg} ({t.names[bg]}) is taken as the background: {_pct(freq[bg])} of pixels")
        if imbalance is not None and imbalance > BALANCED:
            loss = "dice+ce"
            small = int(np.argmin(np.where(present, freq, np.inf)))
            big = int(np.argmax(freq))
            reasons.append(f"imbalance ratio {imbalance:.3g} (> {BALANCED:g}): {t.names[big]} covers {_pct(freq[big])} of pixels, {t.names[small]} only "
                           f"{_pct(freq[small])}; Dice is insensitive to class size and CE keeps gradients smooth, so Dice + CE")
            kwargs["class_weights"] = [float(x) for x in cw]
            reasons.append(f"class weights by {W.METHOD_NAMES[weights]}: {', '.join(_fmt(x) for x in cw)} (used by both CE and Dice)")
            if bg is not None and freq[bg] >= BACKGROUND_DOMINANT:
                include_bg = False
                reasons.append(f"Dice without background: the background holds {_pct(freq[bg])} of pixels (>= {_pct(BACKGROUND_DOMINANT)}), its near-perfect "
                               "Dice would dilute the foreground classes")
            else:
                reasons.append("Dice includes the background: " + ("there is no background class" if bg is None else
                               f"the background holds only {_pct(freq[bg])} of pixels (< {_pct(BACKGROUND_DOMINANT)})"))
            kwargs["include_background"] = include_bg
        else:
            loss = "ce"
            reasons.append(f"imbalance ratio {imbalance:.3g} (<= {BALANCED:g}): classes are roughly balanced, plain cross-entropy without weights"
                           if imbalance is not None else "plain cross-entropy")
    else:
        if mode == "binary":
            pos_counts = t.pixel_counts[1:]
        else:
            pos_counts = t.pixel_counts
        pw = [float(x) for x in W.pos_weight(pos_counts, t.n_pixels)]
        worst = max(pw)
        names = t.names[1:] if mode == "binary" else t.names
        if worst > BALANCED:
            loss = "dice+ce"
            j = int(np.argmax(pw))
            reasons.append(f"{names[j]} is positive in {_pct(pos_counts[j] / n_pix)} of pixels: negatives/positives = {worst:.3g} (> {BALANCED:g}); "
                           "BCE-with-logits + Dice with pos_weight = negatives/positives per channel")
            kwargs["pos_weight"] = pw
            if worst > 100:
                warns.append(f"pos_weight up to {worst:.3g}: very large weights can destabilise early training; consider capping (e.g. at 100) or focal loss")
        else:
            loss = "ce"
            pw = None
            reasons.append(f"every channel has negatives/positives <= {BALANCED:g}: plain BCE-with-logits, no pos_weight")
        if mode == "binary":
            reasons.append("binary mode has a single (foreground) output channel: there is no background channel to exclude from Dice")
        else:
            reasons.append("multilabel channels are all foreground labels (no background channel), so Dice includes every channel")
        if loss != "ce":
            kwargs["include_background"] = True
    if t.n_images > 0 and "dice" in loss:
        efrac = t.empty_images / t.n_images
        if efrac >= EMPTY_FOR_BATCH_DICE or rare:
            kwargs["batch"] = True
            why = f"{_pct(efrac)} of images are empty" if efrac >= EMPTY_FOR_BATCH_DICE else f"{len(rare)} class(es) appear in few images"
            reasons.append(f"batch Dice (batch=True): {why}, and per-image Dice of a class absent from an image is undefined or noisy")
    if rare:
        warns.append("rare classes (present in few images): " + ", ".join(f"{t.names[c]} in {int(t.image_counts[c])}/{t.n_images} images" for c in rare)
                     + "; consider oversampling images that contain them")
    if t.empty_images:
        reasons.append(f"{t.empty_images} of {t.n_images} images are empty (no foreground)")
    if ignore_index is not None and stats.kind == "index":
        kwargs["ignore_index"] = int(ignore_index)
        reasons.append(f"{stats.n_ignored} pixels equal ignore_index={ignore_index} and were left out of every count; the loss ignores them too")
    if stats.kind == "index" and ignore_index is None and C > 2 and t.pixel_counts.size >= 256 and t.pixel_counts[255] > 0 and present[:255].sum() < 200:
        warns.append("label 255 occurs next to a few small labels: it is usually a 'void' boundary value — rerun with --ignore-index 255")
    if rgb:
        other = "classes" if rgb["reading"] == "multilabel" else "multilabel"
        if rgb["ambiguous"]:
            reasons.append(f"RGB masks: {len(rgb['colours'])} colours; {', '.join(rgb['mixed_colours'])} are sums of primary colours. Two readings: "
                           "(a) multilabel — R, G, B are independent labels and a mixed colour is an overlap (magenta = red + blue); "
                           "(b) classes — every colour is its own, mutually exclusive class. "
                           f"This advice assumes the {rgb['reading']} reading; pass --rgb-reading {other} for the other")
        else:
            why = "the colours are not sums of primary channels" if not rgb["decomposable"] else "no colour mixes two primaries"
            reasons.append(f"RGB masks: {len(rgb['colours'])} distinct colours, each read as its own class ({why})")
    if stats.ambiguous_files:
        f, note = stats.ambiguous_files[0]
        more = len(stats.ambiguous_files) - 1
        warns.append(f"ambiguous encoding in {f}" + (f" and {more}{'+' if len(stats.ambiguous_files) >= 50 else ''} other file(s)" if more else "") + f": {note}")
    if stats.n_skipped:
        warns.append(f"{stats.n_skipped} file(s) skipped because they could not be read as masks (see 'skipped')")

    # the exact lines
    args = [f'"{loss}"', f'mode="{mode}"']
    for k, v in kwargs.items():
        args.append(f"{k}={_tensor(v)}" if isinstance(v, list) else f"{k}={v!r}")
    code = "import torch\nimport seglab\n\n" + f"loss = seglab.get_loss({', '.join(args)})"
    if mode == "multiclass":
        code += f"\n# model outputs {C} raw logits (no softmax layer); prediction = seglab.predict(logits, \"multiclass\")  # argmax"
    elif mode == "binary":
        code += "\n# model outputs 1 raw logit (no sigmoid layer); prediction = seglab.predict(logits, \"binary\")  # logit > 0"
    else:
        code += f"\n# model outputs {C} raw logits (no sigmoid layer); prediction = seglab.predict(logits, \"multilabel\")  # per channel"

    return Advice(
        encoding=encoding, encoding_ambiguous=ambiguous, encoding_notes=notes, num_classes=C, class_names=list(t.names), mode=mode,
        activation=activation, out_channels=out_channels, loss=loss, loss_kwargs=kwargs, code=code,
        class_frequencies=[float(x) for x in freq], class_pixel_counts=[int(x) for x in t.pixel_counts],
        class_image_counts=[int(x) for x in t.image_counts], class_image_fractions=[float(x) for x in img_frac],
        class_weights=[float(x) for x in cw], weights_method=weights, pos_weight=pw, include_background=include_bg,
        multilabel_overlap_fraction=float(overlap_frac), overlap_pairs=pairs, every_pixel_labelled=unlabelled == 0.0,
        unlabelled_fraction=float(unlabelled), background_class=t.background, imbalance_ratio=imbalance, rare_classes=rare,
        empty_masks=int(t.empty_images), empty_mask_files=t.empty_files, n_files=stats.n_files, n_images=stats.n_images,
        n_pixels=int(t.n_pixels), n_ignored_pixels=int(stats.n_ignored), skipped=[{"file": f, "error": e} for f, e in stats.skipped],
        n_skipped=stats.n_skipped, rgb=rgb, reasons=reasons, warnings=warns,
    )
