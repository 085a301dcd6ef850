"""A small mixed results folder, rendered once for the report tests: a 4-class folder task (a UNet with its
default batch norm) and the threshold task at a 5% foreground ratio (packed tiny nets), gradient norms of the
monitors recorded only at step 0 (``grad_norm_every`` > ``steps``). Every figure is inspected when saved."""

from __future__ import annotations

import pytest
import torch
from report_helpers import CLASSES, drawn, make_four_class_folder


@pytest.fixture(scope="session")
def mixed_report(tmp_path_factory):
    """``{"rep": render_report(...) result, "results": folder, "figures": {png name: [titles of empty panels]}}``."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from seglab.report import render_report
    from seglab.sweep import run_sweep

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mixed")
    make_four_class_folder(root / "data")
    grid = {"losses": ["ce", "dice+ce"], "steps": 8, "eval_every": 4, "batch_size": 2, "grad_norm_every": 1000,
            "grids": [{"tasks": ["threshold"], "models": ["tiny"], "fg_ratios": [0.05], "task_kw": {"size": 16}},
                      {"tasks": [{"name": "folder", "path": str(root / "data"), "class_names": CLASSES}],
                       "models": ["unet"], "model_kw": {"depth": 2, "base_width": 4}}]}
    run_sweep(grid, root / "r", workers=1, show_progress=False)
    figures: dict[str, list[str]] = {}
    orig = Figure.savefig

    def checked_savefig(self, fname, *a, **k):
        panels = [ax for ax in self.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        figures[str(getattr(fname, "name", fname)).rsplit("/", 1)[-1]] = [
            ax.get_title() or f"panel {i}" for i, ax in enumerate(panels) if not drawn(ax)]
        return orig(self, fname, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", checked_savefig)
        rep = render_report(root / "r")
    return {"rep": rep, "results": root / "r", "figures": figures}
