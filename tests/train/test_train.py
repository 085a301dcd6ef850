"""seglab.train: determinism, divergence, convergence bookkeeping, configuration errors."""

import math

import pytest
import torch

from seglab.train import ConfigError, RunSpec, train_run, validate_runs

torch.set_num_threads(1)


def _cfg(**kw):
    base = dict(loss="study_cce", task="threshold", task_kw={"fg_ratio": 0.5, "size": 16}, model="tiny", model_kw={"norm": None},
                optimizer="adam", lr=1e-2, seed=3, steps=25, batch_size=2, eval_every=10)
    base.update(kw)
    return RunSpec(**base)


def test_run_is_deterministic_for_a_seed():
    a = train_run(_cfg(loss="study_dicefg"))
    b = train_run(_cfg(loss="study_dicefg"))
    assert a.steps == b.steps
    assert a.evals == b.evals
    c = train_run(_cfg(loss="study_dicefg", seed=4))
    assert c.steps["train_loss"] != a.steps["train_loss"]


def test_records_every_monitor_and_its_gradient_norm_each_step():
    r = train_run(_cfg(model_kw={"norm": "batch"}, grad_norm_every=1))
    mons = ["study_cce", "study_dice", "study_dicefg", "study_dice_sq", "study_dicefg_sq"]
    assert r.spec.monitors == mons
    for m in mons:
        assert len(r.steps[f"loss/{m}"]) == 25 and len(r.steps[f"gnorm/{m}"]) == 25
        assert all(v > 0 and math.isfinite(v) for v in r.steps[f"gnorm/{m}"])
    assert r.steps["train_loss"] == r.steps["loss/study_cce"]
    assert [e["step"] for e in r.evals] == [0, 10, 20, 25]
    e = r.evals[-1]
    assert len(e["dice"]) == 2 and len(e["iou"]) == 2 and 0 <= e["accuracy"] <= 1
    s = r.summary
    assert s["status"] == "finished" and s["steps_done"] == 25 and s["run_id"] == r.spec.run_id


def test_gradient_norm_matches_a_direct_computation():
    # the recorded norm of the training loss's gradient at step 0 equals ||grad|| computed by hand
    from seglab.data import create_task
    from seglab.models import create_model
    from seglab.train import build_loss

    cfg = _cfg(steps=1)
    r = train_run(cfg)
    task = create_task("threshold", fg_ratio=0.5, size=16)
    torch.manual_seed(cfg.seed)
    net = create_model("tiny", in_channels=1, out_channels=2, norm=None)
    x, y = task.batch(0, 2, cfg.seed)
    loss = build_loss("study_dice", "multiclass")(net(x), y)
    loss.backward()
    g = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters()))
    assert r.steps["gnorm/study_dice"][0] == pytest.approx(float(g), rel=1e-5)


def test_diverging_run_is_recorded_as_diverged():
    r = train_run(_cfg(optimizer="sgd", lr=1e12, steps=200))
    assert r.summary["status"] == "diverged"
    assert r.summary["diverged_step"] is not None and r.summary["diverged_step"] < 200
    assert r.summary["converged"] is False
    assert len(r.steps["step"]) == r.summary["diverged_step"] + 1
    assert not math.isfinite(r.steps["train_loss"][-1]) or not math.isfinite(r.steps["gnorm/study_cce"][-1])


def test_convergence_is_reported():
    r = train_run(_cfg(steps=150, eval_every=50, lr=1e-2, model_kw={"norm": "batch"}))
    s = r.summary
    assert s["converged"] is True, s
    assert s["converged_step"] in (50, 100, 150)
    assert s["final_mean_dice"] >= 0.9


@pytest.mark.parametrize("kw, match", [
    (dict(loss="nosuchloss"), "nosuchloss"),
    (dict(task="nosuchtask"), "nosuchtask"),
    (dict(task_kw={"fg_ratio": 1.5}), "fg_ratio"),
    (dict(task_kw={"fg_ratio": 0.0}), "fg_ratio"),
    (dict(loss="bce"), "does not apply to a multiclass task"),
    (dict(loss="dice[mode=multilabel]"), "multilabel"),
    (dict(monitors=["cce", "bce"]), "bce"),
    (dict(optimizer="rmsprop"), "optimizer"),
])
def test_bad_configs_fail_before_any_run(kw, match):
    with pytest.raises(ConfigError, match=match):
        validate_runs([_cfg(), _cfg(**kw)])


def test_train_cli_rejects_bad_config_before_running(capsys):
    from seglab.cli import main

    assert main(["train", "--loss", "bce", "--steps", "5"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_train_cli_bad_loss_spec_is_one_line_naming_the_option(capsys):
    from seglab.cli import main

    for spec, word in [("dice[include_background=no]", "include_background"), ("dice[smoth=1]", "smooth"),
                       ("dice[class_weights=[1,", "'['"), ("dicefg[batch=true", "'['"), ("dcie", "dice"),
                       ("bce", "does not apply")]:
        assert main(["train", "--loss", spec, "--steps", "2"]) == 2, spec
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: --loss") and word in err, (spec, err)


def test_train_cli_rejects_a_bad_option_value(capsys):
    """An option value the loss's constructor rejects is a configuration error too (exit 2, one line)."""
    from seglab.cli import main

    assert main(["train", "--loss", "dice[soft_targets=bogus]", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: --loss") and "soft_targets" in err, err


def test_recorded_loss_pastes_into_get_loss():
    from seglab import format_loss, get_loss

    spec = "0.5*dice[batch=True, include_background=False] + ce[class_weights=[1,2]]"
    (rc,) = validate_runs([_cfg(loss=spec, monitors=["study_dice", "dice[squared=true]"])])
    assert rc.loss == "0.5*dice[batch=true,include_background=false] + ce[class_weights=[1.0,2.0]]"
    assert rc.monitors == ["study_dice", "dice[squared=true]"]
    assert format_loss(get_loss(rc.loss, mode="multiclass")) == rc.loss


def test_loss_spec_with_list_values_and_commas_inside_brackets():
    """The loss `seglab advise` recommends (a class-weight list) must be expressible in train/sweep specs."""
    from seglab.losses.registry import parse_loss_spec
    from seglab.cli.sweep import _split

    d, ce = parse_loss_spec("dice[include_background=False]+ce[class_weights=[0.163,1,1.929]]")
    assert (d.name, d.options) == ("dice", {"include_background": False})
    assert (ce.name, ce.options) == ("ce", {"class_weights": [0.163, 1, 1.929]})
    assert _split("dice[batch=False,smooth=1e-5],study_cce", str) == ["dice[batch=False,smooth=1e-5]", "study_cce"]


@pytest.mark.parametrize("argv, words", [
    (["--device", "tpu"], ["--device", "'tpu'"]),
    (["--out", "/dev/null/results"], ["--out", "/dev/null/results"]),
    (["--converge", "mean_dice>=high"], ["--converge"]),
    (["--converge", "mean_dice"], ["--converge"]),
    (["--task-opt", "size"], ["--task-opt"]),
    (["--model-opt", "width"], ["--model-opt"]),
    (["--task", "folder"], ["'folder'", "'path'"]),
])
def test_train_cli_bad_input_is_one_line_before_training(capsys, argv, words):
    """Checked before the first step: no run is trained and then lost (issue 11)."""
    from seglab.cli import main

    assert main(["train", "--loss", "cce", "--steps", "100000", *argv]) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


def test_train_cli_device_and_out_checks(tmp_path, capsys):
    from seglab.cli import main

    if not torch.cuda.is_available():
        assert main(["train", "--loss", "cce", "--steps", "100000", "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--device 'cuda'" in err and "CUDA is not available" in err, err
    f = tmp_path / "a_file"
    f.write_text("x")
    assert main(["train", "--loss", "cce", "--steps", "100000", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a folder" in err, err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{")
    assert main(["train", "--loss", "cce", "--steps", "100000", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.json" in err, err
    assert main(["train", "--loss", "cce", "--steps", "3", "--eval-every", "3", "--device", "cpu",
                 "--out", str(tmp_path / "ok")]) == 0
    assert len(list((tmp_path / "ok" / "runs").iterdir())) == 1


_USER_NET = '''
from torch import nn


def make(*, in_channels, out_channels, spatial_dims=2, width=4):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_channels, 1))


def not_a_module(*, in_channels, out_channels, spatial_dims=2):
    return "net"


NOT_CALLABLE = 5
'''

_FAST = ["--loss", "cce", "--steps", "2", "--eval-every", "2", "--task-opt", "size=16", "--device", "cpu"]


def test_train_cli_user_model_from_file_and_module(tmp_path, capsys, monkeypatch):
    import json

    from seglab.cli import main

    (tmp_path / "net.py").write_text(_USER_NET)
    assert main(["train", *_FAST, "--model", f"{tmp_path / 'net.py'}:make", "--model-opt", "width=3"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["status"] == "finished" and out["steps_done"] == 2
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "seglab_test_user_net.py").write_text(_USER_NET)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    assert main(["train", *_FAST, "--model", "seglab_test_user_net:make"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "finished"


def test_train_cli_user_model_errors_are_one_line(tmp_path, capsys):
    from seglab.cli import main

    (tmp_path / "net.py").write_text(_USER_NET)
    f = tmp_path / "net.py"
    for model, words in [
        ("seglab_no_such_module_xyz:make", "no module named"),
        (f"{tmp_path / 'missing.py'}:make", "no such file"),
        (f"{f}:nope", "no attribute 'nope'"),
        (f"{f}:NOT_CALLABLE", "not callable"),
        (f"{f}:not_a_module", "not a torch.nn.Module"),
    ]:
        assert main(["train", *_FAST, "--model", model]) == 2, model
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error:") and words in err, (model, err)
    assert main(["train", *_FAST, "--model", f"{f}:make", "--model-opt", "depth=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'depth'" in err, err


def test_user_models_are_never_packed(tmp_path):
    from seglab.train.packed import packable

    (tmp_path / "net.py").write_text(_USER_NET)
    assert packable(_cfg(model="tiny", model_kw={"norm": None}))
    assert not packable(_cfg(model=f"{tmp_path / 'net.py'}:make", model_kw={}))
    assert not packable(_cfg(model="seglab.models.tiny:TinyFCN", model_kw={}))
