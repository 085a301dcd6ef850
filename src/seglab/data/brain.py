"""Real labelled data: brain tissue from the MNI ICBM152 2009a template shipped inside nilearn's wheel.

nilearn bundles ``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz`` (197 x 233 x 189 voxels, 1 mm,
uint8): a T1-weighted template and grey-/white-matter probability maps (0..255, ``gm + wm <= 255`` everywhere).
They are read with nibabel; nilearn itself is never imported (it is installed with ``--no-deps``), only
located with ``importlib.util.find_spec``. Install with ``pip install --no-deps nilearn`` (or the ``brain``
extra).

Labels (per voxel, from the probability maps ``p_gm = gm / 255``, ``p_wm = wm / 255``):

- soft 3-class: ``[p_other, p_gm, p_wm]`` with ``p_other = 1 - p_gm - p_wm`` (background: outside the brain,
  CSF and anything that is neither tissue — there is no CSF map in the wheel); sums to 1 exactly.
- hard 3-class (``brain-tissue``): the argmax of the soft labels: 0 = background/CSF/other, 1 = grey matter,
  2 = white matter.
- nested multi-label (``brain-tissue-nested``): channel 0 "brain" = ``p_gm + p_wm > 0.5``, channel 1 "white
  matter" = ``p_wm > 0.5``. Since ``p_wm <= p_gm + p_wm``, white matter is inside the brain in every voxel
  (brain ⊃ WM): a genuinely multi-label target, where a softmax would be wrong.

Samples are axial 2D slices (images ``(1, H, W)``: the T1 slice scaled to [0, 1]), optionally padded to a
square and resized to ``size x size`` (area interpolation of the image and of the probabilities, labels
derived after resizing). Only slices where at least ``min_brain_fraction`` of the pixels are brain are used.

Train/validation split by slice range: validation is one contiguous block of ``val_fraction`` of the usable
slices in the middle of the range; ``gap`` slices on each side of it are used by neither split. This is the
honest split available for a single brain, but it is still not independent data: neighbouring slices of one
brain are strongly correlated (and the template is an average of many subjects, smoother than any real
scan), so validation scores measure interpolation between nearby anatomy, not generalisation to new subjects.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seglab._extras import missing, require

from .tasks import Task, make_generator, register_task

FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
CLASS_NAMES = ["background/CSF/other", "grey matter", "white matter"]
NESTED_NAMES = ["brain", "white matter"]
BRAIN_THRESHOLD = 0.5


def nilearn_data_dir() -> Path:
    """Folder holding nilearn's bundled template files, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise missing("nilearn", "the brain-tissue task (its data ships with nilearn)")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "datasets" / "data"
        if all((d / f).is_file() for f in FILES.values()):
            return d
    raise ImportError(f"nilearn is installed but its MNI ICBM152 files ({', '.join(FILES.values())}) were not found under "
                      f"{list(spec.submodule_search_locations)}; reinstall with: pip install --no-deps --force-reinstall nilearn")


@functools.lru_cache(maxsize=1)
def load_volumes() -> dict[str, np.ndarray]:
    """The three volumes as float32 ``(197, 233, 189)`` arrays: ``"t1"`` in [0, 1], ``"gm"``, ``"wm"`` probabilities."""
    nib = require("nibabel", "the brain-tissue task")
    d = nilearn_data_dir()
    return {k: np.asarray(nib.load(str(d / f)).dataobj, dtype=np.float32) / 255.0 for k, f in FILES.items()}


def soft_labels(gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """``[p_other, p_gm, p_wm]`` stacked on a new first axis (clipped so that it sums to 1 exactly)."""
    other = np.clip(1.0 - gm - wm, 0.0, 1.0)
    return np.stack([other, gm, wm]).astype(np.float32)


def _axial(vol: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` -> ``(Z, H=Y, W=X)`` with anterior at the top."""
    return np.ascontiguousarray(np.transpose(vol, (2, 1, 0))[:, ::-1, :])


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Pad ``(N, C, H, W)`` with zeros to a square, then area-resize to ``size x size`` (``None``: no change)."""
    if size is None:
        return x
    h, w = x.shape[-2:]
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    x = torch.nn.functional.pad(x, (left, s - w - left, top, s - h - top))
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area")


class BrainTissueTask(Task):
    """Axial slices of the MNI template with grey/white-matter labels (see the module docstring)."""

    spatial_dims = 2
    in_channels = 1

    def __init__(self, *, size: int | None = 64, soft: bool = False, nested: bool = False, val_fraction: float = 0.2,
                 gap: int = 2, min_brain_fraction: float = 0.02) -> None:
        if size is not None and (not isinstance(size, int) or size < 8):
            raise ValueError(f"size must be an int >= 8 or None, got {size!r}")
        if not 0.0 < val_fraction < 0.9:
            raise ValueError(f"val_fraction must be in (0, 0.9), got {val_fraction}")
        if not isinstance(gap, int) or gap < 0:
            raise ValueError(f"gap must be an int >= 0, got {gap!r}")
        if soft and nested:
            raise ValueError("soft=True applies to the 3-class task; the nested variant has binary channels")
        self.size, self.soft, self.nested, self.val_fraction, self.gap, self.min_brain_fraction = size, soft, nested, val_fraction, gap, min_brain_fraction
        self.name = "brain-tissue-nested" if nested else "brain-tissue"
        self.mode = "multilabel" if nested else "multiclass"
        self.class_names = list(NESTED_NAMES if nested else CLASS_NAMES)
        self.num_classes = len(self.class_names)
        v = load_volumes()  # raises the install hint early
        gm, wm = _axial(v["gm"]), _axial(v["wm"])
        brain_frac = ((gm + wm) > BRAIN_THRESHOLD).mean(axis=(1, 2))
        usable = np.flatnonzero(brain_frac >= min_brain_fraction)
        n = len(usable)
        nv = max(1, int(round(val_fraction * n)))
        start = (n - nv) // 2
        self.val_slices = usable[start:start + nv].tolist()
        self.train_slices = usable[: max(0, start - gap)].tolist() + usable[start + nv + gap:].tolist()
        if not self.train_slices:
            raise ValueError("no training slice left: lower val_fraction or gap")
        self.validation_size = len(self.val_slices)
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _slices(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All slices of a split: images ``(S, 1, H, W)`` and soft probabilities ``(S, 3, H, W)``, cached."""
        if which not in self._cache:
            v = load_volumes()
            idx = self.train_slices if which == "train" else self.val_slices
            t1 = torch.from_numpy(_axial(v["t1"])[idx]).unsqueeze(1)
            probs = torch.from_numpy(soft_labels(_axial(v["gm"])[idx], _axial(v["wm"])[idx])).transpose(0, 1).contiguous()
            img = _resize(t1, self.size)
            p = _resize(probs, self.size)
            p[:, 0] = (1.0 - p[:, 1] - p[:, 2]).clamp_(0.0, 1.0)  # padding is background: other = 1 there
            self._cache[which] = (img.float().contiguous(), p.float().contiguous())
        return self._cache[which]

    def _targets(self, p: torch.Tensor) -> torch.Tensor:
        if self.nested:
            brain = (p[:, 1] + p[:, 2]) > BRAIN_THRESHOLD
            wm = p[:, 2] > BRAIN_THRESHOLD
            return torch.stack([brain, wm], 1).float()
        if self.soft:
            return p.clone()
        return p.argmax(1)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random training slices with random left-right flips; deterministic in ``(seed, step, batch_size)``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        img, p = self._slices("train")
        g = make_generator(seed, step)
        idx = torch.randint(len(img), (batch_size,), generator=g)
        flip = torch.rand(batch_size, generator=g) < 0.5
        x, pp = img[idx].clone(), p[idx].clone()
        x[flip] = x[flip].flip(-1)
        pp[flip] = pp[flip].flip(-1)
        return x, self._targets(pp)

    def validation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every validation slice, in order, without augmentation."""
        img, p = self._slices("val")
        return img.clone(), self._targets(p)

    def training_masks(self):
        """Yield every training slice's target as a NumPy array (for ``seglab advise --task``)."""
        _, p = self._slices("train")
        for i in range(len(p)):
            yield self._targets(p[i:i + 1])[0].numpy()

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "size": self.size, "val_fraction": self.val_fraction, "gap": self.gap,
                               "min_brain_fraction": self.min_brain_fraction}
        if not self.nested:
            cfg["soft"] = self.soft
        return cfg


@register_task("brain-tissue")
def brain_tissue(*, size: int | None = 64, soft: bool = False, val_fraction: float = 0.2, gap: int = 2, min_brain_fraction: float = 0.02) -> BrainTissueTask:
    """3-class brain tissue (background/CSF/other, grey matter, white matter), multiclass; ``soft=True`` for probabilities."""
    return BrainTissueTask(size=size, soft=soft, val_fraction=val_fraction, gap=gap, min_brain_fraction=min_brain_fraction)


@register_task("brain-tissue-nested")
def brain_tissue_nested(*, size: int | None = 64, val_fraction: float = 0.2, gap: int = 2, min_brain_fraction: float = 0.02) -> BrainTissueTask:
    """Nested multi-label variant: channels brain ⊃ white matter (sigmoid per channel)."""
    return BrainTissueTask(size=size, nested=True, val_fraction=val_fraction, gap=gap, min_brain_fraction=min_brain_fraction)
