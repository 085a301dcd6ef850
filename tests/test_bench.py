"""`seglab bench` on a tiny shape: runs, prints a table, writes JSON with the machine description, the spread
over rounds and the load average; `--repeat R` runs R whole benchmarks in fresh processes and reports the spread
of the ratios across them; every bad argument is one line on stderr and exit code 2 (issue 11)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from seglab import bench
from seglab.cli import bench as bench_cli
from seglab.cli import main

pytest.importorskip("rich")

TINY = ["--shapes", "2x3x8x8", "--losses", "dice", "--rounds", "2", "--warmup", "0", "--no-memory"]


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """A quiet machine (load average 0) unless a test says otherwise: the verdict on the load is tested by faking
    the load reader, never by the load of the machine the tests run on."""
    monkeypatch.setattr(bench, "load_average", lambda: 0.0)


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--shapes", "2x3x16x16,1x2x4x4x4", "--losses", "dice+ce,dice,lovasz", "--rounds", "2",
               "--warmup", "1", "--against", "monai,smp", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "F.cross_entropy" in text and "dice+ce" in text and "IQR" in text
    res = json.loads(out.read_text())
    for key in ("cpu_model", "cpu_cores", "torch_version", "date"):
        assert key in res["machine"]
    for shape in ("2x3x16x16", "1x2x4x4x4"):
        r = res["shapes"][shape]
        assert r["F.cross_entropy"]["ratio_ce"] == 1.0
        assert r["dice+ce"]["ms"] > 0 and len(r["dice+ce"]["times_ms"]) == 2
        for name, v in r.items():  # the spread over rounds, per loss
            assert v["min_ms"] <= v["q1_ms"] <= v["median_ms"] <= v["q3_ms"] <= v["max_ms"], name
            assert v["median_ms"] == pytest.approx(v["ms"])
            assert v["iqr_ms"] == pytest.approx(v["q3_ms"] - v["q1_ms"]) and v["iqr_ms"] >= 0
            assert v["ratio_ce_min"] <= v["ratio_ce"] <= v["ratio_ce_max"]
            assert v["ratio_ce_iqr"] >= 0
    load = res["load"]
    assert load["cores"] >= 1 and isinstance(load["overloaded"], bool)
    assert "load_1min_start" in load and "load_1min_end" in load


@pytest.mark.parametrize("bad, option", [
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "-1"], "--rounds"),
    (["--rounds", "two"], "--rounds"),
    (["--warmup", "-1"], "--warmup"),
    (["--threads", "0"], "--threads"),
    (["--against", "foo"], "--against"),
    (["--against", "monai,foo"], "--against"),
    (["--losses", "nosuchloss"], "--losses"),
    (["--losses", "dice[nosuchopt=1]"], "--losses"),
    (["--losses", ""], "--losses"),
    (["--shapes", "2x3"], "--shapes"),
    (["--shapes", "2xAx8x8"], "--shapes"),
    (["--shapes", "2x3x0x8"], "--shapes"),
    (["--shapes", "2x1x8x8"], "--shapes"),
    (["--dtype", "float8"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--out", "/dev/null/b.json"], "--out"),
    (["--repeat", "0"], "--repeat"),
    (["--repeat", "-2"], "--repeat"),
    (["--repeat", "twice"], "--repeat"),
    (["--repeat", "1.5"], "--repeat"),
])
def test_bench_bad_argument_is_one_line_exit_2(bad, option, tmp_path, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(bench, "bench_shape", lambda *a, **k: called.append(1))  # no work may start
    monkeypatch.setattr(bench_cli, "run_repeated", lambda *a, **k: called.append(1))
    argv = ["bench", *TINY, "--out", str(tmp_path / "b.json"), *bad]
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("error:") and option in lines[0], lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    assert not called and not (tmp_path / "b.json").exists()


def test_bench_out_folder_is_rejected(tmp_path, capsys):
    assert main(["bench", *TINY, "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0]


def test_bench_one_round_has_zero_spread(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--rounds", "1", "--out", str(out)]) == 0
    v = json.loads(out.read_text())["shapes"]["2x3x8x8"]["dice"]
    assert v["min_ms"] == v["median_ms"] == v["max_ms"] and v["iqr_ms"] == 0


def test_bench_on_a_loaded_machine_prints_timings_but_no_ratio(tmp_path, capsys, monkeypatch):
    cores = bench.os.cpu_count() or 1
    monkeypatch.setattr(bench, "load_average", lambda: 1000.0 + cores)
    out = tmp_path / "b.json"
    argv = ["bench", "--shapes", "2x3x8x8", "--losses", "dice+ce", "--rounds", "2", "--warmup", "0", "--no-memory",
            "--against", "monai", "--out", str(out)]
    assert main(argv) == 1  # docs/cli.md: the ratios asked for are withheld
    cap = capsys.readouterr()
    warn = [ln for ln in cap.err.splitlines() if ln.startswith("warning:") and "load average" in ln]
    assert len(warn) == 2 and "start" in warn[0] and "end" in warn[1] and "unreliable" in warn[0]
    assert f"ratios not trusted: load {1000.0 + cores:.2f} on {cores} cores" in cap.err and "--force" in cap.err
    res = json.loads(out.read_text())
    timed = res["shapes"]["2x3x8x8"]["dice+ce"]
    assert f"{timed['ms']:.1f}" in cap.out  # the raw timings are printed
    flat = " ".join(cap.out.split())  # (a long table title wraps)
    assert "× vs monai" not in cap.out and "× F.cross_entropy" not in cap.out
    assert f"ratios not trusted: load {1000.0 + cores:.2f} on {cores} cores" in flat
    load = res["load"]
    assert load["overloaded"] is True and load["trusted"] is False and load["load_1min_start"] > load["cores"]
    assert load["untrusted_reason"] == f"load {1000.0 + cores:.2f} on {cores} cores (at start and end)"


def test_bench_force_prints_the_ratios_marked(tmp_path, capsys, monkeypatch):
    cores = bench.os.cpu_count() or 1
    loads = iter([0.0, 1000.0 + cores])  # quiet at the start, loaded at the end
    monkeypatch.setattr(bench, "load_average", lambda: next(loads))
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--out", str(out), "--force"]) == 0
    cap = capsys.readouterr()
    ratio = json.loads(out.read_text())["shapes"]["2x3x8x8"]["dice"]["ratio_ce"]
    assert "UNTRUSTED ratios" in " ".join(cap.out.split()) and f"{ratio:.2f}" in cap.out
    assert "--force: ratios printed although not trusted" in cap.err and "(at end)" in cap.err


def test_untrusted_reason_rule():
    assert bench.untrusted_reason(1.0, 2.0, 2) is None  # at most the number of cores: trusted
    assert bench.untrusted_reason(None, None, 2) is None  # no load average on this platform
    assert bench.untrusted_reason(2.5, 1.0, 2) == "load 2.50 on 2 cores (at start)"
    assert bench.untrusted_reason(3.0, 4.0, 2) == "load 4.00 on 2 cores (at start and end)"


def test_bench_help_states_the_load_rule(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert " ".join(bench.LOAD_RULE.split()) in " ".join(capsys.readouterr().out.split())


def test_bench_repeat_judges_the_load_of_every_run(tmp_path, capsys, monkeypatch):
    """--repeat: a run loaded at its end makes the whole comparison untrusted (the children run with --force)."""
    cores = bench.os.cpu_count() or 1
    calls: list = []
    _in_process_children(monkeypatch, calls)
    loads = iter([0.0, 0.0, 0.0, 0.0, 1000.0 + cores, 0.0])  # parent start, run 1 start/end, run 2 start/end, parent end
    monkeypatch.setattr(bench, "load_average", lambda: next(loads))
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--repeat", "2", "--out", str(out)]) == 1
    assert all("--force" in c for c in calls)
    assert json.loads(out.read_text())["load"]["trusted"] is False
    assert "ratios not trusted" in capsys.readouterr().err


def test_spread_quantiles():
    s = bench.spread([4.0, 1.0, 3.0, 2.0])
    assert (s["min"], s["median"], s["max"]) == (1.0, 2.5, 4.0)
    assert s["q1"] == pytest.approx(1.75) and s["q3"] == pytest.approx(3.25) and s["iqr"] == pytest.approx(1.5)


def _in_process_children(monkeypatch, calls, fail_at=None):
    """Run the child processes of --repeat in this process (same argv through the real parser): fast, and the
    command line each whole run gets is checked."""
    def fake_run(cmd, **kw):
        assert cmd[:4] == [sys.executable, "-m", "seglab", "bench"], cmd
        calls.append(cmd)
        if fail_at is not None and len(calls) == fail_at:
            return subprocess.CompletedProcess(cmd, 1, "", "Traceback ...\nRuntimeError: boom\n")
        return subprocess.CompletedProcess(cmd, main(cmd[3:]), "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)


def test_bench_repeat_reports_the_spread_across_runs(tmp_path, capsys, monkeypatch):
    calls: list = []
    _in_process_children(monkeypatch, calls)
    out = tmp_path / "b.json"
    assert main(["bench", "--shapes", "2x3x8x8", "--losses", "dice,dice+ce", "--rounds", "2", "--warmup", "0",
                 "--repeat", "3", "--out", str(out)]) == 0
    assert len(calls) == 3 and all("--repeat" in c and c[c.index("--repeat") + 1] == "1" for c in calls)
    assert "--no-memory" not in calls[0] and all("--no-memory" in c for c in calls[1:])  # memory: first run only
    text = capsys.readouterr().out
    assert "3 whole runs" in text and "× CE IQR" in text
    res = json.loads(out.read_text())
    assert res["settings"]["repeat"] == 3 and len(res["runs"]) == 3
    for name, e in res["shapes"]["2x3x8x8"].items():
        per_run = [r["shapes"]["2x3x8x8"][name]["ratio_ce"] for r in res["runs"]]
        assert e["runs_ratio_ce"] == per_run
        assert e["ratio_ce"] == pytest.approx(statistics.median(per_run))
        assert e["runs_ratio_ce_min"] == min(per_run) and e["runs_ratio_ce_max"] == max(per_run)
        assert e["runs_ratio_ce_iqr"] == pytest.approx(e["runs_ratio_ce_q3"] - e["runs_ratio_ce_q1"])
        assert e["runs_ratio_ce_iqr"] >= 0
        assert e["ms"] == pytest.approx(statistics.median(r["shapes"]["2x3x8x8"][name]["ms"] for r in res["runs"]))
        assert e["peak_extra_x_logits"] == res["runs"][0]["shapes"]["2x3x8x8"][name]["peak_extra_x_logits"]
    assert isinstance(res["load"]["overloaded"], bool)


def test_bench_repeat_names_a_failed_run(tmp_path, capsys, monkeypatch):
    calls: list = []
    _in_process_children(monkeypatch, calls, fail_at=2)
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--repeat", "3", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "run 2/3" in err[-1] and "RuntimeError: boom" in err[-1], err
    assert len(calls) == 2 and not out.exists()


@pytest.mark.slow
def test_bench_repeat_in_fresh_processes(tmp_path):
    """The real thing: two whole runs, each a new Python process."""
    out = tmp_path / "b.json"
    assert main(["bench", *TINY, "--repeat", "2", "--out", str(out), "--force"]) == 0  # (the children read the real load)
    res = json.loads(out.read_text())
    assert len(res["runs"]) == 2 and len(res["shapes"]["2x3x8x8"]["dice"]["runs_ratio_ce"]) == 2


def test_structure_group_and_monai_peers():
    from seglab import bench

    assert bench.split_names("dice,structure") == ["dice", *bench.STRUCTURE_LOSSES]
    peers, missing = bench.peer_losses(["monai"], 3, ["mcc", "boundary"])
    assert not missing
    assert {"monai MCCLoss", "monai BoundaryLoss"} <= set(peers)
    assert "monai SoftclDiceLoss" not in peers and "monai HausdorffDTLoss" not in peers  # not asked for
    import torch

    x, t = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    import seglab

    # the paired peers compute the same value as seglab's loss on the same inputs
    assert torch.allclose(peers["monai MCCLoss"](x, t), seglab.get_loss("mcc", "multiclass")(x, t), atol=1e-5)
    assert torch.allclose(peers["monai BoundaryLoss"](x, t), seglab.get_loss("boundary", "multiclass")(x, t), atol=1e-5)


def test_library_calls_leave_the_allocator_alone(tmp_path):
    """glibc's mallopt (CPU peak memory) is set by the ``seglab bench`` command only: a library call
    (``memory_shape`` in a fresh process) does not change the caller's allocator and measures no CPU memory."""
    code = ("import torch\nfrom seglab import bench\nres = {'F.cross_entropy': {}, 'dice': {}}\n"
            "bench.memory_shape((2, 3, 8, 8), bench.seglab_losses(['dice']), torch.device('cpu'), torch.float32, res)\n"
            "print(bench._LIBC is None, res['dice']['peak_extra_x_logits'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "None"]
    code = ("import sys\nfrom seglab import bench\nfrom seglab.cli import main\nrc = main(['bench', '--shapes', '2x3x8x8', "
            "'--losses', 'dice', '--rounds', '1', '--warmup', '0', '--device', 'cpu', '--force'])\n"
            "print(rc, bench._LIBC is not None)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)  # the default --out, bench_losses.json, lands there
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["0", "True"]  # the command itself does measure memory


def test_bench_table_prints_loss_specs_literally(tmp_path, capsys):
    out = tmp_path / "b.json"
    spec = "dice[include_background=false]"
    assert main(["bench", "--shapes", "2x3x8x8", "--losses", spec, "--rounds", "1", "--warmup", "0", "--no-memory",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert spec in json.loads(out.read_text())["shapes"]["2x3x8x8"]
    assert spec in text and "…" not in text
