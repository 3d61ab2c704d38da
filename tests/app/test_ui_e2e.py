"""A browser (Playwright + Debian's Chromium) drives the web UI through a real, tiny job."""

from __future__ import annotations

import shutil
import time

import pytest
import trimesh

from tests.app.serverproc import Server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "studio", tmp_path / "server.log").start()
    yield srv
    srv.stop()


def test_prompt_to_viewer_and_download(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(f"{server.url}/ui/", wait_until="domcontentloaded")
        page.locator("#prompt textarea").fill("a small yellow duck")
        page.locator("#submit").click()
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("Job", timeout=30_000)
        text = status.inner_text()
        assert "queued" in text or "running" in text, text

        # closing the tab loses nothing: a new tab in the same browser finds the job again
        page.close()
        page = context.new_page()
        page.goto(f"{server.url}/ui/", wait_until="domcontentloaded")
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("Job", timeout=60_000)
        seen = set()
        deadline = time.time() + 240
        while time.time() < deadline:
            text = status.inner_text()
            seen.add(text.split("—")[-1].strip()[:40])
            if "done" in text or "failed" in text:
                break
            time.sleep(0.5)
        assert "done" in text, text
        assert any("%" in s for s in seen), seen  # live progress was shown
        sync_api.expect(page.locator("#viewer canvas")).to_be_visible(timeout=30_000)
        sync_api.expect(page.locator("#history")).to_contain_text("succeeded", timeout=30_000)

        downloads = page.locator("#downloads")
        link = downloads.locator("a[href*='model.glb']").first
        sync_api.expect(link).to_be_attached(timeout=30_000)
        with page.expect_download(timeout=30_000) as info:
            link.click()
        path = tmp_path / "download.glb"
        info.value.save_as(path)
        mesh = trimesh.load(path, force="mesh")
        assert len(mesh.faces) > 100 and path.read_bytes()[:4] == b"glTF"
        browser.close()
