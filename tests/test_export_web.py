"""`etlkit export --format web`: the page's preprocessing (static/preprocess.js, run under Node)
makes byte-for-byte the images `etlkit predict` makes, and in headless Chromium, served by a
plain static server, a digit drawn on the page gets the top 5 that `etlkit predict` gives the
same drawing, with glyphs from the exported sprite.

Needs what tests/setup.sh installs (chromium, chromium-driver, onnxruntime-web from npm, mlxtend)
and node."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from browser import STROKES, draw
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from etlkit.cli import app
from train.inference.images import Framing, load_gray, to_input

ROOT = Path(__file__).resolve().parents[1]
PREPROCESS = ROOT / "train" / "inference" / "static" / "preprocess.js"
runner = CliRunner()


def test_page_preprocessing_equals_predicts(tmp_path):
    """Photos of every size path (reduced to 1024, reduced before area-averaging, integer and
    fractional area factors), both polarities, and each framing option, through the JS port
    and through images.py."""
    rng = np.random.default_rng(1)
    frames = [Framing(0.7, None, 64, False), Framing(0.62, (0.52, 0.49), 28, False),
              Framing(0.55, None, 64, True), Framing(0.8, (0.5, 0.5), 28, True)]
    cases = []
    for n in range(24):
        w, h = ((int(v) for v in rng.integers(40, 1400, 2)) if n % 3 else (280, 280))
        paper, ink = (255, 0) if n % 4 else (30, 220)
        image = Image.new("L", (w, h), paper)
        for _ in range(3):
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(4)]
            ImageDraw.Draw(image).line(points, fill=ink, width=int(rng.integers(3, 30)))
        png = io.BytesIO()
        image.save(png, "PNG")
        frame = frames[n % 4]
        cases.append({"gray": np.asarray(image).ravel().tolist(), "h": h, "w": w,
                      "frame": {"fill": frame.fill, "mass_at": frame.mass_at,
                                "size": frame.size, "otsu": frame.otsu},
                      "want": to_input(load_gray(png.getvalue()), frame, "x").ravel().tolist()})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = (f"const P = require({str(PREPROCESS)!r});"
              f"const cases = require({str(tmp_path / 'cases.json')!r});"
              "console.log(JSON.stringify(cases.map(c => Array.from(P.toInput(P.workSize("
              "{data: Uint8Array.from(c.gray), h: c.h, w: c.w}), c.frame).data))));")
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for case, got in zip(cases, json.loads(done.stdout), strict=True):
        assert got == case["want"]


@pytest.fixture(scope="module")
def page(digits_run, tmp_path_factory):
    """The exported page served by `python -m http.server` on a free loopback port."""
    out = tmp_path_factory.mktemp("web") / "site"
    result = runner.invoke(app, ["export", str(digits_run), "--format", "web", "--out", str(out)])
    assert result.exit_code == 0, result.output
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1",
                               "--directory", str(out)], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://...) ..."
    yield line.split("(")[1].split(")")[0]
    server.terminate()
    server.wait(10)
    server.stdout.close()


def test_drawn_digits_get_predicts_top5_in_the_page(digits_run, page, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    canvas = browser.find_element(By.ID, "pad")
    panel = browser.find_element(By.ID, "top")
    for digit, points in STROKES.items():
        browser.find_element(By.ID, "clear").click()
        draw(browser, canvas, points)
        wait.until(lambda d: d.execute_script("return shown === sent && sent > 0"))
        rows = [[c for c in r.find_elements(By.TAG_NAME, "td")]
                for r in panel.find_elements(By.TAG_NAME, "tr")]
        shown = [(r[1].find_element(By.CLASS_NAME, "glyph").get_attribute("data-char"),
                  r[2].text, r[3].text) for r in rows]
        drawing = tmp_path / f"drawn{digit}.png"
        drawing.write_bytes(base64.b64decode(browser.execute_script(
            "return pad.toDataURL('image/png').split(',')[1]")))
        result = runner.invoke(app, ["predict", str(digits_run), str(drawing)])
        assert result.exit_code == 0, result.output
        expected = [tuple(line.split()[1:]) for line in result.stdout.splitlines()[1:]]
        assert shown == expected and shown[0][0] == digit
        sprite = browser.execute_script(
            "return getComputedStyle(document.querySelector('.glyph')).backgroundImage")
        assert sprite.endswith('glyphs.png")')
    assert browser.execute_script(
        "return performance.getEntriesByType('resource').every(r => r.name.startsWith("
        "location.origin))")  # nothing fetched from elsewhere (no CDN)
