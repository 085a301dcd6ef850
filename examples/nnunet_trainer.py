"""nnU-Net v2 with a seglab loss: a trainer subclass that swaps in seglab's Dice + CE and deep supervision.

nnU-Net builds its loss in ``nnUNetTrainer._build_loss``: ``DC_and_CE_loss`` (soft Dice with ``batch_dice`` from
the plans, ``do_bg=False``, ``smooth=1e-5``, plus CE) wrapped in ``DeepSupervisionWrapper`` with weights
``1/2^k``, the lowest resolution 0, normalised. :func:`build_seglab_loss` builds the same loss from seglab
(equal to nnU-Net's up to the constant 1, seglab's Dice being ``1 - dice`` where nnU-Net's is ``-dice``; tested
in tests/test_examples.py), and :class:`nnUNetTrainerSeglab` uses it. Change ``LOSS`` to train with any seglab
spec, e.g. ``"dice+focal"`` or ``"dice[squared=true]+ce"``.

nnU-Net's target conventions need nothing extra: its loader gives one ``(N, 1, *spatial)`` label map per
deep-supervision output (float or integer), its ignore label is seglab's ``ignore_index``, and under DDP
``batch_dice`` becomes ``process_group="world"`` (the per-class sums are all-reduced, as nnU-Net's ``ddp=True``).

Use: copy this file into ``nnunetv2/training/nnUNetTrainer/`` (nnU-Net finds trainers by class name there), then
``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerSeglab``. Importing this module does not need nnU-Net;
the trainer class exists only when ``nnunetv2``'s trainer imports (it needs nnU-Net's full dependency set:
batchgenerators, dynamic-network-architectures, SimpleITK, ...). ``TRAINER_IMPORT_ERROR`` says why when it does
not.
"""

from __future__ import annotations

from typing import Any

from torch import nn

import seglab

#: the seglab loss spec the trainer uses (any ``seglab.get_loss`` spec for multiclass segmentation)
LOSS = "dice+ce"


def deep_supervision_weights(levels: int, *, ddp: bool = False) -> list[float]:
    """nnU-Net's weights: ``1/2^k``, the lowest resolution 0 (1e-6 under DDP, where a zero weight leaves parameters
    without a gradient and DDP fails, as nnU-Net does without torch.compile), normalised to sum 1."""
    if ddp and levels > 1:
        w = [1.0 / 2**k for k in range(levels)]
        w[-1] = 1e-6
        return [v / sum(w) for v in w]
    from seglab.losses.deep_supervision import nnunet_weights

    return nnunet_weights(levels)


def build_seglab_loss(*, batch_dice: bool, ignore_label: int | None = None, deep_supervision_levels: int | None = None,
                      ddp: bool = False, spec: str = LOSS) -> nn.Module:
    """nnU-Net's loss for label-based training (softmax) built from seglab.

    ``batch_dice``, ``ignore_label``: from nnU-Net's configuration and label manager; ``deep_supervision_levels``:
    the number of network outputs (None without deep supervision); ``ddp``: the trainer runs under DDP.

    Example:
        >>> loss = build_seglab_loss(batch_dice=True, deep_supervision_levels=3)
        >>> loss([torch.randn(2, 3, 32, 32), torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)],
        ...      [torch.randint(0, 3, (2, 1, s, s)).float() for s in (32, 16, 8)])
    """
    kwargs: dict[str, Any] = dict(batch=batch_dice, include_background=False, ignore_index=ignore_label)
    if ddp and batch_dice:
        kwargs["process_group"] = "world"
    loss = seglab.get_loss(spec, mode="multiclass", **kwargs)
    if not deep_supervision_levels:
        return loss
    return seglab.DeepSupervisionLoss(loss, weights=deep_supervision_weights(deep_supervision_levels, ddp=ddp))


TRAINER_IMPORT_ERROR: str | None = None
try:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
except ImportError as e:  # nnU-Net absent, or installed without its trainer's dependencies
    TRAINER_IMPORT_ERROR = f"{type(e).__name__}: {e}"
else:

    class nnUNetTrainerSeglab(nnUNetTrainer):  # type: ignore[misc,valid-type]
        """nnUNetTrainer with the loss built by :func:`build_seglab_loss` (everything else unchanged)."""

        def _build_loss(self):
            if self.label_manager.has_regions:  # region-based (sigmoid) training: keep nnU-Net's DC_and_BCE
                return super()._build_loss()
            levels = len(self._get_deep_supervision_scales()) if self.enable_deep_supervision else None
            return build_seglab_loss(batch_dice=self.configuration_manager.batch_dice,
                                     ignore_label=self.label_manager.ignore_label, deep_supervision_levels=levels,
                                     ddp=self.is_ddp)


if __name__ == "__main__":
    import torch

    loss = build_seglab_loss(batch_dice=True, deep_supervision_levels=3)
    outs = [torch.randn(2, 3, s, s) for s in (32, 16, 8)]
    print("seglab nnU-Net loss:", float(loss(outs, [torch.randint(0, 3, (2, 1, s, s)).float() for s in (32, 16, 8)])))
    print("trainer class:", "available" if TRAINER_IMPORT_ERROR is None else f"not available ({TRAINER_IMPORT_ERROR})")
