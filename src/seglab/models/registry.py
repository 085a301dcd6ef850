"""Name -> factory registry of segmentation networks (``create_model("unet", ...)``)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any
from collections.abc import Callable

from torch import nn

from seglab._registry import Registry, check_kwargs

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


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
    return MODELS.register(name)


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`."""
    return MODELS.names()


def is_external_model(name: Any) -> bool:
    """Whether ``name`` names a user factory (``"package.module:factory"`` or ``"path/to/file.py:factory"``)
    rather than a registered model."""
    return isinstance(name, str) and ":" in name


def _say(e: BaseException) -> str:
    """``TypeName: message`` on one line."""
    return f"{type(e).__name__}: " + " ".join(str(e).split())


_FILE_MODULES: dict[str, Any] = {}  # absolute path -> module loaded from it (each file is executed once)


def load_user_file(path: str, prefix: str, error: type[Exception] = ValueError) -> Any:
    """The module of the user's Python file ``path``, executed once per process (``--model file.py:factory``,
    ``compare --fn file.py:run``). Problems raise ``error`` with one line starting with ``prefix``: no such file, not
    loadable, or any exception while running the file."""
    full = os.path.abspath(os.path.expanduser(path))
    if full in _FILE_MODULES:
        return _FILE_MODULES[full]
    if not os.path.isfile(full):
        raise error(f"{prefix}: no such file {path!r}")
    mod_name = "seglab_user_" + hashlib.sha1(full.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(mod_name, full)
    if spec is None or spec.loader is None:
        raise error(f"{prefix}: cannot load {path!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses, pickling and relative lookups need the module registered
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error while running it is reported as one line
        sys.modules.pop(mod_name, None)
        raise error(f"{prefix}: error while loading {path!r}: {_say(e)}") from None
    _FILE_MODULES[full] = module
    return module


def _load_module(modname: str, spec_text: str) -> Any:
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name and (modname == e.name or modname.startswith(e.name + ".")):
            raise ValueError(f"model {spec_text!r}: no module named {e.name!r} (is it on sys.path? e.g. PYTHONPATH=.; "
                             "for a file use path/to/file.py:factory)") from None
        raise ValueError(f"model {spec_text!r}: importing {modname!r} failed: {_say(e)}") from None
    except Exception as e:
        raise ValueError(f"model {spec_text!r}: importing {modname!r} failed: {_say(e)}") from None


def resolve_factory(name: str) -> ModelFactory:
    """The factory named by ``"package.module:factory"`` or ``"path/to/file.py:factory"`` (``factory`` may be a
    dotted attribute path, e.g. ``Net.build``). A target ending in ``.py`` or containing a path separator is a
    file (relative paths are relative to the working directory), otherwise a module importable from ``sys.path``.

    Raises:
        ValueError: one line, for a missing module or file, an error while importing it, a missing attribute or
            an attribute that is not callable.
    """
    target, _, attr = name.strip().rpartition(":")
    target, attr = target.strip(), attr.strip()
    if not target or not attr:
        raise ValueError(f"model {name!r}: expected package.module:factory or path/to/file.py:factory")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    module = load_user_file(target, f"model {name!r}") if is_file else _load_module(target, name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            where = os.path.basename(target) if is_file else target
            raise ValueError(f"model {name!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model {name!r}: {attr!r} is not callable (a {type(obj).__name__} value); expected a factory function")
    return obj


def _create_external(name: str, kw: dict[str, Any]) -> nn.Module:
    factory = resolve_factory(name)
    check_kwargs("model", name, factory, kw)
    try:
        net = factory(**kw)
    except Exception as e:  # the user's code: one line naming the model, never a traceback
        raise ValueError(f"model {name!r}: the factory raised {_say(e)}") from None
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {name!r}: the factory returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def create_model(name: str, *, in_channels: int, out_channels: int, spatial_dims: int = 2, **kw: Any) -> nn.Module:
    """Build the registered model ``name``, or the user's model ``"package.module:factory"`` /
    ``"path/to/file.py:factory"``.

    A user factory is called as a registered one (see :func:`register_model`): with ``in_channels``,
    ``out_channels``, ``spatial_dims`` and ``**kw`` as keyword arguments, and must return an ``nn.Module``.

    Args:
        name: one of :func:`list_models` (``"unet"``, ``"tiny"``, ...), or ``module:factory`` /
            ``file.py:factory`` (see :func:`resolve_factory`).
        in_channels: channels of the input images.
        out_channels: number of logit channels C (``task.num_classes``).
        spatial_dims: 2 (``(N, C, H, W)``) or 3 (``(N, C, D, H, W)``).
        **kw: model-specific options, e.g. ``depth``, ``base_width``, ``norm``, ``dropout`` for the U-Net.

    Raises:
        ValueError: unknown name (with a "did you mean" suggestion), unknown keyword arguments or
            invalid values; for a user factory also a missing module/file/attribute, an exception raised by the
            factory, or a result that is not an ``nn.Module`` (all one line).

    Example::

        >>> net = create_model("unet", in_channels=1, out_channels=2, depth=3, norm="batch")
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """
    if is_external_model(name):
        return _create_external(name, dict(kw, in_channels=in_channels, out_channels=out_channels,
                                            spatial_dims=spatial_dims))
    return MODELS.create(name, in_channels=in_channels, out_channels=out_channels, spatial_dims=spatial_dims, **kw)
