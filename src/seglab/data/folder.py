"""A task built from a user's folder of images and masks.

Layout::

    my_data/
        images/  case01.png   case02.nii.gz   scan7.npy   ...
        masks/   case01.png   case02.nii.gz   scan7.npz   ...

Images and masks are paired by file stem (the name without ``.png``, ``.tif``, ``.tiff``, ``.npy``,
``.npz``, ``.nii`` or ``.nii.gz``; the two files of a pair may have different formats) and read with
:func:`seglab.data.readers.read_array`. Hidden files and files with other suffixes are ignored.

Masks:
    * index masks ``(*S)`` (class per pixel/voxel) → ``"multiclass"`` with ``num_classes`` = max label
      + 1 over all masks (or given). Masks whose values are only 0 and 255 (8-bit binary PNGs) are read
      as 0/1. ``mode="binary"`` turns 2-class index masks into one float channel ``(1, *S)``.
    * channel-first multi-hot masks ``(C, *S)`` with values in {0, 1} → ``"multilabel"`` (``"binary"``
      when C == 1).
    ``mask_format="auto"`` decides from the shapes: a mask with the shape of the image's spatial grid
    is an index mask; a mask ``(C, *S)`` whose ``S`` matches the image is multi-hot. When both fit
    (e.g. a ``(2, H, W)`` image and a ``(2, H, W)`` mask) a 0/1 mask with at most 4 leading entries is
    taken as multi-hot; pass ``mask_format="index"`` or ``"multihot"`` to decide explicitly.

Images: ``S`` (one channel), channel-first ``(C, *S)`` or channel-last ``(*S, C)`` (colour PNGs),
normalised per image and channel to zero mean and unit standard deviation.

3D volumes: with ``slice_axis`` (0, 1 or 2, a spatial axis of the volume) every volume is cut into 2D
slices along that axis (the task is then 2D); with ``patch_size`` random patches are drawn (both may be
combined: 2D patches of the slices). Without either, all samples must have the same shape.

Split: whole files (cases), never slices of one volume, are assigned to training or validation by a
permutation seeded with ``split_seed``; ``val_fraction`` of the cases (at least one when > 0) go to
validation. With ``val_fraction=0`` the validation set is drawn from the training cases.

All files are read once, when the task is built, and kept in memory (images float32, masks compact).
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .readers import MASK_SUFFIXES, file_suffix, read_array
from .tasks import MODES, Task, _check_int, register_task, validation_generator

MASK_FORMATS = ("auto", "index", "multihot")
LAYOUT_HELP = "expected layout: <path>/images/<stem>.<ext> and <path>/masks/<stem>.<ext>"


def _stem(path: Path) -> str:
    suffix = file_suffix(path)
    return path.name[: len(path.name) - len(suffix)]


def _list_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or file_suffix(p) not in MASK_SUFFIXES:
            continue
        stem = _stem(p)
        if stem in files:
            raise ValueError(f"two files with the stem {stem!r} in {folder}: {files[stem].name} and {p.name}")
        files[stem] = p
    return files


def _image_as_channel_first(img: np.ndarray, spatial: tuple[int, ...]) -> Optional[np.ndarray]:
    """``img`` as ``(C, *spatial)`` if it is ``spatial``, ``(C, *spatial)`` or ``(*spatial, C)``; else None."""
    if img.shape == spatial:
        return img[None]
    if img.ndim == len(spatial) + 1:
        if img.shape[1:] == spatial:
            return img
        if img.shape[:-1] == spatial:
            return np.moveaxis(img, -1, 0)
    return None


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.isin(a, (0, 1)).all())


@register_task("folder")
class FolderTask(Task):
    """Task over a folder of image/mask pairs (see the module docstring for the layout and rules).

    Args:
        path: folder containing ``images/`` and ``masks/``.
        mode: ``None`` (from the masks), ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        num_classes: number of classes (index masks; default max label + 1) or channels (multi-hot).
        class_names: names of the ``num_classes`` classes/channels.
        mask_format: ``"auto"``, ``"index"`` or ``"multihot"``.
        slice_axis: cut 3D volumes into 2D slices along this spatial axis (0, 1 or 2).
        patch_size: int or tuple: draw random patches of this size (per spatial axis).
        val_fraction: fraction of the cases used for validation, in [0, 1).
        split_seed: seed of the train/validation split.
        validation_patches: with ``patch_size``: patches per validation sample (fixed seed).

    ``batch(step, batch_size, seed)`` draws training samples (and patch positions) uniformly with a
    generator seeded from ``(seed, step)``; ``validation()`` returns every validation sample (or
    ``validation_patches`` fixed patches of each).
    """

    name = "folder"

    def __init__(
        self,
        path: Union[str, Path],
        mode: Optional[str] = None,
        num_classes: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        mask_format: str = "auto",
        slice_axis: Optional[int] = None,
        patch_size: Union[int, Sequence[int], None] = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        validation_patches: int = 4,
    ):
        # ---- parameters (checked before reading anything)
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be None or one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {', '.join(map(repr, MASK_FORMATS))}, got {mask_format!r}")
        if num_classes is not None:
            _check_int("num_classes", num_classes, minimum=1)
        if slice_axis is not None and (isinstance(slice_axis, bool) or slice_axis not in (0, 1, 2)):
            raise ValueError(f"slice_axis must be None or a spatial axis 0, 1 or 2, got {slice_axis!r}")
        if patch_size is not None:
            ps = (patch_size,) if isinstance(patch_size, numbers.Integral) else tuple(patch_size)
            if not ps or any(isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1 for p in ps):
                raise ValueError(f"patch_size must be a positive int or a tuple of positive ints, got {patch_size!r}")
            patch_size = tuple(int(p) for p in ps)
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        _check_int("split_seed", split_seed)
        _check_int("validation_patches", validation_patches, minimum=1)

        root = Path(path)
        if not root.is_dir():
            raise ValueError(f"folder task: {root} is not a directory ({LAYOUT_HELP})")
        images_dir, masks_dir = root / "images", root / "masks"
        for d in (images_dir, masks_dir):
            if not d.is_dir():
                raise ValueError(f"folder task: missing folder {d} ({LAYOUT_HELP})")
        images, masks = _list_files(images_dir), _list_files(masks_dir)
        for stem, p in images.items():
            if stem not in masks:
                raise ValueError(f"image {p} has no mask: expected {masks_dir}/{stem}.<ext> ({LAYOUT_HELP})")
        for stem, p in masks.items():
            if stem not in images:
                raise ValueError(f"mask {p} has no image: expected {images_dir}/{stem}.<ext>")
        if not images:
            raise ValueError(f"folder task: no image files ({', '.join(MASK_SUFFIXES)}) in {images_dir}")

        # ---- read and interpret every pair
        stems = sorted(images)
        cases: list[tuple[str, np.ndarray, np.ndarray, str]] = []  # stem, image (C,*S), mask, kind
        for stem in stems:
            img, mask = read_array(images[stem]), read_array(masks[stem])
            img_cf, kind = self._interpret(img, mask, mask_format, images[stem], masks[stem])
            cases.append((stem, img_cf, mask, kind))
        kinds = {c[3] for c in cases}
        if len(kinds) > 1:
            ex = {k: next(c[0] for c in cases if c[3] == k) for k in kinds}
            raise ValueError(f"masks mix index maps and multi-hot arrays ({ex}); set mask_format='index' or 'multihot'")
        kind = kinds.pop()
        for what, values in (("image channels", {c[1].shape[0] for c in cases}), ("spatial dims", {c[1].ndim - 1 for c in cases})):
            if len(values) > 1:
                raise ValueError(f"files differ in {what}: {sorted(values)} ({images_dir})")
        src_dims = cases[0][1].ndim - 1
        if src_dims not in (2, 3):
            raise ValueError(f"images must be 2D or 3D, got {src_dims} spatial dims in {images_dir}")
        if slice_axis is not None and src_dims != 3:
            raise ValueError(f"slice_axis={slice_axis} needs 3D volumes, but the images are {src_dims}D")

        # ---- targets
        if kind == "index":
            labels = []
            for stem, _, m, _ in cases:
                if m.dtype == bool:
                    m = m.astype(np.int64)
                if not np.issubdtype(m.dtype, np.integer):
                    if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
                        raise ValueError(f"mask {masks[stem]} has non-integer values; index masks must hold class numbers")
                m = m.astype(np.int64)
                if m.min() < 0:
                    raise ValueError(f"mask {masks[stem]} has negative labels ({m.min()})")
                labels.append(m)
            values = set(np.unique(np.concatenate([np.unique(m) for m in labels])).tolist())
            if 255 in values and values <= {0, 255}:
                labels = [m // 255 for m in labels]
                values = {v // 255 for v in values}
            max_label = max(values)
            if mode == "multilabel":
                raise ValueError("mode='multilabel' needs multi-hot masks (C, *spatial); these are index masks")
            if mode == "binary":
                if max_label > 1:
                    raise ValueError(f"mode='binary' needs masks with labels 0/1, found labels up to {max_label}")
                if num_classes not in (None, 1):
                    raise ValueError(f"mode='binary' has num_classes=1 logit channel, got num_classes={num_classes}")
                n_cls = 1
                targets = [torch.from_numpy(m == 1)[None] for m in labels]  # bool; float32 when batched
            else:
                mode = "multiclass"
                n_cls = max(2, max_label + 1) if num_classes is None else num_classes
                if max_label >= n_cls:
                    raise ValueError(f"num_classes={n_cls} but the masks contain label {max_label}")
                small = torch.uint8 if n_cls <= 256 else torch.int32  # compact storage; int64 when batched
                targets = [torch.from_numpy(m).to(small) for m in labels]
        else:
            channels = {c[2].shape[0] for c in cases}
            if len(channels) > 1:
                raise ValueError(f"multi-hot masks differ in channel count: {sorted(channels)}")
            n_cls = channels.pop()
            for stem, _, m, _ in cases:
                if not _is_binary(m):
                    raise ValueError(f"multi-hot mask {masks[stem]} has values other than 0 and 1")
            if num_classes is not None and num_classes != n_cls:
                raise ValueError(f"num_classes={num_classes} but the multi-hot masks have {n_cls} channels")
            if mode == "multiclass":
                raise ValueError("mode='multiclass' needs index masks; these are multi-hot (C, *spatial) arrays")
            if mode is None:
                mode = "binary" if n_cls == 1 else "multilabel"
            elif mode == "binary" and n_cls != 1:
                raise ValueError(f"mode='binary' needs one mask channel, these masks have {n_cls}")
            targets = [torch.from_numpy(c[2].astype(bool)) for c in cases]  # float32 when batched

        if class_names is None:
            if mode == "multiclass":
                class_names = ["background"] + [f"class{k}" for k in range(1, n_cls)]
            elif mode == "binary":
                class_names = ["foreground"]
            else:
                class_names = [f"label{k}" for k in range(n_cls)]
        class_names = [str(c) for c in class_names]
        if len(class_names) != n_cls:
            raise ValueError(f"class_names has {len(class_names)} names for {n_cls} classes: {class_names}")

        # ---- normalise images per image and channel
        images_t = []
        for _, img, _, _ in cases:
            x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
            dims = tuple(range(1, x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            std = x.std(dim=dims, keepdim=True, unbiased=False)
            images_t.append((x - mean) / std.clamp_min(1e-6))

        # ---- split by case
        n = len(cases)
        n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * n)))
        if n_val >= n:
            raise ValueError(
                f"val_fraction={val_fraction} leaves no training case among {n} file pair(s); "
                f"add files or use val_fraction=0"
            )
        g = torch.Generator()
        g.manual_seed(split_seed)
        perm = torch.randperm(n, generator=g).tolist()
        val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])

        # ---- samples (slices are views of the normalised volumes)
        multiclass = mode == "multiclass"

        def samples(idx: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
            out = []
            for i in idx:
                x, y = images_t[i], targets[i]
                if slice_axis is None:
                    out.append((x, y))
                else:
                    ty = slice_axis if multiclass else slice_axis + 1
                    out.extend((x.select(slice_axis + 1, j), y.select(ty, j)) for j in range(x.shape[slice_axis + 1]))
            return out

        self._train = samples(train_idx)
        self._val = samples(val_idx) if n_val else self._train
        spatial_dims = src_dims - (slice_axis is not None)
        shapes = {tuple(s[0].shape[1:]) for s in self._train + self._val}
        if patch_size is None:
            if len(shapes) > 1:
                raise ValueError(
                    f"samples differ in size ({sorted(shapes)[:4]}...); pass patch_size to draw fixed-size patches"
                )
        else:
            if len(patch_size) == 1:
                patch_size = patch_size * spatial_dims
            if len(patch_size) != spatial_dims:
                raise ValueError(f"patch_size {patch_size} has {len(patch_size)} entries for {spatial_dims}D samples")
            too_small = [s for s in shapes if any(p > d for p, d in zip(patch_size, s))]
            if too_small:
                raise ValueError(f"patch_size {patch_size} is larger than sample shape(s) {sorted(too_small)}")

        self.path = root
        self.mode = mode
        self.in_channels = int(cases[0][1].shape[0])
        self.num_classes = int(n_cls)
        self.spatial_dims = spatial_dims
        self.class_names = class_names
        self.mask_format = mask_format
        self.slice_axis = None if slice_axis is None else int(slice_axis)
        self.patch_size = patch_size
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.validation_patches = int(validation_patches)
        self.train_cases = [stems[i] for i in train_idx]
        self.val_cases = [stems[i] for i in val_idx]
        self.validation_size = len(self._val) * (validation_patches if patch_size else 1)

    @staticmethod
    def _interpret(img: np.ndarray, mask: np.ndarray, mask_format: str, img_path: Path, mask_path: Path) -> tuple[np.ndarray, str]:
        as_index = _image_as_channel_first(img, mask.shape) if mask_format in ("auto", "index") else None
        as_multi = None
        if mask_format in ("auto", "multihot") and mask.ndim >= 3:
            as_multi = _image_as_channel_first(img, mask.shape[1:])
            if mask_format == "auto" and as_multi is not None and not _is_binary(mask):
                as_multi = None
        if as_index is not None and as_multi is not None:  # ambiguous: small leading axis of 0/1 → channels
            if mask.shape[0] <= 4:
                as_index = None
            else:
                as_multi = None
        if as_index is not None:
            return as_index, "index"
        if as_multi is not None:
            return as_multi, "multihot"
        expected = {
            "auto": "an index mask of the image's spatial shape or a multi-hot mask (C, *spatial)",
            "index": "an index mask of the image's spatial shape",
            "multihot": "a multi-hot mask (C, *spatial)",
        }[mask_format]
        raise ValueError(
            f"shape mismatch: image {img_path.name} has shape {img.shape}, mask {mask_path.name} has shape "
            f"{mask.shape}; expected {expected}"
        )

    def _draw(self, samples: list[tuple[torch.Tensor, torch.Tensor]], n: int, g: torch.Generator, index: Optional[list[int]] = None):
        xs, ys = [], []
        idx = index if index is not None else torch.randint(len(samples), (n,), generator=g).tolist()
        multiclass = self.mode == "multiclass"
        for i in idx:
            x, y = samples[i]
            if self.patch_size is not None:
                shape = x.shape[1:]
                starts = [int(torch.randint(d - p + 1, (), generator=g)) for d, p in zip(shape, self.patch_size)]
                sl = tuple(slice(s, s + p) for s, p in zip(starts, self.patch_size))
                x = x[(slice(None),) + sl]
                y = y[sl] if multiclass else y[(slice(None),) + sl]
            xs.append(x)
            ys.append(y)
        y = torch.stack(ys)
        return torch.stack(xs).contiguous(), (y.long() if multiclass else y.float()).contiguous()

    def generate(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self._draw(self._train, n, generator)

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.__dict__.get("_validation_cache")
        if cache is None:
            reps = self.validation_patches if self.patch_size is not None else 1
            index = [i for i in range(len(self._val)) for _ in range(reps)]
            cache = self._draw(self._val, len(index), validation_generator(), index=index)
            self.__dict__["_validation_cache"] = cache
        return cache[0].clone(), cache[1].clone()

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "mode": self.mode,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "mask_format": self.mask_format,
            "slice_axis": self.slice_axis,
            "patch_size": list(self.patch_size) if self.patch_size is not None else None,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            "validation_patches": self.validation_patches,
        }
