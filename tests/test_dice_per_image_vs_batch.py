"""Per-image vs batch Dice on images that lack a class: the mechanism (hand-written soft Dice in torch) and a
smoke test of examples/dice_per_image_vs_batch.py (docs/dice_per_image_vs_batch.md)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import seglab

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dice_per_image_vs_batch.py"
S = 1e-5  # seglab's default smooth


def _example():
    name = "seglab_example_dice_per_image_vs_batch"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def hand_soft_dice(p: torch.Tensor, y: torch.Tensor, batch: bool) -> torch.Tensor:
    """``1 - (2 Σ p y + s) / (Σ p + Σ y + s)`` per (image, class) (sums over space) or per class (sums over batch
    and space); ``p``, ``y``: ``(N, C, H, W)``. Written here from the formula, not with seglab."""
    dims = (0, 2, 3) if batch else (2, 3)
    inter, ps, ys = (p * y).sum(dims), p.sum(dims), y.sum(dims)
    return 1 - (2 * inter + S) / (ps + ys + S)


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 6x6 images, classes background / rare. Image 0 lacks the rare class; the net gives it a small false
    positive (p ≈ 0.1 on 2 pixels, ≈ 1e-3 elsewhere). Image 1 holds a 2x2 rare square, predicted at p ≈ 0.95."""
    y = torch.zeros(2, 6, 6, dtype=torch.long)
    y[1, 2:4, 2:4] = 1
    z = torch.zeros(2, 2, 6, 6, dtype=torch.float64)
    z[:, 1] = -7.0
    z[0, 1, 0, :2] = math.log(0.1 / 0.9)
    z[1, 1, 2:4, 2:4] = math.log(0.95 / 0.05)
    return z, y


def test_seglab_dice_equals_the_hand_formula_per_image_and_batch():
    z, y = _case()
    onehot = F.one_hot(y, 2).movedim(-1, 1).double()
    for spec, batch in (("dice", False), ("dice[batch=true]", True)):
        zl = z.clone().requires_grad_(True)
        zh = z.clone().requires_grad_(True)
        got = seglab.get_loss(spec, "multiclass", reduction="none")(zl, y)
        want = hand_soft_dice(zh.softmax(1), onehot, batch)
        assert got.shape == want.shape == ((2, 2) if not batch else (2,))
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        (gl,) = torch.autograd.grad(got.mean(), zl)
        (gh,) = torch.autograd.grad(want.mean(), zh)
        torch.testing.assert_close(gl, gh, rtol=1e-8, atol=1e-12)


def test_absent_class_with_small_false_positive_per_image_vs_batch():
    """Per image: the (image without the class, class) term is ≈ 1 and flat — d/dp = s / (Σp + s)², ~1e-4 here.
    Pooled over the batch: the same false positive costs a few hundredths and d/dp = (2 Σpy + s) / (Σp + Σy + s)²."""
    z, y = _case()
    p = z.softmax(1).requires_grad_(True)
    onehot = F.one_hot(y, 2).movedim(-1, 1).double()
    per_image = hand_soft_dice(p, onehot, batch=False)
    pooled = hand_soft_dice(p, onehot, batch=True)
    fp_mass = float(p[0, 1].detach().sum())
    assert 0.2 < fp_mass < 0.3  # a small false positive: two pixels at 0.1, 34 at ~1e-3
    # value: per image the absent class costs ~1 for this image, pooled only the few hundredths of the batch
    assert per_image[0, 1] > 0.9999
    torch.testing.assert_close(per_image[0, 1], torch.tensor(1 - S / (fp_mass + S), dtype=torch.float64))
    assert pooled[1] < 0.06
    # gradient with respect to the false-positive probabilities of image 0
    (g_img,) = torch.autograd.grad(per_image[0, 1], p)
    (g_pool,) = torch.autograd.grad(pooled[1], p)
    pd = p.detach()
    inter = float((pd[:, 1] * onehot[:, 1]).sum())
    ps, ys = float(pd[:, 1].sum()), float(onehot[:, 1].sum())
    torch.testing.assert_close(g_img[0, 1], torch.full((6, 6), S / (fp_mass + S) ** 2, dtype=torch.float64))
    torch.testing.assert_close(g_pool[0, 1], torch.full((6, 6), (2 * inter + S) / (ps + ys + S) ** 2,
                                                        dtype=torch.float64))
    assert g_img[0, 1, 0, 0] < 1e-3 < 0.05 < g_pool[0, 1, 0, 0]  # pooled pushes the false positive down ~600x harder


class _FixedPrediction(torch.nn.Module):
    """A 'model' whose argmax is a given class map (to test the measures against a hand count)."""

    def __init__(self, pred: torch.Tensor, c: int):
        super().__init__()
        self.logits = F.one_hot(pred, c).movedim(-1, 1).float()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x is the same batch the logits were made for
        return self.logits[: len(x)] + self.w


def test_measures_equal_a_hand_count():
    ex = _example()
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 3, (6, 8, 8), generator=g)
    y[0, :2, :2] = 3
    y[1, 5:, 5:] = 3
    pred = y.clone()
    pred[0, :2, 0] = 1      # image 0 (has class 3): 2 of 4 pixels missed
    pred[2, 0, :3] = 3      # image 2 (no class 3): 3 false-positive pixels
    pred[3, 7, 7] = 3       # image 3 (no class 3): 1 false-positive pixel
    m = ex.measure(_FixedPrediction(pred, 4), torch.zeros(6, 1, 8, 8), y)
    # images 2..5 lack class 3; 2 of them have false positives, 4 pixels in all
    assert m["fp_image_rate"] == pytest.approx(2 / 4)
    assert m["fp_pixels"] == pytest.approx(4 / 4)
    # images with class 3: image 0 Dice 2*2/(2+4), image 1 Dice 1
    assert m["rare_dice_present"] == pytest.approx((4 / 6 + 1) / 2)
    # per-image mean, NaN skipped: images 0, 1 and the two false-positive images (Dice 0); 4 and 5 are 0/0
    assert m["rare_dice_mean"] == pytest.approx((4 / 6 + 1 + 0 + 0) / 4)
    assert m["rare_dice_mean_empty1"] == pytest.approx((4 / 6 + 1 + 0 + 0 + 1 + 1) / 6)
    # pooled Dice of class 3: TP 2 + 9, FP 4, FN 2
    assert m["pooled_dice_3"] == pytest.approx(2 * 11 / (2 * 11 + 4 + 2))


def test_script_runs_with_tiny_settings(tmp_path, capsys):
    ex = _example()
    out = tmp_path / "r.json"
    res = ex.main(["--seeds", "2", "--steps", "2", "--noise", "0.3", "--val", "40", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["settings"].keys() == res["settings"].keys() == {"noise=0.3"}
    s = saved["settings"]["noise=0.3"]
    v = s["validation"]
    assert v["images"] == 40 and v["with_rare_class"] + v["without_rare_class"] == 40 and v["with_rare_class"] > 0
    assert s["separability"]["margin_in_noise_sd"] == pytest.approx((1 / 6) / 0.3)
    assert all(len(s["runs"][k]) == 2 for k in ex.LOSSES)
    assert len(s["differences"]) == len(ex.PAIRS) * len(ex.METRICS)
    assert saved["command"].endswith("--out " + str(out))
    printed = capsys.readouterr().out
    assert "`dice[batch=true]+ce`" in printed and "| dice[batch=true]+ce - dice+ce: fp_image_rate |" in printed
    # --reanalyse trains nothing and recomputes the same differences from the stored runs; --figure writes a PNG
    fig = tmp_path / "f.png"
    again = ex.main(["--reanalyse", "--out", str(out), "--figure", str(fig)])
    assert again["settings"]["noise=0.3"]["differences"] == s["differences"]  # NaN is stored as null
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_script_rejects_bad_options(tmp_path, capsys):
    ex = _example()
    for argv in (["--seeds", "0"], ["--lr", "0"], ["--reanalyse"]):  # the last: --out does not exist
        with pytest.raises(SystemExit) as e:
            ex.main([*argv, "--out", str(tmp_path / "missing.json")])
        assert e.value.code == 2
        assert "--" + argv[0].lstrip("-") in capsys.readouterr().err


def test_doc_table_equals_the_stored_data():
    """docs/dice_per_image_vs_batch.md's results block is the script's table of the committed runs, with the
    differences recomputed from those runs (so no number in it is typed by hand)."""
    ex = _example()
    res = json.loads((ROOT / "docs" / "data" / "dice_per_image_vs_batch.json").read_text())
    stored = {k: s["differences"] for k, s in res["settings"].items()}
    for s in res["settings"].values():
        s["differences"] = ex.differences(s["runs"])
    assert ex._strict_json({k: s["differences"] for k, s in res["settings"].items()}) == stored
    doc = (ROOT / "docs" / "dice_per_image_vs_batch.md").read_text()
    begin, end = "<!-- dice_per_image_vs_batch table: begin -->\n", "\n<!-- dice_per_image_vs_batch table: end -->"
    block = doc[doc.index(begin) + len(begin): doc.index(end)]
    assert block == ex.table(res).rstrip("\n")
    assert res["setup"]["seeds"] == [0, 1, 2, 3, 4] and res["setup"]["steps"] == 500
