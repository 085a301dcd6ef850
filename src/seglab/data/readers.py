"""Read one mask/image file into a NumPy array: PNG/TIFF (Pillow), .npy/.npz (NumPy), .nii/.nii.gz (nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab._extras import MissingExtraError, require

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".npz", ".nii", ".nii.gz")


def file_suffix(path: str | Path) -> str:
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def read_array(path: str | Path) -> np.ndarray:
    """Return the raw array stored in ``path`` (no interpretation of its encoding).

    PNG/TIFF: ``(H, W)`` for greyscale/palette (palette indices, not colours), ``(H, W, 3|4)`` for colour.
    ``.npy``: the array. ``.npz``: the array under key ``"mask"``, ``"arr_0"`` or the only key.
    NIfTI: the voxel array (``(X, Y, Z)`` or more dims), via nibabel.
    Raises ``ValueError`` naming the file when it cannot be read.
    """
    path = Path(path)
    suffix = file_suffix(path)
    try:
        if suffix in (".png", ".tif", ".tiff"):
            Image = require("PIL.Image", f"reading {suffix} masks")

            with Image.open(path) as im:
                if im.mode in ("P", "L", "I", "I;16", "1"):
                    return np.asarray(im)
                return np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB"))
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                for k in ("mask", "label", "arr_0"):
                    if k in keys:
                        return z[k]
                if len(keys) == 1:
                    return z[keys[0]]
                raise ValueError(f"several arrays {keys}; expected one, or one named 'mask'")
        if suffix in (".nii", ".nii.gz"):
            nib = require("nibabel", "reading NIfTI masks")
            return np.asarray(nib.load(str(path)).dataobj)
    except MissingExtraError:
        raise
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    except Exception as e:  # corrupt files raise many types (OSError, zipfile errors, nibabel errors)
        raise ValueError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    raise ValueError(f"cannot read {path}: unknown suffix {suffix!r}; expected one of {MASK_SUFFIXES}")


def read_mask(path: str | Path) -> tuple[np.ndarray, dict]:
    """Like :func:`read_array`, plus what the file itself says about its encoding.

    Returns ``(array, meta)`` with ``meta`` keys: ``"kind"`` (``"image"``, ``"numpy"`` or ``"nifti"``),
    ``"palette"`` (``True`` for a palette PNG/TIFF, whose values are class indices), ``"mode"`` (the Pillow
    mode for images, else ``None``), ``"palette_size"`` (palette images: entries of the colour table, so that
    values outside it can be told apart), ``"spacing"`` (NIfTI: voxel size per spatial axis from the header,
    in the header's units, usually mm). Raises ``ValueError`` naming the file when it cannot be read.
    """
    path = Path(path)
    suffix = file_suffix(path)
    meta: dict = {"kind": {".png": "image", ".tif": "image", ".tiff": "image", ".npy": "numpy", ".npz": "numpy"}.get(suffix, "nifti"), "palette": False, "mode": None}
    if meta["kind"] == "image":
        Image = require("PIL.Image", f"reading {suffix} masks")
        try:
            with Image.open(path) as im:
                meta["mode"] = im.mode
                meta["palette"] = im.mode == "P"
                if meta["palette"]:
                    pal = im.getpalette()
                    meta["palette_size"] = len(pal) // 3 if pal else None
        except Exception as e:
            raise ValueError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    elif meta["kind"] == "nifti" and suffix in (".nii", ".nii.gz"):
        nib = require("nibabel", "reading NIfTI masks")
        try:
            zooms = nib.load(str(path)).header.get_zooms()
            meta["spacing"] = tuple(float(z) for z in zooms[:3])
        except Exception as e:
            raise ValueError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    return read_array(path), meta


def iter_mask_files(path: str | Path) -> list[Path]:
    """All mask files under ``path`` (recursively, sorted), or ``[path]`` for a single file.

    Raises ``FileNotFoundError`` when ``path`` does not exist and ``ValueError`` when a folder holds no file
    with a suffix in :data:`MASK_SUFFIXES`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and file_suffix(p) in MASK_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no mask files found (looked recursively for {', '.join(MASK_SUFFIXES)})")
    return files
