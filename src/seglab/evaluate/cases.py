"""Pair prediction and ground-truth files by case name, and read one pair as label tensors.

A case's name is its path relative to the folder, without the mask suffix (``a/case_01.nii.gz`` -> ``a/case_01``).
nnU-Net's channel suffix on images (``_0000``) is not stripped: predictions and labels carry none.
Both files of a case are read with :func:`seglab.data.readers.read_mask`; an index label map (PNG/TIFF grey or
palette, ``.npy``/``.npz``, NIfTI) is one image ``(*spatial)``. Spacing comes from the ground truth's NIfTI header
unless ``spacing`` is given (``--spacing``), else 1 per axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seglab.data.readers import MASK_SUFFIXES, file_suffix, iter_mask_files, read_mask


@dataclass(frozen=True)
class CasePair:
    """One case: its name and the two files."""

    name: str
    pred: Path
    gt: Path


def case_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without its mask suffix (``.nii.gz`` counts as one)."""
    rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
    return rel[: len(rel) - len(file_suffix(path))]


def pair_cases(pred_dir: str | Path, gt_dir: str | Path) -> list[CasePair]:
    """The cases present in both folders, sorted by name.

    Raises ``ValueError`` naming the unpaired cases (up to five of each side) when the two folders do not hold
    the same case names, or a name that occurs twice in one folder (``a.png`` and ``a.npy``).
    """
    sides = {}
    for label, root in (("prediction", Path(pred_dir)), ("ground truth", Path(gt_dir))):
        names: dict[str, Path] = {}
        for f in iter_mask_files(root):
            n = case_name(f, root)
            if n in names:
                raise ValueError(f"{root}: case {n!r} occurs twice ({names[n].name} and {f.name}); keep one file per case")
            names[n] = f
        sides[label] = names
    pred, gt = sides["prediction"], sides["ground truth"]
    only_p, only_g = sorted(set(pred) - set(gt)), sorted(set(gt) - set(pred))
    if only_p or only_g:
        def few(x: list[str]) -> str:
            return ", ".join(x[:5]) + (f" and {len(x) - 5} more" if len(x) > 5 else "")
        parts = ([f"{len(only_p)} prediction(s) without ground truth ({few(only_p)})"] if only_p else []) + \
                ([f"{len(only_g)} ground truth(s) without prediction ({few(only_g)})"] if only_g else [])
        raise ValueError(f"{pred_dir} and {gt_dir} do not pair: " + "; ".join(parts))
    return [CasePair(n, pred[n], gt[n]) for n in sorted(pred)]


def _labels(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and file_suffix(path) in (".png", ".tif", ".tiff"):
        raise ValueError(f"{path}: a colour image; evaluate reads index label maps (grey or palette PNG, .npy, NIfTI)")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{path}: labels must be whole numbers (a label map), got {arr.dtype} values")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{path}: negative label {int(arr.min())}")
    return arr.astype(np.int64, copy=False)


def read_pair(case: CasePair, spacing: tuple[float, ...] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]]:
    """``(pred, gt, spacing)``: int64 label maps ``(1, *spatial)`` of one case and the spacing to use.

    Raises ``ValueError`` naming the case when the shapes differ or a file is not a label map.
    """
    p, _ = read_mask(case.pred)
    g, meta = read_mask(case.gt)
    p, g = _labels(p, case.pred), _labels(g, case.gt)
    if p.shape != g.shape:
        raise ValueError(f"case {case.name!r}: prediction {case.pred.name} has shape {p.shape}, ground truth "
                         f"{case.gt.name} has {g.shape}")
    if spacing is not None:
        if len(spacing) != g.ndim:
            raise ValueError(f"--spacing has {len(spacing)} values but case {case.name!r} has {g.ndim} spatial axes")
        sp: tuple[float, ...] = tuple(float(s) for s in spacing)
    else:
        header = meta.get("spacing")
        sp = tuple(float(s) for s in header[: g.ndim]) if header and len(header) >= g.ndim else (1.0,) * g.ndim
    return torch.from_numpy(p)[None], torch.from_numpy(g)[None], sp


__all__ = ["CasePair", "MASK_SUFFIXES", "case_name", "pair_cases", "read_pair"]
