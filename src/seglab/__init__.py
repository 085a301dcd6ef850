"""seglab: which loss and which final activation for my segmentation — correct, fast and checkable."""

from seglab._checks import set_validation, validation
from seglab.activations import activate, one_hot, predict
from seglab.losses import (
    CompositeLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    Loss,
    LovaszLoss,
    TverskyLoss,
    BoundaryLoss,
    HausdorffDTLoss,
    ClDiceLoss,
    SkeletonRecallLoss,
    MCCLoss,
    TopKCrossEntropyLoss,
    OneHotBCELoss,
    describe_losses,
    format_loss,
    get_loss,
    list_losses,
)
from seglab.losses.deep_supervision import DeepSupervisionLoss
from seglab import metrics
from seglab import stats
from seglab import transforms
from seglab.regions import RegionLoss, labels_to_regions, regions_to_labels
from seglab.kernels.dispatch import set_fused
from seglab.models import create_model, list_models
from seglab.data import create_task, list_tasks
from seglab import advise  # a callable module: seglab.advise(masks) -> Advice
from seglab.advise import Advice

from seglab._version import __version__

__all__ = [
    "__version__",
    "activate", "predict", "one_hot",
    "Loss", "CompositeLoss", "get_loss", "list_losses", "format_loss", "describe_losses",
    "CrossEntropyLoss", "FocalLoss", "DiceLoss", "GeneralizedDiceLoss", "TverskyLoss", "JaccardLoss", "LovaszLoss",
    "BoundaryLoss", "HausdorffDTLoss", "ClDiceLoss", "SkeletonRecallLoss", "MCCLoss", "TopKCrossEntropyLoss",
    "OneHotBCELoss", "DeepSupervisionLoss", "RegionLoss", "labels_to_regions", "regions_to_labels",
    "metrics", "stats", "transforms", "set_validation", "validation", "set_fused",
    "create_model", "list_models", "create_task", "list_tasks",
    "advise", "Advice",
]
