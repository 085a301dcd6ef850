"""``seglab compare --fn``: which loss is better in YOUR training loop (here a MONAI-style one).

``run(loss, seed, steps=..., **kw)`` is the function ``seglab compare`` calls for every loss x paired seed: it
gets the built seglab loss module (``seglab.get_loss(spec, mode=...)``) and the seed, trains a small network
with it on tiny synthetic data, and returns the validation Dice per class. Everything that is the user's own
choice lives here: the network (MONAI's ``UNet`` when MONAI imports, else a tiny torch conv net), the
augmentation (random flips), the optimiser and schedule. Seed ``s`` gives every loss the same initial weights
and the same batches, which is what makes the comparison paired.

Run the comparison (a few seconds on a CPU with these options)::

    seglab compare --fn examples/compare_fn_monai.py:run --losses dice+ce,ce --seeds 3 \\
        --fn-opt steps=20 --fn-opt size=16 --out results/compare_fn

The losses are built for ``run.mode`` (multiclass; ``--mode`` overrides it).

Or call the function yourself::

    import seglab
    from compare_fn_monai import run
    run(seglab.get_loss("dice+ce", mode="multiclass"), seed=0, steps=20)   # {"dice": {"disk": ..., "square": ...}}

Tested in tests/compare/test_compare_fn.py.
"""

from __future__ import annotations

import torch

CLASS_NAMES = ("background", "disk", "square")


def synthetic(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images ``(n, 1, size, size)`` with a bright disk (class 1) and a dark square (class 2) on noise, and
    their class maps ``(n, size, size)`` (int64)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(n, size, size, dtype=torch.long)
    q = max(size // 4, 2)
    for i in range(n):
        cy, cx = torch.randint(q, size - q, (2,), generator=generator).tolist()
        r = int(torch.randint(max(q // 2, 1), q + 1, (1,), generator=generator))
        labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        s = max(size // 5, 2)
        sy, sx = torch.randint(0, size - s, (2,), generator=generator).tolist()
        labels[i, sy:sy + s, sx:sx + s] = 2
    images = 0.5 * torch.randn(n, 1, size, size, generator=generator) + (labels == 1).float()[:, None] \
        - (labels == 2).float()[:, None]
    return images, labels


def network(out_channels: int) -> torch.nn.Module:
    """MONAI's UNet when MONAI is installed, else a tiny fully convolutional net."""
    try:
        from monai.networks.nets import UNet
    except Exception:  # MONAI missing (or its optional imports failing): a plain torch net
        return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, out_channels, 1))
    return UNet(spatial_dims=2, in_channels=1, out_channels=out_channels, channels=(8, 16), strides=(2,),
                num_res_units=0)


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Dice of every class over the whole validation set (pooled counts); NaN for a class absent from both."""
    out = {}
    for c in range(num_classes):
        p, t = pred == c, target == c
        den = int(p.sum() + t.sum())
        out[CLASS_NAMES[c]] = 2.0 * int((p & t).sum()) / den if den else float("nan")
    return out


def run(loss: torch.nn.Module, seed: int, steps: int = 100, size: int = 32, batch_size: int = 4, lr: float = 1e-2,
        n_val: int = 16) -> dict[str, dict[str, float]]:
    """Train with ``loss`` for ``steps`` steps, seeded by ``seed``; return ``{"dice": {class: Dice}}`` on a fixed
    validation set (the same for every loss and seed)."""
    torch.manual_seed(seed)                                   # initial weights: the same for every loss
    model = network(len(CLASS_NAMES))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(1000 + seed)         # batches and flips: the same for every loss
    model.train()
    for _ in range(steps):
        x, y = synthetic(batch_size, size, data)
        if bool(torch.rand((), generator=data) < 0.5):       # augmentation: a random left-right flip
            x, y = x.flip(-1), y.flip(-1)
        value = loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    x_val, y_val = synthetic(n_val, size, torch.Generator().manual_seed(12345))
    model.eval()
    with torch.no_grad():
        pred = model(x_val).argmax(1)
    return {"dice": dice_per_class(pred, y_val, len(CLASS_NAMES))}


run.mode = "multiclass"  # type: ignore[attr-defined]  # the mode seglab compare builds the losses for (or --mode)


if __name__ == "__main__":
    import seglab

    for spec in ("dice+ce", "ce"):
        print(spec, run(seglab.get_loss(spec, mode="multiclass"), seed=0, steps=20, size=16))
