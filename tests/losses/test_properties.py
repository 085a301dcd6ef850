"""Property tests (hypothesis) of the Dice family, plus robustness: empty masks, bf16 autocast, torch.compile."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seglab import get_loss

DICE_FAMILY = [
    ("dice", {}),
    ("dice", {"squared": True}),
    ("dice", {"batch": True, "include_background": False}),
    ("gdice", {}),
    ("tversky", {"alpha": 0.3, "beta": 0.7}),
    ("tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 0.75}),
    ("jaccard", {}),
]


def _applicable(kw, mode):
    """include_background=False is an error for binary mode (one channel): drop it there."""
    return {k: v for k, v in kw.items() if not (mode == "binary" and k == "include_background")}


@st.composite
def problems(draw, mode=None):
    mode = draw(st.sampled_from(["multiclass", "multilabel", "binary"])) if mode is None else mode
    n = draw(st.integers(1, 3))
    c = 1 if mode == "binary" else draw(st.integers(2, 4))
    dims = draw(st.integers(0, 3))
    spatial = tuple(draw(st.integers(1, 4)) for _ in range(dims))
    seed = draw(st.integers(0, 2**16))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, c, *spatial), generator=g, dtype=torch.float64) * scale
    if mode == "multiclass":
        y = torch.randint(0, c, (n, *spatial), generator=g)
    else:
        y = (torch.rand((n, c, *spatial), generator=g) > draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))).double()
    return mode, x, y


@settings(max_examples=40, deadline=None)
@given(problems(), st.sampled_from(DICE_FAMILY))
def test_dice_family_within_unit_interval(problem, case):
    mode, x, y = problem
    name, kw = case
    kw = _applicable(kw, mode)
    v = get_loss(name, mode=mode, **kw)(x, y).item()
    assert -1e-9 <= v <= 1 + 1e-9


@settings(max_examples=40, deadline=None)
@given(problems(), st.sampled_from(DICE_FAMILY))
def test_minimum_at_perfect_prediction(problem, case):
    mode, x, y = problem
    name, kw = case
    kw = _applicable(kw, mode)
    loss = get_loss(name, mode=mode, **kw)
    if mode == "multiclass":
        perfect = torch.nn.functional.one_hot(y, x.shape[1]).movedim(-1, 1).double() * 120 - 60
    else:
        perfect = y * 120 - 60
    best = loss(perfect, y).item()
    assert best <= 1e-6
    assert best <= loss(x, y).item() + 1e-9


@settings(max_examples=30, deadline=None)
@given(problems(mode="multiclass"), st.sampled_from(DICE_FAMILY[:2] + DICE_FAMILY[3:]), st.randoms())
def test_invariant_to_class_permutation(problem, case, rnd):
    _, x, y = problem
    name, kw = case
    c = x.shape[1]
    perm = list(range(c))
    rnd.shuffle(perm)
    perm_t = torch.tensor(perm)
    inv = torch.argsort(perm_t)
    loss = get_loss(name, mode="multiclass", **kw)
    torch.testing.assert_close(loss(x[:, perm_t], inv[y]), loss(x, y))


@settings(max_examples=30, deadline=None)
@given(problems())
def test_batch_equals_per_sample_when_n_is_1(problem):
    mode, x, y = problem
    x, y = x[:1], y[:1]
    for name in ("dice", "jaccard", "tversky", "gdice"):
        a = get_loss(name, mode=mode, batch=True)(x, y)
        b = get_loss(name, mode=mode, batch=False)(x, y)
        torch.testing.assert_close(a, b)


ALL = ["ce", "focal", "dice", "gdice", "tversky", "jaccard", "lovasz", "dice+ce", "focal_tversky"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_no_nan_on_empty_masks_and_all_background(name, mode):
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    if mode == "multiclass":
        targets = [torch.zeros(2, 8, 8, dtype=torch.long)]  # all background
    else:
        targets = [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)]  # empty masks, full masks
    for y in targets:
        loss = get_loss(name, mode=mode)(x, y)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all(), (name, mode)


@pytest.mark.parametrize("name", ALL)
def test_bfloat16_autocast_is_finite_and_accumulates_in_float32(name):
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    img = torch.randn(2, 1, 16, 16)
    t = torch.randint(0, 3, (2, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = conv(img)
        assert logits.dtype == torch.bfloat16
        loss = get_loss(name, mode="multiclass")(logits, t)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
    ref = get_loss(name, mode="multiclass")(logits.float().detach(), t)
    torch.testing.assert_close(loss.detach(), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spec,mode", [("dice+ce", "multiclass"), ("focal+jaccard", "multilabel")])
def test_torch_compile_gives_same_values(spec, mode):
    torch._dynamo.reset()
    x = torch.randn(2, 3, 16, 16)
    t = torch.randint(0, 3, (2, 16, 16)) if mode == "multiclass" else (torch.rand(2, 3, 16, 16) > 0.7).float()
    loss = get_loss(spec, mode=mode)
    x1 = x.clone().requires_grad_(True)
    eager = loss(x1, t)
    eager.backward()
    compiled = torch.compile(lambda a, b: loss(a, b))
    x2 = x.clone().requires_grad_(True)
    out = compiled(x2, t)
    out.backward()
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-7)
