"""seglab.models.describe.norm_label: the normalisation of any model, read from its modules (issue 11)."""

import pytest
import torch
from torch import nn

from seglab.models import create_model
from seglab.models.describe import NORM_LABELS, norm_label


@pytest.mark.parametrize("norm, label", [("batch", "batch"), ("instance", "instance"), ("group", "group"),
                                         (None, "none")])
def test_seglab_unet_and_tiny(norm, label):
    for spatial_dims in (2, 3):
        assert norm_label(create_model("unet", in_channels=1, out_channels=2, spatial_dims=spatial_dims, depth=2,
                                       base_width=4, norm=norm)) == label
    if norm in ("batch", None):
        assert norm_label(create_model("tiny", in_channels=1, out_channels=2, norm=norm)) == label


def test_tiny_defaults_to_batch_norm():
    # flatten_summary assumes "tiny" without a norm option has batch norm: the model agrees
    assert norm_label(create_model("tiny", in_channels=1, out_channels=2)) == "batch"


def test_torch_layers_and_mixtures():
    assert norm_label(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))) == "layer"
    assert norm_label(nn.SyncBatchNorm(4)) == "batch"
    assert norm_label(nn.LazyBatchNorm2d()) == "batch"
    assert norm_label(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.BatchNorm2d(4))) == "mixed"
    assert norm_label(nn.TransformerEncoderLayer(8, 2)) == "layer"  # two LayerNorms, nothing else
    assert norm_label(nn.Conv2d(1, 1, 1)) == "none"

    class FrozenBatchNorm2d(nn.Module):  # torchvision's, outside torch's BatchNorm hierarchy
        def forward(self, x):
            return x

    assert norm_label(nn.Sequential(nn.Conv2d(1, 4, 3), FrozenBatchNorm2d())) == "batch"
    assert set(NORM_LABELS) == {"batch", "instance", "group", "layer", "none", "mixed"}


def test_a_vision_transformer_with_a_convolutional_decoder_is_mixed():
    class ViTSeg(nn.Module):  # the shape of UNETR/SegFormer-style models: LayerNorm encoder, BatchNorm decoder
        def __init__(self):
            super().__init__()
            self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 1)
            self.decoder = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))

    assert norm_label(ViTSeg()) == "mixed"
    assert norm_label(ViTSeg().encoder) == "layer"
    assert norm_label(ViTSeg().decoder) == "batch"


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        norm_label("unet")


def test_run_summary_records_model_norm():
    from seglab.train import RunSpec, train_run

    torch.set_num_threads(1)
    r = train_run(RunSpec(loss="cce", task="threshold", task_kw={"size": 16}, model="unet",
                            model_kw={"depth": 2, "base_width": 4, "norm": "batch"}, steps=1, eval_every=1))
    assert r.summary["model_norm"] == "batch"
    r = train_run(RunSpec(loss="cce", task="threshold", task_kw={"size": 16}, model="unet",
                            model_kw={"depth": 2, "base_width": 4, "norm": None}, steps=1, eval_every=1))
    assert r.summary["model_norm"] == "none"
