"""Segmentation losses from logits: plain functions (the maths) and ``nn.Module`` wrappers (configuration)."""

from seglab.losses.base import CompositeLoss, Loss
from seglab.losses.ce import CrossEntropyLoss, cross_entropy
from seglab.losses.dice import DiceLoss, dice_loss
from seglab.losses.focal import FocalLoss, focal_loss
from seglab.losses.generalized_dice import GeneralizedDiceLoss, generalized_dice_loss
from seglab.losses.jaccard import JaccardLoss, jaccard_loss
from seglab.losses.lovasz import LovaszLoss, lovasz_loss
from seglab.losses.registry import describe_losses, format_loss, get_loss, list_losses
from seglab.losses.tversky import TverskyLoss, tversky_loss
from seglab.losses.boundary import BoundaryLoss, boundary_loss
from seglab.losses.hausdorff import HausdorffDTLoss, hausdorff_loss
from seglab.losses.cldice import ClDiceLoss, cldice_loss
from seglab.losses.skeleton_recall import SkeletonRecallLoss, skeleton_recall_loss
from seglab.losses.mcc import MCCLoss, mcc_loss
from seglab.losses.topk_ce import TopKCrossEntropyLoss, topk_cross_entropy
from seglab.losses.onehot_bce import OneHotBCELoss, onehot_bce_loss
from seglab.losses.deep_supervision import DeepSupervisionLoss

__all__ = [
    "OneHotBCELoss", "onehot_bce_loss", "DeepSupervisionLoss",
    "Loss", "CompositeLoss", "get_loss", "list_losses", "format_loss", "describe_losses",
    "CrossEntropyLoss", "FocalLoss", "DiceLoss", "GeneralizedDiceLoss", "TverskyLoss", "JaccardLoss", "LovaszLoss",
    "cross_entropy", "focal_loss", "dice_loss", "generalized_dice_loss", "tversky_loss", "jaccard_loss", "lovasz_loss",
    "BoundaryLoss", "HausdorffDTLoss", "ClDiceLoss", "SkeletonRecallLoss", "MCCLoss", "TopKCrossEntropyLoss",
    "boundary_loss", "hausdorff_loss", "cldice_loss", "skeleton_recall_loss", "mcc_loss", "topk_cross_entropy",
]
