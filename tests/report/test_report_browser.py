"""The HTML report in a real headless browser (Debian's chromium; ``make test`` installs it when missing): every
<img> decodes (naturalWidth > 0), no reference of the page is broken, and a screenshot is kept as a test
artifact in ``$SEGLAB_TEST_ARTIFACTS`` (default ``tests/artifacts/``, ignored by git). Issue 11."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ARTIFACTS = Path(os.environ.get("SEGLAB_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")

# run after the page has loaded: one JSON line with every image's decoded size and every reference
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images).map(function (i) {
    return {src: (i.getAttribute("src") || "").slice(0, 60), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight};
  });
  var pre = document.createElement("pre");
  pre.id = "seglab-browser-check";
  pre.textContent = JSON.stringify({images: imgs, title: document.title});
  document.body.appendChild(pre);
});
</script>"""


def find_browser() -> str | None:
    env = os.environ.get("SEGLAB_CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


class _Refs(HTMLParser):
    """Every URL-valued attribute of a page (src, href, srcset, poster, data)."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.n_img = 0

    def handle_starttag(self, tag, attrs):
        self.n_img += tag == "img"
        for k, v in attrs:
            if k in ("src", "href", "poster", "data") and v is not None:
                self.refs.append((tag, v))
            elif k == "srcset" and v:
                self.refs += [(tag, part.strip().split()[0]) for part in v.split(",") if part.strip()]


def broken_references(html_path: Path) -> list[str]:
    """References of the page that cannot load offline: http(s) (the report must be self-contained), and
    relative or file: paths to files that do not exist. ``data:`` URIs and in-page anchors are fine."""
    p = _Refs()
    p.feed(html_path.read_text())
    bad = []
    for tag, ref in p.refs:
        u = urlparse(ref)
        if u.scheme == "data" or ref.startswith("#"):
            continue
        if u.scheme in ("http", "https", "ftp") or ref.startswith("//"):
            bad.append(f"<{tag}> {ref[:80]}: external reference")
        elif u.scheme in ("", "file"):
            target = Path(unquote(u.path)) if u.scheme == "file" else html_path.parent / unquote(u.path)
            if not target.exists():
                bad.append(f"<{tag}> {ref[:80]}: {target} does not exist")
        else:
            bad.append(f"<{tag}> {ref[:80]}: unsupported scheme {u.scheme!r}")
    return bad


def test_broken_reference_detection(tmp_path):
    """The reference check itself, on a page with a good and three bad references."""
    (tmp_path / "ok.png").write_bytes(b"x")
    page = tmp_path / "p.html"
    page.write_text('<img src="ok.png"><img src="gone.png"><a href="#top">t</a><img src="data:image/png;base64,AA==">'
                    '<link href="https://example.org/x.css"><img srcset="ok.png 1x, nope.png 2x">')
    bad = broken_references(page)
    assert len(bad) == 3 and "gone.png" in bad[0] and "external" in bad[1] and "nope.png" in bad[2], bad


def test_report_renders_in_headless_chromium(mixed_report, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("chromium not found on PATH (looked for " + ", ".join(BROWSERS) + "; set SEGLAB_CHROMIUM to a "
                    "browser binary, or install it: apt-get install -y chromium, which `make test` does)")
    rep = mixed_report["rep"]
    page = Path(rep["html"])
    assert broken_references(page) == []

    # 1. every image decodes in the browser: the page with a check script, in the report's folder
    text = page.read_text()
    assert text.count("</body>") == 1
    checked = page.with_name("browser-check.html")
    checked.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>"))
    try:
        r = _chromium(browser, tmp_path / "profile1", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    finally:
        checked.unlink()
    m = re.search(r'<pre id="seglab-browser-check">(.*?)</pre>', r.stdout, re.S)
    assert m, f"no check output from {browser} (rc {r.returncode}): {r.stderr[-2000:]}"
    import html as _html

    result = json.loads(_html.unescape(m.group(1)))
    images = result["images"]
    assert len(images) == text.count("<img ") == len(rep["pngs"]) >= 6, (len(images), len(rep["pngs"]))
    undecoded = [i for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
    assert not undecoded, undecoded
    assert result["title"] == "seglab report"

    # 2. a screenshot of the page as it is, kept as a test artifact
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_screenshot.png"
    shot.unlink(missing_ok=True)
    r = _chromium(browser, tmp_path / "profile2", "--window-size=1500,5000", "--virtual-time-budget=10000",
                  f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), f"{browser} wrote no screenshot (rc {r.returncode}): {r.stderr[-2000:]}"
    import matplotlib.image as mpimg
    import numpy as np

    px = np.asarray(mpimg.imread(shot))
    assert px.shape[0] >= 1000 and px.shape[1] >= 1000, px.shape
    assert float(px[..., :3].std()) > 0.02, "the screenshot is blank"
    shutil.copy(page, ARTIFACTS / "report_index.html")
