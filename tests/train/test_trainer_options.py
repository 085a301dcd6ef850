"""Issue 22: trainer options (augmentation, LR schedule with warm-up, weight decay, gradient clipping, bf16
autocast), all off by default and out of the run id there; ``--print-config`` / ``--config`` rerun a run exactly."""

import json

import pytest
import torch

from seglab.cli import main
from seglab.train import RunSpec, train_run, validate_runs
from seglab.train.augment import augment_batch
from seglab.train.config import TRAINER_DEFAULTS, lr_factor

torch.set_num_threads(1)

OPTS = ["--augment", "flips,rot90,intensity", "--schedule", "cosine", "--warmup", "1", "--weight-decay", "0.01",
        "--grad-clip", "1", "--amp", "bf16"]
RUN = ["--loss", "dice+ce", "--task-opt", "size=16", "--steps", "3", "--eval-every", "2", "--device", "cpu", "-q"]


def _cfg(**kw):
    base = dict(loss="ce", task="threshold", task_kw={"fg_ratio": 0.5, "size": 16}, model="tiny", seed=1, steps=3,
                batch_size=2, eval_every=3, grad_norm_every=0)
    base.update(kw)
    return validate_runs([RunSpec(**base)])[0]


def test_options_at_their_defaults_leave_the_run_id_unchanged():
    plain = _cfg()
    explicit = _cfg(**TRAINER_DEFAULTS)
    assert plain.run_id == explicit.run_id and plain.trainer_options() == {}
    for k, v in [("augment", ["flips"]), ("schedule", "poly"), ("warmup", 2), ("weight_decay", 0.1),
                 ("grad_clip", 1.0), ("amp", "bf16")]:
        c = _cfg(**{k: v})
        assert c.run_id != plain.run_id and c.trainer_options() == {k: v}, k
        assert k in c.label


def test_each_option_changes_the_training_and_is_recorded():
    base = train_run(_cfg())
    assert all(torch.isfinite(torch.tensor(base.steps["train_loss"])))
    for k, v in [("augment", ["flips", "rot90", "intensity"]), ("schedule", "cosine"), ("warmup", 3),
                 ("weight_decay", 0.5), ("grad_clip", 1e-4), ("amp", "bf16")]:
        r = train_run(_cfg(**{k: v}))
        assert r.summary["status"] == "finished" and r.summary["config"][k] == v, k
        assert r.steps["train_loss"][1:] != base.steps["train_loss"][1:], k  # the options act from step 0 or 1
    again = train_run(_cfg(augment=["flips", "rot90", "intensity"], amp="bf16", grad_clip=0.5))
    assert again.steps == train_run(_cfg(augment=["flips", "rot90", "intensity"], amp="bf16", grad_clip=0.5)).steps


def test_schedules_with_warmup():
    c = RunSpec(loss="ce", steps=11, schedule="poly", warmup=1)
    assert lr_factor(c, 0) == 1.0 and lr_factor(c, 1) == 1.0 and lr_factor(c, 10) == pytest.approx(0.1 ** 0.9)
    w = RunSpec(loss="ce", steps=10, warmup=4)
    assert [lr_factor(w, k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("dims", [2, 3])
def test_augmentation_is_deterministic_and_moves_images_with_their_targets(dims):
    g = torch.Generator().manual_seed(0)
    shape = (4, 6, 6) if dims == 2 else (4, 5, 6, 6)
    y = torch.randint(0, 3, shape, generator=g)
    x = y[:, None].float()
    xa, ya = augment_batch(x, y, ["flips", "rot90"], spatial_dims=dims, seed=1, step=5)
    assert torch.equal(xa[:, 0], ya.float())  # same geometric transform for image and target
    assert not torch.equal(ya, y)
    xb, yb = augment_batch(x, y, ["flips", "rot90"], spatial_dims=dims, seed=1, step=5)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    _, yc = augment_batch(x, y, ["flips", "rot90"], spatial_dims=dims, seed=1, step=6)
    assert not torch.equal(yc, ya)
    xi, yi = augment_batch(x, y, ["intensity"], spatial_dims=dims, seed=1, step=5)
    assert torch.equal(yi, y) and not torch.equal(xi, x)
    state = torch.get_rng_state()
    augment_batch(x, y, ["flips", "rot90", "intensity"], spatial_dims=dims, seed=2, step=0)
    assert torch.equal(state, torch.get_rng_state())  # never the global generator


def test_a_run_from_the_printed_config_is_bit_identical(tmp_path, capsys):
    from seglab.results import ResultsStore
    from seglab.train import checkpoint as C

    assert main(["train", *RUN, *OPTS, "--out", str(tmp_path / "a")]) == 0
    first = json.loads(capsys.readouterr().out.strip())
    assert main(["train", *RUN, *OPTS, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert f"run id {first['run_id']}" in text and "augment: [flips, rot90, intensity]" in text
    (tmp_path / "run.yaml").write_text(text)
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--device", "cpu", "-q", "--out", str(tmp_path / "b")]) == 0
    second = json.loads(capsys.readouterr().out.strip())
    rid = first["run_id"]
    assert second["run_id"] == rid
    a, b = ResultsStore(tmp_path / "a"), ResultsStore(tmp_path / "b")
    same = lambda u, v: json.dumps(u, sort_keys=True) == json.dumps(v, sort_keys=True)  # noqa: E731 (NaN == NaN)
    assert same(a.steps(rid), b.steps(rid)) and same(a.evals(rid), b.evals(rid))
    ma = C.load(a.run_dir(rid) / C.CHECKPOINT_LAST)["model"]
    mb = C.load(b.run_dir(rid) / C.CHECKPOINT_LAST)["model"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert a.summary(rid)["config"]["schedule"] == "cosine"


@pytest.mark.parametrize("argv, words", [
    (["--augment", "flips,blur"], "unknown transform"),
    (["--warmup", "-1"], "warmup"),
    (["--grad-clip", "0"], "grad_clip"),
    (["--weight-decay", "-1"], "weight_decay"),
    (["--amp", "fp16"], "needs a CUDA device"),
    (["--config", "x.yaml"], "do not also give --loss, --task-opt"),
])
def test_bad_trainer_options_are_one_line_exit_2(argv, words, capsys):
    assert main(["train", *RUN, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_a_resumed_run_with_every_option_equals_an_uninterrupted_one(tmp_path):
    from seglab.train.loop import TrainInterrupted
    from seglab.train import checkpoint as C

    cfg = _cfg(steps=6, eval_every=3, augment=["flips", "rot90", "intensity"], schedule="cosine", warmup=2,
               weight_decay=0.01, grad_clip=0.5, amp="bf16")
    full = train_run(cfg, run_dir=tmp_path / "full")
    (tmp_path / "part").mkdir()
    with pytest.raises(TrainInterrupted):
        train_run(cfg, run_dir=tmp_path / "part", should_stop=lambda done: "hook" if done == 4 else None)
    res = train_run(cfg, run_dir=tmp_path / "part", resume=C.load(tmp_path / "part" / C.CHECKPOINT_LAST))
    assert json.dumps(res.steps) == json.dumps(full.steps) and res.evals == full.evals
    a = C.load(tmp_path / "part" / C.CHECKPOINT_LAST)["model"]
    b = C.load(tmp_path / "full" / C.CHECKPOINT_LAST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
