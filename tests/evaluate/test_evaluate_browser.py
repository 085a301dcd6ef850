"""seglab evaluate's HTML in a real headless browser (Debian's chromium, installed by `make test`): the page
loads offline, every metric has its table and a strip plot with one dot per finite per-case value."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from seglab.cli import main

CHECK = """<script>
window.addEventListener("load", function () {
  var svgs = Array.from(document.querySelectorAll("svg")).map(function (s) {
    var b = s.getBoundingClientRect();
    return {w: b.width, h: b.height, dots: s.querySelectorAll("circle").length};
  });
  var pre = document.createElement("pre"); pre.id = "check";
  pre.textContent = JSON.stringify({svgs: svgs, tables: document.querySelectorAll("table").length,
                                    h2: Array.from(document.querySelectorAll("h2")).map(function (h) { return h.textContent; })});
  document.body.appendChild(pre);
});
</script>"""


def test_evaluate_page_in_headless_chromium(tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("chromium not found on PATH (make test installs it: apt-get install -y chromium)")
    from PIL import Image

    for i in range(4):
        g = np.zeros((20, 20), np.uint8)
        g[2:9, 2:9] = 1
        g[12:17, 10:18] = 2
        for sub, arr in (("gt", g), ("pred", np.roll(g, i % 2, axis=0))):
            (tmp_path / sub).mkdir(exist_ok=True)
            Image.fromarray(arr).save(tmp_path / sub / f"c{i}.png")
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--out", str(out), "--metrics",
                 "dice,hd95", "--class-names", "bg,[/]<b>,vessel", "--no-progress"]) == 0
    page = (out / "index.html").read_text()
    assert "&lt;b&gt;" in page and "<b>," not in page  # class names are escaped
    checked = out / "check.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"))
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                        checked.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="check">(.*?)</pre>', r.stdout, re.S)
    assert m, r.stderr[-2000:]
    res = json.loads(html.unescape(m.group(1)))
    assert res["h2"] == ["dice", "hd95"] and res["tables"] == 2
    assert [s["dots"] for s in res["svgs"]] == [8, 8]  # 4 cases x 2 foreground classes, all finite
    assert all(s["w"] >= 600 and s["h"] >= 50 for s in res["svgs"])
