"""`seglab --version`, `seglab info [--json]` and the one-line message of a missing optional dependency."""

from __future__ import annotations

import json
import sys

import pytest

import seglab
from seglab import _extras
from seglab.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"seglab {seglab.__version__}\n"


def test_version_has_one_source():
    from importlib import metadata

    assert metadata.version("seglab") == seglab.__version__


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    import torch

    assert d["seglab"] == seglab.__version__
    assert d["torch"] == torch.__version__
    assert d["python"].endswith(".".join(map(str, sys.version_info[:3])))
    assert d["devices"]["cuda"]["available"] == torch.cuda.is_available()
    f = d["fused_cpu_float32"]
    from seglab.kernels import cpu_ext

    assert f["cpp"]["available"] == cpu_ext.available()
    assert f["cpp"]["source_present"]
    if cpu_ext.available() and f["enabled"] and not f["env"]["SEGLAB_FUSED_BACKEND"]:
        assert f["backend"] == "cpp" and f["reason"] is None
    assert set(d["extras"]) >= {"cli", "results", "report", "images", "nifti", "brain", "bench"}
    assert "cli" in d["extras_installed"]  # the dev install has every extra


def test_info_text(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"seglab    {seglab.__version__}")
    assert "fused     CPU float32 losses:" in out


def test_info_reports_disabled_fused(monkeypatch):
    from seglab import info
    from seglab.kernels import dispatch

    monkeypatch.setenv("SEGLAB_FUSED", "0")
    with dispatch.fused(False):
        f = info.info()["fused_cpu_float32"]
    assert f["backend"] is None and "SEGLAB_FUSED=0" in f["reason"]
    monkeypatch.delenv("SEGLAB_FUSED")
    with dispatch.fused(False):
        f = info.info()["fused_cpu_float32"]
    assert f["backend"] is None and "set_fused(False)" in f["reason"]


def test_info_reports_why_no_cpp(monkeypatch):
    from seglab import info
    from seglab.kernels import cpu_ext, dispatch

    monkeypatch.delenv("SEGLAB_FUSED_BACKEND", raising=False)
    monkeypatch.setattr(cpu_ext, "available", lambda: False)
    monkeypatch.setattr(cpu_ext, "unavailable_reason", lambda: "no C++ compiler found")
    with dispatch.fused(True):
        f = info.info()["fused_cpu_float32"]
    assert f["backend"] is None and "no C++ compiler found" in f["reason"]


def test_info_without_extras(monkeypatch):
    """`seglab info` needs only the core install."""
    for mod in _extras.EXTRAS:
        monkeypatch.setitem(sys.modules, mod, None)
    from seglab import info

    d = info.info()
    assert d["extras_installed"] == []
    assert all(v is None for pkgs in d["extras"].values() for v in pkgs.values())


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # another test of this worker may have imported it
    with pytest.raises(ImportError) as e:
        _extras.require("pyarrow.parquet", "the results store")
    assert isinstance(e.value, _extras.MissingExtraError)
    assert str(e.value) == "the results store needs pyarrow, which is not installed: pip install 'seglab[results]'"
    assert e.value.extra == "results"


def test_require_returns_the_module():
    rich = pytest.importorskip("rich")
    assert _extras.require("rich", "x") is rich


@pytest.mark.parametrize("argv, extra", [
    (["report", "no-such-folder"], "cli"),
    (["sweep", "--list", "--losses", "ce"], "cli"),
    (["train", "--loss", "ce"], "cli"),
])  # (advise prints plain text when rich is missing or output is piped: it needs no extra for that)
def test_cli_missing_extra_one_line_exit_2(monkeypatch, capsys, argv, extra):
    monkeypatch.setitem(sys.modules, "rich", None)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0] == f"seglab {argv[0]} needs rich, which is not installed: pip install 'seglab[{extra}]'"


def test_cli_report_needs_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["seglab report needs matplotlib, which is not installed: pip install 'seglab[report]'"]


def test_reading_png_without_pillow(monkeypatch, tmp_path):
    from seglab.data.readers import read_array

    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(_extras.MissingExtraError, match=r"pip install 'seglab\[images\]'"):
        read_array(tmp_path / "m.png")


def test_yaml_config_without_pyyaml(monkeypatch, tmp_path):
    from seglab.sweep.grid import load_config

    (tmp_path / "g.yaml").write_text("losses: [ce]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(_extras.MissingExtraError, match=r"pip install 'seglab\[cli\]'"):
        load_config(tmp_path / "g.yaml")


def test_import_seglab_and_losses_without_extras():
    """`import seglab` and a loss call need only torch + numpy (fresh interpreter, extras blocked)."""
    import subprocess

    blocked = list(_extras.EXTRAS)
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "import torch, seglab\n"
        "x = torch.randn(2, 3, 8, 8, requires_grad=True); t = torch.randint(0, 3, (2, 8, 8))\n"
        "seglab.get_loss('dice+ce', mode='multiclass')(x, t).backward()\n"
        "assert x.grad is not None\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_info_text_columns_never_run_together():
    """An extra's name longer than the old 8-character column ("tensorboard") is followed by a space."""
    from seglab.info import format_text, info

    d = info()
    d["extras"] = {"tensorboard": {"tensorboard": None}, "ray": {"ray": "2.0"}, "a-very-long-extra": {"pkg": None}}
    lines = [ln for ln in format_text(d).splitlines() if ln.startswith("extra")]
    assert [ln.split() for ln in lines] == [["extra", "tensorboard", "tensorboard", "missing"],
                                            ["extra", "ray", "ray", "2.0"],
                                            ["extra", "a-very-long-extra", "pkg", "missing"]]
    starts = {ln.rindex(" ".join(ln.split()[2:])) for ln in lines}
    assert len(starts) == 1  # the states line up in one column


def test_info_says_where_surface_distances_run():
    from seglab.info import format_text, info

    d = info()
    assert d["surface_distances"]["device"] == "cpu" and d["surface_distances"]["transform"] in ("edt", "scipy")
    assert "surface distances on the CPU" in format_text(d) and "copied to the CPU" in format_text(d)
