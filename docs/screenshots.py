"""Regenerate the screenshots in docs/: the demo app's pages on desktop and phone, during a burst.

Run from the repository root: `.venv/bin/python docs/screenshots.py` (needs /usr/bin/chromium).
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from surge_local.launcher import LocalStack, free_port
from tests.crossprocess.browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PHONE

DOCS = Path(__file__).parent
WORDS = " ".join(f"word{i}" for i in range(40))


def burst(url: str, api_name: str, count: int, text: str) -> None:
    def one(i: int) -> None:
        body = {"data": [f"{text} {i}"], "api_name": api_name, "session_hash": secrets.token_hex(12)}
        httpx.post(f"{url}/gradio_api/queue/join", json=body, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def ready(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)


def main() -> None:
    stack = LocalStack("examples.demo_app:app", port=free_port()).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            status = browser.new_page(viewport=DESKTOP)
            ready(status, stack.url + "/status")
            desktop = browser.new_page(viewport=DESKTOP)
            phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True).new_page()
            ready(desktop, stack.url + "/")
            ready(phone, stack.url + "/")
            for _ in range(3):
                burst(stack.url, "sim_gpu", 60, "frame")
                time.sleep(4)
            desktop.fill("#in-echo-0", "Hello from the visitor page")
            desktop.click("[data-fn=echo] button[type=submit]")
            desktop.fill("#in-trim_words-0", "surge")
            desktop.fill("#in-trim_words-1", "-1")
            desktop.click("[data-fn=trim_words] button[type=submit]")
            burst(stack.url, "stream_tokens", 4, WORDS)
            burst(stack.url, "sim_gpu", 150, "frame")
            desktop.fill("#in-stream_tokens-0", "Each word streams in as the generator yields it")
            desktop.click("[data-fn=stream_tokens] button[type=submit]")
            phone.fill("#in-stream_tokens-0", WORDS)
            phone.click("[data-fn=stream_tokens] button[type=submit]")
            desktop.wait_for_selector("[data-fn=stream_tokens] .place[data-rank]", timeout=30_000)
            time.sleep(1.5)
            desktop.screenshot(path=DOCS / "visitor-desktop.png", full_page=True)
            status.wait_for_timeout(1500)
            status.screenshot(path=DOCS / "status-desktop.png", full_page=True)
            phone.wait_for_selector("[data-fn=stream_tokens] .status[data-state=streaming]", timeout=60_000)
            phone.wait_for_timeout(700)
            phone.locator("[data-fn=stream_tokens]").scroll_into_view_if_needed()
            phone.screenshot(path=DOCS / "visitor-phone.png")
            phone.goto(stack.url + "/status")
            phone.wait_for_selector("body[data-ready=true]", timeout=15_000)
            phone.wait_for_timeout(1500)
            phone.screenshot(path=DOCS / "status-phone.png")
            browser.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
