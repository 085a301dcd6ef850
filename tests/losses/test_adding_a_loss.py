"""The CONTRIBUTING recipe "Adding a loss", run on a toy loss: one new module with ``@LOSSES.register`` and nothing
else reaches ``seglab.list_losses()``, ``seglab.get_loss()``, ``describe_losses()``, the spec parser and
``format_loss``. Registration has no hand-kept list: the vocabulary imports every module of ``seglab.losses``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import seglab
import seglab.losses
from seglab.losses import registry
from seglab.losses.base import LOSSES

TOY = textwrap.dedent('''
    """A toy loss written as CONTRIBUTING's "Adding a loss" says (a region loss on the pipeline's statistics)."""

    from __future__ import annotations

    from typing import Any

    import torch

    from seglab.losses._pipeline import Options, run_terms
    from seglab.losses._region import RegionTerm, check_region_options
    from seglab.losses._stats import Stats, reduce_classes, safe_ratio
    from seglab.losses.base import LOSSES, Loss


    def check_toyrecall_options(*, mode: str, include_background: Any = True, batch: Any = False, smooth: Any = 1e-5,
                                ignore_index: Any = None, reduction: Any = "mean", copy: bool = False) -> Options:
        return check_region_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                                    ignore_index=ignore_index, soft_targets="semimetric", process_group=None,
                                    reduction=reduction, uses_class_weights=False, copy=copy)


    def toyrecall_head(st: Stats, *, smooth: float, reduction: str) -> torch.Tensor:
        return reduce_classes(1 - safe_ratio(st.tp + smooth, st.ys + smooth, den_positive=smooth > 0), None, reduction)


    TOYRECALL = RegionTerm(lambda st, w, o: toyrecall_head(st, smooth=o["smooth"], reduction=o["reduction"]))


    def toyrecall_loss(logits, target, *, mode, include_background=True, batch=False, smooth=1e-5, ignore_index=None,
                       reduction="mean", validate=None, mask=None):
        o = check_toyrecall_options(mode=mode, include_background=include_background, batch=batch, smooth=smooth,
                                    ignore_index=ignore_index, reduction=reduction)
        return run_terms([(TOYRECALL, o)], logits, target, validate=validate, mask=mask)[0]


    @LOSSES.register("toyrecall")
    class ToyRecallLoss(Loss):
        """Soft recall loss 1 - (tp + smooth) / (sum y + smooth) (a toy for the recipe test)."""

        name = "toyrecall"
        term = TOYRECALL
        fn = staticmethod(toyrecall_loss)

        def __init__(self, mode: str, include_background: bool = True, batch: bool = False, smooth: float = 1e-5,
                     ignore_index: int | None = None, reduction: str = "mean") -> None:
            super().__init__(mode, reduction)
            self._configure(check_toyrecall_options(mode=mode, include_background=include_background, batch=batch,
                                                    smooth=smooth, ignore_index=ignore_index, reduction=reduction,
                                                    copy=True))
''')


@pytest.fixture
def toy_module_in_the_package(tmp_path):
    """``toyrecall.py`` in a folder added to ``seglab.losses.__path__`` (a new file of the package, without
    writing into the source tree); removed again afterwards."""
    (tmp_path / "toyrecall.py").write_text(TOY)
    seglab.losses.__path__.append(str(tmp_path))
    try:
        yield
    finally:
        seglab.losses.__path__.remove(str(tmp_path))
        sys.modules.pop("seglab.losses.toyrecall", None)
        LOSSES._table.pop("toyrecall", None)


def test_a_new_loss_is_one_module_with_a_decorator(toy_module_in_the_package):
    assert "toyrecall" not in seglab.list_losses()
    assert "toyrecall" in registry._import_loss_modules()  # the one place that finds loss modules: no list of names
    cls = LOSSES["toyrecall"]

    assert "toyrecall" in seglab.list_losses()
    assert seglab.describe_losses()["toyrecall"] == (
        "toyrecall", "Soft recall loss 1 - (tp + smooth) / (sum y + smooth) (a toy for the recipe test).")

    loss = seglab.get_loss("toyrecall[smooth=0.5,include_background=false]", mode="multiclass")
    assert isinstance(loss, cls) and loss.smooth == 0.5 and loss.include_background is False
    assert seglab.format_loss(loss) == "toyrecall[include_background=false,smooth=0.5]"

    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    p = x.softmax(1)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).float()
    recall = ((p * onehot).sum((2, 3)) + 0.5) / (onehot.sum((2, 3)) + 0.5)
    torch.testing.assert_close(loss(x, y), (1 - recall[:, 1:]).mean())

    combo = seglab.get_loss("0.5*toyrecall + ce", mode="multiclass")  # the spec grammar and composition
    assert combo.part_names == ["toyrecall", "ce"] and combo.weights == [0.5, 1.0]
    torch.testing.assert_close(combo(x, y), 0.5 * cls("multiclass")(x, y) + seglab.CrossEntropyLoss("multiclass")(x, y))
    with pytest.raises(ValueError, match="did you mean 'toyrecall'"):
        seglab.get_loss("toyrecal", mode="multiclass")


def test_description_is_the_loss_own():
    """Every base loss says what it is where it is defined (``description`` or its docstring's first line)."""
    desc = seglab.describe_losses()
    for name, cls in LOSSES.items():
        assert desc[name] == (name, registry.describe_loss_class(cls))
        assert desc[name][1] and "\n" not in desc[name][1]
    assert desc["dice"][1].startswith("soft Dice, per sample")


def test_discovery_survives_python_O():
    """The vocabulary is complete under ``python -O`` (nothing relies on an assert)."""
    code = "import seglab; from seglab.losses.base import LOSSES; print(len(LOSSES), sorted(LOSSES))"
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"{len(LOSSES)} ") and "onehot_bce" in out
