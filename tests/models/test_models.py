"""Tests of seglab.models: shapes, norms, parameter counts, registry errors."""

import pytest
import torch
from torch import nn

from seglab.models import TinyFCN, UNet, create_model, group_count, list_models, register_model


@pytest.mark.parametrize("norm", ["batch", "instance", "group", None])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_shapes_every_norm(norm, spatial_dims):
    net = create_model("unet", in_channels=2, out_channels=3, spatial_dims=spatial_dims, norm=norm, base_width=4)
    size = (16, 8, 12)[:spatial_dims] if spatial_dims == 3 else (16, 12)
    y = net(torch.randn(2, 2, *size))
    assert y.shape == (2, 3, *size)
    assert y.dtype == torch.float32
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    assert all(isinstance(m, conv) or not isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in net.modules())


def test_unet_norm_layers_and_groups():
    net = UNet(1, 2, depth=2, base_width=12, norm="group")
    groups = [m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert groups and all(g == 6 for g in groups[:2]) and 8 in groups  # 12 -> 6 groups, 24 -> 8 groups
    assert group_count(12) == 6 and group_count(3) == 3 and group_count(64) == 8 and group_count(7) == 7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in UNet(1, 2, norm=None).modules())
    assert any(isinstance(m, nn.InstanceNorm3d) for m in UNet(1, 2, spatial_dims=3, norm="instance").modules())


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_unet_depths_and_interpolate_upsampling(depth):
    net = UNet(1, 2, depth=depth, base_width=4, upsampling="interpolate", dropout=0.1)
    size = 2 ** (depth - 1) * 3
    assert net(torch.randn(1, 1, size, size)).shape == (1, 2, size, size)


def test_unet_bad_size_says_needed_multiple():
    net = UNet(1, 2, depth=3, base_width=4)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(depth-1\) = 4.*\(30, 32\)"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match="4D input"):
        net(torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="1 input channels"):
        net(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("spatial_dims,k", [(2, 9), (3, 27)])
@pytest.mark.parametrize("norm", ["batch", None])
def test_tinyfcn_parameter_count(spatial_dims, k, norm):
    cin, c, w = 1, 2, 4
    net = TinyFCN(cin, c, spatial_dims=spatial_dims, norm=norm)
    expected = (k * cin * w + w) + (k * w * w + w) + (w * c + c)
    if norm == "batch":
        expected += 2 * 2 * w
    assert sum(p.numel() for p in net.parameters()) == expected
    size = (5, 7, 6)[:spatial_dims]
    assert net(torch.rand(3, cin, *size)).shape == (3, c, *size)


def test_registry_names_and_errors():
    assert {"unet", "tiny"} <= set(list_models())
    with pytest.raises(ValueError, match="did you mean 'unet'"):
        create_model("unte", in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match=r"unknown norm 'layer'; allowed values: 'batch', 'instance', 'group', None"):
        create_model("unet", in_channels=1, out_channels=2, norm="layer")
    with pytest.raises(ValueError, match=r"allowed values: 'batch', None"):
        create_model("tiny", in_channels=1, out_channels=2, norm="group")
    with pytest.raises(ValueError, match=r"'dept' \(did you mean 'depth'\?\)"):
        create_model("unet", in_channels=1, out_channels=2, dept=2)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        create_model("unet", in_channels=1, out_channels=2, spatial_dims=4)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        create_model("unet", in_channels=1, out_channels=2, dropout=1.5)


def test_register_model():
    @register_model("test-identity-head")
    def factory(*, in_channels, out_channels, spatial_dims=2):
        return nn.Conv2d(in_channels, out_channels, 1)

    assert "test-identity-head" in list_models()
    net = create_model("test-identity-head", in_channels=3, out_channels=5)
    assert net(torch.zeros(1, 3, 4, 4)).shape == (1, 5, 4, 4)
    with pytest.raises(ValueError, match="already registered"):
        register_model("test-identity-head")(lambda **kw: None)


_NET_PY = '''
from torch import nn


def make(*, in_channels, out_channels, spatial_dims=2, width=4):
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return nn.Sequential(conv(in_channels, width, 3, padding=1), nn.ReLU(), conv(width, out_channels, 1))


def not_a_module(*, in_channels, out_channels, spatial_dims=2):
    return 3


def raises(*, in_channels, out_channels, spatial_dims=2):
    raise RuntimeError("boom\\nsecond line")


NOT_CALLABLE = 5
'''


def test_user_model_from_a_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "net.py").write_text(_NET_PY)
    net = create_model(f"{tmp_path / 'net.py'}:make", in_channels=2, out_channels=3, width=5)
    assert net(torch.zeros(1, 2, 8, 8)).shape == (1, 3, 8, 8)
    assert net[0].out_channels == 5
    monkeypatch.syspath_prepend(str(tmp_path / "pkg_root"))
    (tmp_path / "pkg_root" / "seglab_test_nets").mkdir(parents=True)
    (tmp_path / "pkg_root" / "seglab_test_nets" / "__init__.py").write_text("")
    (tmp_path / "pkg_root" / "seglab_test_nets" / "convs.py").write_text(_NET_PY)
    net = create_model("seglab_test_nets.convs:make", in_channels=1, out_channels=2, spatial_dims=3)
    assert net(torch.zeros(1, 1, 4, 4, 4)).shape == (1, 2, 4, 4, 4)


def test_user_model_errors_are_one_line_value_errors(tmp_path):
    (tmp_path / "net.py").write_text(_NET_PY)
    (tmp_path / "broken.py").write_text("import nonexistent_seglab_dependency\n")
    f = tmp_path / "net.py"
    cases = [
        ("seglab_no_such_module_xyz:make", "no module named 'seglab_no_such_module_xyz'"),
        (f"{tmp_path / 'missing.py'}:make", "no such file"),
        (f"{tmp_path / 'broken.py'}:make", "ModuleNotFoundError"),
        (f"{f}:nope", "has no attribute 'nope'"),
        (f"{f}:NOT_CALLABLE", "not callable"),
        (f"{f}:not_a_module", "not a torch.nn.Module"),
        (f"{f}:raises", "the factory raised RuntimeError: boom second line"),
        (f"{f}:", "expected package.module:factory"),
    ]
    for name, words in cases:
        with pytest.raises(ValueError) as ei:
            create_model(name, in_channels=1, out_channels=2)
        msg = str(ei.value)
        assert words in msg and "\n" not in msg, (name, msg)
    with pytest.raises(ValueError, match=r"'widht' \(did you mean 'width'\?\)"):
        create_model(f"{f}:make", in_channels=1, out_channels=2, widht=3)
