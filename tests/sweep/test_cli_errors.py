"""seglab sweep: bad input is one line on stderr naming the option or file, exit code 2, never a traceback, and
nothing is written (issue 11)."""

import json

import pytest

from seglab.cli import main


def _one_line_error(capsys, argv, *words):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize("body, words", [
    ('losses = ["cce"]\nlrs = ["fast"]\n', ["g.toml", "lrs[0]", "'fast'"]),
    ('losses = ["cce"]\noptimizers = ["sgd"]\nmomentums = ["high"]\n', ["g.toml", "momentums[0]", "'high'"]),
    ('losses = ["cce"]\nmomentum = "high"\n', ["g.toml", "momentum", "'high'"]),
    ('losses = ["cce"]\nseeds = ["zero"]\n', ["g.toml", "seeds[0]", "'zero'"]),
    ('losses = ["cce"]\nseeds = [0.5]\n', ["seeds[0]", "integer"]),
    ('losses = ["cce"]\nconverge = {metrc = "mean_dice", treshold = 0.9}\n', ["g.toml", "converge", "'metrc'", "'treshold'"]),
    ('losses = ["cce"]\nconverge = {metric = "dice"}\n', ["converge.metric", "'dice'"]),
    ('losses = ["cce"]\nconverge = {threshold = "high"}\n', ["converge.threshold"]),
    ('losses = ["cce"]\nsteps = "many"\n', ["steps"]),
    ('losses = ["cce"]\n[[grids]]\nlrs = ["fast"]\n', ["grids[0]", "lrs[0]"]),
    ('losses = ["cce"]\noptimizers = [{name = "sgd", lr = "fast"}]\n', ["optimizers[0].lr"]),
    ('losses = ["cce"\n', ["cannot parse", "g.toml"]),
])
def test_bad_config_values_are_one_line_errors(tmp_path, capsys, body, words):
    (tmp_path / "g.toml").write_text(body)
    _one_line_error(capsys, ["sweep", "--config", str(tmp_path / "g.toml"), "--out", str(tmp_path / "r")], *words)
    assert not (tmp_path / "r").exists()


def test_non_utf8_config_file(tmp_path, capsys):
    (tmp_path / "g.toml").write_bytes('losses = ["cce"]\n# caf\xe9\n'.encode("latin-1"))
    _one_line_error(capsys, ["sweep", "--config", str(tmp_path / "g.toml"), "--list"], "g.toml", "UTF-8")
    (tmp_path / "g.yaml").write_bytes(b"\xff\xfe\x00losses: [cce]\n")
    _one_line_error(capsys, ["sweep", "--config", str(tmp_path / "g.yaml"), "--list"], "g.yaml", "UTF-8")


@pytest.mark.parametrize("argv, words", [
    (["--lrs", "fast"], ["--lrs", "'fast'"]),
    (["--momentums", "high"], ["--momentums", "'high'"]),
    (["--seeds", "zero"], ["--seeds", "'zero'"]),
    (["--threads", "0"], ["--threads"]),
    (["--workers", "-1"], ["--workers"]),
    (["--tasks", "folder"], ["'folder'", "'path'"]),
    (["--fg-ratios", "0.5", "--run-index", "x"], ["--run-index"]),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, words):
    _one_line_error(capsys, ["sweep", "--losses", "cce", *argv, "--out", str(tmp_path / "r")], *words)
    assert not (tmp_path / "r").exists()


def test_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    _one_line_error(capsys, ["sweep", "--losses", "cce", "--steps", "5", "--out", "/dev/null/x"], "--out", "/dev/null/x")
    _one_line_error(capsys, ["sweep", "--losses", "cce", "--steps", "5", "--out", str(f)], "--out", "a_file", "not a folder")
    _one_line_error(capsys, ["sweep", "--losses", "cce", "--steps", "5", "--out", str(f / "sub")], "--out", "not a folder")


def test_merge_of_a_missing_or_foreign_folder_fails(tmp_path, capsys):
    _one_line_error(capsys, ["sweep", "--merge", "/nonexistent", "--out", str(tmp_path / "all")], "/nonexistent")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["sweep", "--merge", str(tmp_path / "empty"), "--out", str(tmp_path / "all")],
                    "empty", "not a results folder")
    (tmp_path / "f").write_text("x")
    _one_line_error(capsys, ["sweep", "--merge", str(tmp_path / "f"), "--out", str(tmp_path / "all")], "not a folder")
    assert not (tmp_path / "all").exists()


def test_damaged_config_json_is_named(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text('{"runs": [')
    (tmp_path / "g.json").write_text(json.dumps({"losses": ["cce"], "steps": 2, "task_kw": {"size": 16}}))
    _one_line_error(capsys, ["sweep", "--config", str(tmp_path / "g.json"), "--out", str(tmp_path / "r"),
                             "--no-progress", "--workers", "1"], "config.json")


def test_task_opt_reaches_every_run(tmp_path, capsys):
    assert main(["sweep", "--losses", "cce,study_dice", "--task-opt", "size=16", "--task-opt", "fg_ratio=0.2",
                 "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("size=16" in ln and "fg_ratio=0.2" in ln for ln in lines), lines
    (tmp_path / "g.toml").write_text('losses = ["cce"]\ntask_kw = {size = 32, fg_ratio = 0.3}\n')
    assert main(["sweep", "--config", str(tmp_path / "g.toml"), "--task-opt", "size=16", "--list"]) == 0
    out = capsys.readouterr().out
    assert "size=16" in out and "fg_ratio=0.3" in out and "size=32" not in out, out


@pytest.mark.parametrize("argv, words", [
    (["--task-opt", "size"], ["--task-opt", "K=V", "'size'"]),
    (["--task-opt", "sise=16"], ["sise"]),
])
def test_bad_task_opt_is_one_line(tmp_path, capsys, argv, words):
    _one_line_error(capsys, ["sweep", "--losses", "cce", *argv, "--out", str(tmp_path / "r")], *words)
    assert not (tmp_path / "r").exists()


def test_sweep_lists_a_user_model(tmp_path, capsys):
    (tmp_path / "net.py").write_text("from torch import nn\n\ndef make(*, in_channels, out_channels, spatial_dims=2):\n"
                                     "    return nn.Conv2d(in_channels, out_channels, 1)\n")
    assert main(["sweep", "--losses", "cce", "--models", f"{tmp_path / 'net.py'}:make", "--task-opt", "size=16",
                 "--list"]) == 0
    assert "net.py:make" in capsys.readouterr().out
    _one_line_error(capsys, ["sweep", "--losses", "cce", "--models", f"{tmp_path / 'net.py'}:nope", "--list"],
                    "no attribute 'nope'")
