"""Name -> factory registry of segmentation networks (``create_model("unet", ...)``)."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from seglab._registry import Registry

ModelFactory = Callable[..., nn.Module]

_MODELS = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering ``factory`` under ``name``.

    The factory must accept the keyword arguments ``in_channels``, ``out_channels`` and
    ``spatial_dims`` and return an ``nn.Module`` mapping ``(N, in_channels, *spatial)`` to
    ``(N, out_channels, *spatial)`` logits.

    Example::

        @register_model("mynet")
        def mynet(*, in_channels, out_channels, spatial_dims=2, width=8):
            ...
    """
    return _MODELS.register(name)


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`."""
    return _MODELS.names()


def create_model(name: str, *, in_channels: int, out_channels: int, spatial_dims: int = 2, **kw: Any) -> nn.Module:
    """Build the registered model ``name``.

    Args:
        name: one of :func:`list_models` (``"unet"``, ``"tiny"``, ...).
        in_channels: channels of the input images.
        out_channels: number of logit channels C (``task.num_classes``).
        spatial_dims: 2 (``(N, C, H, W)``) or 3 (``(N, C, D, H, W)``).
        **kw: model-specific options, e.g. ``depth``, ``base_width``, ``norm``, ``dropout`` for the U-Net.

    Raises:
        ValueError: unknown name (with a "did you mean" suggestion), unknown keyword arguments or
            invalid values.

    Example::

        >>> net = create_model("unet", in_channels=1, out_channels=2, depth=3, norm="batch")
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """
    return _MODELS.create(name, in_channels=in_channels, out_channels=out_channels, spatial_dims=spatial_dims, **kw)
