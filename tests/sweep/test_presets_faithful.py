"""The chlebus2018-faithful preset: the study's init, BN settings and clipped CCE; packed == single runs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seglab import get_loss
from seglab.kernels import dispatch
from seglab.losses.ce import cross_entropy
from seglab.models import create_model
from seglab.sweep.grid import expand as expand_grid
from seglab.studies.chlebus2018 import FAITHFUL_LOSSES, FAITHFUL_MODEL_KW, FAITHFUL_SEEDS
from seglab.sweep.presets import get_preset
from seglab.train.config import RunSpec
from seglab.train.loop import train_run
from seglab.train.packed import PackedLosses, group_packs, packable, train_pack
from seglab.train.specs import build_loss


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a loaded 2-core machine intra-op threads oversubscribe (measured 20x slower)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _study_cce(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """The study's TF code, transcribed: mean over pixels of -sum_c y_c log(clip(p_c, eps, 1 - eps))."""
    return (-(onehot * probs.clamp(eps, 1 - eps).log()).sum(1)).mean()


# ------------------------------------------------------------------ the preset
def test_faithful_preset_grid():
    g = get_preset("chlebus2018-faithful")
    runs = expand_grid(g)
    per_cell = 3 * 2  # fg ratios x norms
    n_losses = len(FAITHFUL_LOSSES)
    expected = per_cell * n_losses * (FAITHFUL_SEEDS["adam"] + FAITHFUL_SEEDS["sgd"] + 2 * FAITHFUL_SEEDS["sgd_variation"])
    assert len(runs) == expected
    assert {r.loss for r in runs} == set(FAITHFUL_LOSSES) == {"study_cce_clip", "study_dice", "study_dicefg"}
    assert all(r.monitors == FAITHFUL_LOSSES for r in runs)
    assert all({k: r.model_kw[k] for k in FAITHFUL_MODEL_KW} == FAITHFUL_MODEL_KW for r in runs)
    assert all(packable(r) for r in runs)
    adam = {r.seed for r in runs if r.optimizer == "adam"}
    assert adam == set(range(FAITHFUL_SEEDS["adam"]))
    # the current preset is kept beside it, unchanged in its losses
    assert len(get_preset("chlebus2018")["losses"]) == 5
    q = expand_grid(get_preset("chlebus2018-faithful", quick=True))
    assert all(r.steps == 1500 for r in q) and {r.seed for r in q} == {0}


# ------------------------------------------------------------------ the network
def test_glorot_init_zero_biases_and_tf_batch_norm():
    torch.manual_seed(0)
    net = create_model("tiny", in_channels=1, out_channels=2, norm="batch", **{k: v for k, v in FAITHFUL_MODEL_KW.items()})
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.bias is None for c in convs] == [True, True, False]  # no conv bias under BN; the head has one
    assert torch.count_nonzero(convs[2].bias) == 0
    for c in convs:
        out_c, in_c, kh, kw = c.weight.shape
        limit = math.sqrt(6.0 / (in_c * kh * kw + out_c * kh * kw))  # Keras glorot_uniform
        assert float(c.weight.detach().abs().max()) <= limit
        assert float(c.weight.detach().abs().max()) > 0.5 * limit
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(b.momentum == 0.01 and b.eps == 1e-3 for b in bns)
    # BN with TF's settings == the TF formula: y = (x - mean) / sqrt(var + 1e-3); running += 0.01 (batch - running)
    x = torch.randn(3, 4, 5, 5)
    b = bns[0]
    y = b(x)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    torch.testing.assert_close(y, (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-3))
    torch.testing.assert_close(b.running_mean, 0.01 * mean)
    # without a norm the 3x3 convolutions keep their (zero) biases
    plain = create_model("tiny", in_channels=1, out_channels=2, norm=None, **FAITHFUL_MODEL_KW)
    biases = [m.bias for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(bb is not None and torch.count_nonzero(bb) == 0 for bb in biases)


@pytest.mark.parametrize("kw,word", [({"init": "xavier"}, "init"), ({"conv_bias": "maybe"}, "conv_bias"),
                                     ({"bn_momentum": 0.0}, "bn_momentum"), ({"bn_eps": -1.0}, "bn_eps")])
def test_model_option_errors(kw, word):
    with pytest.raises(ValueError, match=word):
        create_model("tiny", in_channels=1, out_channels=2, **kw)


# ------------------------------------------------------------------ the clipped CCE
def test_clipped_cce_is_the_study_formula_and_saturates():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64) * 3
    x[0, 1] += 40.0  # confident (and wrong where the target is background): probabilities below 1e-7
    t = torch.randint(0, 2, (2, 6, 6))
    onehot = F.one_hot(t, 2).permute(0, 3, 1, 2).double()
    loss = get_loss("study_cce_clip", mode="multiclass")
    xr = x.clone().requires_grad_(True)
    got = loss(xr, t)
    ref = _study_cce(torch.softmax(x, 1), onehot)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    assert float(got.detach()) < float(F.cross_entropy(x, t))  # the clip caps every pixel at -log(1e-7)
    # pixels whose target probability is clipped have no gradient (as tf.clip_by_value)
    (g,) = torch.autograd.grad(got, xr)
    p_t = torch.softmax(x, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    clipped = (p_t < 1e-7) | (p_t > 1 - 1e-7)
    assert clipped.any() and (~clipped).any()
    assert torch.all(g.abs().sum(1)[clipped] == 0) and torch.all(g.abs().sum(1)[~clipped] > 0)
    # no fused kernel clips: the fused switch changes nothing
    with dispatch.fused(False):
        torch.testing.assert_close(loss(x, t), got.detach(), rtol=0, atol=0)


def test_clipped_cce_equals_torch_when_nothing_is_clipped_and_gradchecks():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 3, (2, 4, 4))
    t[0, 0, 0] = 5
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    for kw in ({}, {"class_weights": w}, {"label_smoothing": 0.1, "class_weights": w}, {"reduction": "sum"}):
        ref = F.cross_entropy(x, t.clamp_max(2), weight=kw.get("class_weights"),
                              label_smoothing=kw.get("label_smoothing", 0.0), reduction=kw.get("reduction", "mean"))
        got = cross_entropy(x, t.clamp_max(2), mode="multiclass", clip_eps=1e-300, **kw)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    ref = F.cross_entropy(x, t, ignore_index=5)
    torch.testing.assert_close(cross_entropy(x, t, mode="multiclass", ignore_index=5, clip_eps=1e-300), ref)
    yb = (torch.rand(2, 3, 4, 4, dtype=torch.float64) > 0.5).double()
    torch.testing.assert_close(cross_entropy(x, yb, mode="multilabel", clip_eps=1e-300, pos_weight=w),
                               F.binary_cross_entropy_with_logits(x, yb, pos_weight=w.view(-1, 1, 1)))
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, t.clamp_max(2), mode="multiclass", clip_eps=1e-3),
                                    (x,))


def test_clip_eps_in_the_vocabulary_and_its_errors():
    from seglab import format_loss

    assert format_loss(get_loss("study_cce_clip", mode="multiclass")) == "ce[clip_eps=1e-07]"
    assert format_loss(get_loss("ce[clip_eps=1e-07]", mode="multiclass")) == "ce[clip_eps=1e-07]"
    for bad in (0.5, -1e-7, float("nan")):
        with pytest.raises(ValueError, match="clip_eps"):
            cross_entropy(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), mode="multiclass",
                          clip_eps=bad)
    with pytest.raises(TypeError, match="clip_eps"):
        get_loss("ce", mode="multiclass").__class__("multiclass", clip_eps="small")


# ------------------------------------------------------------------ packed == single runs
def test_packed_losses_equal_build_loss_with_the_clipped_cce():
    torch.manual_seed(0)
    R, B, C, H = 3, 2, 2, 8
    logits = torch.randn(B, R * C, H, H, dtype=torch.float64) * 8
    y = (torch.rand(R, B, H, H) > torch.tensor([0.05, 0.5, 0.95]).view(R, 1, 1, 1)).long()
    lg = logits.reshape(B, R, C, -1).permute(1, 2, 0, 3).reshape(R, C, -1)
    V = PackedLosses(FAITHFUL_LOSSES, "multiclass")(lg, y.reshape(R, -1))
    for i, name in enumerate(FAITHFUL_LOSSES):
        fn = build_loss(name, "multiclass")
        for r in range(R):
            torch.testing.assert_close(V[i, r], fn(logits[:, r * C:(r + 1) * C], y[r]), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("norm", ["batch", None])
def test_faithful_pack_equals_single_runs(norm):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfgs = [RunSpec(loss=name, task_kw={"size": 8, "fg_ratio": fg}, model_kw=dict(FAITHFUL_MODEL_KW, norm=norm),
                          seed=s, steps=8, eval_every=4, monitors=list(FAITHFUL_LOSSES), optimizer=o, lr=lr)
                for name, fg, s, o, lr in [("study_cce_clip", 0.95, 0, "sgd", 0.1), ("study_dicefg", 0.95, 1, "sgd", 1e-3),
                                        ("study_dice", 0.05, 2, "sgd", 0.01)]]
        assert len(group_packs(cfgs)) == 1
        P = train_pack(cfgs)
        S = [train_run(c) for c in cfgs]
    finally:
        torch.set_default_dtype(old)
    for p, s in zip(P, S, strict=True):
        assert p.summary["run_id"] == s.summary["run_id"] and p.summary["pack_size"] == 3
        for k in s.steps:
            a, b = torch.tensor(p.steps[k], dtype=torch.float64), torch.tensor(s.steps[k], dtype=torch.float64)
            ok = ~torch.isnan(b)
            assert torch.equal(torch.isnan(a), ~ok)
            torch.testing.assert_close(a[ok], b[ok], rtol=1e-9, atol=1e-12)
        for ea, eb in zip(p.evals, s.evals, strict=True):
            assert abs(ea["mean_dice"] - eb["mean_dice"]) <= 1e-9
