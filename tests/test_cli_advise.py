"""``seglab advise PATH --compare`` advises on the masks that ``seglab compare --ablate advised`` trains on (the
training cases of the folder, the validation cases left out), so both commands name the same advised loss
(issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import seglab
from seglab.cli import main


def _folder(root: Path, n: int = 10) -> None:
    """A folder task whose validation cases hold a big class-2 band and whose training cases a tiny square, so that
    advice on all masks and advice on the training masks differ."""
    from seglab.data import create_task

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        m = np.zeros((16, 16), dtype=np.uint8)
        m[2:8, 2:8] = 1
        m[10:12, 10:12] = 2
        np.save(root / "masks" / f"case{i:02d}.npy", m)
        np.save(root / "images" / f"case{i:02d}.npy", rng.normal(size=(16, 16)).astype(np.float32) + m)
    for stem in create_task("folder", path=str(root)).val_cases:
        m = np.zeros((16, 16), dtype=np.uint8)
        m[2:8, 2:8] = 1
        m[8:16, 0:16] = 2
        np.save(root / "masks" / f"{stem}.npy", m)


def test_advise_compare_trains_the_loss_compare_advises(tmp_path, capsys, monkeypatch):
    from seglab.cli import compare as compare_cli
    from seglab.compare.advised import advised_spec
    from seglab.data import create_task
    from seglab.losses.registry import split_specs

    root = tmp_path / "data"
    _folder(root)
    ran = []
    monkeypatch.setattr(compare_cli, "run", lambda ns: ran.append(ns) or 0)  # the training itself is compare's test
    assert main(["advise", str(root), "--compare", "--seeds", "2", "--steps", "1", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    (ns,) = ran
    trained = [s.strip() for s in split_specs(ns.losses)]
    want, _adv, source = advised_spec("folder", {"path": str(root)})  # what compare --ablate advised trains
    assert trained[0] == want
    assert ns.path == str(root) and ns.seeds == 2 and ns.steps == 1 and ns.out == str(tmp_path / "c")
    n_train = len(create_task("folder", path=str(root)).train_cases)
    assert f"advised on the {n_train} training masks of" in out and source in out
    # the data make the difference: advice on every mask (training and validation) names another loss
    every = seglab.advise(str(root / "masks"))
    assert every.loss_spec != want


def test_advise_compare_on_a_task_trains_the_loss_compare_advises(tmp_path, capsys, monkeypatch):
    from seglab.cli import compare as compare_cli
    from seglab.compare.advised import advised_spec
    from seglab.losses.registry import split_specs

    ran = []
    monkeypatch.setattr(compare_cli, "run", lambda ns: ran.append(ns) or 0)
    assert main(["advise", "--task", "shapes", "--task-opt", "size=16", "--compare", "--seeds", "2", "--steps", "1",
                 "--out", str(tmp_path / "c")]) == 0
    (ns,) = ran
    assert [s.strip() for s in split_specs(ns.losses)][0] == advised_spec("shapes", {"size": 16})[0]
    assert ns.task == "shapes" and ns.task_opt == ["size=16"]
    assert "advised on the " in capsys.readouterr().out
