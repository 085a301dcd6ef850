"""The :class:`Advice` that :func:`seglab.advise.advise` returns: what was found in the masks and what to train with.

It is built by :mod:`seglab.advise.recommend` and rendered by :mod:`seglab.advise.report` (``str(advice)``);
``to_dict()`` is the ``seglab advise --json`` object (:data:`SCHEMA_VERSION`). The import runs one way:
recommend -> advice -> report (report names the class for type checking only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from seglab._version import __version__
from seglab.advise.report import render_text
from seglab.advise.weights import MAX_WEIGHT
from seglab.losses import get_loss
from seglab.losses.registry import format_loss

SCHEMA_VERSION = 2  # of the --json object; 1 was the unversioned object of seglab <= 0.x before issue 11


@dataclass
class Advice:
    """What :func:`seglab.advise.advise` found and recommends. ``to_dict()`` is the ``--json`` object.

    Counts keep the 2D names (``n_pixels``, ``n_images``, ``class_image_counts``...) for every input; for 3D
    masks ``element == "voxel"`` and ``sample == "volume"`` say what they count."""

    encoding: str
    encoding_ambiguous: bool
    encoding_notes: list[str]
    num_classes: int
    class_names: list[str]
    mode: str
    activation: str
    out_channels: int
    loss: str  # the spec get_loss takes with loss_kwargs; a term's own options in brackets ("dice+ce[class_weights=[...]]")
    loss_kwargs: dict  # options for every term that accepts them (include_background, batch, pos_weight, ignore_index)
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
    assumptions: list[str] = field(default_factory=list)  # what the advice takes for granted (void label, remap...)
    void_label: int | None = None  # the ignore_index used (given or detected)
    label_values: list[int] | None = None  # index masks: label value of each class
    element: str = "pixel"  # or "voxel" (3D masks)
    sample: str = "image"  # or "volume"
    spacing: dict | None = None  # NIfTI: {"median": [...], "min": [...], "max": [...], "anisotropy": x, "files": n}
    class_weights_uncapped: list[float] = field(default_factory=list)
    pos_weight_uncapped: list[float] | None = None
    max_weight: float = MAX_WEIGHT
    rare_rule: str = ""
    structure: list[dict] = field(default_factory=list)  # per measured class: components, skeleton, width (structure extra)
    structure_losses: list[dict] = field(default_factory=list)  # {"classes", "losses", "reason"}
    metrics: list[dict] = field(default_factory=list)  # what to report: {"metric", "call", "classes", "reason"}
    # the status of each rule applied (advise/evidence.py): {"rule", "title", "status", "detail", "pointer"}
    evidence: list[dict] = field(default_factory=list)
    nested_regions: list[str] | None = None  # multi-label channels that nest, broadest first (region-based training)

    @property
    def loss_spec(self) -> str:
        """The advised loss as the spec string ``seglab train --loss`` and ``seglab compare --losses`` take (the
        canonical form of the built loss, :func:`seglab.format_loss`)."""
        return format_loss(get_loss(self.loss, self.mode, **self.loss_kwargs))

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: every field, the schema and seglab versions, and :attr:`loss_spec`."""
        return {"schema_version": SCHEMA_VERSION, "seglab_version": __version__, **asdict(self), "loss_spec": self.loss_spec}

    def to_json(self, **kw: Any) -> str:
        """:meth:`to_dict` as JSON (``kw``: :func:`json.dumps` options)."""
        return json.dumps(self.to_dict(), **kw)

    def __str__(self) -> str:
        return render_text(self)
