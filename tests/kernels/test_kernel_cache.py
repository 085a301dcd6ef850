"""The C++ kernel cache survives truncated libraries, killed builds and bad compilers (issue 10).

The loader runs in a subprocess (``sys.executable -c``) with its own ``SEGLAB_KERNEL_CACHE``: a crash (SIGBUS)
cannot kill pytest, and ``cpu_ext``'s per-process ``_lib`` / ``_failed`` start fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from seglab.kernels import cpu_ext



@pytest.fixture
def fake_cxx(tmp_path):
    """A "compiler" that copies this process's (good) kernel library to its -o path and logs each call: fast
    rebuilds, and the number of builds can be counted."""
    if not cpu_ext.available():
        pytest.skip("no C++ kernels on this machine")
    good = cpu_ext.load()._name
    log = tmp_path / "cxx.log"
    script = tmp_path / "fakecxx.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> '{log}'\n"
        "case \"$1\" in --version) echo fakecxx 1.0; exit 0;; esac\n"
        "out=''; prev=''\n"
        "for a in \"$@\"; do if [ \"$prev\" = '-o' ]; then out=\"$a\"; fi; prev=\"$a\"; done\n"
        f"cp '{good}' \"$out\"\n"
    )
    script.chmod(0o755)

    def builds():
        return sum(1 for line in log.read_text().splitlines() if "--version" not in line) if log.exists() else 0

    return str(script), builds


_PROBE = (
    "import json, warnings\n"
    "warnings.simplefilter('ignore')\n"
    "from seglab.kernels import cpu_ext\n"
    "ok = cpu_ext.available()\n"
    "out = {'ok': ok, 'reason': cpu_ext.unavailable_reason()}\n"
    "if ok:\n"
    "    import torch\n"
    "    from seglab.kernels import eager\n"
    "    x = torch.randn(2, 3, 40, dtype=torch.float64); t = torch.randint(0, 3, (2, 40))\n"
    "    out['argsort_ok'] = bool((cpu_ext.argsort_desc(x) == torch.sort(x, -1, descending=True)[1]).all())\n"
    "print(json.dumps(out))\n"
)


def _probe(cache, **env):
    e = {**os.environ, "SEGLAB_KERNEL_CACHE": str(cache)}
    e.pop("CXX", None)
    e.update(env)
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"loader died with {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _libs(cache):
    return sorted(p for p in cache.iterdir() if p.name.startswith("seglab_fused_") and p.name.endswith(".so"))


def test_truncated_library_is_rebuilt_not_loaded(tmp_path, fake_cxx):
    cxx, builds = fake_cxx
    cache = tmp_path / "cache"
    r = _probe(cache, CXX=cxx)
    assert r["ok"] and r["argsort_ok"], r
    assert builds() == 1
    (so,) = _libs(cache)
    stamp_file = so.parent / (so.name + ".stamp")
    stamp = json.loads(stamp_file.read_text())
    size = so.stat().st_size
    assert stamp["size"] == size and stamp == cpu_ext._digest(so)
    assert _probe(cache, CXX=cxx)["ok"] and builds() == 1  # a good cached library is reused
    with open(so, "r+b") as f:  # truncated mid-file (full disk, killed copy): dlopen of it dies with SIGBUS
        f.truncate(size // 3)
    r = _probe(cache, CXX=cxx)
    assert r["ok"] and r["argsort_ok"], r
    assert builds() == 2 and so.stat().st_size == size
    # same size, corrupted bytes: the sha256 catches it
    data = bytearray(so.read_bytes())
    data[size // 2: size // 2 + 64] = bytes(64)
    so.write_bytes(bytes(data))
    r = _probe(cache, CXX=cxx)
    assert r["ok"] and r["argsort_ok"], r
    assert builds() == 3 and cpu_ext._digest(so) == stamp
    # a library without a stamp (e.g. left by an older seglab) is rebuilt, not trusted
    stamp_file.unlink()
    assert _probe(cache, CXX=cxx)["ok"]
    assert builds() == 4 and stamp_file.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([so.name, stamp_file.name])


def test_stale_build_temps_are_removed(tmp_path, fake_cxx):
    cxx, builds = fake_cxx
    cache = tmp_path / "cache"
    cache.mkdir()
    old = cache / (cpu_ext._TMP_PREFIX + "killed.so")
    old.write_bytes(b"half a library")
    past = time.time() - 3600
    os.utime(old, (past, past))
    fresh = cache / (cpu_ext._TMP_PREFIX + "building.so")  # a build running right now in another process
    fresh.write_bytes(b"being written")
    assert _probe(cache, CXX=cxx)["ok"]
    assert builds() == 1
    assert not old.exists()
    assert [p.name for p in cache.iterdir() if p.name.startswith(cpu_ext._TMP_PREFIX)] == [fresh.name]


def test_failed_build_leaves_no_temp_and_names_command_and_exit_code(tmp_path):
    """CXX=/bin/false: unavailable, reason with the command and its exit code; nothing left in the cache."""
    false = shutil.which("false") or "/bin/false"
    r = _probe(tmp_path, CXX=false)
    assert not r["ok"]
    assert false in r["reason"] and "exited with code 1" in r["reason"], r["reason"]
    assert list(tmp_path.iterdir()) == []


def test_failed_build_reports_stderr_tail(tmp_path):
    script = tmp_path / "badcxx.sh"
    script.write_text("#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --version) exit 0;; esac; done\n"
                      "echo 'fatal: out of cheese' >&2\nexit 3\n")
    script.chmod(0o755)
    cache = tmp_path / "cache"
    r = _probe(cache, CXX=str(script))
    assert not r["ok"]
    assert "exited with code 3" in r["reason"] and "out of cheese" in r["reason"], r["reason"]
    assert list(cache.iterdir()) == []


def test_missing_cxx_is_not_silently_replaced(tmp_path):
    r = _probe(tmp_path, CXX="/nonexistent/g++")
    assert not r["ok"]
    assert "CXX" in r["reason"] and "/nonexistent/g++" in r["reason"], r["reason"]


def _truncate_and_forge_stamp(so, keep):
    """Cut the library short and rewrite its stamp to match the cut file (issue 24 item 17: a forged stamp)."""
    with open(so, "r+b") as f:
        f.truncate(keep)
    (so.parent / (so.name + ".stamp")).write_text(json.dumps(cpu_ext._digest(so)))


def test_truncated_library_with_forged_stamp_is_rebuilt_or_refused(tmp_path, fake_cxx):
    """The stamp matches the truncated file, yet the loader never maps it (it would die with SIGBUS): it rebuilds,
    and if the rebuild cannot give a complete library it refuses with a message naming the problem."""
    cxx, builds = fake_cxx
    cache = tmp_path / "cache"
    assert _probe(cache, CXX=cxx)["ok"] and builds() == 1
    (so,) = _libs(cache)
    size = so.stat().st_size
    for keep in (size // 3, size - 1, 200):
        _truncate_and_forge_stamp(so, keep)
        assert cpu_ext.elf_problem(so) is not None
        r = _probe(cache, CXX=cxx)  # _probe asserts the subprocess exited normally (no SIGBUS)
        assert r["ok"] and r["argsort_ok"], r
        assert so.stat().st_size == size and cpu_ext.elf_problem(so) is None
    assert builds() == 4
    # a compiler that now fails: the cut library with its forged stamp is still not loaded, and the reason says why
    flag = tmp_path / "fail"
    flag.write_text("")
    script = tmp_path / "failing.sh"
    script.write_text(f"#!/bin/sh\ncase \"$1\" in --version) exec '{cxx}' \"$@\";; esac\n"
                      f"if [ -e '{flag}' ]; then echo 'disk full' >&2; exit 1; fi\nexec '{cxx}' \"$@\"\n")
    script.chmod(0o755)
    flag.unlink()
    assert _probe(cache, CXX=str(script))["ok"]
    (so2,) = [p for p in _libs(cache) if p != so]
    _truncate_and_forge_stamp(so2, so2.stat().st_size // 2)
    flag.write_text("")
    r = _probe(cache, CXX=str(script))
    assert not r["ok"] and "exited with code 1" in r["reason"] and "disk full" in r["reason"], r


def test_compiler_output_cut_short_is_refused(tmp_path, fake_cxx):
    """A "compiler" that exits 0 but writes half a library: refused before dlopen, with a clear reason."""
    good = cpu_ext.load()._name
    script = tmp_path / "halfcxx.sh"
    script.write_text("#!/bin/sh\ncase \"$1\" in --version) echo halfcxx 1.0; exit 0;; esac\n"
                      "out=''; prev=''\nfor a in \"$@\"; do if [ \"$prev\" = '-o' ]; then out=\"$a\"; fi; prev=\"$a\"; done\n"
                      f"head -c 20000 '{good}' > \"$out\"\n")
    script.chmod(0o755)
    cache = tmp_path / "cache"
    r = _probe(cache, CXX=str(script))
    assert not r["ok"] and "incomplete library" in r["reason"] and "outside the file" in r["reason"], r
    assert list(cache.iterdir()) == []


def test_elf_check_accepts_the_built_library():
    if not cpu_ext.available():
        pytest.skip("no C++ kernels on this machine")
    from pathlib import Path

    assert cpu_ext.elf_problem(Path(cpu_ext.load()._name)) is None
