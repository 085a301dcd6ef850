"""U-Net and the tiny fully convolutional net of Chlebus et al. (2018), for 2D and 3D inputs."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .registry import register_model

NORMS = ("batch", "instance", "group", None)
UPSAMPLING = ("transpose", "interpolate")
INITS = ("torch", "glorot")
CONV_BIAS = (True, False, "auto")
#: TensorFlow/Keras batch-norm defaults in PyTorch's terms: TF's momentum 0.99 (weight of the old running value)
#: is PyTorch's momentum 0.01 (weight of the new batch statistic); eps 1e-3 (PyTorch: 1e-5)
TF_BN_MOMENTUM, TF_BN_EPS = 0.01, 1e-3


def _check_spatial_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_norm(norm: str | None, allowed: tuple = NORMS) -> None:
    if norm not in allowed:
        names = ", ".join(repr(n) for n in allowed)
        raise ValueError(f"unknown norm {norm!r}; allowed values: {names}")


def group_count(channels: int, max_groups: int = 8) -> int:
    """Largest number of groups ``<= min(max_groups, channels)`` that divides ``channels``."""
    for g in range(min(max_groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _check_bn(momentum: float, eps: float) -> None:
    for name, v, hi in (("bn_momentum", momentum, 1.0), ("bn_eps", eps, None)):
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and float(v) > 0.0 and (hi is None or v <= hi)
        if not ok or float(v) != float(v) or float(v) == float("inf"):
            where = "in (0, 1]" if hi else "> 0"
            raise ValueError(f"{name} must be a finite number {where}, got {v!r}")


def make_norm(norm: str | None, channels: int, spatial_dims: int, *, bn_momentum: float = 0.1,
              bn_eps: float = 1e-5) -> nn.Module:
    """Normalisation layer for ``channels`` feature maps (``nn.Identity`` for ``None``).

    ``bn_momentum`` / ``bn_eps`` are batch norm's, in PyTorch's convention (``running = (1 - m) running + m
    batch``; TF/Keras' momentum 0.99 is ``bn_momentum=0.01``, see :data:`TF_BN_MOMENTUM`)."""
    _check_norm(norm)
    if norm is None:
        return nn.Identity()
    if norm == "batch":
        _check_bn(bn_momentum, bn_eps)
        return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels, eps=float(bn_eps),
                                                                         momentum=float(bn_momentum))
    if norm == "instance":
        return (nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    return nn.GroupNorm(group_count(channels), channels)


def _conv(spatial_dims: int):
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _check_init(init: str) -> None:
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; allowed values: {', '.join(map(repr, INITS))}")


@torch.no_grad()
def glorot_init(module: nn.Module) -> nn.Module:
    """Keras' default initialisation, in place: every convolution's weight Glorot-uniform
    (``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, fans = channels x kernel size, as
    ``nn.init.xavier_uniform_``) and its bias 0; normalisation layers keep weight 1, bias 0. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class ConvBlock(nn.Sequential):
    """Two ``3x3`` (``3x3x3``) convolutions, each followed by ``norm`` then ReLU; optional dropout at the end.

    Convolutions carry a bias only when ``norm`` is ``None`` (a norm's shift makes it redundant).
    Shape: ``(N, in_ch, *S) -> (N, out_ch, *S)``.
    """

    def __init__(self, in_ch: int, out_ch: int, spatial_dims: int, norm: str | None, dropout: float = 0.0):
        conv = _conv(spatial_dims)
        bias = norm is None
        layers: list[nn.Module] = [
            conv(in_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch, spatial_dims),
            nn.ReLU(inplace=True),
            conv(out_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch, spatial_dims),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append((nn.Dropout2d if spatial_dims == 2 else nn.Dropout3d)(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) for 2D or 3D images, returning logits (no final activation).

    ``depth`` levels (``depth - 1`` max-poolings); level ``l`` has ``base_width * 2**l`` channels and a
    :class:`ConvBlock` of two 3x3 convolutions with ``norm`` before each ReLU. The decoder upsamples by 2
    (transposed convolution, or nearest-neighbour interpolation + 1x1 convolution when
    ``upsampling="interpolate"``), concatenates the encoder features of the same level (skip
    connection) and applies another ConvBlock. A final 1x1 convolution gives ``out_channels`` logits.

    Shapes:
        input ``(N, in_channels, *S)`` with ``len(S) == spatial_dims`` and every size in ``S`` divisible
        by ``2 ** (depth - 1)``; output ``(N, out_channels, *S)``.

    Args:
        in_channels: input channels.
        out_channels: number of logit channels C.
        spatial_dims: 2 (Conv2d) or 3 (Conv3d).
        depth: number of resolution levels (>= 1; 1 means no pooling).
        base_width: channels of the first level.
        norm: ``"batch"``, ``"instance"``, ``"group"`` (groups = largest divisor of the channels
            that is ``<= 8``) or ``None``.
        dropout: channel dropout probability after each ConvBlock (0 disables it).
        upsampling: ``"transpose"`` or ``"interpolate"``.

    Example::

        >>> net = UNet(1, 3, spatial_dims=2, depth=3, base_width=8, norm="group")
        >>> net(torch.randn(2, 1, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        depth: int = 3,
        base_width: int = 16,
        norm: str | None = "batch",
        dropout: float = 0.0,
        upsampling: str = "transpose",
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_spatial_dims(spatial_dims)
        _check_positive_int("depth", depth)
        _check_positive_int("base_width", base_width)
        _check_norm(norm)
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if upsampling not in UPSAMPLING:
            raise ValueError(f"unknown upsampling {upsampling!r}; allowed values: {', '.join(map(repr, UPSAMPLING))}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = spatial_dims
        self.depth = depth
        conv = _conv(spatial_dims)
        widths = [base_width * 2**level for level in range(depth)]

        self.encoders = nn.ModuleList()
        ch = in_channels
        for w in widths:
            self.encoders.append(ConvBlock(ch, w, spatial_dims, norm, dropout))
            ch = w
        self.pool = (nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d)(2)

        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w in reversed(widths[:-1]):
            if upsampling == "transpose":
                tconv = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
                up: nn.Module = tconv(ch, w, kernel_size=2, stride=2)
            else:
                up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(ch, w, 1))
            self.ups.append(up)
            self.decoders.append(ConvBlock(2 * w, w, spatial_dims, norm, dropout))
            ch = w
        self.head = conv(ch, out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """Every spatial size of the input must be a multiple of this number."""
        return 2 ** (self.depth - 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"UNet(spatial_dims={self.spatial_dims}) expects a {self.spatial_dims + 2}D input "
                f"(N, C, {', '.join('DHW'[3 - self.spatial_dims:])}), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channels, got shape {tuple(x.shape)}")
        m = self.size_multiple
        bad = [s for s in x.shape[2:] if s % m]
        if bad:
            need = tuple(-(-s // m) * m for s in x.shape[2:])
            raise ValueError(
                f"UNet(depth={self.depth}) needs every spatial size divisible by 2**(depth-1) = {m}; "
                f"got spatial shape {tuple(x.shape[2:])} (pad or crop to e.g. {need})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, *S) -> (N, out_channels, *S)`` logits."""
        self._check_input(x)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = up(x)
            x = dec(torch.cat([skips.pop(), x], dim=1))
        return self.head(x)


def conv_body_bias(conv_bias: bool | str, norm: str | None) -> bool:
    """Whether :class:`TinyFCN`'s 3x3 convolutions carry a bias: ``conv_bias`` True/False, or ``"auto"`` (only
    without a norm)."""
    if conv_bias is True or conv_bias is False:
        return conv_bias
    if conv_bias == "auto":
        return norm is None
    raise ValueError(f"conv_bias must be True, False or 'auto', got {conv_bias!r}")


class TinyFCN(nn.Module):
    """The tiny fully convolutional net of Chlebus et al. (2018)'s toy thresholding study.

    ``conv3x3(in -> width) [-> BN] -> ReLU -> conv3x3(width -> width) [-> BN] -> ReLU -> conv1x1(width -> C)``,
    padding 1 (so the spatial size is kept; any size works).

    Parameters (``norm=None``): ``(9*in*w + w) + (9*w*w + w) + (w*C + C)``; batch norm adds ``4*w``
    (weight and bias of two BN layers; running statistics are buffers) and, with ``conv_bias`` False or
    ``"auto"``, drops the ``2*w`` biases of the 3x3 convolutions. 3D uses 3x3x3 kernels (27 instead of 9).

    Options (defaults: PyTorch's; the study's Keras code is ``init="glorot", conv_bias="auto",
    bn_momentum=0.01, bn_eps=1e-3``):

    * ``init``: ``"torch"`` (PyTorch's default: Kaiming-uniform weights with ``a = sqrt(5)``, uniform biases) or
      ``"glorot"`` (Keras: Glorot-uniform weights, zero biases; :func:`glorot_init`).
    * ``conv_bias``: whether the 3x3 convolutions have a bias: True, False, or ``"auto"`` (only without a norm,
      whose shift makes it redundant). The 1x1 head always has one.
    * ``bn_momentum``, ``bn_eps``: batch norm's, in PyTorch's convention (TF's momentum 0.99 = 0.01 here).

    Shapes: ``(N, in_channels, *S) -> (N, out_channels, *S)``.

    Example::

        >>> net = TinyFCN(1, 2)
        >>> net(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 2, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        width: int = 4,
        norm: str | None = "batch",
        init: str = "torch",
        conv_bias: bool | str = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_spatial_dims(spatial_dims)
        _check_positive_int("width", width)
        _check_norm(norm, ("batch", None))
        _check_init(init)
        bias = conv_body_bias(conv_bias, norm)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = spatial_dims
        conv = _conv(spatial_dims)
        self.body = nn.Sequential(
            conv(in_channels, width, 3, padding=1, bias=bias),
            make_norm(norm, width, spatial_dims, bn_momentum=bn_momentum, bn_eps=bn_eps),
            nn.ReLU(inplace=True),
            conv(width, width, 3, padding=1, bias=bias),
            make_norm(norm, width, spatial_dims, bn_momentum=bn_momentum, bn_eps=bn_eps),
            nn.ReLU(inplace=True),
        )
        self.head = conv(width, out_channels, 1)
        if init == "glorot":
            glorot_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, *S) -> (N, out_channels, *S)`` logits."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"TinyFCN expects (N, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got shape {tuple(x.shape)}"
            )
        return self.head(self.body(x))


@register_model("unet")
def unet(
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 2,
    depth: int = 3,
    base_width: int = 16,
    norm: str | None = "batch",
    dropout: float = 0.0,
    upsampling: str = "transpose",
) -> UNet:
    """Factory for :class:`UNet`."""
    return UNet(in_channels, out_channels, spatial_dims, depth, base_width, norm, dropout, upsampling)


@register_model("tiny")
def tiny(
    *,
    in_channels: int,
    out_channels: int,
    spatial_dims: int = 2,
    width: int = 4,
    norm: str | None = "batch",
    init: str = "torch",
    conv_bias: bool | str = True,
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
) -> TinyFCN:
    """Factory for :class:`TinyFCN`."""
    return TinyFCN(in_channels, out_channels, spatial_dims, width, norm, init=init, conv_bias=conv_bias,
                   bn_momentum=bn_momentum, bn_eps=bn_eps)
