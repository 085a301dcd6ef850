"""A few validation images of a finished run, for the report: the best and the worst by per-image foreground Dice.

With a run folder (``seglab train --out``) the loop writes ``val_examples.pt`` beside the checkpoints: a plain
dict of tensors (``torch.load(weights_only=True)`` reads it), small whatever the data set::

    index   (K,)      validation indices, best first, then the worst
    dice    (K,)      their per-image foreground Dice (void pixels left out; 1 when neither has foreground)
    image   (K, *P)   the first image channel, normalised to [0, 1]
    target  (K, *P)   class map: multiclass labels; sigmoid modes: 1 + the first channel that is on (0: none)
    pred    (K, *P)   the prediction, coded as ``target``
    void    (K, *P)   bool, the void pixels (the task's ``ignore_index``)

``P`` is the image plane: the spatial shape of 2D samples, the middle slice along the first axis of 3D ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seglab.activations import predict

FILE = "val_examples.pt"


def _class_map(t: torch.Tensor, mode: str) -> torch.Tensor:
    """Multiclass labels as they are; channel masks ``(N, C, *S)`` -> 1 + the first channel on (0: none)."""
    if mode == "multiclass":
        return t.long()
    on = t > 0.5
    first = on.float().argmax(1) + 1
    return torch.where(on.any(1), first, torch.zeros_like(first))


def image_dice(pred: torch.Tensor, y: torch.Tensor, *, mode: str, num_classes: int,
               ignore_index: int | None = None) -> torch.Tensor:
    """Per-image foreground Dice ``(N,)``: the mean over foreground classes (multiclass: 1..C-1; sigmoid modes:
    every channel) present in the prediction or the target; 1 where none is; void pixels left out."""
    if mode == "multiclass":
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        P = torch.stack([(pred == c) & keep for c in range(1, num_classes)], 1)
        T = torch.stack([(y == c) & keep for c in range(1, num_classes)], 1)
    else:
        keep = torch.ones_like(y, dtype=torch.bool) if ignore_index is None else y != ignore_index
        P, T = pred.bool() & keep, (y > 0.5) & keep
    dims = tuple(range(2, P.ndim))
    inter = (P & T).sum(dims).double()
    tot = P.sum(dims).double() + T.sum(dims).double()
    d = torch.where(tot > 0, 2 * inter / tot.clamp_min(1), torch.full_like(tot, float("nan")))
    ok = ~torch.isnan(d)
    mean = torch.where(ok, d, torch.zeros_like(d)).sum(1) / ok.sum(1).clamp_min(1)
    return torch.where(ok.any(1), mean, torch.ones_like(mean))


def _plane(t: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """The image plane of samples ``(K, *S)``: 2D as they are, 3D the middle slice of the first axis."""
    return t if spatial_dims == 2 else t.select(1, t.shape[1] // 2)


@torch.no_grad()
def collect(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, mode: str, num_classes: int,
            spatial_dims: int, ignore_index: int | None = None, k: int = 2, chunk: int = 64) -> dict[str, Any]:
    """The ``k`` best and ``k`` worst validation images of ``model`` (see the module docstring)."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    preds = [predict(model(x[i:i + chunk].to(dev)).float(), mode).cpu() for i in range(0, x.shape[0], chunk)]
    model.train(was)
    pred = torch.cat(preds)
    dice = image_dice(pred, y, mode=mode, num_classes=num_classes, ignore_index=ignore_index)
    order = torch.argsort(dice, descending=True, stable=True)
    k = min(k, (len(order) + 1) // 2)
    idx = torch.cat([order[:k], order[len(order) - k:]]) if len(order) > 1 else order
    img = _plane(x[idx, 0].float(), spatial_dims)
    lo = img.flatten(1).min(1).values.view(-1, *[1] * (img.ndim - 1))
    hi = img.flatten(1).max(1).values.view(-1, *[1] * (img.ndim - 1))
    img = (img - lo) / (hi - lo).clamp_min(1e-12)
    yt = y[idx]
    void = (yt == ignore_index) if ignore_index is not None else torch.zeros_like(yt, dtype=torch.bool)
    if mode != "multiclass":
        void = void.any(1)
    tgt = _class_map(torch.where(yt == ignore_index, torch.zeros_like(yt), yt) if ignore_index is not None else yt, mode)
    return {"index": idx, "dice": dice[idx].float(), "image": img,
            "target": _plane(tgt, spatial_dims).to(torch.int16), "pred": _plane(_class_map(pred[idx], mode), spatial_dims).to(torch.int16),
            "void": _plane(void, spatial_dims)}


def save(examples: dict[str, Any], folder: str | Path) -> Path:
    """Write ``examples`` to ``folder/val_examples.pt`` (atomically)."""
    import io

    from seglab.results import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(examples, buf)
    path = Path(folder) / FILE
    atomic_write_bytes(path, buf.getvalue())
    return path


def load(folder: str | Path) -> dict[str, Any] | None:
    """``folder/val_examples.pt``, or None when the run wrote none (or it is unreadable)."""
    f = Path(folder) / FILE
    if not f.is_file():
        return None
    try:
        d = torch.load(f, map_location="cpu", weights_only=True)
    except Exception:  # a damaged file: the report goes on without it
        return None
    return d if isinstance(d, dict) and "image" in d else None
