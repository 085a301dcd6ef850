"""tools/regenerate.py: every study number in README/docs equals the one regenerated from data/study/."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("seglab_regenerate", ROOT / "tools" / "regenerate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


regen = _tool()


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a loaded 2-core machine intra-op threads oversubscribe (measured 20x slower)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_readme_and_docs_numbers_equal_the_regenerated_ones():
    changed = regen.run(check=True)
    assert not changed, ("these blocks differ from the numbers regenerated from data/study/ "
                         f"(run `python tools/regenerate.py`): {changed}")


def test_every_block_has_a_generator_and_is_used():
    used = set()
    for f in regen.FILES:
        p = ROOT / f
        if p.exists():
            text = p.read_text()
            opened = re.findall(r"<!-- regen:([a-z0-9_\-]+) -->", text)
            closed = re.findall(r"<!-- /regen:([a-z0-9_\-]+) -->", text)
            assert sorted(opened) == sorted(closed), f"{f}: unbalanced regen markers"
            used |= set(opened)
    assert used <= set(regen.BLOCKS)
    assert {"faithful-verdicts", "faithful-cells", "faithful-fisher", "faithful-o4"} <= used


def test_check_catches_an_edited_number(tmp_path):
    doc = tmp_path / "docs" / "experiments.md"
    doc.parent.mkdir()
    text = (ROOT / "docs" / "experiments.md").read_text()
    doc.write_text(text)
    assert regen.run(check=True, files=["docs/experiments.md"], root=tmp_path) == []
    # change one digit inside the first block that holds one: the check names the block, the rewrite restores it
    m = re.search(r"<!-- regen:([a-z0-9_\-]+) -->\n[^<]*?(\d)", text)
    assert m, "docs/experiments.md has no regen block with a number"
    bad = text[:m.start(2)] + str((int(m.group(2)) + 1) % 10) + text[m.end(2):]
    doc.write_text(bad)
    assert regen.run(check=True, files=["docs/experiments.md"], root=tmp_path) == [f"docs/experiments.md:{m.group(1)}"]
    regen.run(check=False, files=["docs/experiments.md"], root=tmp_path)
    assert doc.read_text() == text


def test_labels_and_rules():
    base = {"final_mean_dice": "0.95", "final_bg_dice": "0.9", "final_fg_dice": "0.99", "q3_mean_dice": "0.94",
            "final_accuracy": "0.999", "majority": "0.95"}
    assert regen.run_label(base) == "converged"
    assert regen.run_label({**base, "final_mean_dice": "0.487", "final_bg_dice": "0.0"}) == "collapsed"
    assert regen.run_label({**base, "final_mean_dice": "0.85", "q3_mean_dice": "0.80"}) == "slow"
    assert regen.run_label({**base, "final_mean_dice": "0.85", "q3_mean_dice": "0.845"}) == "stuck"
    assert regen.converged(base, "accuracy") and not regen.converged({**base, "final_accuracy": "0.99"}, "accuracy")
    assert regen.converged(base, 0.95) and not regen.converged(base, 0.96)


def test_extract_from_a_results_folder(tmp_path):
    """A results folder with two synthetic runs (records of 400 steps) -> one CSV row per run, the early window
    (steps 100-300) and the label computed from the records as written."""
    import math

    from seglab.results import ResultsStore
    from seglab.studies.chlebus2018 import FAITHFUL_LOSSES, FAITHFUL_MODEL_KW
    from seglab.train.config import RunSpec
    from seglab.train.loop import summarize
    from seglab.train.record import RunRecord

    store = ResultsStore(tmp_path / "r")
    cfgs, results = [], []
    for k, (loss, seed) in enumerate((("study_dicefg", 0), ("study_cce_clip", 1))):
        c = RunSpec(loss=loss, task_kw={"size": 8, "fg_ratio": 0.5}, model_kw=dict(FAITHFUL_MODEL_KW, norm=None),
                      seed=seed, steps=400, eval_every=100, monitors=list(FAITHFUL_LOSSES))
        n = 400
        rec = {"step": list(range(n)), "train_loss": [1.0 / (1 + s) for s in range(n)]}
        for j, m in enumerate(FAITHFUL_LOSSES):
            rec[f"loss/{m}"] = [0.5 + 0.001 * j * s for s in range(n)]
            rec[f"gnorm/{m}"] = [math.sin(0.1 * s + j + k) + 2.0 for s in range(n)]
        dices = [(0.5, 0.5), (0.7, 0.72), (0.8, 0.85), (0.86, 0.9), (0.87, 0.93)] if k == 0 else \
                [(0.0, 0.66)] * 5
        evals = [{"step": 100 * i, "accuracy": 0.9, "majority": 0.5, "dice": list(d), "iou": list(d),
                  "mean_dice": sum(d) / 2, "fg_dice": d[1], "mean_iou": sum(d) / 2} for i, d in enumerate(dices)]
        res = RunRecord(spec=c, steps=rec, evals=evals)
        res.summary = summarize(c, rec, evals, status="finished", steps_done=n, diverged_step=None, wall_s=1.0,
                                class_names=["background", "foreground"])
        cfgs.append(c)
        results.append(res)
    store.write_config({"name": "t"}, cfgs)
    for r in results:
        store.write_run(r)
    out = tmp_path / "runs.csv"
    assert regen.extract(tmp_path / "r", out) == 2
    rows = {r["loss"]: r for r in csv.DictReader(out.open())}
    for res in results:
        r = rows[res.spec.loss]
        g = res.steps["gnorm/study_cce_clip"][100:301]
        assert float(r["gn_early_mean_cce"]) == pytest.approx(sum(g) / len(g), rel=1e-5)
        assert float(r["gn_early_max_cce"]) == pytest.approx(max(g), rel=1e-5)
        allg = res.steps["gnorm/study_dicefg"]
        assert float(r["gn_mean_dicefg"]) == pytest.approx(sum(allg) / len(allg), rel=1e-5)
        assert float(r["final_mean_dice"]) == pytest.approx(res.summary["final_mean_dice"], rel=1e-5)
        assert r["q3_step"] == "300" and r["norm"] == "none" and r["steps"] == "400"
    assert rows["study_dicefg"]["label"] == "converged"  # 0.9 at the end
    assert rows["study_cce_clip"]["label"] == "collapsed"  # background never predicted


def _early_row(seed: int, fg: float, g: float, norm: str = "none", loss: str = "study_dicefg") -> dict[str, str]:
    return {"optimizer": "adam", "lr": "0.001", "momentum": "0", "norm": norm, "fg_ratio": str(fg), "loss": loss,
            "seed": str(seed), "gn_early_mean_dicefg": str(g), "gn_early_mean_cce": str(g), "gn_early_mean_dice": str(g)}


@pytest.mark.parametrize("inverted_like, verdict", [("x95", "foreground fraction: lower at 95 %; input at 95 % fg: "
                                                             "inconclusive"),
                                                     ("x5", "foreground fraction: lower at 95 %; input at 95 % fg: "
                                                            "higher on 1 − x")])
def test_seed002_verdict_follows_the_paired_intervals(inverted_like, verdict):
    """x at 5 % fg has large norms, x at 95 % small ones; the inverted runs copy one of them (plus noise), and the
    verdict must say, under the plan (sign-flip p, Holm within the family, t-interval), which factor changes it;
    a difference not shown is "inconclusive", never "the same"."""
    import random

    rnd = random.Random(0)
    plain, inv = [], []
    for s in range(10):
        g5, g95 = 1.0 + 0.1 * rnd.random(), 0.1 + 0.01 * rnd.random()
        plain += [_early_row(s, 0.05, g5), _early_row(s, 0.95, g95)]
        like = g95 if inverted_like == "x95" else g5
        inv.append(_early_row(s, 0.95, like * (1 + 0.02 * (rnd.random() - 0.5))))
    d = {regen.FAITHFUL: [], regen.EARLY_RUNS: plain, regen.INVERTED: inv, regen.LONG: [], regen.INIT: []}
    v = regen._inverted_verdict(d)
    assert v["verdict"].startswith(verdict)
    assert "n = 10" in v["text"] and len(v["rows"]) == 30 and "not the input" not in v["verdict"]
    table = regen.block_inverted(d)
    assert table.count("\n") == 3  # header, rule and the DICEFG no-BN row (the only cell with all four)


def test_compare_blocks_equal_scipy_on_the_committed_results():
    """Every committed `seglab compare --json` result: each paired difference recomputed from the per-seed Dice with
    scipy (Student-t interval), and the rendered block shows it."""
    import json

    from scipy import stats

    files = sorted((ROOT / "data" / "compare").glob("*.json"))
    assert {f.stem for f in files} == set(regen.COMPARE.values())
    for f in files:
        c = json.loads(f.read_text())
        block = [b for b, n in regen.COMPARE.items() if n == f.stem][0]
        text = regen.BLOCKS[block]({})
        by_label = {r["label"]: r for r in c["losses"]}
        base = [r for r in c["losses"] if c["baseline"] in (r["label"], r["spec"])][0]
        for x in c["differences"]:
            a = by_label[x["a"]]
            k = x["metric"][len("dice["):-1] if x["metric"].startswith("dice[") else None
            va = a["per_class"][k]["per_seed"] if k else a["fg_dice"]["per_seed"]
            vb = base["per_class"][k]["per_seed"] if k else base["fg_dice"]["per_seed"]
            d = [p - q for p, q in zip(va, vb, strict=True)]
            n = len(d)
            mean = sum(d) / n
            sd = stats.tstd(d) if n > 1 else 0.0
            half = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
            assert x["mean"] == pytest.approx(mean, abs=1e-9)
            assert x["low"] == pytest.approx(mean - half, abs=1e-9) and x["high"] == pytest.approx(mean + half, abs=1e-9)
            assert f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]" in text


def test_seed002_tests_and_bn_accuracy_follow_the_plan():
    """The seed-002 family and the BN-accuracy family: each sign-flip p recomputed by brute force over all 2^n sign
    patterns, Holm by hand, the verdict from the Holm p and the t-interval (and, for accuracy, TOST within 0.01)."""
    import itertools

    from scipy import stats

    def brute(d):
        obs = abs(sum(d))
        hits = sum(abs(sum(s * x for s, x in zip(signs, d, strict=True))) >= obs - 1e-12 * sum(map(abs, d))
                   for signs in itertools.product((1, -1), repeat=len(d)))
        return hits / 2 ** len(d)

    def holm(ps):
        order = sorted(range(len(ps)), key=lambda i: ps[i])
        out, run = [0.0] * len(ps), 0.0
        for rank, i in enumerate(order):
            run = max(run, min(1.0, (len(ps) - rank) * ps[i]))
            out[i] = run
        return out

    d = regen.load_all()
    for tests in (regen._seed002_tests(d), regen._bn_accuracy_tests(d)):
        assert tests
        assert [t["holm"] for t in tests] == pytest.approx(holm([t["p"] for t in tests]))
        for t in tests:
            assert t["holm"] >= t["p"]
            if "verdict" in t:
                decisive = t["holm"] < 0.05 and (t["low"] > 0 or t["high"] < 0)
                expect = ("better" if t["low"] > 0 else "worse") if decisive else (
                    "equivalent" if t["tost"] < 0.05 else "inconclusive")
                assert t["verdict"] == expect
    fam = regen._seed002_tests(d)
    assert len(fam) == 8
    by = {(t["norm"], t["name"]): t for t in fam}
    t = by[("none", regen.SEED002_TESTS[0][0])]  # the input effect at 5 % fg, no BN
    assert f"{t['mean']:+.3f}" == "+0.058" and regen._direction(t) == "higher"
    col = "gn_early_mean_dicefg"
    sel = {"opt": "Adam lr 0.001", "norm": "none", "loss": "study_dicefg", "fg": 0.05}
    x = {int(r["seed"]): float(r[col]) for r in regen.select(d[regen.EARLY_RUNS], **sel)}
    y = {int(r["seed"]): float(r[col]) for r in regen.select(d[regen.INVERTED], **sel)}
    diff = [y[s] - x[s] for s in sorted(x)]
    assert t["p"] == pytest.approx(brute(diff))
    half = stats.t.ppf(0.975, len(diff) - 1) * stats.tstd(diff) / len(diff) ** 0.5
    assert t["low"] == pytest.approx(sum(diff) / len(diff) - half)
    acc = regen._bn_accuracy_tests(d)
    assert len(acc) == 18 and not any(a["verdict"] == "better" for a in acc)
    assert "not supported" in regen._bn_accuracy_verdict(d)["verdict"]
