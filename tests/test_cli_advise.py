"""``seglab advise PATH --compare`` advises on the masks that ``seglab compare --ablate advised`` trains on (the
training cases of the folder, the validation cases left out), so both commands name the same advised loss
(issue 22)."""

from __future__ import annotations


from advise_folders import make_split_advice_folder

import seglab
from seglab.cli import main


def test_advise_compare_trains_the_loss_compare_advises(tmp_path, capsys, monkeypatch):
    from seglab.cli import compare as compare_cli
    from seglab.compare.advised import advised_spec
    from seglab.data import create_task
    from seglab.losses.registry import split_specs

    root = tmp_path / "data"
    make_split_advice_folder(root)
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
