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
    get_loss,
    list_losses,
)
from seglab import metrics

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "activate", "predict", "one_hot",
    "Loss", "CompositeLoss", "get_loss", "list_losses",
    "CrossEntropyLoss", "FocalLoss", "DiceLoss", "GeneralizedDiceLoss", "TverskyLoss", "JaccardLoss", "LovaszLoss",
    "metrics", "set_validation", "validation",
]
