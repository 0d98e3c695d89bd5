"""The viewer in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python):
open the page served by `detect serve`, upload a synthetic DICOM, wait for the result, and
check what was drawn: box outlines on the canvas pixels, one row per box, the three class
probability bars and the decision. A screenshot is written (and copied to
$DETECT_SCREENSHOT_OUT when set, for the README). For a classifier, the heat-map toggle asks
for the Grad-CAM overlay and the page draws it.

The page keeps its Content-Security-Policy (no eval), so the test passes JavaScript as functions.
Playwright's own browser download is never used: `executable_path` points at the system
chromium. In CI (CI=true) a missing chromium or playwright fails the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Iterator

import numpy as np
import pytest

from data_prep.synth import render_chest_radiograph
from tests.data_prep.dicom_fixtures import write_jpeg_baseline_dicom
from tests.detect.inference.test_gate import save_classifier_checkpoint
from tests.detect.serve.conftest import SECRET_PATIENT_ID, LiveServer, chromium_path, require_tool

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # reported by the test: a skip here, a failure in CI
    sync_playwright = None

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Per drawn box, the canvas pixels [r, g, b, a] at the middle of its four edges (a label of
# another box may cover one of them).
READ_EDGE_PIXELS = """() => {
  const ctx = document.getElementById('image').getContext('2d');
  const at = (x, y) => Array.from(ctx.getImageData(Math.round(x), Math.round(y), 1, 1).data);
  return window.detectViewer.drawn.boxes.map(b => [
    at(b.x + b.width / 2, b.y), at(b.x + b.width / 2, b.y + b.height),
    at(b.x, b.y + b.height / 2), at(b.x + b.width, b.y + b.height / 2)]);
}"""


@contextlib.contextmanager
def viewer_page(viewport: dict[str, int] | None = None) -> Iterator[tuple[Any, list[str]]]:
    """A page in the system chromium, and the console errors it logs (closed after)."""
    require_tool(sync_playwright is not None, "playwright (pip install -e '.[test]')")
    executable = chromium_path()
    require_tool(executable is not None, "chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(**({"viewport": viewport} if viewport else {}))
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
            yield page, console_errors
        finally:
            browser.close()


@pytest.fixture()
def radiograph_dicom(tmp_path):
    pixels, _boxes = render_chest_radiograph(np.random.default_rng(7), 512, 448, opacities=2)
    return write_jpeg_baseline_dicom(
        tmp_path / "synthetic_chest.dcm", pixels, patient_id=SECRET_PATIENT_ID, sex="M", age="63", view="PA"
    )


def test_viewer_draws_boxes_and_probabilities(live_server, radiograph_dicom, tmp_path):
    with viewer_page({"width": 1280, "height": 860}) as (page, console_errors):
        page.goto(live_server.url + "/")
        page.wait_for_function("() => document.getElementById('model-line').textContent.includes('mobilenet')")
        assert page.is_disabled("#heatmap-toggle")  # a detector: Grad-CAM explains classifiers
        page.set_input_files("#file", str(radiograph_dicom))
        page.wait_for_function("() => ['done', 'error'].includes(document.body.dataset.state)", timeout=60_000)
        assert page.evaluate("() => document.body.dataset.state") == "done", page.inner_text("#error")

        result = page.evaluate("() => window.detectViewer.result")
        entry = result["prediction"]
        assert entry["boxes"] and entry["image_width_px"] == 448 and entry["image_height_px"] == 512
        drawn = page.evaluate("() => window.detectViewer.drawn")
        assert len(drawn["boxes"]) == len(entry["boxes"])
        for edges in page.evaluate(READ_EDGE_PIXELS):  # red outlines on a grey radiograph
            red = [r > 200 and g < 120 and b < 120 and a == 255 for r, g, b, a in edges]
            assert sum(red) >= 3, edges
        assert page.locator("#boxes tr").count() == len(entry["boxes"])

        bars = page.locator("#class-probs .bar")
        assert bars.count() == 3
        shown = {
            bars.nth(i).get_attribute("data-name"): float(bars.nth(i).get_attribute("data-probability"))
            for i in range(3)
        }
        assert shown == entry["class_probabilities"]
        widths = page.evaluate(
            "() => Array.from(document.querySelectorAll('#class-probs .fill')).map(f => f.getBoundingClientRect().width)"
        )
        assert all(w > 0 for w in widths)
        assert page.inner_text("#decision") == ("Pneumonia" if entry["pneumonia"] else "No pneumonia")
        assert "threshold 0.400" in page.inner_text("#threshold")  # the RSNA operating point, for a DICOM
        header_text = page.inner_text("#header-fields")
        assert "PA" in header_text and "63" in header_text and SECRET_PATIENT_ID not in page.content()
        assert page.is_enabled("#download") and not console_errors
        assert "in a batch of 1" in page.inner_text("#timing")
        assert not page.is_visible("#explanation-panel")

        screenshot = tmp_path / "viewer.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        if os.environ.get("DETECT_SCREENSHOT_OUT"):
            shutil.copyfile(screenshot, os.environ["DETECT_SCREENSHOT_OUT"])


def test_viewer_shows_errors_as_readable_messages(live_server, tmp_path):
    junk = tmp_path / "notes.dcm"
    junk.write_bytes(b"this is a text file named like a DICOM")
    with viewer_page() as (page, _console_errors):
        page.goto(live_server.url + "/")
        page.set_input_files("#file", str(junk))
        page.wait_for_function("() => document.body.dataset.state === 'error'", timeout=30_000)
        assert (
            page.inner_text("#error")
            == "415: unsupported upload (38 bytes): not a DICOM, PNG or JPEG file by its content"
        )


@pytest.fixture(scope="module")
def classifier_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viewer_cls")
    checkpoint = save_classifier_checkpoint(folder / "cls.pt", task="rsna2", thresholds={"rsna": 0.45})
    server = LiveServer(checkpoint, folder / "serve.log")
    yield server
    server.stop()


# How many canvas pixels are strongly coloured (the jet map; a grey radiograph has none).
COLOURED_SHARE = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 60) coloured++;
  }
  return coloured / (data.length / 4);
}"""


def test_viewer_shows_a_classifiers_gradcam_overlay(classifier_server, radiograph_dicom):
    with viewer_page({"width": 1280, "height": 1400}) as (page, console_errors):
        page.goto(classifier_server.url + "/")
        page.wait_for_function("() => document.getElementById('model-line').textContent.includes('basic_cnn')")
        assert page.is_enabled("#heatmap-toggle")

        page.set_input_files("#file", str(radiograph_dicom))  # first without the explanation
        page.wait_for_function("() => ['done', 'error'].includes(document.body.dataset.state)", timeout=60_000)
        assert page.evaluate("() => window.detectViewer.result.explanation") is None
        assert not page.is_visible("#explanation-panel")

        page.check("#heatmap-toggle")  # asks again, with explain=true
        page.wait_for_function(
            "() => document.body.dataset.state === 'done' && window.detectViewer.result.explanation",
            timeout=60_000,
        )
        explanation = page.evaluate("() => window.detectViewer.result.explanation")
        assert explanation["method"] == "gradcam" and explanation["model"] == "basic_cnn"
        assert page.is_visible("#explanation-panel")
        assert "Grad-CAM of basic_cnn" in page.inner_text("#explanation-caption")
        drawn = page.evaluate("() => window.detectViewer.explanation")
        assert drawn["width"] > 100 and drawn["height"] > 100
        assert page.evaluate(COLOURED_SHARE, "explanation") > 0.05  # the heat map's colours
        assert page.evaluate(COLOURED_SHARE, "image") < 0.01  # the radiograph beside it stays grey
        assert "Grad-CAM" in page.inner_text("#timing")

        page.uncheck("#heatmap-toggle")  # hides it again, without a request
        assert not page.is_visible("#explanation-panel")
        assert not console_errors
