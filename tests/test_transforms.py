"""seglab.transforms: distance maps against MONAI's, skeletons against scikit-image, DataLoader use."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import dilation, skeletonize

import seglab.transforms as tr
from seglab import _extras
from seglab.transforms import (
    DistanceField,
    SignedDistanceMap,
    TubedSkeleton,
    dilate_cross,
    distance_field,
    distance_maps_of_masks,
    signed_distance_map,
    skeleton_target,
)


def _labels(shape, c=3, seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    oh = torch.nn.functional.one_hot(torch.randint(0, c, (n, *shape), generator=g), c).movedim(-1, 1).double()
    pool = torch.nn.functional.avg_pool2d if len(shape) == 2 else torch.nn.functional.avg_pool3d
    return pool(oh, 3, 1, 1).argmax(1)


def _onehot(t, c):
    return torch.nn.functional.one_hot(t, c).movedim(-1, 1).float()


@pytest.mark.parametrize("shape", [(11, 9), (6, 7, 5)])
def test_signed_distance_map_equals_monai(shape):
    from monai.losses import BoundaryLoss

    t = _labels(shape)
    t[0] = 0  # classes 1, 2 empty and class 0 full in sample 0: maps of 0
    ref = BoundaryLoss().compute_distance_map(_onehot(t, 3))
    torch.testing.assert_close(signed_distance_map(t, mode="multiclass", num_classes=3), ref)
    torch.testing.assert_close(signed_distance_map(_onehot(t, 3), mode="multilabel"), ref)
    assert signed_distance_map(t, mode="multiclass", num_classes=3)[0].abs().max() == 0


@pytest.mark.parametrize("shape", [(11, 9), (6, 7, 5)])
def test_distance_field_equals_monai(shape):
    from monai.losses import HausdorffDTLoss

    y = _onehot(_labels(shape, seed=1), 3)
    ref = torch.cat([HausdorffDTLoss().distance_field(y[:, [k]]) for k in range(3)], dim=1)
    torch.testing.assert_close(distance_field(y, mode="multilabel", dtype=torch.float32), ref)


def test_distance_maps_trace_with_fullgraph():
    m = _onehot(_labels((8, 9), seed=2), 3) > 0.5
    f = torch.compile(lambda a: distance_maps_of_masks(a, "signed", torch.float64), fullgraph=True, backend="eager")
    torch.testing.assert_close(f(m), distance_maps_of_masks(m, "signed", torch.float64))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_dilate_cross_equals_scipy(d, iterations):
    g = torch.Generator().manual_seed(d)
    m = torch.rand(2, *([7] * d), generator=g) > 0.85
    ref = np.stack([ndimage.binary_dilation(a, ndimage.generate_binary_structure(d, 1), iterations) for a in m.numpy()])
    assert torch.equal(dilate_cross(m, iterations), torch.from_numpy(ref))


@pytest.mark.parametrize("shape", [(16, 15), (8, 10, 9)])
def test_skeleton_target_equals_skimage(shape):
    t = _labels(shape, seed=3)
    seg = t.numpy()
    ref = np.stack([dilation(dilation(skeletonize(s > 0).astype(np.int64))) * s for s in seg])
    assert torch.equal(skeleton_target(t, mode="multiclass"), torch.from_numpy(ref))
    assert torch.equal(skeleton_target(_onehot(t, 3), mode="multiclass"), torch.from_numpy(ref))  # dense: its argmax
    y = _onehot(t, 3)
    ref_ml = np.stack([[dilation(dilation(skeletonize(ch > 0).astype(np.float32))) * ch for ch in s] for s in y.numpy()])
    torch.testing.assert_close(skeleton_target(y, mode="multilabel"), torch.from_numpy(ref_ml))


def test_dataloader_transforms_collate_to_the_batched_maps():
    t = _labels((12, 10), seed=4, n=4)
    image = torch.randn(4, 1, 12, 10)

    class Data(torch.utils.data.Dataset):
        def __init__(self, transforms):
            self.transforms = transforms

        def __len__(self):
            return 4

        def __getitem__(self, i):
            sample = {"image": image[i], "target": t[i]}
            for f in self.transforms:
                sample = f(sample)
            return sample

    tfs = [SignedDistanceMap("multiclass", spatial_dims=2, num_classes=3), DistanceField("multiclass", spatial_dims=2,
           num_classes=3), TubedSkeleton("multiclass", spatial_dims=2)]
    batch = next(iter(torch.utils.data.DataLoader(Data(tfs), batch_size=4)))
    assert torch.equal(batch["distance_map"], signed_distance_map(t, mode="multiclass", num_classes=3))
    assert torch.equal(batch["distance_field"], distance_field(t, mode="multiclass", num_classes=3))
    assert torch.equal(batch["skeleton"], skeleton_target(t, mode="multiclass"))
    # plain tensors in, the map out; (1, *spatial) label maps and binary (*spatial) masks accepted
    assert torch.equal(tfs[2](t[0][None]), skeleton_target(t[:1], mode="multiclass")[0])
    b = (t[0] > 0).float()
    assert TubedSkeleton("binary", spatial_dims=2)(b).shape == (1, 12, 10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3"):
        SignedDistanceMap("binary", spatial_dims=4)
    with pytest.raises(ValueError, match="skeletons need 2 or 3 spatial dims"):
        TubedSkeleton("binary", spatial_dims=1)
    with pytest.raises(KeyError, match="the sample has no key 'target'"):
        TubedSkeleton("binary", spatial_dims=2)({"label": torch.zeros(4, 4)})
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        signed_distance_map(torch.zeros(1, 4, 4, dtype=torch.long), mode="multiclass")
    with pytest.raises(ValueError, match=r"target values must be class indices in \[0, 2\)"):
        distance_field(torch.full((1, 4, 4), 3), mode="multiclass", num_classes=2)
    with pytest.raises(ValueError, match="must have shape \\(\\*spatial\\) or \\(1, \\*spatial\\) with 2 spatial dims"):
        TubedSkeleton("multiclass", spatial_dims=2)(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="kind must be one of"):
        distance_maps_of_masks(torch.zeros(1, 1, 3, 3, dtype=torch.bool), "unsigned")


def test_missing_extra_names_the_install_line(monkeypatch):
    def absent(module, feature):
        raise _extras.missing(module, feature)

    monkeypatch.setattr(tr, "require", absent)
    with pytest.raises(ImportError, match=r"pip install 'seglab\[metrics\]'"):
        distance_field(torch.ones(1, 1, 3, 3), mode="binary")
    with pytest.raises(ImportError, match=r"pip install 'seglab\[structure\]'"):
        skeleton_target(torch.ones(1, 1, 3, 3), mode="binary")
