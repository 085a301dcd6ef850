"""The usage examples in examples/ run (few steps, tiny models) and do what their docstrings say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import seglab

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"seglab_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_monai_loop_trains_on_monai_style_batches():
    pytest.importorskip("monai", reason="MONAI is a test dependency installed by make test")
    ex = _load("monai_loop")
    losses = ex.main(steps=10)
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < losses[0]  # it learns


def test_monai_loop_batch_is_what_the_docstring_says():
    pytest.importorskip("monai")
    from monai.data import MetaTensor

    ex = _load("monai_loop")
    item = ex.synthetic_items(1)[0]
    assert item["label"].dtype.kind == "f"  # float labels, as MONAI readers give
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped

    out = Compose([EnsureChannelFirstd(keys=["label"], channel_dim="no_channel"), EnsureTyped(keys=["label"])])(item)
    assert isinstance(out["label"], MetaTensor) and out["label"].shape[0] == 1


def test_lightning_module_logs_seglab_loss_and_metric():
    pytest.importorskip("lightning", reason="lightning is a test dependency")
    ex = _load("lightning_module")
    module = ex.main(max_steps=8)
    scores = module.val_dice
    assert scores.shape == (3,)
    # the metric equals per-image Dice computed here by hand on the same predictions, averaged over images
    x, y = ex.synthetic_data(8, seed=1).tensors
    with torch.no_grad():
        pred = module(x).argmax(1)
    per_image = []
    for c in range(3):
        p, t = pred == c, y == c
        tp = (p & t).flatten(1).sum(1).double()
        den = p.flatten(1).sum(1) + t.flatten(1).sum(1)
        d = torch.where(den > 0, 2 * tp / den.clamp_min(1), torch.full_like(tp, float("nan")))
        per_image.append(d.nanmean())
    torch.testing.assert_close(scores.double(), torch.stack(per_image))


def test_nnunet_loss_equals_nnunet():
    pytest.importorskip("nnunetv2.training.loss.compound_losses",
                        reason="nnU-Net is an optional test peer: pip install --no-deps nnunetv2")
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    ex = _load("nnunet_trainer")
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(2, 4, s, s, generator=g) for s in (16, 8, 4)]
    targets = [torch.randint(0, 4, (2, 1, s, s), generator=g) for s in (16, 8, 4)]
    for t in targets:
        t[:, :, :2] = 4  # nnU-Net's ignore label: the class after the last one
    targets = [t.float() for t in targets]
    for batch_dice in (True, False):
        w = ex.deep_supervision_weights(3)
        ref = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False,
                                                     "ddp": False}, {}, weight_ce=1, weight_dice=1, ignore_label=4,
                                                    dice_class=MemoryEfficientSoftDiceLoss), w)(outs, targets)
        ours = ex.build_seglab_loss(batch_dice=batch_dice, ignore_label=4, deep_supervision_levels=3)(outs, targets)
        torch.testing.assert_close(ours, ref + sum(w), rtol=1e-5, atol=1e-5)  # seglab's Dice is 1 - dice
    assert ex.deep_supervision_weights(3, ddp=True)[-1] > 0


def _tiny_nnunet_plans() -> tuple[dict, dict]:
    """nnU-Net plans and dataset.json for a 2D, 3-class, 32x32 configuration with a 3-stage PlainConvUNet."""
    norm = {"mean": 0.0, "std": 1.0, "percentile_00_5": -3.0, "percentile_99_5": 3.0, "max": 3.0, "min": -3.0,
            "median": 0.0}
    resample = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    arch = {"n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv2d",
            "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}
    config = {"data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
              "patch_size": [32, 32], "median_image_size_in_voxels": [32, 32], "spacing": [1.0, 1.0],
              "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
              "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resample,
              "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_seg_kwargs": {**resample, "is_seg": True, "order": 1},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {**resample, "order": 1}, "batch_dice": True,
              "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                               "arch_kwargs": arch,
                               "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}
    plans = {"dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans", "continue_training": False,
             "original_median_spacing_after_transp": [1.0, 1.0], "original_median_shape_after_transp": [32, 32],
             "image_reader_writer": "NaturalImage2DIO", "transpose_forward": [0, 1], "transpose_backward": [0, 1],
             "experiment_planner_used": "test", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {"0": norm}, "configurations": {"2d": config}}
    dataset = {"channel_names": {"0": "x"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
               "file_ending": ".png"}
    return plans, dataset


def test_nnunet_trainer_subclass_trains(tmp_path, monkeypatch):
    """nnUNetTrainerSeglab, nnU-Net's real trainer (make setup installs its dependencies), initialised from tiny
    plans on CPU: its loss is seglab's deep-supervision Dice + CE, and nnU-Net's own train_step (forward, loss,
    backward, clipping, SGD step) lowers it on a fixed batch."""
    pytest.importorskip("nnunetv2.training.loss.compound_losses",
                        reason="nnU-Net is an optional test peer: pip install --no-deps nnunetv2")
    np = pytest.importorskip("numpy")
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))  # nnU-Net reads its folders from the environment on use
    ex = _load("nnunet_trainer")
    assert ex.TRAINER_IMPORT_ERROR is None, f"nnU-Net's trainer does not import: {ex.TRAINER_IMPORT_ERROR} (make setup)"
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset999_Tiny" / "nnUNetPlans_2d"
    pre.mkdir(parents=True)  # the trainer infers its dataset class from the preprocessed files' ending
    np.savez(pre / "case_000.npz", data=np.zeros((1, 32, 32), np.float32), seg=np.zeros((1, 32, 32), np.int8))
    plans, dataset = _tiny_nnunet_plans()
    trainer = ex.nnUNetTrainerSeglab(plans, "2d", 0, dataset, device=torch.device("cpu"))
    trainer.initialize()
    assert isinstance(trainer.loss, seglab.DeepSupervisionLoss)
    g = torch.Generator().manual_seed(0)
    batch = {"data": torch.randn(2, 1, 32, 32, generator=g),
             "target": [torch.randint(0, 3, (2, 1, s, s), generator=g).float() for s in (32, 16)]}
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(5)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_nnunet_trainer_subclass_build_loss_with_a_stand_in_base(monkeypatch):
    """The subclass's _build_loss, run on a stand-in for nnUNetTrainer that has the attributes nnU-Net's trainer
    reads (so it runs without nnU-Net's trainer dependencies), equals nnU-Net's own loss + 1."""
    pytest.importorskip("nnunetv2.training.loss.compound_losses",
                        reason="nnU-Net is an optional test peer: pip install --no-deps nnunetv2")
    import types

    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    class StandIn:
        label_manager = types.SimpleNamespace(has_regions=False, ignore_label=None)
        configuration_manager = types.SimpleNamespace(batch_dice=True)
        enable_deep_supervision = True
        is_ddp = False

        def _get_deep_supervision_scales(self):
            return [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]

        def _do_i_compile(self):
            return False

        def _build_loss(self):
            raise AssertionError("the subclass must not call nnU-Net's loss for label-based training")

    fake = types.ModuleType("nnunetv2.training.nnUNetTrainer.nnUNetTrainer")
    fake.nnUNetTrainer = StandIn
    monkeypatch.setitem(sys.modules, "nnunetv2.training.nnUNetTrainer.nnUNetTrainer", fake)
    ex = _load("nnunet_trainer")
    assert ex.TRAINER_IMPORT_ERROR is None
    loss = ex.nnUNetTrainerSeglab()._build_loss()
    g = torch.Generator().manual_seed(1)
    outs = [torch.randn(2, 3, s, s, generator=g) for s in (16, 8, 4)]
    targets = [torch.randint(0, 3, (2, 1, s, s), generator=g).float() for s in (16, 8, 4)]
    ref = DeepSupervisionWrapper(DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                                weight_ce=1, weight_dice=1, ignore_label=None,
                                                dice_class=MemoryEfficientSoftDiceLoss), [4 / 6, 2 / 6, 0.0])
    torch.testing.assert_close(loss(outs, targets), ref(outs, targets) + 1, rtol=1e-5, atol=1e-5)
