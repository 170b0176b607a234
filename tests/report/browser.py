"""Look at a report as a person would: headless Debian chromium loads report.html, screenshots it, and measures it.

The report itself has no JavaScript. For the measurements a copy of it gets one script that records
errors and, once the page has loaded, the size of every figure and table; chromium's `--dump-dom`
gives the page back with those numbers in it. The screenshot is taken of the unmodified report.
`python -m tests.report.browser OUTDIR` fits the four documented specs and writes their screenshots
(docs/screenshots/ in the repository).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

WIDTH = 1024
"""Window width in CSS pixels: a laptop browser window, where the tables must fit."""
MAX_HEIGHT = 16000
SHOWN = {"lmm": "pig_slope_unstructured.yaml", "glmm": "cbpp.yaml", "factor": "holzinger_swineford.yaml",
         "flagship": "abortion.yaml"}
"""The reports the README shows (docs/screenshots/NAME.png)."""

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || ('failed to load ' + (e.target && (e.target.src || e.target.href))))), true);
console.error = (...a) => window.__errors.push(a.join(' '));
window.addEventListener('load', () => {
  const box = el => { const r = el.getBoundingClientRect(); return {x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height}; };
  const out = {
    errors: window.__errors,
    width: document.documentElement.clientWidth,
    page_width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    svgs: [...document.querySelectorAll('figure svg')].map(s => Object.assign(box(s), {marks: s.querySelectorAll('path,use,text').length})),
    tables: [...document.querySelectorAll('table')].map(t => Object.assign(box(t), {scroll: t.parentElement.scrollWidth, client: t.parentElement.clientWidth})),
  };
  const pre = document.createElement('pre'); pre.id = 'mlmrun-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str | None:
    """The chromium executable, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class Look:
    """What the browser saw: the probe's numbers, chromium's console lines and the screenshot's path."""

    probe: dict
    console: list[str]
    screenshot: Path


def _run(args: list[str], profile: str) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                           "--disable-extensions", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=180)


def look(report: Path, screenshot: Path) -> Look:
    """Load `report` (report.html) in headless chromium, measure it and screenshot the whole page."""
    with tempfile.TemporaryDirectory() as profile:
        probe_page = report.with_name(".probe-" + report.name)
        html = report.read_text(encoding="utf-8")
        probe_page.write_text(html.replace("<head>", "<head>\n" + _PROBE, 1), encoding="utf-8")
        try:
            done = _run([f"--window-size={WIDTH},900", "--dump-dom", probe_page.as_uri()], profile)
        finally:
            probe_page.unlink()
        found = re.search(r'<pre id="mlmrun-probe">(.*?)</pre>', done.stdout, re.S)
        if found is None:
            raise RuntimeError(f"the page did not finish loading: {done.stderr[-2000:]}")
        probe = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                           .replace("&amp;", "&"))
        height = min(MAX_HEIGHT, int(probe["height"]) + 16)
        shot = _run([f"--window-size={WIDTH},{height}", f"--screenshot={screenshot}", report.as_uri()], profile)
        console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line]
    return Look(probe, console, screenshot)


def blank(screenshot: Path, box: dict) -> bool:
    """True when the screenshot shows (almost) nothing inside `box`: under 1% of its pixels differ from white."""
    from PIL import Image

    with Image.open(screenshot) as image:
        region = image.convert("L").crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]),
                                          int(box["y"] + box["h"])))
        histogram = region.histogram()  # 256 grey levels
    total = sum(histogram)
    return total == 0 or sum(histogram[:245]) < 0.01 * total


def main(out: Path) -> None:
    """Fit the four shown specs and write their screenshots into `out`."""
    root = Path(__file__).resolve().parents[2]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for name, spec in SHOWN.items():
            folder = Path(work) / name
            subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(root / "specs" / spec), "--out", str(folder),
                            "--quiet"], cwd=root, check=True)
            look(folder / "report.html", out / f"{name}.png")
            shrink(out / f"{name}.png")
            print(f"{name}: {out / f'{name}.png'}")


def shrink(png: Path) -> None:
    """Store a screenshot with a 64-colour palette (a report is mostly black, white and two blues)."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=64)
    small.save(png, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
