"""seglab evaluate: folders of predictions against ground truth, per case and class, with named metrics and
explicit empty-mask conventions; the two-folder comparison; resume; one-line errors."""

from __future__ import annotations

import csv
import importlib
import json
import math
import warnings

import numpy as np
import pytest
import torch

from seglab.cli import main
from seglab.evaluate import EvalOptions, evaluate_folders, read_per_case, resolve_metrics


def _blob(shape, r0, c0, h, w):
    m = np.zeros(shape, np.uint8)
    m[r0:r0 + h, c0:c0 + w] = 1
    return m


def _write_png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


@pytest.fixture
def folders(tmp_path):
    """6 cases of 24x24 label maps, classes 0..2: a prediction shifted by one pixel, the ground truth."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    rng = np.random.default_rng(0)
    for i in range(6):
        g = _blob((24, 24), 3, 3, 8, 8) + 2 * _blob((24, 24), 14, 12, 6, 7)
        sh = rng.integers(-1, 2, size=2)
        p = np.roll(g, tuple(int(s) for s in sh), axis=(0, 1))
        _write_png(gt / f"case_{i:02d}.png", g)
        _write_png(pred / f"case_{i:02d}.png", p)
    return pred, gt, tmp_path / "out"


def test_values_equal_the_metric_functions_and_monai(folders):
    pred, gt, out = folders
    opts = EvalOptions(metrics=tuple(resolve_metrics(["dice", "hd95", "nsd"], tolerance=1.0)))
    summary = evaluate_folders(pred, gt, out, opts)
    rows = read_per_case(out / "per_case.csv")
    assert summary["n_cases"] == 6 and summary["num_classes"] == 3 and len(rows) == 6 * 2 * 3
    mm = importlib.import_module("monai.metrics")
    from PIL import Image

    for r in rows:
        p = torch.from_numpy(np.asarray(Image.open(pred / f"{r['case']}.png")).astype(np.int64))[None]
        g = torch.from_numpy(np.asarray(Image.open(gt / f"{r['case']}.png")).astype(np.int64))[None]
        oh = [torch.nn.functional.one_hot(x, 3).movedim(-1, 1) for x in (p, g)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = {"dice": mm.DiceMetric(include_background=True, reduction="none")(*oh),
                   "hd95": mm.compute_hausdorff_distance(*oh, include_background=True, percentile=95),
                   "nsd": mm.compute_surface_dice(*oh, [1.0] * 3, include_background=True)}[r["metric"]]
        assert r["value"] == pytest.approx(float(ref[0, r["class"]]), abs=1e-6), r
    d = summary["metrics"]["dice"]["1"]
    vals = [r["value"] for r in rows if r["metric"] == "dice" and r["class"] == 1]
    assert d["mean"] == pytest.approx(np.mean(vals)) and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    assert summary["options"]["metrics"][1] == {"name": "hd95", "registered": "hausdorff",
                                                "options": {"percentile": 95, "definition": "monai"}}


@pytest.mark.parametrize(("empty", "missed_hd", "both_dice", "both_hd"), [
    ("nan", math.nan, math.nan, math.nan), ("inf", math.inf, math.nan, math.nan),
    ("diagonal", math.sqrt((24 * 0.5) ** 2 + 24 ** 2), math.nan, math.nan), ("brats", 373.13, 1.0, 0.0),
    ("metricsreloaded", math.nan, 1.0, 0.0)])
def test_every_empty_convention_has_its_value(tmp_path, empty, missed_hd, both_dice, both_hd):
    pred, gt = tmp_path / "p", tmp_path / "g"
    g = _blob((24, 24), 2, 2, 5, 5)  # class 1 only; class 2 absent from both
    p = np.zeros_like(g)  # class 1 missed
    gt.mkdir()
    pred.mkdir()
    np.save(gt / "a.npy", g.astype(np.int64))
    np.save(pred / "a.npy", p.astype(np.int64))
    opts = EvalOptions(metrics=tuple(resolve_metrics(["dice", "hd95"])), num_classes=3, empty=empty,
                       spacing=(0.5, 1.0))
    s = evaluate_folders(pred, gt, tmp_path / "o", opts)
    rows = {(r["metric"], r["class"]): r for r in read_per_case(tmp_path / "o" / "per_case.csv")}
    assert rows[("dice", 1)]["value"] == 0.0 and rows[("dice", 1)]["empty"] == "missed"
    for got, want in ((rows[("hd95", 1)]["value"], missed_hd), (rows[("dice", 2)]["value"], both_dice),
                      (rows[("hd95", 2)]["value"], both_hd)):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
    assert s["metrics"]["hd95"]["1"]["n_missed"] == 1 and s["metrics"]["hd95"]["2"]["n_both_empty"] == 1
    # a missed structure is never a distance of 0 in the summary
    assert s["metrics"]["hd95"]["1"]["mean"] != 0.0


def test_resume_after_a_cut_write_gives_the_same_files(folders):
    pred, gt, out = folders
    opts = EvalOptions(metrics=tuple(resolve_metrics(["dice", "iou"])))
    evaluate_folders(pred, gt, out, opts)
    whole = (out / "per_case.csv").read_text()
    lines = whole.splitlines(keepends=True)
    (out / "per_case.csv").write_text("".join(lines[:7]) + lines[7][:5])  # killed in the middle of case 2
    evaluate_folders(pred, gt, out, opts)
    again = list(csv.DictReader((out / "per_case.csv").open()))
    assert sorted(map(tuple, (r.values() for r in again))) == sorted(
        map(tuple, (r.values() for r in csv.DictReader(whole.splitlines()))))


def test_two_folders_compare_case_by_case(folders, capsys):
    pred, gt, out = folders
    rc = main(["evaluate", str(pred), str(gt), "--gt", str(gt), "--out", str(out), "--metrics", "dice",
               "--no-progress"])
    assert rc == 0
    cmp = json.loads((out / "comparison.json").read_text())
    a_rows = read_per_case(out / "A" / "per_case.csv")
    for r in cmp["rows"]:  # B (the ground truth itself) against the shifted predictions: d = Dice(B) - Dice(A)
        d = np.array([1.0 - x["value"] for x in a_rows if x["class"] == r["class"]])
        flips = np.array(np.meshgrid(*[[1, -1]] * len(d))).reshape(len(d), -1).T
        brute = np.mean(np.abs(flips @ d) >= abs(d.sum()) - 1e-12)
        assert r["mean"] == pytest.approx(d.mean()) and r["p_raw"] == pytest.approx(brute)
    ps = [r["p_raw"] for r in cmp["rows"]]  # Holm over the two classes of the Dice family
    lo, hi = sorted(range(2), key=lambda i: ps[i])
    holm = {lo: min(1.0, 2 * ps[lo])}
    holm[hi] = max(holm[lo], min(1.0, ps[hi]))
    assert [r["p_holm"] for r in cmp["rows"]] == pytest.approx([holm[0], holm[1]])
    html = (out / "B" / "index.html").read_text()
    assert "Comparison" in html and "<svg" in html


def test_metrics_from_advice_and_json_output(folders, capsys, tmp_path):
    pred, gt, out = folders
    advice = tmp_path / "advice.json"
    advice.write_text(json.dumps({"metrics": [{"metric": "Dice, per image"}, {"metric": "HD95"}]}))
    rc = main(["evaluate", str(pred), str(gt), "--out", str(out), "--metrics-from", str(advice), "--json",
               "--no-progress"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in s["options"]["metrics"]] == ["dice", "hd95"] and s["provenance"]["torch"]


@pytest.mark.parametrize(("setup", "msg"), [
    ("unpaired", "do not pair: 1 prediction(s) without ground truth (extra)"),
    ("shape", "has shape (24, 24), ground truth"),
    ("metric", "unknown metric 'dise'"),
])
def test_bad_input_is_one_line_and_exit_2(folders, capsys, setup, msg):
    pred, gt, out = folders
    args = ["evaluate", str(pred), str(gt), "--out", str(out), "--no-progress"]
    if setup == "unpaired":
        _write_png(pred / "extra.png", np.zeros((24, 24), np.uint8))
    elif setup == "shape":
        _write_png(gt / "case_00.png", np.zeros((20, 24), np.uint8))
    else:
        args += ["--metrics", "dise"]
    rc = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0], err


def test_nifti_folder_takes_spacing_from_the_header(tmp_path):
    nib = importlib.import_module("nibabel")
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    g = np.zeros((12, 10, 8), np.int16)
    g[2:7, 2:6, 2:5] = 1
    p = np.roll(g, 2, axis=0)  # shifted by 2 voxels along the first axis
    for folder, arr in ((gt, g), (pred, p)):
        nib.save(nib.Nifti1Image(arr, np.diag([0.5, 1.0, 2.0, 1.0])), folder / "case1.nii.gz")
    opts = EvalOptions(metrics=tuple(resolve_metrics(["hd"])))
    s = evaluate_folders(pred, gt, tmp_path / "o", opts)
    rows = read_per_case(tmp_path / "o" / "per_case.csv")
    assert rows[0]["case"] == "case1" and rows[0]["value"] == pytest.approx(2 * 0.5)  # 2 voxels of 0.5 mm
    s2 = evaluate_folders(pred, gt, tmp_path / "o2", EvalOptions(metrics=opts.metrics, spacing=(3.0, 1.0, 1.0)))
    assert s2["metrics"]["hd"]["1"]["mean"] == pytest.approx(6.0) and s["metrics"]["hd"]["1"]["mean"] == 1.0


def test_advise_json_pipes_into_metrics_from(folders, tmp_path):
    import subprocess
    import sys

    pred, gt, out = folders
    advise = subprocess.run([sys.executable, "-m", "seglab", "advise", str(gt), "--json"], capture_output=True,
                            text=True, timeout=300)
    assert advise.returncode == 0, advise.stderr
    ev = subprocess.run([sys.executable, "-m", "seglab", "evaluate", str(pred), str(gt), "--out", str(out),
                         "--metrics-from", "-", "--json", "--no-progress"], input=advise.stdout, capture_output=True,
                        text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    names = [m["name"] for m in json.loads(ev.stdout)["options"]["metrics"]]
    assert names[0] == "dice" and "nsd" in names


def test_definition_pooled_equals_medpy(folders, capsys):
    binary = importlib.import_module("medpy.metric.binary")
    pred, gt, out = folders
    rc = main(["evaluate", str(pred), str(gt), "--out", str(out), "--metrics", "hd95", "--definition", "pooled",
               "--no-progress", "--json"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["options"]["metrics"][0]["options"]["definition"] == "pooled"
    from PIL import Image

    for r in read_per_case(out / "per_case.csv"):
        p = np.asarray(Image.open(pred / f"{r['case']}.png")) == r["class"]
        g = np.asarray(Image.open(gt / f"{r['case']}.png")) == r["class"]
        assert r["value"] == pytest.approx(binary.hd95(p, g), abs=1e-6)


def test_two_workers_write_what_one_process_writes(folders, tmp_path):
    pred, gt, out = folders
    opts = EvalOptions(metrics=tuple(resolve_metrics(["dice", "hd95"])))
    one = evaluate_folders(pred, gt, tmp_path / "one", opts)
    two = evaluate_folders(pred, gt, tmp_path / "two", opts, workers=2)
    assert (tmp_path / "one" / "per_case.csv").read_text() == (tmp_path / "two" / "per_case.csv").read_text()
    assert one["metrics"] == two["metrics"]
