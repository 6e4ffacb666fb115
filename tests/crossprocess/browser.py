"""Headless Chromium for the page tests: Debian's `chromium` driven by Playwright (no browser download)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def launch_chromium() -> Iterator[Any]:
    """A browser for a test module; fails (not skips) without Chromium: `make test` installs it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def session_hash() -> str:
    return secrets.token_hex(12)


def join(url: str, api_name: str, data: list[Any], session: str | None = None) -> httpx.Response:
    """Join the queue as another client would (not through the page)."""
    return httpx.post(
        f"{url}/gradio_api/queue/join",
        json={"data": data, "api_name": api_name, "session_hash": session or session_hash()},
        timeout=30,
    )


def cancel(url: str, session: str, event_id: str) -> None:
    httpx.post(f"{url}/gradio_api/cancel", json={"session_hash": session, "event_id": event_id}, timeout=30)
