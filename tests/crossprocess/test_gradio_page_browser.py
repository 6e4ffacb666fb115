"""Gradio's own page, served by Surge for an unchanged gr.Interface, in headless Chromium: upload a photo,
submit, and see the worker's output image (through S3) on the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from surge_local.launcher import LocalStack, free_port
from tests.apps.gradio_apps import photo
from tests.crossprocess.browser import DESKTOP, launch_chromium

pytestmark = [pytest.mark.crossprocess, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack("tests.apps.gradio_apps:image", port=free_port()).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def test_gradio_page_uploads_runs_and_shows_the_output_image(browser: Any, stack: LocalStack, tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(photo(200)).save(path)
    page = browser.new_page(viewport=DESKTOP)
    joins: list[str] = []
    page.on("request", lambda r: joins.append(r.post_data or "") if "/queue/join" in r.url else None)
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if "/queue/" in r.url and r.status >= 400 else None)
    page.goto(stack.url + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=30_000)
    page.set_input_files("input[type=file] >> nth=0", str(path))
    page.wait_for_function("() => [...document.querySelectorAll('img')].some(i => i.src.includes('file=surge/'))")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('img')].filter(i => i.src.includes('file=surge/')"
        " && i.complete && i.naturalWidth === 200).length >= 2",
        timeout=60_000,
    )
    assert not refused
    assert joins and '"session_hash":"' in joins[0]
    session_hash = joins[0].split('"session_hash":"')[1].split('"')[0]
    assert len(session_hash) >= 16 + 10, "the page extends Gradio's short session hash"
    page.close()
