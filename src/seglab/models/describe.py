"""What a model is made of, read from its modules (any ``nn.Module``: seglab's, MONAI's, smp's, a user's).

:func:`norm_label` names the normalisation a network uses, for run summaries (``model_norm``) and reports, so
that a label comes from the model that was trained rather than from an option name (a U-Net built with
``norm="batch"``, a user's factory without a ``norm`` option, a timm/smp encoder with its own layers).
"""

from __future__ import annotations

from torch import nn

NORM_LABELS = ("batch", "instance", "group", "layer", "none", "mixed")

# torch's normalisation base classes -> label (checked in this order: subclasses of these, e.g.
# SyncBatchNorm, LazyBatchNorm2d, timm's BatchNormAct2d or LayerNorm2d, are found through isinstance)
_KINDS: tuple[tuple[type, str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "batch"),
    (nn.modules.instancenorm._InstanceNorm, "instance"),
    (nn.GroupNorm, "group"),
    (nn.LayerNorm, "layer"),
) + (((nn.RMSNorm, "layer"),) if hasattr(nn, "RMSNorm") else ())

# class-name fallbacks for layers outside torch's hierarchy (torchvision's FrozenBatchNorm2d, hand-written
# LayerNorm2d / RMSNorm classes); a name is matched case-sensitively as a substring
_NAMES: tuple[tuple[str, str], ...] = (
    ("BatchNorm", "batch"),
    ("InstanceNorm", "instance"),
    ("GroupNorm", "group"),
    ("LayerNorm", "layer"),
    ("RMSNorm", "layer"),
)


def module_norm(module: nn.Module) -> str | None:
    """The label of one module if it is a normalisation layer (``"batch"``, ``"instance"``, ``"group"``,
    ``"layer"``), else None. RMSNorm counts as ``"layer"`` (a layer norm without centring)."""
    for cls, label in _KINDS:
        if isinstance(module, cls):
            return label
    name = type(module).__name__
    for key, label in _NAMES:
        if key in name:
            return label
    return None


def norm_kinds(model: nn.Module) -> set[str]:
    """The set of normalisation labels of all modules of ``model`` (empty when it has none)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {k for m in model.modules() if (k := module_norm(m)) is not None}


def norm_label(model: nn.Module) -> str:
    """One word for the normalisation of ``model``: ``"batch"``, ``"instance"``, ``"group"``, ``"layer"``
    when all its normalisation layers are of that kind, ``"none"`` when it has none, ``"mixed"`` when it
    has several kinds (e.g. a transformer encoder's LayerNorm with a convolutional decoder's BatchNorm).

    Shapes do not matter: the label is read from ``model.modules()`` (the model is not run).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Example::

        >>> from torch import nn
        >>> norm_label(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
        'batch'
        >>> norm_label(nn.Conv2d(1, 2, 1))
        'none'
        >>> norm_label(nn.Sequential(nn.GroupNorm(2, 4), nn.LayerNorm(4)))
        'mixed'
    """
    kinds = norm_kinds(model)
    if not kinds:
        return "none"
    if len(kinds) > 1:
        return "mixed"
    return next(iter(kinds))
