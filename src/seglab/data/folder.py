"""A task built from a user's folder of images and masks.

Layout::

    my_data/
        images/  case01.png   case02.nii.gz   scan7.npy   ...
        masks/   case01.png   case02.nii.gz   scan7.npz   ...

Images and masks are paired by file stem (the name without ``.png``, ``.tif``, ``.tiff``, ``.npy``,
``.npz``, ``.nii`` or ``.nii.gz``; the two files of a pair may have different formats) and read with
:func:`seglab.data.readers.read_array`. Hidden files and files with other suffixes are ignored.

Masks are read by :mod:`seglab.data.masks`, the reader ``seglab advise`` uses, so that every folder advise
reads also trains, with the same classes, mode and void label:

    * index masks (greyscale PNG/TIFF, palette PNG, ``.npy``, NIfTI) ``(*S)``: classes 0..max label
      (labels far from 0..C-1, e.g. 0/100/200, are remapped to 0..C-1 in increasing order); 8-bit masks
      holding only 0 and 255 are read as 0/1; a void label (``ignore_index``: given, or ``"auto"``: a value
      outside the palette, or 255 apart from the class labels) keeps its value in the targets.
    * colour (RGB) masks ``(H, W, 3|4)``: each colour a class (black first), or, with ``rgb_reading=
      "multilabel"`` (the default when some colours are sums of primaries, e.g. magenta = red + blue),
      the R, G, B channels as labels.
    * one-hot / multi-hot channel-first masks ``(C, *S)`` (NIfTI: ``(X, Y, Z, C)``) with values in {0, 1}
      (soft labels thresholded at 0.5).

    Mode (``mode=None``): overlapping classes -> ``"multilabel"``; otherwise 2 classes -> ``"binary"`` (one
    float channel ``(1, *S)``, the second class), more -> ``"multiclass"``; channel masks that never overlap but
    leave pixels without a class get an implicit background class 0. ``mode`` overrides this where the data
    allow it (``"multiclass"`` for 2 classes, ``"multilabel"`` for non-overlapping channels).
    ``mask_format="auto"`` infers the encoding per file (:func:`seglab.data.masks.decode`) and checks it
    against the image: a mask with the shape of the image's spatial grid is an index mask; a mask
    ``(C, *S)`` whose ``S`` matches the image is a channel mask. When both fit (e.g. a ``(2, H, W)`` image
    and a ``(2, H, W)`` mask) a 0/1 mask with at most 4 leading entries is taken as channels; pass
    ``mask_format="index"`` or ``"multihot"`` to decide explicitly. A masks folder that holds images
    (many distinct values that change from pixel to pixel, :func:`seglab.data.masks.image_like`) is refused.

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
from dataclasses import replace
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np
import torch

from seglab._checks import check_int

from . import masks as M
from .readers import MASK_SUFFIXES, file_suffix, read_array, read_mask
from .tasks import MODES, Task, register_task, validation_generator

MASK_FORMATS = M.FORMATS
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


def _image_as_channel_first(img: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray | None:
    """``img`` as ``(C, *spatial)`` if it is ``spatial``, ``(C, *spatial)`` or ``(*spatial, C)``; else None."""
    if img.shape == spatial:
        return img[None]
    if img.ndim == len(spatial) + 1:
        if img.shape[1:] == spatial:
            return img
        if img.shape[:-1] == spatial:
            return np.moveaxis(img, -1, 0)
    return None


def _check_options(*, mode: str | None, num_classes: int | None, mask_format: str, slice_axis: int | None,
                   patch_size: Any, val_fraction: float, split_seed: int, validation_patches: int,
                   ignore_index: int | str | None, rgb_reading: str | None) -> tuple[int, ...] | None:
    """Check the folder task's options before anything is read; the patch size as a tuple of ints (or None)."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be None or one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {', '.join(map(repr, MASK_FORMATS))}, got {mask_format!r}")
    if num_classes is not None:
        check_int("num_classes", num_classes, minimum=1)
    if slice_axis is not None and (isinstance(slice_axis, bool) or slice_axis not in (0, 1, 2)):
        raise ValueError(f"slice_axis must be None or a spatial axis 0, 1 or 2, got {slice_axis!r}")
    patch = None
    if patch_size is not None:
        ps = (patch_size,) if isinstance(patch_size, numbers.Integral) else tuple(patch_size)
        if not ps or any(isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 1 for p in ps):
            raise ValueError(f"patch_size must be a positive int or a tuple of positive ints, got {patch_size!r}")
        patch = tuple(int(p) for p in ps)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    check_int("split_seed", split_seed)
    check_int("validation_patches", validation_patches, minimum=1)
    if not (ignore_index is None or ignore_index == "auto"
            or (isinstance(ignore_index, numbers.Integral) and not isinstance(ignore_index, bool))):
        raise ValueError(f"ignore_index must be an int, None or 'auto', got {ignore_index!r}")
    if rgb_reading not in (None, "classes", "multilabel"):
        raise ValueError(f"rgb_reading must be None, 'classes' or 'multilabel', got {rgb_reading!r}")
    return patch


def _pair_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """``(images, masks)``: stem -> file in ``root/images`` and ``root/masks``, every image with a mask and back."""
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
    return images, masks


def _source_dims(cases: list[tuple[str, np.ndarray, M.Decoded]], images_dir: Path, slice_axis: int | None) -> int:
    """The spatial dims (2 or 3) all images share; ValueError when they differ in channels or dims."""
    for what, values in (("image channels", {c[1].shape[0] for c in cases}), ("spatial dims", {c[1].ndim - 1 for c in cases})):
        if len(values) > 1:
            raise ValueError(f"files differ in {what}: {sorted(values)} ({images_dir})")
    src_dims = cases[0][1].ndim - 1
    if src_dims not in (2, 3):
        raise ValueError(f"images must be 2D or 3D, got {src_dims} spatial dims in {images_dir}")
    if slice_axis is not None and src_dims != 3:
        raise ValueError(f"slice_axis={slice_axis} needs 3D volumes, but the images are {src_dims}D")
    return int(src_dims)


def _class_count(space: M.LabelSpace, names: list[str], num_classes: int | None) -> tuple[int, list[str]]:
    """The task's logit channels (1 for binary) and class names, ``num_classes`` checked against the masks
    (multiclass: more classes than the masks hold are named ``class k``)."""
    n_cls = 1 if space.mode == "binary" else space.num_classes
    if num_classes is None:
        return n_cls, names
    if space.mode == "binary" and num_classes != 1:
        raise ValueError(f"mode='binary' has num_classes=1 logit channel, got num_classes={num_classes}")
    if space.mode == "multilabel" and num_classes != n_cls:
        raise ValueError(f"num_classes={num_classes} but the masks have {n_cls} channels")
    if space.mode == "multiclass":
        if num_classes < n_cls:
            raise ValueError(f"num_classes={num_classes} but the masks contain label {space.values[-1]}"
                             if space.kind == "index" and not space.remap else
                             f"num_classes={num_classes} but the masks have {n_cls} classes ({', '.join(space.names)})")
        return num_classes, names + [f"class {k}" for k in range(n_cls, num_classes)]
    return n_cls, names


def _encode_target(space: M.LabelSpace, dec: M.Decoded, n_cls: int, mask_path: Path) -> torch.Tensor:
    """One decoded mask as the task stores its target: bool channels (float32 when batched) or compact class
    indices whose void pixels hold the void value (int64 when batched)."""
    try:
        lab = space.encode(dec)
    except ValueError as e:
        raise ValueError(f"mask {mask_path}: {e}") from e
    if lab.dtype == bool:
        return torch.from_numpy(np.ascontiguousarray(lab))
    top = max(n_cls - 1, space.void if space.void is not None else 0)
    return torch.from_numpy(lab.astype(np.uint8 if top <= 255 else np.int32))


def _normalised(img: np.ndarray) -> torch.Tensor:
    """An image ``(C, *S)`` as float32, normalised per channel to zero mean and unit standard deviation."""
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(1e-6)


def _split(n: int, val_fraction: float, split_seed: int) -> tuple[list[int], list[int]]:
    """``(validation cases, training cases)``: sorted indices of a permutation seeded with ``split_seed``."""
    n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * n)))
    if n_val >= n:
        raise ValueError(
            f"val_fraction={val_fraction} leaves no training case among {n} file pair(s); "
            f"add files or use val_fraction=0"
        )
    g = torch.Generator()
    g.manual_seed(split_seed)
    perm = torch.randperm(n, generator=g).tolist()
    return sorted(perm[:n_val]), sorted(perm[n_val:])


def _samples(pairs: list[tuple[torch.Tensor, torch.Tensor]], slice_axis: int | None, *,
             multiclass: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(image, target)`` samples of some cases: whole, or their 2D slices along ``slice_axis`` (views)."""
    if slice_axis is None:
        return list(pairs)
    ty = slice_axis if multiclass else slice_axis + 1
    return [(x.select(slice_axis + 1, j), y.select(ty, j)) for x, y in pairs for j in range(x.shape[slice_axis + 1])]


def _check_patch_size(patch: tuple[int, ...] | None, spatial_dims: int,
                      shapes: set[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The patch size with one entry per spatial dim (a single entry repeated), checked against the sample
    shapes; without patches, all samples must have one shape."""
    if patch is None:
        if len(shapes) > 1:
            raise ValueError(f"samples differ in size ({sorted(shapes)[:4]}...); pass patch_size to draw fixed-size patches")
        return None
    if len(patch) == 1:
        patch = patch * spatial_dims
    if len(patch) != spatial_dims:
        raise ValueError(f"patch_size {patch} has {len(patch)} entries for {spatial_dims}D samples")
    too_small = [s for s in shapes if any(p > d for p, d in zip(patch, s, strict=True))]
    if too_small:
        raise ValueError(f"patch_size {patch} is larger than sample shape(s) {sorted(too_small)}")
    return patch


@register_task("folder")
class FolderTask(Task):
    """Task over a folder of image/mask pairs (see the module docstring for the layout and rules).

    Args:
        path: folder containing ``images/`` and ``masks/``.
        mode: ``None`` (from the masks), ``"multiclass"``, ``"multilabel"`` or ``"binary"``.
        num_classes: number of classes (index masks; default max label + 1) or channels (multi-hot).
        class_names: names of the ``num_classes`` classes/channels.
        mask_format: ``"auto"``, ``"index"``, ``"onehot"``/``"multihot"`` (channel-first 0/1) or ``"rgb"``.
        ignore_index: void label of index masks: an int, ``None`` or ``"auto"`` (as ``seglab advise``).
        rgb_reading: colour masks: ``None`` (as ``seglab advise``), ``"classes"`` or ``"multilabel"``.
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
        path: str | Path,
        mode: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        mask_format: str = "auto",
        slice_axis: int | None = None,
        patch_size: int | Sequence[int] | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        validation_patches: int = 4,
        ignore_index: int | None | str = "auto",
        rgb_reading: str | None = None,
    ) -> None:
        patch = _check_options(mode=mode, num_classes=num_classes, mask_format=mask_format, slice_axis=slice_axis,
                               patch_size=patch_size, val_fraction=val_fraction, split_seed=split_seed,
                               validation_patches=validation_patches, ignore_index=ignore_index,
                               rgb_reading=rgb_reading)
        root = Path(path)
        images, masks = _pair_files(root)
        stems = sorted(images)
        # ---- read and interpret every pair (the shared mask reader, as seglab advise)
        cases, summary = self._read_cases(images, masks, mask_format, ignore_index)
        src_dims = _source_dims(cases, root / "images", slice_axis)
        # ---- classes and mode (the rules of seglab advise), then the targets
        space, names = self._apply_mode(M.label_space(summary, ignore_index, rgb_reading), mode)
        mode = space.mode
        n_cls, names = _class_count(space, names, num_classes)
        targets = [_encode_target(space, dec, n_cls, masks[stem]) for stem, _, dec in cases]
        self.spacings = {stem: tuple(dec.meta["spacing"]) for stem, _, dec in cases if dec.meta.get("spacing") is not None}
        class_names = [str(c) for c in (names if class_names is None else class_names)]
        if len(class_names) != n_cls:
            raise ValueError(f"class_names has {len(class_names)} names for {n_cls} classes: {class_names}")
        images_t = [_normalised(img) for _, img, _ in cases]
        # ---- split by case; samples (slices are views of the normalised volumes)
        val_idx, train_idx = _split(len(cases), val_fraction, split_seed)
        pairs = list(zip(images_t, targets, strict=True))
        self._train = _samples([pairs[i] for i in train_idx], slice_axis, multiclass=mode == "multiclass")
        self._val = _samples([pairs[i] for i in val_idx], slice_axis, multiclass=mode == "multiclass") if val_idx else self._train
        spatial_dims = src_dims - (slice_axis is not None)
        patch = _check_patch_size(patch, spatial_dims, {tuple(s[0].shape[1:]) for s in self._train + self._val})

        self.path = root
        self.mode = mode
        self.in_channels = int(cases[0][1].shape[0])
        self.num_classes = int(n_cls)
        self.spatial_dims = spatial_dims
        self.class_names = class_names
        self.mask_format = mask_format
        self.ignore_index = space.void  # the void label the targets carry (given or detected), or None
        self.ignore_index_option = ignore_index
        self.rgb_reading = rgb_reading
        self.label_space = space
        self.slice_axis = None if slice_axis is None else int(slice_axis)
        self.patch_size = patch
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.validation_patches = int(validation_patches)
        self.train_cases = [stems[i] for i in train_idx]
        self.val_cases = [stems[i] for i in val_idx]
        self.validation_size = len(self._val) * (validation_patches if patch else 1)

    @classmethod
    def _read_cases(cls, images: dict[str, Path], masks: dict[str, Path], mask_format: str,
                    ignore_index: int | str | None) -> tuple[list[tuple[str, np.ndarray, M.Decoded]], M.LabelSummary]:
        """Every pair read, in stem order, as ``(stem, image (C, *S), decoded mask)``, and the label summary of
        all masks."""
        summary = M.LabelSummary(ignore_index=None if isinstance(ignore_index, str) or ignore_index is None else int(ignore_index))
        cases: list[tuple[str, np.ndarray, M.Decoded]] = []
        for stem in sorted(images):
            img_cf, dec = cls._interpret(read_array(images[stem]), mask_format, images[stem], masks[stem])
            try:
                summary.add(dec)
            except ValueError as e:
                raise ValueError(f"mask {masks[stem]}: {e}") from e
            cases.append((stem, img_cf, dec))
        return cases, summary

    @staticmethod
    def _interpret(img: np.ndarray, mask_format: str, img_path: Path, mask_path: Path) -> tuple[np.ndarray, M.Decoded]:
        """Decode the mask (:func:`seglab.data.masks.decode`) and return ``(image as (C, *S), decoded mask)``,
        checking the mask's spatial shape against the image (which also settles an index volume against
        channels of a 2D mask in ``"auto"``)."""
        arr, meta = read_mask(mask_path)

        def dec_as(fmt: str) -> M.Decoded:
            try:
                return M.decode(arr, meta, fmt)
            except ValueError as e:
                raise ValueError(f"mask {mask_path}: {e}") from e

        dec = dec_as(mask_format)
        fits = _image_as_channel_first(img, M.spatial_shape(dec))
        if mask_format == "auto" and dec.kind == "channels" and len(dec.images) == 1:
            as_index = _image_as_channel_first(img, arr.shape)
            # both readings fit (e.g. a (2, H, W) image and a (2, H, W) mask): a short leading axis is channels
            if as_index is not None and (fits is None or dec.images[0].shape[0] > 4):
                dec, fits = dec_as("index"), as_index
        if len(dec.images) != 1:
            raise ValueError(f"mask {mask_path} holds {len(dec.images)} stacked masks of shape {dec.images[0].shape}; "
                             "expected one mask per file")
        if fits is not None:
            return fits, dec
        expected = {
            "auto": "an index or colour mask of the image's spatial shape or a channel mask (C, *spatial)",
            "index": "an index mask of the image's spatial shape",
            "onehot": "a channel mask (C, *spatial)",
            "multihot": "a channel mask (C, *spatial)",
            "rgb": "a colour mask (H, W, 3|4) of the image's spatial shape",
        }[mask_format]
        raise ValueError(
            f"shape mismatch: image {img_path.name} has shape {img.shape}, mask {mask_path.name} has shape "
            f"{arr.shape}; expected {expected}"
        )

    @staticmethod
    def _apply_mode(space: M.LabelSpace, mode: str | None) -> tuple[M.LabelSpace, list[str]]:
        """The label space in the requested ``mode`` (``None``: as decided from the masks) and the class
        names the task reports (binary: the foreground class only)."""
        if mode is None or mode == space.mode:
            pass
        elif mode == "multiclass":
            if space.mode == "multilabel":
                raise ValueError("mode='multiclass' needs mutually exclusive classes; in these masks classes overlap "
                                 "(multi-hot channels or mixed colours)")
            space = replace(space, mode="multiclass")
        elif mode == "binary":
            if space.mode == "multilabel":
                raise ValueError(f"mode='binary' needs one mask channel, these masks have {space.num_classes}")
            if space.kind == "index":
                raise ValueError(f"mode='binary' needs masks with labels 0/1, found labels up to {space.values[-1]}")
            raise ValueError(f"mode='binary' needs 2 classes, these masks have {space.num_classes} ({', '.join(space.names)})")
        else:  # multilabel
            if space.kind == "index" or (space.kind == "rgb" and space.rgb_reading == "classes"):
                raise ValueError("mode='multilabel' needs multi-hot masks (C, *spatial) or colour masks read as R/G/B labels "
                                 "(rgb_reading='multilabel'); these are " + ("index masks" if space.kind == "index" else "colour classes"))
            keep = [i for i, v in enumerate(space.values) if v >= 0]  # channels as given, no implicit background
            space = replace(space, mode="multilabel", values=tuple(space.values[i] for i in keep),
                            names=tuple(space.names[i] for i in keep), implicit_background=False)
        names = list(space.names[1:] if space.mode == "binary" else space.names)
        return space, names

    def _draw(self, samples: list[tuple[torch.Tensor, torch.Tensor]], n: int, g: torch.Generator, index: list[int] | None = None):
        xs, ys = [], []
        idx = index if index is not None else torch.randint(len(samples), (n,), generator=g).tolist()
        multiclass = self.mode == "multiclass"
        for i in idx:
            x, y = samples[i]
            if self.patch_size is not None:
                shape = x.shape[1:]
                starts = [int(torch.randint(d - p + 1, (), generator=g)) for d, p in zip(shape, self.patch_size, strict=True)]
                sl = tuple(slice(s, s + p) for s, p in zip(starts, self.patch_size, strict=True))
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
            # written only when not the default, so that the run ids of earlier folder runs stay the same
            **({"ignore_index": self.ignore_index_option} if self.ignore_index_option != "auto" else {}),
            **({"rgb_reading": self.rgb_reading} if self.rgb_reading is not None else {}),
        }
