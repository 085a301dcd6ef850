"""A MONAI training loop with a seglab loss, as MONAI users write it.

MONAI's loaders give images and labels as ``MetaTensor``s, the labels as float ``(N, 1, H, W)`` class maps. A
seglab loss takes them as they come — no ``AsDiscrete(to_onehot=...)``, no ``.long()``, no ``squeeze(1)`` — and
equals MONAI's ``DiceCELoss(to_onehot_y=True, softmax=True)`` on the same inputs (docs/peers.md). The loop also
shows ``mask=``: the border pixels of every image (a padding region, say) are left out of the loss.

Run: ``python examples/monai_loop.py`` (a few seconds on a CPU). Tested in tests/test_examples.py.
"""

from __future__ import annotations

import torch
from monai.data import DataLoader, Dataset
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped

import seglab


def synthetic_items(n: int, size: int = 32, seed: int = 0) -> list[dict]:
    """Images with a bright disk (class 1) and a dark square (class 2) on noise; labels as float class maps."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    items = []
    for _ in range(n):
        cy, cx, r = (torch.randint(8, size - 8, (2,), generator=g).tolist() + [int(torch.randint(4, 7, (1,), generator=g))])
        label = torch.zeros(size, size)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        sy, sx = torch.randint(2, size - 8, (2,), generator=g).tolist()
        label[sy:sy + 6, sx:sx + 6] = 2
        image = 0.3 * torch.randn(size, size, generator=g) + (label == 1).float() - (label == 2).float()
        items.append({"image": image.numpy(), "label": label.numpy()})  # as a reader would give them
    return items


def main(steps: int = 30, batch_size: int = 4, seed: int = 0) -> list[float]:
    """Train a small MONAI UNet for ``steps`` steps with ``dice+ce``; returns the loss of every step."""
    torch.manual_seed(seed)
    transforms = Compose([EnsureChannelFirstd(keys=["image", "label"], channel_dim="no_channel"),
                          EnsureTyped(keys=["image", "label"])])  # -> MetaTensors (1, H, W), float labels
    loader = DataLoader(Dataset(synthetic_items(16, seed=seed), transform=transforms), batch_size=batch_size,
                        shuffle=True)
    model = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16, 32), strides=(2, 2), num_res_units=0)
    loss_fn = seglab.get_loss("dice+ce", mode="multiclass")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses: list[float] = []
    while len(losses) < steps:
        for batch in loader:
            image, label = batch["image"], batch["label"]      # MetaTensor (N, 1, H, W), label float (N, 1, H, W)
            mask = torch.zeros_like(label, dtype=torch.bool)
            mask[..., 2:-2, 2:-2] = True                        # the 2-pixel border counts for nothing
            loss = loss_fn(model(image), label, mask=mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach().item())
            if len(losses) == steps:
                break
    return losses


if __name__ == "__main__":
    values = main()
    print(f"dice+ce: first step {values[0]:.3f}, last step {values[-1]:.3f}")
