"""seglab compare: ablation specs, paired differences read back from the runs, and one-line CLI errors."""

import json
import math

import numpy as np
import pytest

from seglab.cli import main
from seglab.compare import ablations, compare
from seglab.results import ResultsStore

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
    assert d["baseline"] == "dice + ce" and d["schema_version"] == 1 and d["seglab_version"]
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
        assert ("no evidence of a difference" in row["verdict"]) == (row["low"] <= 0 <= row["high"])
    # one difference per class besides the foreground mean, written to compare.json
    assert {x["metric"] for x in d["differences"]} == {"fg_dice", "dice[background]", "dice[shape1]", "dice[shape2]"}
    assert json.loads((tmp_path / "c" / "compare.json").read_text())["differences"] == json.loads(cmp.to_json())["differences"]
    assert "paired differences" in cmp.text() and "<table>" in cmp.html()
    # a rerun reuses the finished runs and gives the same numbers
    again = compare(["dice + ce", "ce"], seeds=3, out=tmp_path / "c", **SMALL)
    assert json.loads(again.to_json())["differences"] == json.loads(cmp.to_json())["differences"]


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
