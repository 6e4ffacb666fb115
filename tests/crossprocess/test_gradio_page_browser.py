"""Gradio's own page, served by Surge for an unchanged gr.Interface, in headless Chromium: upload a photo,
submit, and see the worker's output image (through S3) on the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from surge_local.launcher import LocalStack, free_port
from tests.apps.gradio_apps import photo
from tests.crossprocess.browser import DESKTOP, launch_chromium

pytestmark = [pytest.mark.crossprocess, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(gradio_image_stack: LocalStack) -> LocalStack:
    return gradio_image_stack  # shared with the client tests (tests/crossprocess/conftest.py)


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
    missing: list[str] = []  # the page's manifest and its upload progress were 404s in the console
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
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
    assert not missing, missing
    assert joins and '"session_hash":"' in joins[0]
    session_hash = joins[0].split('"session_hash":"')[1].split('"')[0]
    assert len(session_hash) >= 16 + 10, "the page extends Gradio's short session hash"
    page.close()


def test_a_chat_interface_chats_in_gradios_page_with_its_history(browser: Any, memory_chat_stack: LocalStack) -> None:
    """The chat box runs the page's own events (queue=False in Gradio) through the `page_events` lane, and
    the history lives in the session's gr.State: the second reply knows the first turn."""
    page = browser.new_page(viewport=DESKTOP)
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if "/gradio_api/" in r.url and r.status >= 400 else None)
    page.goto(memory_chat_stack.url + "/")
    box = page.get_by_role("textbox").first
    box.wait_for(timeout=30_000)
    for message, reply in (("hello surge", "0 earlier: hello surge"), ("again", "2 earlier: again")):
        box.fill(message)
        box.press("Enter")
        page.wait_for_function(f"() => document.body.innerText.includes({reply!r})", timeout=30_000)
    assert not refused
    page.close()


def test_an_interfaces_example_fills_its_inputs_in_gradios_page(browser: Any) -> None:
    stack = LocalStack("tests.apps.gradio_apps:greeter", port=free_port()).start()
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(stack.url + "/")
        page.get_by_text("Ada").first.click(timeout=30_000)
        page.wait_for_function("() => [...document.querySelectorAll('input, textarea')].some(e => e.value === 'Ada')")
        page.get_by_role("button", name="Submit").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('textarea')].some(e => e.value === 'Hello Ada! Hello Ada!')"
        )
        page.close()
    finally:
        stack.stop()


def test_the_use_via_api_panel_shows_gradios_snippets_for_this_app(browser: Any, stack: LocalStack) -> None:
    """The footer's "Use via API" opened a blank panel: the page read `code_snippets` from the API info,
    which Surge's lacked (`Cannot read properties of undefined (reading 'python')`)."""
    page = browser.new_page(viewport=DESKTOP)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.url + "/")
    page.get_by_text("Use via API").click()
    page.wait_for_function(
        f"() => document.body.innerText.includes({stack.url!r}) && document.body.innerText.includes('/echo_image')",
        timeout=30_000,
    )
    assert not [error for error in errors if "python" in error], errors
    page.close()
    manifest = httpx.get(stack.url + "/manifest.json")  # the page links it, as Gradio's
    assert manifest.status_code == 200 and manifest.json()["start_url"] == "./"
    icon = httpx.get(stack.url + "/favicon.ico")  # every browser asks for it, as Gradio serves it
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml" and b"<svg" in icon.content


def test_a_file_output_downloads_under_its_name_and_the_visitor_stays_on_the_page(browser: Any) -> None:
    """The file's link is followed to the bucket, another origin, where Chromium ignores the link's
    `download` name: it left the app for a page of the file's text (garbled, no charset)."""
    stack = LocalStack("tests.apps.gradio_apps:note", port=free_port()).start()
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(stack.url + "/")
        box = page.get_by_role("textbox").first
        box.wait_for(timeout=30_000)
        box.fill("contenu é")
        page.get_by_role("button", name="Submit").click()
        link = page.get_by_test_id("download-link")  # the size and ⇣ beside "résumé 1.txt"
        link.wait_for(timeout=30_000)
        with page.expect_download(timeout=30_000) as download:
            link.click()
        assert download.value.suggested_filename == "résumé 1.txt"
        assert Path(download.value.path()).read_text(encoding="utf-8") == "contenu é"
        assert page.url.rstrip("/") == stack.url, "the visitor is still on the app's page"
        page.close()
    finally:
        stack.stop()


def test_a_gr_states_change_listener_runs_when_an_event_changes_the_state(browser: Any) -> None:
    """Gradio's page fires a `gr.State(...).change` listener for the states a completion names
    (`changed_state_ids`); Surge's completions named none, and the listener never ran."""
    stack = LocalStack("tests.apps.gradio_apps:watched", port=free_port()).start()
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(stack.url + "/")
        bump = page.get_by_role("button", name="bump")
        bump.click(timeout=30_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('textarea')].some(e => e.value === 'state changed to 1')"
        )
        bump.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('textarea')].some(e => e.value === 'state changed to 2')"
        )
        page.close()
    finally:
        stack.stop()
