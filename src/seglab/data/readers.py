"""Read one mask/image file into a NumPy array: PNG/TIFF (Pillow), .npy/.npz (NumPy), .nii/.nii.gz (nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
            from PIL import Image

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
            import nibabel as nib

            return np.asarray(nib.load(str(path)).dataobj)
    except ValueError as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    except Exception as e:  # corrupt files raise many types (OSError, zipfile errors, nibabel errors)
        raise ValueError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    raise ValueError(f"cannot read {path}: unknown suffix {suffix!r}; expected one of {MASK_SUFFIXES}")
