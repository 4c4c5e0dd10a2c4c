"""`blinkstack view` in a real browser: Debian's chromium, headless, driven by playwright, against a real stack
(Redis, the three services) and the view's real web server. The page must load, show live frames of the video
it feeds, show an event of a stream that someone else feeds within a bound time, show track stats, and load
nothing from the internet. A screenshot is kept in runs/view/ (CI keeps it as an artifact)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from blinkstack.common import paths
from blinkstack.local.processes import free_port
from blinkstack.v1 import aggregator_pb2_grpc
from tests.helpers import REPO_ROOT
from tests.helpers.aggregator import BLINKS, messages
from tests.helpers.engine import timeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VIDEO = paths.data_dir() / "video" / "eyeblink8_v8_windows.mp4"
SCREENSHOT = REPO_ROOT / "runs" / "view" / "view.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary: `apt-get install chromium` (.ci/run installs it)"
)


def wait_for_page(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"blinkstack view exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def test_the_live_view_shows_frames_events_and_stats_in_a_real_browser(live_stack):
    import grpc
    from playwright.sync_api import sync_playwright

    target = live_stack.config.address(live_stack.config.aggregator_port)
    port = free_port()
    view = subprocess.Popen(
        [sys.executable, "-m", "blinkstack.cli", "view", "--target", target, "--port", str(port),
         "--video", str(VIDEO), "--feed-stream-id", "view-video", "--stream-id", "scripted"]
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    outside: list[str] = []
    try:
        wait_for_page(url, view)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
            page.goto(url)
            # Live frames: the image of the fed stream changes.
            video = page.locator('.stream[data-stream="view-video"] img.video')
            video.wait_for(timeout=30_000)
            page.wait_for_function("document.querySelector('img.video').dataset.seq > 0", timeout=30_000)
            first = int(video.get_attribute("data-seq"))
            page.wait_for_function(f"document.querySelector('img.video').dataset.seq > {first + 10}", timeout=30_000)
            # The timeline carries each eye's lid aperture beside prob_open (open eyes: 0.2-0.4).
            apertures = page.evaluate("streams.get('view-video').data[4].filter((value) => value !== null)")
            assert len(apertures) >= 10 and all(0.1 < a < 0.5 for a in apertures), apertures
            # A scripted event of a stream someone else feeds reaches the page's DOM within 10 s.
            with grpc.insecure_channel(target) as channel:
                stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
                sent = time.monotonic()
                stub.PublishEyeStateBatches(messages("scripted", 1, timeline(BLINKS), per_message=50), timeout=20)
            page.wait_for_function(
                "[...document.querySelectorAll('#events li')].some(li => li.textContent.startsWith('scripted') "
                "&& li.dataset.type === 'BLINK')",
                timeout=10_000,
            )
            assert time.monotonic() - sent < 10
            # Stats of both streams' tracks, with a drowsiness level.
            page.wait_for_function(
                "[...document.querySelectorAll('#stats tbody tr')].some(r => r.dataset.key === 'scripted / 1')",
                timeout=10_000,
            )
            row = page.locator('#stats tbody tr[data-key="scripted / 1"]').inner_text()
            assert "AWAKE" in row
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
            assert page.locator("#status").inner_text() == "live"
            browser.close()
    finally:
        view.terminate()
        view.wait(10)
    assert not outside, f"the page loaded from elsewhere: {outside}"
    assert SCREENSHOT.stat().st_size > 20_000
