"""Tests of the synthetic tasks and the task registry."""

import json
import subprocess
import sys

import pytest
import torch

from seglab.data import Task, create_task, list_tasks, make_generator, register_task

SMALL = {
    "threshold": {"size": 16},
    "shapes": {"size": 32},
    "overlap": {"size": 32},
}


def _check_contract(task: Task, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
    spatial = x.shape[2:]
    assert x.dtype == torch.float32 and x.shape[:2] == (n, task.in_channels)
    assert len(spatial) == task.spatial_dims
    assert len(task.class_names) == task.num_classes
    if task.mode == "multiclass":
        assert y.dtype == torch.int64 and y.shape == (n, *spatial)
        assert y.min() >= 0 and y.max() < task.num_classes
    else:
        assert y.dtype == torch.float32 and y.shape == (n, task.num_classes, *spatial)
        assert set(y.unique().tolist()) <= {0.0, 1.0}
    json.dumps(task.config())
    assert task.config()["name"] == task.name


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", ["threshold", "shapes", "overlap"])
def test_contract_and_determinism(name, spatial_dims):
    task = create_task(name, spatial_dims=spatial_dims, **SMALL[name])
    x1, y1 = task.batch(step=3, batch_size=4, seed=7)
    _check_contract(task, x1, y1, 4)
    x2, y2 = task.batch(step=3, batch_size=4, seed=7)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, _ = task.batch(step=4, batch_size=4, seed=7)
    x4, _ = task.batch(step=3, batch_size=4, seed=8)
    assert not torch.equal(x1, x3) and not torch.equal(x1, x4)
    # a fresh task with the same parameters (config round trip) gives the same data
    again = create_task(**task.config())
    assert torch.equal(again.batch(step=3, batch_size=4, seed=7)[0], x1)
    # global RNG is neither used nor disturbed
    torch.manual_seed(0)
    state = torch.get_rng_state()
    task.batch(step=0, batch_size=2, seed=0)
    assert torch.equal(torch.get_rng_state(), state)


def test_validation_fixed_cached_and_copied():
    task = create_task("threshold", size=8)
    xv, yv = task.validation()
    assert xv.shape == (64, 1, 8, 8) and yv.shape == (64, 8, 8)
    xv.zero_()
    xv2, _ = task.validation()
    assert torch.equal(xv2, create_task("threshold", size=8).validation()[0])
    assert xv2.abs().sum() > 0
    assert not torch.equal(xv2[:4], task.batch(0, 4, 0)[0])


def test_same_batch_in_another_process():
    code = (
        "import torch; from seglab.data import create_task;"
        "x, y = create_task('shapes', size=32).batch(step=5, batch_size=3, seed=11);"
        "print(float(x.double().sum()), int(y.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    x, y = create_task("shapes", size=32).batch(step=5, batch_size=3, seed=11)
    assert float(out[0]) == float(x.double().sum()) and int(out[1]) == int(y.sum())


def test_generator_rule():
    a = torch.rand(3, generator=make_generator(2, 5))
    g = torch.Generator().manual_seed(2 * 1_000_003 + 5)
    assert torch.equal(a, torch.rand(3, generator=g))


@pytest.mark.parametrize("fg_ratio", [0.05, 0.5, 0.95])
def test_threshold_foreground_fraction(fg_ratio):
    task = create_task("threshold", fg_ratio=fg_ratio, size=32)
    x, y = task.batch(step=0, batch_size=16, seed=0)
    assert abs(y.float().mean().item() - fg_ratio) < 0.02
    assert torch.equal(y, (x[:, 0] > 1 - fg_ratio).long())
    assert x.min() >= 0 and x.max() < 1
    assert task.class_names == ["background", "foreground"] and task.num_classes == 2


def test_shapes_rare_class_and_exclusive():
    task = create_task("shapes", num_classes=4, size=64)
    _, y = task.validation()
    counts = torch.bincount(y.flatten(), minlength=4).float()
    frac = counts / counts.sum()
    assert (frac[1:] > 0).all()
    assert frac[3] < 0.01 and frac[3] * 5 < min(frac[1], frac[2])
    present = (y == 3).flatten(1).any(1).float().mean()
    assert 0.1 < present < 0.5
    # exclusive by construction: a class map; one-hot sums to one everywhere
    onehot = torch.nn.functional.one_hot(y, 4)
    assert (onehot.sum(-1) == 1).all()
    # intensities separate the classes (learnable): class means ordered
    x, y = task.batch(0, 8, 0)
    means = [x[:, 0][y == k].mean().item() for k in range(4) if (y == k).any()]
    assert means == sorted(means)


def test_shapes_custom_frequencies():
    task = create_task("shapes", num_classes=3, size=32, frequencies=[1.0, 0.0])
    _, y = task.batch(0, 8, 0)
    assert (y == 1).flatten(1).any(1).all() and not (y == 2).any()


def test_overlap_channels_overlap():
    task = create_task("overlap", size=64)
    assert task.mode == "multilabel" and task.class_names == ["plate", "code", "spot"] and task.in_channels == 2
    x, y = task.validation()
    plate, code = y[:, 0].bool(), y[:, 1].bool()
    assert (plate & code).any()
    assert not (code & ~plate).any()  # the code is printed on the plate
    assert code.sum() < plate.sum()
    spot_present = y[:, 2].flatten(1).any(1).float().mean()
    assert 0.05 < spot_present < 0.5
    assert create_task("overlap", size=32, rare_fraction=0).num_classes == 2


def test_bad_parameters_raise_before_data():
    with pytest.raises(ValueError, match=r"fg_ratio must be in the open interval \(0, 1\), got 1\.5"):
        create_task("threshold", fg_ratio=1.5)
    with pytest.raises(ValueError, match=r"open interval \(0, 1\), got 0"):
        create_task("threshold", fg_ratio=0)
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3, got 4"):
        create_task("shapes", spatial_dims=4)
    with pytest.raises(ValueError, match=r"num_classes - 1 = 3 values\), got 2"):
        create_task("shapes", num_classes=4, frequencies=[0.5, 0.5])
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        create_task("shapes", num_classes=1)
    with pytest.raises(ValueError, match=r"rare_fraction must be in \[0, 1\)"):
        create_task("overlap", rare_fraction=1.0)
    with pytest.raises(ValueError, match="noise must be"):
        create_task("overlap", noise=-1)
    with pytest.raises(ValueError, match="did you mean 'threshold'"):
        create_task("treshold")
    with pytest.raises(ValueError, match=r"'fg_ration' \(did you mean 'fg_ratio'\?\)"):
        create_task("threshold", fg_ration=0.1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        create_task("threshold").batch(step=0, batch_size=0, seed=0)


def test_register_task():
    class Constant(Task):
        name = "test-constant"
        num_classes = 2
        class_names = ["a", "b"]

        def generate(self, n, generator):
            return torch.zeros(n, 1, 4, 4), torch.zeros(n, 4, 4, dtype=torch.long)

    register_task("test-constant")(Constant)
    assert {"threshold", "shapes", "overlap", "folder", "test-constant"} <= set(list_tasks())
    x, y = create_task("test-constant").batch(0, 2, 0)
    assert x.shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="already registered"):
        register_task("test-constant")(lambda: None)


def test_unet_learns_threshold():
    from seglab.models import create_model

    torch.manual_seed(0)
    task = create_task("threshold", fg_ratio=0.3, size=16)
    net = create_model("unet", in_channels=1, out_channels=task.num_classes, depth=2, base_width=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xv, yv = task.validation()
    loss_fn = torch.nn.CrossEntropyLoss()

    def val_loss():
        net.eval()
        with torch.no_grad():
            return loss_fn(net(xv), yv).item()

    before = val_loss()
    net.train()
    for step in range(40):
        x, y = task.batch(step, 16, seed=0)
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    after = val_loss()
    assert after < 0.5 * before, (before, after)


def test_threshold_invert_feeds_one_minus_x_with_the_same_labels():
    plain = create_task("threshold", fg_ratio=0.95, size=16)
    inv = create_task("threshold", fg_ratio=0.95, size=16, invert=True)
    x, y = plain.batch(step=3, batch_size=4, seed=1)
    xi, yi = inv.batch(step=3, batch_size=4, seed=1)
    assert torch.equal(y, yi)
    assert torch.allclose(xi, 1.0 - x)
    # foreground (95 % of pixels) is now the input below 0.95, background the brightest 5 %
    assert xi[:, 0][yi == 1].max() < 0.95 + 1e-6 and xi[:, 0][yi == 0].min() > 0.95 - 1e-6
    # the config (and so every existing run id) is unchanged when invert is off
    assert "invert" not in plain.config() and inv.config()["invert"] is True
    with pytest.raises(ValueError, match="invert"):
        create_task("threshold", invert="yes")


def test_threshold_invert_from_the_command_line_option_parser():
    from seglab._options import parse_kv

    assert create_task("threshold", **parse_kv(["invert=true"], "--task-opt")).invert is True
