"""The live MJPEG page in real headless Chromium (Debian's chromium + chromium-driver,
installed by `make test`), served by a real edge-run process on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_runtime import _reference, tone, write_wav

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"edge-run exited: {process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the page never listened")


@pytest.fixture
def live_page(tiny_bundle, tiny_dataset, tmp_path):
    """edge-run at real-time pace on 12 s of audio, frames to http://127.0.0.1:PORT."""
    speech = np.concatenate([tone(0.5, 0, level=0), tone(11.5, 180)])
    wav = write_wav(tmp_path / "speech.wav", speech)
    photo = _reference(tmp_path, tiny_dataset)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.cli", "--bundle", str(tiny_bundle), "--audio",
         str(wav), "--reference", str(photo), "--sink", f"http://127.0.0.1:{port}",
         "--threads", "1"], stderr=subprocess.PIPE)
    _wait_listening(port, process)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=800,700"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


# Draws the <img> (the current MJPEG frame) on a canvas: its size and pixel spread.
READ_PICTURE = """
const img = document.getElementById('live');
if (!img.complete || img.naturalWidth === 0) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext('2d'); g.drawImage(img, 0, 0);
const d = g.getImageData(0, 0, c.width, c.height).data;
let min = 255, max = 0;
for (let i = 0; i < d.length; i += 4) { min = Math.min(min, d[i]); max = Math.max(max, d[i]); }
return [c.width, c.height, min, max];
"""


def _until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_the_live_page_shows_frames_and_stats_in_chromium(live_page, browser, tmp_path):
    browser.get(live_page + "/")
    assert "synthetic media" in browser.find_element("css selector", ".notice").text
    width, height, low, high = _until(lambda: browser.execute_script(READ_PICTURE))
    assert (width, height) == (228, 208) and high > low  # a decoded face, not a blank image
    stats = browser.find_element("id", "stats")

    def frames_shown() -> int | None:
        found = re.match(r"frames (\d+),", stats.text)
        return int(found.group(1)) if found else None

    first = _until(lambda: frames_shown() is not None) and frames_shown()
    _until(lambda: frames_shown() > first + 10)
    later = stats.text
    assert "sound to frame" in later and "generate: p50" in later
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 1000


def test_stream_is_multipart_jpeg_and_a_snapshot_url_exists(live_page):
    with urllib.request.urlopen(live_page + "/stream.mjpg", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = response.read(4096)
    assert b"Content-Type: image/jpeg" in head and b"\xff\xd8" in head  # JPEG start marker
    with urllib.request.urlopen(live_page + "/frame.jpg", timeout=10) as response:
        frame = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (208, 228, 3)  # the photo's framing
