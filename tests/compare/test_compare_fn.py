"""seglab compare --fn / --lightning (issue 22): the user's own training code, paired seeds, the plan's statistics;
and --ablate advised trains the loss seglab advise gives for the training masks."""

import importlib.util
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from advise_folders import make_split_advice_folder

import seglab
from seglab.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _signflip(d):
    obs, tol = abs(sum(d)), 1e-12 * sum(abs(x) for x in d)
    signs = list(itertools.product((1, -1), repeat=len(d)))
    return sum(abs(sum(s * x for s, x in zip(sg, d, strict=True))) >= obs - tol for sg in signs) / len(signs)


def _holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, best = [0.0] * len(ps), 0.0
    for k, i in enumerate(order):
        best = max(best, min(1.0, (len(ps) - k) * ps[i]))
        out[i] = best
    return out


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _per_seed(d, label, metric):
    return next(r for r in d["losses"] if r["label"] == label)["metrics"][metric]["per_seed"]


# ---------------------------------------------------------------- the MONAI example, end to end
def test_monai_example_end_to_end(tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compare", "--fn", str(EXAMPLES / "compare_fn_monai.py") + ":run", "--losses", "dice+ce,ce", "--seeds", "3",
            "--fn-opt", "steps=2", "--fn-opt", "size=16", "--fn-opt", "n_val=4", "--out", str(out), "--json"]
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["schema_version"] == 2 and d["setup"]["kind"] == "fn" and d["setup"]["mode"] == "multiclass"
    assert d["setup"]["primary"] == "dice" and d["baseline"] == "dice + ce"
    assert d["families"] == {"dice": 1, "dice[class]": 3}
    assert d["class_names"] == ["background", "disk", "square"]
    # the per-seed values are what the function returned: called here directly with the same loss and seed
    ex = _load(EXAMPLES / "compare_fn_monai.py", "compare_fn_monai_direct")
    for label, spec in (("dice+ce", "dice + ce"), ("ce", "ce")):
        for i, seed in enumerate(range(3)):
            got = ex.run(seglab.get_loss(spec, mode="multiclass"), seed, steps=2, size=16, n_val=4)["dice"]
            for c, v in got.items():
                stored = _per_seed(d, label, f"dice[{c}]")[i]
                assert (stored is None and math.isnan(v)) or stored == v, (label, seed, c)
            finite = [v for v in got.values() if not math.isnan(v)]
            assert _per_seed(d, label, "dice")[i] == pytest.approx(sum(finite) / len(finite), abs=1e-15)
    # every difference recomputed from the per-seed values: sign-flip p, Holm within its family, verdict
    fams: dict = {}
    for x in d["differences"]:
        a, b = _per_seed(d, x["a"], x["metric"]), _per_seed(d, x["b"], x["metric"])
        diff = [p - q for p, q in zip(a, b, strict=True) if p is not None and q is not None]
        assert x["n_pairs"] == len(diff) and x["a"] == "ce" and x["b"] == "dice+ce"
        if len(diff) >= 2:
            assert x["p_raw"] == pytest.approx(_signflip(diff), abs=1e-15)
            assert x["mean"] == pytest.approx(float(np.mean(diff)), abs=1e-12)
            fams.setdefault(x["family"], []).append(x)
        assert x["verdict"] in ("equivalent", "inconclusive")  # 3 pairs: p >= 0.25, never better or worse
    for xs in fams.values():
        for x, ref in zip(xs, _holm([x["p_raw"] for x in xs]), strict=True):
            assert x["p_holm"] == pytest.approx(ref, abs=1e-15)
            assert x["verdict"] == ("equivalent" if x["tost_p"] < 0.05 else "inconclusive")
    # the outputs: compare.json (the same object), the text, an HTML page with one verdict cell per difference
    assert json.loads((out / "compare.json").read_text())["differences"] == d["differences"]
    text = (out / "compare.txt").read_text()
    assert "seglab compare --fn" in text and "dice[square]: ce vs dice+ce:" in text
    html = (out / "compare.html").read_text()
    assert html.count("<td class='verdict'>") == len(d["differences"]) and "p (Holm)" in html
    # each finished call is one run folder whose summary holds what the function returned
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 6
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and set(summary["metrics"]["dice"]) == {"background", "disk", "square"}
    assert summary["provenance"]["seed"] == summary["config"]["seed"] and summary["provenance"]["torch"]


# ---------------------------------------------------------------- resuming, metrics, direction
FAKE = '''
import json, os
LOG = {log!r}

def run(loss, seed, shift=0.0, fail_seed=None):
    from seglab.losses import format_loss
    spec = format_loss(loss)
    with open(LOG, "a") as f:
        f.write(json.dumps([spec, seed]) + "\\n")
    if fail_seed is not None and seed == fail_seed:
        raise RuntimeError("out of memory, pretend")
    good = spec == "ce"
    base = 0.6 + 0.01 * seed
    return {{"dice": {{"a": base + (0.05 + 0.001 * seed if good else 0.0) + shift, "b": base}},
            "hd95": 5.0 - (1.0 + 0.01 * seed if good else 0.0), "val_loss": 0.3}}
'''


def _fake(tmp_path) -> tuple[str, Path]:
    log = tmp_path / "calls.log"
    f = tmp_path / "fake_train.py"
    f.write_text(FAKE.format(log=str(log)))
    return str(f) + ":run", log


def _calls(log: Path) -> list:
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []


def test_resume_direction_and_families(tmp_path, capsys):
    fn, log = _fake(tmp_path)
    argv = ["compare", "--fn", fn, "--losses", "dice+ce,ce", "--seeds", "6", "--mode", "multiclass",
            "--out", str(tmp_path / "c"), "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(_calls(log)) == 12
    assert d["families"] == {"dice": 1, "dice[class]": 2, "hd95": 1, "val_loss": 1}
    by = {x["metric"]: x for x in d["differences"]}
    # ce: +0.05 Dice on class a and 1.0 lower hd95 in every one of 6 seeds: sign-flip p = 2/64, interval clear of 0
    assert by["dice[a]"]["p_raw"] == pytest.approx(2 / 64) and by["dice[a]"]["p_holm"] == pytest.approx(2 / 64 * 2)
    assert by["dice"]["verdict"] == "better" and by["dice[a]"]["verdict"] == "inconclusive"  # Holm over 2 classes
    assert by["dice[b]"]["verdict"] == "equivalent"
    assert by["hd95"]["verdict"] == "better" and by["hd95"]["high"] < 0  # lower is better: a drop is an improvement
    assert by["hd95"]["higher_is_better"] is False and by["hd95"]["margin"] is None and by["hd95"]["tost_p"] is None
    assert by["val_loss"]["verdict"] == "inconclusive" and by["val_loss"]["higher_is_better"] is False
    assert d["setup"]["metrics"]["hd95"] == {"higher_is_better": False, "per_class": False, "classes": [],
                                             "margin": None}
    assert [r["label"] for r in d["losses"]] == ["ce", "dice+ce"]  # ranked by the primary metric
    # a rerun calls nothing again and gives the same comparison
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert len(_calls(log)) == 12 and again["differences"] == d["differences"]
    # another primary metric over the same (resumed) calls; one that was never returned is a one-line error
    assert main(argv + ["--metric", "hd95"]) == 0
    assert json.loads(capsys.readouterr().out)["losses"][0]["label"] == "ce" and len(_calls(log)) == 12
    assert main(argv + ["--metric", "iou"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["seglab compare: --metric 'iou': not among the metrics the function returned (dice, hd95, val_loss)"]
    # another option value is another run: every call again
    assert main(argv + ["--fn-opt", "shift=0.01"]) == 0
    capsys.readouterr()
    assert len(_calls(log)) == 24


def test_metric_margin_and_lower_is_better_options(tmp_path, capsys):
    fn, _ = _fake(tmp_path)
    rc = main(["compare", "--fn", fn, "--losses", "dice+ce,ce", "--seeds", "3", "--mode", "multiclass",
               "--metric", "hd95", "--metric-margin", "hd95=2", "--lower-is-better", "dice",
               "--out", str(tmp_path / "c"), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    by = {x["metric"]: x for x in d["differences"]}
    assert d["setup"]["primary"] == "hd95" and by["hd95"]["margin"] == 2.0 and by["hd95"]["tost_p"] is not None
    assert by["dice"]["higher_is_better"] is False and by["dice"]["margin"] is None
    assert d["losses"][0]["label"] == "ce"  # lower hd95 ranks first
    assert by["hd95"]["verdict"] == ("equivalent" if by["hd95"]["tost_p"] < 0.05 else "inconclusive")


def test_failure_keeps_finished_runs(tmp_path, capsys):
    fn, log = _fake(tmp_path)
    out = tmp_path / "c"
    rc = main(["compare", "--fn", fn, "--losses", "dice+ce,ce", "--seeds", "3", "--mode", "multiclass",
               "--fn-opt", "fail_seed=1", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert lines[-1] == (f"seglab compare: --fn {fn}: loss 'dice+ce' seed 1: raised RuntimeError: out of memory, "
                         "pretend")
    assert "Traceback" not in cap.err and not (out / "compare.json").exists()
    assert len(list((out / "runs").iterdir())) == 2 and len(_calls(log)) == 3  # seed 0 of both losses kept


BAD = {
    "not_mapping": "def run(loss, seed):\n    return 0.5\n",
    "empty": "def run(loss, seed):\n    return {}\n",
    "bad_value": "def run(loss, seed):\n    return {'dice': 'high'}\n",
    "bad_class": "def run(loss, seed):\n    return {'dice': {'a': [1, 2]}}\n",
    "no_metric": "def run(loss, seed):\n    return {'iou': 0.5}\n",
    "raises": "def run(loss, seed):\n    raise ValueError('no GPU')\n",
    "bad_kw": "def run(loss, seed):\n    return {'dice': 0.5}\n",
    "not_callable": "run = 3\n",
    "import_error": "import no_such_module_for_seglab\ndef run(loss, seed):\n    return {}\n",
}


@pytest.mark.parametrize("case, needle", [
    ("not_mapping", "returned a float, expected a mapping"),
    ("empty", "returned an empty mapping"),
    ("bad_value", "metric 'dice' is a str"),
    ("bad_class", "metric 'dice' class 'a' is a list"),
    ("no_metric", "returned no 'dice' (the --metric); it returned iou"),
    ("raises", "raised ValueError: no GPU"),
    ("bad_kw", "raised TypeError"),
    ("not_callable", "'run' is not callable"),
    ("import_error", "error while loading"),
    ("missing_attr", "has no attribute 'train'"),
    ("missing_file", "no such file"),
    ("missing_module", "no module named 'no_such_pkg_seglab'"),
])
def test_bad_fn_one_line_exit_2(tmp_path, capsys, case, needle):
    f = tmp_path / f"{case}.py"
    f.write_text(BAD.get(case, "def run(loss, seed):\n    return {'dice': 0.5}\n"))
    fn = {"missing_attr": f"{f}:train", "missing_file": str(tmp_path / "nope.py") + ":run",
          "missing_module": "no_such_pkg_seglab.mod:run"}.get(case, f"{f}:run")
    argv = ["compare", "--fn", fn, "--losses", "dice+ce,ce", "--seeds", "2", "--mode", "multiclass",
            "--out", str(tmp_path / "c"), "--no-progress"]
    if case == "bad_kw":
        argv += ["--fn-opt", "steps=3"]
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    if case in ("not_mapping", "empty", "bad_value", "bad_class", "no_metric", "raises", "bad_kw"):
        assert "loss 'dice+ce' seed 0" in lines[0]  # the call that failed


@pytest.mark.parametrize("args, needle", [
    (["--losses", "dice+ce,ce"], "--mode"),                    # nothing implies the mode
    (["--losses", "cce,dice[include_background=false]", "--mode", "binary"], "--losses"),
    (["--losses", "dice+ce,dice + ce", "--mode", "multiclass"], "same loss"),
    (["--mode", "multiclass"], "PATH or --task"),             # the advised loss needs masks
    (["--losses", "ce,dice", "--mode", "multiclass", "--metric-margin", "hd95=-1"], "--metric-margin"),
    (["--losses", "ce,dice", "--mode", "multiclass", "--engine", "ray"], "--engine"),
    (["--losses", "ce,dice", "--mode", "multiclass", "--datamodule", "a:B"], "--lightning"),
    (["--no-fn", "--losses", "ce,dice", "--mode", "multiclass", "--lightning", "a:B"], "--datamodule"),
    (["--losses", "ce,dice", "--lightning", "a:B", "--datamodule", "a:C"], "not both"),
    (["--losses", "ce,dice", "--mode", "binary", "--task", "shapes"], "the task's masks are multiclass"),
    (["--no-fn", "--losses", "ce,dice", "--mode", "binary"], "--mode goes with --fn"),
    (["--no-fn", "--losses", "ce,dice", "--metric", "hd95"], "--metric goes with --fn"),
    (["--no-fn", "--losses", "ce,dice", "--fn-opt", "steps=3"], "--fn-opt goes with --fn"),
])
def test_cli_errors(tmp_path, capsys, args, needle):
    f = tmp_path / "ok.py"
    f.write_text("def run(loss, seed):\n    return {'dice': 0.5}\n")
    fn = [] if "--no-fn" in args else ["--fn", f"{f}:run"]
    args = [a for a in args if a != "--no-fn"]
    rc = main(["compare", *fn, "--seeds", "2", "--out", str(tmp_path / "c"), *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "c" / "runs").exists()


def test_mode_implied_by_the_specs(tmp_path, capsys):
    f = tmp_path / "ok.py"
    f.write_text("def run(loss, seed):\n    print('epoch 1 done')\n"
                 "    return {'dice': 0.5 + 0.01 * seed, 'mode': 1.0 if loss.mode == 'multiclass' else 0.0}\n")
    rc = main(["compare", "--fn", f"{f}:run", "--losses", "cce,dice", "--seeds", "2", "--out", str(tmp_path / "c"),
               "--json"])
    cap = capsys.readouterr()
    d = json.loads(cap.out)  # what the function printed went to stderr
    assert rc == 0 and d["setup"]["mode"] == "multiclass" and _per_seed(d, "cce", "mode") == [1.0, 1.0]
    assert cap.err.count("epoch 1 done") == 4


# ---------------------------------------------------------------- Lightning
def test_lightning_module(tmp_path, capsys):
    pytest.importorskip("lightning")
    ex = str(EXAMPLES / "compare_fn_lightning.py")
    out = tmp_path / "c"
    rc = main(["compare", "--lightning", f"{ex}:Module", "--datamodule", f"{ex}:Data", "--losses", "dice+ce,ce",
               "--seeds", "2", "--mode", "multiclass", "--fn-opt", "trainer.max_steps=2", "--fn-opt", "data.size=16",
               "--fn-opt", "data.n_train=8", "--fn-opt", "data.n_val=4", "--fn-opt", "width=4",
               "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)  # Lightning printed nothing on stdout
    assert d["setup"]["fn"].startswith("lightning:") and d["families"] == {"dice": 1, "dice[class]": 3}
    summaries = [json.loads((p / "summary.json").read_text()) for p in sorted((out / "runs").iterdir())]
    assert len(summaries) == 4
    for s in summaries:  # the per-class Dice the module logged as dice/<class>, grouped, and stored as compared
        assert set(s["metrics"]["dice"]) == {"background", "disk", "square"}
        label = "dice+ce" if s["config"]["loss"] == "dice + ce" else "ce"
        for c, v in s["metrics"]["dice"].items():
            assert _per_seed(d, label, f"dice[{c}]")[s["config"]["seed"]] == v


def test_group_metrics():
    from seglab.compare.lightning import group_metrics

    assert group_metrics({"dice/a": 0.5, "dice/b": 1, "loss": 0.25}) == {"dice": {"a": 0.5, "b": 1.0}, "loss": 0.25}


# ---------------------------------------------------------------- compare == advise
def _advise_spec(argv, capsys) -> str:
    assert main(["advise", *argv, "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    return seglab.format_loss(seglab.get_loss(a["loss"], a["mode"], **a["loss_kwargs"]))


def test_ablate_advised_trains_what_advise_gives_for_a_task(tmp_path, capsys):
    want = _advise_spec(["--task", "shapes", "--task-opt", "size=16"], capsys)
    rc = main(["compare", "--task", "shapes", "--task-opt", "size=16", "--ablate", "advised", "--model", "tiny",
               "--seeds", "2", "--steps", "1", "--batch-size", "2", "--workers", "1", "--out", str(tmp_path / "c"),
               "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["baseline"] == want and d["losses"][0]["spec"] in [r["spec"] for r in d["losses"]]
    assert next(r for r in d["losses"] if r["spec"] == want)["label"] == "full"
    assert f"advised loss (seglab advise on the 64 validation (same generator as training) masks of task shapes): " \
           f"{want}" in cap.err and "because:" in cap.err


def test_folder_advised_on_the_training_masks(tmp_path, capsys):
    import shutil

    from seglab.data import create_task

    root = tmp_path / "data"
    make_split_advice_folder(root)
    task = create_task("folder", path=str(root))
    train_only, val_only = tmp_path / "train_masks", tmp_path / "val_masks"
    for dst, stems in ((train_only, task.train_cases), (val_only, task.val_cases)):
        dst.mkdir()
        for s in stems:
            shutil.copy(root / "masks" / f"{s}.npy", dst / f"{s}.npy")
    want = _advise_spec([str(train_only)], capsys)
    assert want != _advise_spec([str(val_only)], capsys)  # the data make the two advices differ
    f = tmp_path / "ok.py"
    f.write_text("def run(loss, seed):\n    return {'dice': 0.5 + 0.01 * seed}\n")
    rc = main(["compare", str(root), "--fn", f"{f}:run", "--ablate", "advised", "--seeds", "2",
               "--out", str(tmp_path / "c"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["baseline"] == want and d["setup"]["mode"] == "multiclass"
    assert f"the {len(task.train_cases)} training masks of" in cap.err and want in cap.err


def test_upgrade_with_another_margin(tmp_path, capsys):
    """A --fn comparison re-read with a wider margin: higher-is-better metrics take it, hd95 keeps none."""
    from seglab.compare import upgrade
    from seglab.compare.analysis import render_html

    fn, _ = _fake(tmp_path)
    assert main(["compare", "--fn", fn, "--losses", "dice+ce,ce", "--seeds", "3", "--mode", "multiclass",
                 "--out", str(tmp_path / "c"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert upgrade(d) is d
    wide = upgrade(d, margin=0.2)
    by = {x["metric"]: x for x in wide["differences"]}
    assert by["dice[b]"]["margin"] == 0.2 and by["hd95"]["margin"] is None and by["hd95"]["tost_p"] is None
    assert wide["setup"]["metrics"]["dice"]["margin"] == 0.2 and wide["setup"]["metrics"]["hd95"]["margin"] is None
    assert [x["p_raw"] for x in wide["differences"]] == [x["p_raw"] for x in d["differences"]]
    assert by["dice"]["verdict"] == "equivalent"  # +0.026 mean difference, now inside +-0.2 (3 pairs)
    assert render_html(d).count("<td class='verdict'>") == len(d["differences"])


def test_brain_tissue_advised_on_its_training_slices(tmp_path, capsys):
    """A task with training_masks(): compare advises on those, as seglab advise --task does."""
    if importlib.util.find_spec("nilearn") is None:
        pytest.skip("brain-tissue needs nilearn's bundled template (pip install --no-deps nilearn)")
    want = _advise_spec(["--task", "brain-tissue", "--task-opt", "size=16"], capsys)
    f = tmp_path / "ok.py"
    f.write_text("def run(loss, seed):\n    return {'dice': 0.5 + 0.01 * seed}\n")
    rc = main(["compare", "--task", "brain-tissue", "--task-opt", "size=16", "--fn", f"{f}:run", "--ablate", "advised",
               "--seeds", "2", "--out", str(tmp_path / "c"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    assert d["baseline"] == want and "the training masks of task brain-tissue" in cap.err


def test_module_spec_and_ablation(tmp_path, capsys, monkeypatch):
    """--fn package.module:function from sys.path; --ablate SPEC with --fn trains SPEC and its one-factor variants."""
    pkg = tmp_path / "mypkg_seglab_fn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text("from seglab.losses import format_loss\n"
                                  "def run(loss, seed):\n"
                                  "    return {'dice': 0.5 + 0.01 * seed + 0.001 * len(format_loss(loss))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "dice[include_background=false] + ce[class_weights=[0.5,2.0]]"
    rc = main(["compare", "--fn", "mypkg_seglab_fn.train:run", "--ablate", spec, "--mode", "multiclass",
               "--seeds", "2", "--out", str(tmp_path / "c"), "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)
    labels = {r["label"]: r["spec"] for r in d["losses"]}
    assert labels["full"] == seglab.format_loss(seglab.get_loss(spec, "multiclass"))
    assert {"full", "without CE weights", "without background exclusion", "without Dice term", "without CE term",
            "plain"} <= set(labels)
    assert d["setup"]["fn"] == "mypkg_seglab_fn.train:run" and len(list((tmp_path / "c" / "runs").iterdir())) == 12
    for r in d["losses"]:  # each value is what the function computed from the loss it was given
        n = len(seglab.format_loss(seglab.get_loss(r["spec"], "multiclass")))
        assert r["metrics"]["dice"]["per_seed"] == [0.5 + 0.01 * k + 0.001 * n for k in range(2)]


def test_check_result_numbers():
    import torch

    from seglab.compare.fn import FnError, check_result

    got = check_result({"dice": {"a": np.float32(0.5), "b": torch.tensor([0.25])}, "n": 3, "x": torch.tensor(1.5)}, "w")
    assert got == {"dice": {"a": 0.5, "b": 0.25}, "n": 3.0, "x": 1.5}
    for bad in ({"dice": True}, {"dice": torch.ones(2)}, {"dice": np.ones(2)}, {"dice[a]": 0.5}, {3: 0.5}):
        with pytest.raises(FnError, match="^w: "):
            check_result(bad, "w")
