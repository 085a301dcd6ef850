"""Issue 11, "Done when": `seglab train --model mypkg.nets:make_net --task folder --task-opt path=… --out D` trains a
user's model (a package on PYTHONPATH) on a user's folder and writes both checkpoints. One subprocess, without a
TTY: its stderr carries the progress lines, its stdout exactly the one JSON line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from seglab.train import checkpoint as C

NETS = '''
from torch import nn


def make_net(*, in_channels, out_channels, spatial_dims=2, width=6):
    assert spatial_dims == 2
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(2, width), nn.ReLU(),
                         nn.Conv2d(width, out_channels, 1))
'''

LINE = re.compile(r"^step (\d+)/20 \(\d+%\)  loss \S+(  val Dice \S+ @\d+)?  elapsed \S+  ETA \S+$")


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    yy, xx = np.mgrid[:16, :16]
    for i in range(5):
        m = np.zeros((16, 16), np.uint8)
        for c in (1, 2):
            cy, cx, r = *rng.integers(3, 13, 2), rng.integers(2, 5)
            m[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c
        np.save(root / "images" / f"case{i}.npy", m + rng.normal(0, 0.3, m.shape).astype(np.float32))
        np.save(root / "masks" / f"case{i}.npy", m)
    return root


def test_user_model_on_a_user_folder_writes_both_checkpoints(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text(NETS)
    data = _folder(tmp_path / "data")
    out = tmp_path / "D"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(tmp_path), src]))
    p = subprocess.run([sys.executable, "-m", "seglab", "train", "--model", "mypkg.nets:make_net", "--task", "folder",
                        "--task-opt", f"path={data}", "--loss", "dice+ce", "--steps", "20", "--eval-every", "10",
                        "--batch-size", "2", "--device", "cpu", "--progress-interval", "0", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    (line,) = p.stdout.strip().splitlines()
    res = json.loads(line)
    assert res["status"] == "finished" and res["steps_done"] == 20
    prog = p.stderr.strip().splitlines()
    assert [int(LINE.match(x).group(1)) for x in prog] == list(range(1, 21)), p.stderr

    run_dir = out / "runs" / res["run_id"]
    assert {"steps.parquet", "evals.parquet", "summary.json", C.CHECKPOINT_LAST, C.CHECKPOINT_BEST} <= {
        f.name for f in run_dir.iterdir()}
    assert not list((out / "runs").glob(".partial-*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model_norm"] == "group" and summary["config"]["model"] == "mypkg.nets:make_net"

    sys.path.insert(0, str(tmp_path))
    try:
        from mypkg.nets import make_net
    finally:
        sys.path.remove(str(tmp_path))
    last = C.load(run_dir / C.CHECKPOINT_LAST, run_id=res["run_id"])
    best = C.load(run_dir / C.CHECKPOINT_BEST, run_id=res["run_id"])
    assert last["step"] == 20 and best["step"] == summary["best_step"] in (0, 10, 20)
    net = make_net(in_channels=1, out_channels=3)
    net.load_state_dict(last["model"])  # strict: the user's own module takes the weights back
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
