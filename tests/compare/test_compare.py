"""seglab compare: ablation specs, paired differences read back from the runs, and one-line CLI errors."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from seglab.cli import main
from seglab.compare import ablations, compare
from seglab.results import ResultsStore

FORBIDDEN = ("as good as", "on par", "does as well", "no difference", "no evidence of a difference")


def _brute_signflip(d):
    """Two-sided sign-flip p by listing every sign pattern."""
    import itertools

    obs, tol = abs(sum(d)), 1e-12 * sum(abs(x) for x in d)
    signs = list(itertools.product((1, -1), repeat=len(d)))
    return sum(abs(sum(s * x for s, x in zip(sg, d, strict=True))) >= obs - tol for sg in signs) / len(signs)


ADVISED = "dice[batch=true,class_weights=[0.2,1.0,2.0],include_background=false] + ce[class_weights=[0.2,1.0,2.0]]"


class TestAblations:
    def test_one_factor_at_a_time(self):
        a = ablations(ADVISED, "multiclass")
        assert a["CE weights"] == "dice[batch=true,class_weights=[0.2,1.0,2.0],include_background=false] + ce"
        assert a["Dice weights"] == "dice[batch=true,include_background=false] + ce[class_weights=[0.2,1.0,2.0]]"
        assert a["background exclusion"] == "dice[batch=true,class_weights=[0.2,1.0,2.0]] + ce[class_weights=[0.2,1.0,2.0]]"
        assert a["batch Dice"] == "dice[class_weights=[0.2,1.0,2.0],include_background=false] + ce[class_weights=[0.2,1.0,2.0]]"
        assert a["Dice term"] == "ce[class_weights=[0.2,1.0,2.0]]"
        assert a["CE term"] == "dice[batch=true,class_weights=[0.2,1.0,2.0],include_background=false]"
        assert a["none (plain)"] == "dice + ce"
        import seglab

        for spec in a.values():  # every variant is a valid loss
            seglab.get_loss(spec, "multiclass")

    def test_the_advised_loss_has_no_dice_weights_arm(self):
        """advise puts class weights in the CE term only (plan amendment 6): --ablate advised removes them there,
        and has no "Dice weights" arm to train."""
        from seglab.advise import advise

        m = np.zeros((4, 16, 16), np.int64)
        m[:, :4] = 1
        m[:2, 10:12, 10:12] = 2
        a = ablations(advise(list(m)).loss_spec, "multiclass")
        assert "Dice weights" not in a and "class_weights" not in a["CE weights"]
        assert "class_weights" in a["Dice term"] and "class_weights" not in a["CE term"]

    def test_nothing_to_remove(self):
        assert ablations("ce", "multiclass") == {}
        assert set(ablations("dice + ce", "multiclass")) == {"Dice term", "CE term"}

    def test_multilabel_pos_weight(self):
        a = ablations("dice + ce[pos_weight=[3.0,5.0]]", "multilabel")
        assert a["CE weights"] == "dice + ce"

    def test_invalid_spec(self):
        with pytest.raises(ValueError):
            ablations("dcie + ce", "multiclass")


SMALL = dict(task="shapes", task_kw={"size": 16, "num_classes": 3}, model="tiny", steps=6, batch_size=2, workers=1)


def test_paired_differences_from_the_runs(tmp_path):
    cmp = compare(["dice + ce", "ce"], seeds=3, out=tmp_path / "c", **SMALL)
    d = cmp.to_dict()
    assert d["baseline"] == "dice + ce" and d["schema_version"] == 2 and d["seglab_version"]
    assert d["margin"] == 0.01 and d["families"] == {"fg_dice": 1, "dice[class]": 3}
    assert [r["rank"] for r in d["losses"]] == [1, 2]
    # recompute the foreground-Dice differences from the stored run summaries, independently of compare
    store = ResultsStore(tmp_path / "c")
    fg = {}
    for s in store.summaries():
        fg[(s["config"]["loss"], s["config"]["seed"])] = s["final_fg_dice"]
    diff = np.array([fg[("ce", k)] - fg[("dice + ce", k)] for k in range(3)])
    row = next(x for x in d["differences"] if x["metric"] == "fg_dice")
    assert row["a"] == "ce" and row["b"] == "dice + ce" and row["n_pairs"] == 3
    assert math.isclose(row["mean"], diff.mean(), abs_tol=1e-12)
    if diff.std(ddof=1) > 0:  # t-interval: mean +- t(0.975, 2) * sd / sqrt(3); t(0.975, 2) = 4.302653
        half = 4.302652729749464 * diff.std(ddof=1) / math.sqrt(3)
        assert math.isclose(row["low"], diff.mean() - half, abs_tol=1e-9)
        assert math.isclose(row["high"], diff.mean() + half, abs_tol=1e-9)
    # 3 pairs: the sign-flip p cannot go below 0.25, so never better/worse whatever the interval says
    assert row["p_raw"] == pytest.approx(_brute_signflip(list(diff))) and row["p_raw"] >= 0.25
    assert row["verdict"] in ("equivalent", "inconclusive")
    assert row["disagreement"] == (not row["low"] <= 0 <= row["high"])
    assert "cannot go below p = 0.25" in row["summary"]
    # one difference per class besides the foreground mean, written to compare.json
    assert {x["metric"] for x in d["differences"]} == {"fg_dice", "dice[background]", "dice[shape1]", "dice[shape2]"}
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["differences"] == json.loads(cmp.to_json())["differences"]
    text, html = cmp.text(), cmp.html()
    assert "paired differences" in text and "<table>" in html and "p (Holm)" in html
    assert f"fg_dice: ce vs dice + ce: {row['verdict']}" in text
    for phrase in FORBIDDEN:
        assert phrase not in text.lower() and phrase not in html.lower() and phrase not in cmp.to_json().lower()
    # a rerun reuses the finished runs and gives the same numbers
    again = compare(["dice + ce", "ce"], seeds=3, out=tmp_path / "c", **SMALL)
    assert json.loads(again.to_json())["differences"] == json.loads(cmp.to_json())["differences"]


def test_verdicts_of_a_run_recomputed_with_scipy(tmp_path):
    """A run whose losses differ (Dice alone at a high lr): every p, Holm p, TOST p and verdict recomputed."""
    cmp = compare(["dice + ce", "dice"], seeds=3, out=tmp_path / "c", margin=0.02, **{**SMALL, "lr": 0.05})
    d = cmp.to_dict()
    assert d["margin"] == 0.02
    store = ResultsStore(tmp_path / "c")
    runs = {(s["config"]["loss"], s["config"]["seed"]): s for s in store.summaries()}
    fams: dict = {}
    spread = 0.0
    for x in d["differences"]:
        if x["metric"] == "fg_dice":
            va = [runs[("dice", k)]["final_fg_dice"] for k in range(3)]
            vb = [runs[("dice + ce", k)]["final_fg_dice"] for k in range(3)]
        else:
            c = ["background", "shape1", "shape2"].index(x["metric"][5:-1])
            va = [runs[("dice", k)]["final_dice"][c] for k in range(3)]
            vb = [runs[("dice + ce", k)]["final_dice"][c] for k in range(3)]
        diff = np.array(va) - np.array(vb)
        spread = max(spread, float(diff.std(ddof=1)))
        assert x["p_raw"] == pytest.approx(_brute_signflip(list(diff)), abs=1e-15)
        if diff.std(ddof=1) > 0:
            tost = max(scipy_stats.ttest_1samp(diff, -0.02, alternative="greater").pvalue,
                       scipy_stats.ttest_1samp(diff, 0.02, alternative="less").pvalue)
            assert x["tost_p"] == pytest.approx(tost, rel=1e-9, abs=1e-15) and x["margin"] == 0.02
        fams.setdefault("fg_dice" if x["metric"] == "fg_dice" else "dice[class]", []).append(x)
    assert spread > 0  # the two losses differ, so the checks above are not all about zeros
    for xs in fams.values():
        for x, ref in zip(xs, _holm_reference([x["p_raw"] for x in xs]), strict=True):
            assert x["p_holm"] == pytest.approx(ref, abs=1e-15)
            assert x["verdict"] == ("equivalent" if x["tost_p"] < 0.05 else "inconclusive")  # 3 pairs: p >= 0.25


def test_cli_json(tmp_path, capsys):
    rc = main(["compare", "--task", "shapes", "--task-opt", "size=16", "--task-opt", "num_classes=3", "--model", "tiny",
               "--losses", "dice+ce,ce", "--seeds", "2", "--steps", "4", "--batch-size", "2", "--workers", "1",
               "--out", str(tmp_path / "c"), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    d = json.loads(out)
    assert len(d["losses"]) == 2 and all("low" in x and "high" in x for x in d["differences"] if x["n_pairs"] >= 2)


@pytest.mark.parametrize("args, needle", [
    (["--seeds", "1"], "--seeds"),
    (["--losses", "ce"], "--losses"),
    (["--losses", "dice+ce,dcie"], "dcie"),
    (["--losses", "dice+ce,dice + ce"], "same loss"),
    (["--steps", "0"], "--steps"),
    (["--confidence", "1.5"], "--confidence"),
    (["--margin", "0"], "--margin"),
    (["--margin", "nan"], "--margin"),
    (["--task-opt", "size"], "--task-opt"),
    (["--out", "/dev/null/x"], "--out"),
    (["--ablate", "ce"], "--ablate"),
])
def test_cli_errors_one_line_exit_2(tmp_path, capsys, args, needle):
    base = ["compare", "--task", "shapes", "--losses", "dice+ce,ce", "--out", str(tmp_path / "c")]
    argv = base + args
    if "--ablate" in args:
        argv = [a for a in argv if a not in ("--losses", "dice+ce,ce")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "c").exists()


def test_advise_compare(tmp_path, capsys):
    rc = main(["advise", "--task", "shapes", "--task-opt", "size=16", "--compare", "--seeds", "2", "--steps", "2",
               "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0, out
    d = json.loads((tmp_path / "c" / "compare.json").read_text())
    advised = d["baseline"]
    assert out.index("Recommendation") < out.index("seglab advise --compare") if "Recommendation" in out else True
    assert "class_weights" in advised or "dice" in advised  # the advised loss is the baseline
    assert [r["spec"] for r in d["losses"] if r["spec"] != advised] and len(d["losses"]) >= 3
    assert "paired differences" in out


def test_advise_compare_needs_images(tmp_path, capsys):
    (tmp_path / "m.npy").write_bytes(b"")
    rc = main(["advise", str(tmp_path), "--compare"])
    err = capsys.readouterr().err
    assert rc == 2 and "images/" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- the committed results, re-read under the analysis plan
COMMITTED = sorted((Path(__file__).resolve().parents[2] / "data" / "compare").glob("*.json"))


def _holm_reference(ps):
    """Holm-adjusted p-values, written independently of seglab.stats (sort, scale, running max, cap)."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, best = [0.0] * len(ps), 0.0
    for k, i in enumerate(order):
        best = max(best, min(1.0, (len(ps) - k) * ps[i]))
        out[i] = best
    return out


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_comparisons_reread_under_the_plan(path):
    from seglab.compare import upgrade
    from seglab.compare.analysis import render_html

    old = json.loads(path.read_text())
    new = upgrade(old)
    assert new["schema_version"] == 2 and new["margin"] == 0.01
    assert new["reread_from_schema_version"] == old["schema_version"]
    by_label = {r["label"]: r for r in old["losses"]}
    base = next(r for r in old["losses"] if old["baseline"] in (r["spec"], r["label"]))
    fams: dict = {}
    assert len(new["differences"]) == len(old["differences"])
    for o, x in zip(old["differences"], new["differences"], strict=True):
        assert (x["a"], x["metric"]) == (o["a"], o["metric"])
        k = x["metric"][len("dice["):-1] if x["metric"].startswith("dice[") else None
        va = by_label[x["a"]]["per_class"][k]["per_seed"] if k else by_label[x["a"]]["fg_dice"]["per_seed"]
        vb = base["per_class"][k]["per_seed"] if k else base["fg_dice"]["per_seed"]
        d = np.array([p - q for p, q in zip(va, vb, strict=True)])
        assert x["mean"] == pytest.approx(o["mean"], abs=1e-12) and x["low"] == pytest.approx(o["low"], abs=1e-12)
        assert x["p_raw"] == pytest.approx(_brute_signflip(list(d)), abs=1e-15)
        ci = scipy_stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        assert (x["low"], x["high"]) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
        tost = max(scipy_stats.ttest_1samp(d, -0.01, alternative="greater").pvalue,
                   scipy_stats.ttest_1samp(d, 0.01, alternative="less").pvalue)
        assert x["tost_p"] == pytest.approx(tost, rel=1e-8, abs=1e-14)
        assert x["disagreement"] == ((not ci.low <= 0 <= ci.high) != (x["p_raw"] < 0.05))
        fams.setdefault("fg_dice" if k is None else "dice[class]", []).append(x)
        assert x["verdict"] in ("better", "worse", "equivalent", "inconclusive")
    for name, xs in fams.items():
        assert all(x["family"] == name and x["family_size"] == len(xs) for x in xs)
        for x, ref in zip(xs, _holm_reference([x["p_raw"] for x in xs]), strict=True):
            assert x["p_holm"] == pytest.approx(ref, abs=1e-15)
            want = ("better" if ref < 0.05 and x["low"] > 0 else "worse" if ref < 0.05 and x["high"] < 0
                    else "equivalent" if x["tost_p"] < 0.05 else "inconclusive")
            assert x["verdict"] == want
    html = render_html(old)  # the HTML section reads the old schema too
    assert html.count("<td class='verdict'>") == len(old["differences"])
    assert upgrade(new) is new  # a current dict is left as it is
    wider = upgrade(old, margin=0.05)
    assert wider["margin"] == 0.05 and sum(x["verdict"] == "equivalent" for x in wider["differences"]) >= \
        sum(x["verdict"] == "equivalent" for x in new["differences"])


def test_committed_comparisons_the_six_disagreements():
    """The review found the t-interval and the sign-flip p at odds in 6 of the 69 committed comparisons."""
    from seglab.compare import upgrade

    rows = [x for p in COMMITTED for x in upgrade(json.loads(p.read_text()))["differences"]]
    assert len(rows) == 69
    flagged = [x for x in rows if x["disagreement"]]
    assert len(flagged) == 6
    assert all("t-interval and sign-flip test disagree" in x["summary"] for x in flagged)
    assert not any("disagree" in x["summary"] for x in rows if not x["disagreement"])


def test_upgrade_rejects_a_future_schema():
    from seglab.compare import upgrade

    with pytest.raises(ValueError, match="schema_version"):
        upgrade({"schema_version": 99, "differences": [], "losses": [], "baseline": "ce"})


def test_regen_blocks_show_the_plan_verdicts():
    """tools/regenerate.py's compare blocks (README/docs tables) carry each difference's verdict and both p-values."""
    import importlib.util

    from seglab.compare import upgrade

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("seglab_regenerate_cmp", root / "tools" / "regenerate.py")
    regen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regen)
    for block, name in regen.COMPARE.items():
        c = upgrade(json.loads((root / "data" / "compare" / f"{name}.json").read_text()))
        text = regen.BLOCKS[block]({})
        for x in c["differences"]:
            v = f"**{x['verdict']}**" if x["verdict"] in ("better", "worse") else x["verdict"]
            want = (f"{x['mean']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}]; p {x['p_raw']:.2g}, Holm {x['p_holm']:.2g}; "
                    f"{v}{' †' if x['disagreement'] else ''}")
            assert want in text, want
        n = {v: sum(x["verdict"] == v for x in c["differences"]) for v in ("better", "worse", "equivalent", "inconclusive")}
        assert (f"{n['better']} better, {n['worse']} worse, {n['equivalent']} equivalent, "
                f"{n['inconclusive']} inconclusive") in text
        for phrase in FORBIDDEN:
            assert phrase not in text
