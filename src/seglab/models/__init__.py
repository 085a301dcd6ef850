"""Segmentation networks: a 2D/3D U-Net and the tiny FCN of Chlebus et al. (2018), plus a name registry.

Example::

    from seglab.models import create_model
    net = create_model("unet", in_channels=1, out_channels=4, spatial_dims=2, depth=3, norm="batch")
"""

from .nets import NORMS, ConvBlock, TinyFCN, UNet, group_count, make_norm
from .registry import create_model, list_models, register_model

__all__ = [
    "UNet",
    "TinyFCN",
    "ConvBlock",
    "NORMS",
    "group_count",
    "make_norm",
    "create_model",
    "list_models",
    "register_model",
]
