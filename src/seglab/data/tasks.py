"""Tasks: the data side of an experiment (synthetic ``threshold``, ``shapes``, ``overlap``; a registry).

A :class:`Task` produces training batches as a *pure function* of ``(seed, step, batch_size)`` — the
same call gives bit-identical tensors in any process, which is what resuming and data-parallel
training (every rank builds the global batch and takes its slice) rely on — and a fixed, cached
validation set.

Tensors:
    images: float32 ``(N, in_channels, *spatial)``.
    targets: ``mode == "multiclass"``: int64 class map ``(N, *spatial)`` with values in ``[0, C)``;
    ``mode in ("binary", "multilabel")``: float32 ``(N, C, *spatial)`` with values in ``{0, 1}``.

Example::

    >>> from seglab.data import create_task
    >>> task = create_task("threshold", fg_ratio=0.1, size=32)
    >>> x, y = task.batch(step=0, batch_size=8, seed=1)
    >>> x.shape, y.shape, y.dtype
    (torch.Size([8, 1, 32, 32]), torch.Size([8, 32, 32]), torch.int64)
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import warnings
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

import torch

from seglab._checks import check_int
from seglab._registry import Registry

MODES = ("binary", "multiclass", "multilabel")
VALIDATION_SEED = 0x5EED_0F_7A11D  # far from seed * 1_000_003 + step for any realistic (seed, step)
_SEED_MODULUS = 2**63


def make_generator(seed: int, step: int) -> torch.Generator:
    """CPU generator seeded with ``seed * 1_000_003 + step`` (the seeding rule of every task)."""
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step)) % _SEED_MODULUS)
    return g


def validation_generator() -> torch.Generator:
    """Generator of the fixed validation sets."""
    g = torch.Generator()
    g.manual_seed(VALIDATION_SEED)
    return g


class Task:
    """Base class of tasks. Subclasses set the attributes below and implement :meth:`generate`
    (or override :meth:`batch` and :meth:`validation` directly).

    Attributes:
        name: registry name.
        mode: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        in_channels: channels of the images.
        num_classes: number of logit channels C the model must output.
        spatial_dims: 2 or 3.
        class_names: ``num_classes`` names (channel / class order).
        validation_size: number of validation samples.
    """

    name: str = "task"
    mode: str = "multiclass"
    in_channels: int = 1
    num_classes: int = 2
    spatial_dims: int = 2
    class_names: list[str] = []
    validation_size: int = 64

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples using only ``generator`` for randomness."""
        raise NotImplementedError

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch ``(images, targets)``: a deterministic function of ``(seed, step, batch_size)``."""
        check_int("batch_size", batch_size, minimum=1)
        check_int("step", step)
        check_int("seed", seed)
        return self.generate(batch_size, make_generator(seed, step))

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed validation set ``(images, targets)`` (generated once with a fixed seed, then cached;
        copies are returned, so callers may modify them)."""
        cache = self.__dict__.get("_validation_cache")
        if cache is None:
            cache = self.generate(self.validation_size, validation_generator())
            self.__dict__["_validation_cache"] = cache
        return cache[0].clone(), cache[1].clone()

    def config(self) -> dict[str, Any]:
        """JSON-serialisable parameters, including ``"name"``; ``create_task(**config)`` rebuilds the task."""
        return {"name": self.name}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({params})"


# ----------------------------------------------------------------------------------------------
# registry

TaskFactory = Callable[..., Task]
#: the task registry; tasks of data modules nobody imported yet appear once list_tasks or create_task discovered them
TASKS: Registry[TaskFactory] = Registry("task")
_discovered = False


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator registering a task factory (a class or function returning a :class:`Task`).

    Example::

        @register_task("brain-tissue")
        def brain_tissue(*, size=64, spatial_dims=2) -> Task: ...
    """
    return TASKS.register(name)


def _discover() -> None:
    """Import every module of the ``seglab.data`` package once, so that tasks registered in modules
    nobody imported yet (e.g. ``brain-tissue``) are found. Modules failing with ImportError (a missing
    optional dependency) are skipped with a warning."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = __name__.rpartition(".")[0]  # seglab.data, found by path: this module never imports its own package
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_"):
            continue
        modname = f"{package}.{info.name}"
        try:
            importlib.import_module(modname)
        except ImportError as e:
            warnings.warn(f"seglab.data: skipped {modname} while looking for tasks: {e}", stacklevel=3)


def list_tasks() -> list[str]:
    """Sorted names accepted by :func:`create_task`."""
    _discover()
    return TASKS.names()


def create_task(name: str, **kw: Any) -> Task:
    """Build the registered task ``name`` with parameters ``kw``.

    Raises ``ValueError`` for an unknown name (with a "did you mean" suggestion), unknown parameters
    or invalid parameter values — before any data is generated.
    """
    if name not in TASKS:
        _discover()
    return TASKS.create(name, **kw)


def _check_spatial_dims(spatial_dims: Any) -> None:
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def _check_open_unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 < value < 1.0):
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")


def _check_noise(noise: Any) -> None:
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")


def _default_size(size: int | None, spatial_dims: int, default_2d: int, default_3d: int, minimum: int) -> int:
    if size is None:
        return default_2d if spatial_dims == 2 else default_3d
    check_int("size", size, minimum=minimum)
    return size


def _grid(size: int, spatial_dims: int) -> torch.Tensor:
    """Pixel-index coordinates, float32 ``(spatial_dims, size, ..., size)``."""
    axis = torch.arange(size, dtype=torch.float32)
    return torch.stack(torch.meshgrid(*([axis] * spatial_dims), indexing="ij"))


def _uniform(g: torch.Generator, lo: float, hi: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _shape_mask(grid: torch.Tensor, centre: torch.Tensor, radius: float, box: bool, half: torch.Tensor | None = None) -> torch.Tensor:
    """Disc/ball of ``radius`` or axis-aligned box of half-widths ``half`` (default ``radius``) at ``centre``."""
    d = grid - centre.view(-1, *([1] * (grid.dim() - 1)))
    if box:
        h = half if half is not None else torch.full_like(centre, radius)
        return (d.abs() <= h.view(-1, *([1] * (grid.dim() - 1)))).all(0)
    return (d * d).sum(0) <= radius * radius


# ----------------------------------------------------------------------------------------------
# threshold


class ThresholdTask(Task):
    """Chlebus et al. (2018)'s toy task: images of i.i.d. uniform noise in ``[0, 1)``; a pixel is
    foreground iff its value exceeds ``theta = 1 - fg_ratio``, so the expected foreground fraction is
    ``fg_ratio``. Multiclass with C = 2 (``["background", "foreground"]``), 1 input channel.

    ``invert=True`` feeds the network ``1 - x`` instead of ``x`` (labels unchanged: foreground is still
    ``x > theta``, i.e. input ``< fg_ratio``): at 95 % foreground the foreground pixels are then the dark
    ones. It tests whether an effect follows the foreground fraction or the input's intensities (seed 002:
    smaller gradient norms at 95 % than at 5 % foreground). Off by default, and left out of :meth:`config`
    when off, so run ids of existing results do not change.

    Shapes: images ``(N, 1, *[size] * spatial_dims)``, targets int64 ``(N, *[size] * spatial_dims)``.
    Validation: 64 images.
    """

    name = "threshold"
    mode = "multiclass"
    in_channels = 1
    num_classes = 2

    def __init__(self, fg_ratio: float = 0.5, size: int = 32, spatial_dims: int = 2, invert: bool = False):
        _check_open_unit("fg_ratio", fg_ratio)
        if not isinstance(invert, bool):
            raise ValueError(f"invert must be true or false, got {invert!r}")
        check_int("size", size, minimum=1)
        _check_spatial_dims(spatial_dims)
        self.fg_ratio = float(fg_ratio)
        self.theta = 1.0 - self.fg_ratio
        self.size = int(size)
        self.spatial_dims = int(spatial_dims)
        self.invert = invert
        self.class_names = ["background", "foreground"]
        self.validation_size = 64

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand((n, 1, *[self.size] * self.spatial_dims), generator=generator)
        y = (x[:, 0] > self.theta).long()
        return (1.0 - x if self.invert else x), y

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "fg_ratio": self.fg_ratio, "size": self.size,
                               "spatial_dims": self.spatial_dims}
        if self.invert:  # only when on: the run ids of every existing threshold run stay as they were
            cfg["invert"] = True
        return cfg


register_task("threshold")(ThresholdTask)


# ----------------------------------------------------------------------------------------------
# shapes


class ShapesTask(Task):
    """Mutually exclusive random shapes of ``num_classes - 1`` foreground classes on background.

    Each image gets, for each foreground class ``k = 1 .. K-1`` independently with probability
    ``frequencies[k-1]``, one disc or box (ball or box in 3D) fully inside the image. Shapes are painted
    in class order, so later classes occlude earlier ones and the last class is never occluded; a pixel
    has exactly one class. The last class is the rare one by default: small (radius about size/32 to
    size/16) and present in 30% of images, while the others (radius size/10 to size/5) appear in 80%.

    Image (1 channel): ``k / (K - 1)`` on class ``k`` (0 on background) + Gaussian noise of std
    ``noise`` — learnable by a small U-Net.

    Multiclass, C = ``num_classes``, class names ``["background", "shape1", ..., "shape{K-1}"]``.
    Shapes: images ``(N, 1, *S)``, targets int64 ``(N, *S)``, ``S = [size] * spatial_dims`` with
    default size 64 (2D) or 32 (3D). Validation: 64 images.
    """

    name = "shapes"
    mode = "multiclass"
    in_channels = 1

    def __init__(
        self,
        num_classes: int = 4,
        size: int | None = None,
        spatial_dims: int = 2,
        frequencies: Sequence[float] | None = None,
        noise: float = 0.1,
    ):
        check_int("num_classes", num_classes, minimum=2)
        _check_spatial_dims(spatial_dims)
        size = _default_size(size, spatial_dims, 64, 32, minimum=16)
        if frequencies is None:
            frequencies = [0.8] * (num_classes - 2) + [0.3]
        else:
            try:
                frequencies = [float(f) for f in frequencies]
            except (TypeError, ValueError):
                raise ValueError(f"frequencies must be a sequence of numbers, got {frequencies!r}") from None
            if len(frequencies) != num_classes - 1:
                raise ValueError(
                    f"frequencies must give one presence probability per foreground class "
                    f"(num_classes - 1 = {num_classes - 1} values), got {len(frequencies)}: {frequencies}"
                )
            if not all(0.0 <= f <= 1.0 for f in frequencies):
                raise ValueError(f"frequencies must lie in [0, 1], got {frequencies}")
        _check_noise(noise)
        self.num_classes = int(num_classes)
        self.size = int(size)
        self.spatial_dims = int(spatial_dims)
        self.frequencies = list(frequencies)
        self.noise = float(noise)
        self.class_names = ["background"] + [f"shape{k}" for k in range(1, num_classes)]
        self.validation_size = 64
        self._grid = _grid(size, spatial_dims)
        big = (size / 10, size / 5)
        small = (max(2.0, size / 32), max(3.0, size / 16))
        self.radii = [big] * (num_classes - 2) + [small]

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        g, sd, size = generator, self.spatial_dims, self.size
        y = torch.zeros((n, *[size] * sd), dtype=torch.long)
        for i in range(n):
            for k in range(1, self.num_classes):
                present = torch.rand((), generator=g).item() < self.frequencies[k - 1]
                lo, hi = self.radii[k - 1]
                r = _uniform(g, lo, hi).item()
                centre = _uniform(g, r, size - 1 - r, (sd,))
                box = torch.rand((), generator=g).item() < 0.5
                half = r * _uniform(g, 0.6, 1.0, (sd,))
                if present:  # draws above happen either way, keeping the stream layout fixed
                    y[i][_shape_mask(self._grid, centre, r, box, half)] = k
        intensity = torch.arange(self.num_classes, dtype=torch.float32) / (self.num_classes - 1)
        x = intensity[y] + self.noise * torch.randn(y.shape, generator=g)
        return x.unsqueeze(1), y

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "size": self.size,
            "spatial_dims": self.spatial_dims,
            "frequencies": self.frequencies,
            "noise": self.noise,
        }


register_task("shapes")(ShapesTask)


# ----------------------------------------------------------------------------------------------
# overlap


class OverlapTask(Task):
    """Multilabel task with overlapping labels: a "plate" and a "code" printed on it, plus a rare "spot".

    * ``plate``: a large disc or box (ball or box in 3D), radius size/5 to size/3, in every image.
    * ``code``: a small square (cube) of 3-5 cells per side, each cell on with probability 1/2 (a
      QR-code-like pattern), lying entirely on the plate: every code pixel is also a plate pixel.
    * ``spot`` (only when ``rare_fraction > 0``): a small disc anywhere, present in a fraction
      ``rare_fraction`` of the images, independent of (and possibly overlapping) the others.

    Input (2 channels, like colours): channel 0 = plate + 0.5 * spot, channel 1 = code + 0.5 * spot,
    plus Gaussian noise of std ``noise``; every label combination has a distinct mean colour.

    Mode ``"multilabel"``, C = 3 (``["plate", "code", "spot"]``) or 2 when ``rare_fraction == 0``.
    Shapes: images ``(N, 2, *S)``, targets float32 ``(N, C, *S)`` in {0, 1}; default size 64 (2D) or
    32 (3D). Validation: 64 images.
    """

    name = "overlap"
    mode = "multilabel"
    in_channels = 2

    def __init__(self, size: int | None = None, spatial_dims: int = 2, rare_fraction: float = 0.25, noise: float = 0.1):
        _check_spatial_dims(spatial_dims)
        size = _default_size(size, spatial_dims, 64, 32, minimum=16)
        if isinstance(rare_fraction, bool) or not isinstance(rare_fraction, (int, float)) or not (0.0 <= rare_fraction < 1.0):
            raise ValueError(f"rare_fraction must be in [0, 1) (0 disables the rare 'spot' channel), got {rare_fraction!r}")
        _check_noise(noise)
        self.size = int(size)
        self.spatial_dims = int(spatial_dims)
        self.rare_fraction = float(rare_fraction)
        self.noise = float(noise)
        self.class_names = ["plate", "code"] + (["spot"] if self.rare_fraction > 0 else [])
        self.num_classes = len(self.class_names)
        self.validation_size = 64
        self._grid = _grid(size, spatial_dims)
        self.cell = max(1, size // 32)

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        g, sd, size, grid = generator, self.spatial_dims, self.size, self._grid
        y = torch.zeros((n, self.num_classes, *[size] * sd), dtype=torch.float32)
        for i in range(n):
            # plate
            R = _uniform(g, size / 5, size / 3).item()
            centre = _uniform(g, R + 1, size - 2 - R, (sd,))
            box = torch.rand((), generator=g).item() < 0.5
            plate = _shape_mask(grid, centre, R, box)
            # code: square of n_cells cells inside the square inscribed in the plate
            inner = R if box else R / math.sqrt(sd)
            n_cells = int(torch.randint(3, 6, (), generator=g))
            while n_cells > 1 and n_cells * self.cell / 2 > inner - 1:
                n_cells -= 1
            side = n_cells * self.cell
            slack = max(0.0, inner - 1 - side / 2)
            offset = _uniform(g, -slack, slack, (sd,))
            corner = torch.round(centre + offset - side / 2)
            pattern = torch.rand((n_cells,) * sd, generator=g) < 0.5
            pattern[(0,) * sd] = True  # never empty
            rel = grid - corner.view(-1, *([1] * sd))
            inside = ((rel >= 0) & (rel < side)).all(0)
            idx = (rel.clamp(0, side - 1) // self.cell).long()
            code = inside & pattern[tuple(idx)] & plate
            y[i, 0] = plate.float()
            y[i, 1] = code.float()
            if self.num_classes == 3:
                present = torch.rand((), generator=g).item() < self.rare_fraction
                r = _uniform(g, max(1.5, size / 32), max(2.5, size / 20)).item()
                c = _uniform(g, r, size - 1 - r, (sd,))
                if present:
                    y[i, 2] = _shape_mask(grid, c, r, False).float()
        x = torch.stack([y[:, 0], y[:, 1]], dim=1)
        if self.num_classes == 3:
            x = x + 0.5 * y[:, 2:3]
        x = x + self.noise * torch.randn(x.shape, generator=g)
        return x, y

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "spatial_dims": self.spatial_dims,
            "rare_fraction": self.rare_fraction,
            "noise": self.noise,
        }


register_task("overlap")(OverlapTask)
