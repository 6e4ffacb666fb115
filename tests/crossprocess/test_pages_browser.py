"""The visitor page and the status page in headless Chromium, against the local stack (moto, uvicorn, workers)."""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from surge.store import Store
from surge_local.launcher import LocalStack, free_port
from tests.apps.pages_app import MAX_SIZE
from tests.crossprocess.browser import DESKTOP, PHONE, cancel, join, launch_chromium, session_hash

pytestmark = [pytest.mark.crossprocess, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """The pages test app; no worker serves `held`, so its jobs wait until cancelled."""
    stack = LocalStack("tests.apps.pages_app:app", port=free_port(), workers={"held": 0}).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture
def page(browser: Any, stack: LocalStack) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    yield page
    context.close()
    assert not errors, errors


def card(api_name: str) -> str:
    return f"[data-fn={api_name}]"


def watch(
    page: Any, script: str, until: Callable[[Any], bool], timeout_s: float = 45, every_s: float = 0.05
) -> list[Any]:
    """Evaluate `script` in the page repeatedly, keeping each distinct result, until `until(result)`."""
    seen: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if not seen or value != seen[-1]:
            seen.append(value)
        if until(value):
            return seen
        time.sleep(every_s)
    raise AssertionError(f"gave up after {timeout_s} s; saw {seen[-10:]}")


def png(width: int, height: int, noise: bool = False) -> bytes:
    """A PNG made here: a gradient, or random noise (which does not compress)."""

    def row(y: int) -> bytes:
        if noise:
            return os.urandom(width * 3)
        return b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))

    rows = b"".join(b"\x00" + row(y) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def test_page_shows_rank_falling_then_the_result(page: Any, stack: LocalStack) -> None:
    for i in range(3):
        assert join(stack.url, "slow_echo", [f"ahead {i}"]).status_code == 200
    page.fill("#in-slow_echo-0", "my turn")
    page.click(f"{card('slow_echo')} button[type=submit]")

    seen = watch(
        page,
        f"""() => {{
            const c = document.querySelector('{card("slow_echo")}');
            return [c.querySelector('.place').dataset.rank ?? null, c.querySelector('.eta').textContent,
                    c.querySelector('.output .value').textContent];
        }}""",
        lambda value: value[2] == "my turn",
    )

    ranks = [int(rank) for rank, _, _ in seen if rank is not None]
    assert max(ranks) >= 2, seen
    assert min(ranks[ranks.index(max(ranks)) :]) < max(ranks), f"rank never fell: {seen}"
    assert any("left" in eta for _, eta, _ in seen), f"no ETA shown: {seen}"
    assert "Done" in page.inner_text(f"{card('slow_echo')} .notice")


def test_page_streams_generator_output_with_progress(page: Any) -> None:
    words = "alpha beta gamma delta epsilon zeta"
    page.fill("#in-count_words-0", words)
    page.click(f"{card('count_words')} button[type=submit]")

    seen = watch(
        page,
        f"""() => {{
            const c = document.querySelector('{card("count_words")}');
            return [c.querySelector('.output .value').textContent, c.querySelector('.progress-label').textContent,
                    c.querySelector('.notice').hidden];
        }}""",
        lambda value: value[0] == words and not value[2],
    )

    partial = {text for text, _, _ in seen if text and text != words}
    assert len(partial) >= 2, f"output did not stream in: {seen}"
    assert all(words.startswith(text) for text in partial), seen
    assert any("/ 6 words" in label for _, label, _ in seen), f"no progress shown: {seen}"


def test_page_shows_the_function_error_and_numbers(page: Any) -> None:
    page.fill("#in-divide-0", "1")
    page.fill("#in-divide-1", "0")
    page.click(f"{card('divide')} button[type=submit]")
    page.wait_for_selector(f"{card('divide')} .notice.error", timeout=30_000)
    assert "Cannot divide by zero." in page.inner_text(f"{card('divide')} .notice")

    page.fill("#in-divide-1", "2")
    page.click(f"{card('divide')} button[type=submit]")
    page.wait_for_selector(f"{card('divide')} .notice.info", timeout=30_000)
    assert page.inner_text(f"{card('divide')} .output .value") == "0.5"


@pytest.mark.parametrize(("size", "noise", "media_type"), [(24, False, "image/png"), (720, True, "image/jpeg")])
def test_page_uploads_an_image_scaling_large_ones_down(page: Any, size: int, noise: bool, media_type: str) -> None:
    image = png(size, size, noise)
    page.set_input_files("#in-inspect_image-0", files=[{"name": "x.png", "mimeType": "image/png", "buffer": image}])
    page.wait_for_selector(f"{card('inspect_image')} .preview:not([hidden])", timeout=15_000)
    page.click(f"{card('inspect_image')} button[type=submit]")
    page.wait_for_selector(f"{card('inspect_image')} .notice.info", timeout=30_000)

    src = page.get_attribute(f"{card('inspect_image')} .output img", "src")
    text = page.inner_text(f"{card('inspect_image')} [data-kind=textbox] .value")
    assert src.startswith(f"data:{media_type};base64,")
    assert text.startswith(media_type)
    assert len(src) <= 1_000_000
    if noise:
        assert len(image) > 1_000_000, "the noise image must be over the payload limit for this test to mean anything"


def test_page_says_the_queue_is_full_and_when_to_retry(page: Any, stack: LocalStack) -> None:
    session = session_hash()
    held = []
    try:
        for i in range(MAX_SIZE):
            response = join(stack.url, "held", [f"held {i}"], session)
            assert response.status_code == 200
            held.append(response.json()["event_id"])
        refused = join(stack.url, "slow_echo", ["one more"])
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1

        page.fill("#in-slow_echo-0", "let me in")
        page.click(f"{card('slow_echo')} button[type=submit]")
        page.wait_for_selector(f"{card('slow_echo')} .notice.warn", timeout=15_000)
        notice = page.inner_text(f"{card('slow_echo')} .notice")
        assert "The queue is full" in notice
        assert f"Max size is {MAX_SIZE}" in notice
        assert "try again in" in notice
        assert page.is_disabled(f"{card('slow_echo')} button[type=submit]")
    finally:
        for event_id in held:
            cancel(stack.url, session, event_id)

    page.wait_for_function(
        f"() => document.querySelector('{card('slow_echo')} button[type=submit]').textContent === 'Try again'",
        timeout=30_000,
    )
    page.click(f"{card('slow_echo')} button[type=submit]")
    page.wait_for_selector(f"{card('slow_echo')} .notice.info", timeout=30_000)
    assert page.inner_text(f"{card('slow_echo')} .output .value") == "let me in"


def test_status_page_shows_a_burst_as_it_happens(browser: Any, stack: LocalStack) -> None:
    context = browser.new_context(viewport=DESKTOP)
    status = context.new_page()
    status.goto(stack.url + "/status")
    status.wait_for_selector("body[data-ready=true]", timeout=15_000)
    metric = "(fn, key) => Number(document.querySelector(`[data-fn=${fn}] [data-metric=${key}]`).dataset.value || 0)"
    before = status.evaluate(f"() => ({metric})('batched', 'batches')")

    for i in range(MAX_SIZE):
        assert join(stack.url, "batched", [f"burst {i}"]).status_code == 200
    seen = watch(
        status,
        f"""() => [({metric})('batched', 'waiting'), ({metric})('batched', 'running'),
                   ({metric})('batched', 'batches'), Number(document.getElementById('app-waiting').dataset.value),
                   Number(document.getElementById('depth-plot').dataset.peak)]""",
        lambda value: value[2] - before >= MAX_SIZE // 2 and value[0] == 0 and value[1] == 0,
        every_s=0.2,
    )
    context.close()

    assert max(value[0] for value in seen) >= 2, f"the burst never showed as waiting: {seen}"
    assert max(value[3] for value in seen) >= 2, f"the app-wide waiting count missed the burst: {seen}"
    assert max(value[1] for value in seen) == 1, f"running batches should reach the limit of 1: {seen}"
    assert seen[-1][4] >= 1, f"the depth plot has no sample of the burst: {seen}"


def test_status_page_says_why_a_function_has_no_worker_when_its_workers_cannot_start(
    browser: Any, stack: LocalStack
) -> None:
    """It showed "Live workers 0" and nothing of why (the reason only in a tooltip a phone cannot show)."""
    assert stack.settings is not None
    store = Store(stack.settings, client=stack.client("dynamodb"))
    store.record_start_failure("held", RuntimeError("the weights at /models/x.bin are missing"))
    context = browser.new_context(viewport=PHONE, is_mobile=True)
    try:
        status = context.new_page()
        status.goto(stack.url + "/status")
        shown = status.wait_for_selector("[data-fn=held] [data-metric=cannot-start]", state="visible", timeout=15_000)
        assert shown.inner_text() == (
            "The workers of held could not start (loading the app raised RuntimeError); please try again later."
        )
        assert "cannot start" in status.inner_text("[data-fn=held] [data-metric=workers]")
        assert status.is_hidden("[data-fn=slow_echo] [data-metric=cannot-start]")
    finally:
        store.clear_start_failure("held")
        context.close()


def test_pages_fit_a_phone_screen(browser: Any, stack: LocalStack) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone = context.new_page()
    for path in ("/", "/status"):
        phone.goto(stack.url + path)
        phone.wait_for_selector("body[data-ready=true]", timeout=15_000)
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} scrolls sideways on a phone: {width} px"
        heights = phone.evaluate(
            "() => [...document.querySelectorAll('button, nav a')].filter(b => b.offsetParent !== null)"
            ".map(b => b.getBoundingClientRect().height)"
        )
        assert heights, path
        if path == "/":
            assert min(heights[1:]) >= 40, f"buttons too small to tap: {heights} px"
    context.close()


def test_page_applies_gradio_diffs(page: Any) -> None:
    cases = [
        ("tok", [["append", [], "en"]], "token"),
        ("old", [["replace", [], "new"]], "new"),
        ([1, 2], [["add", [1], 9]], [1, 9, 2]),
        ({"a": [1, 2]}, [["delete", ["a", 0], None], ["append", ["a", 0], 3]], {"a": [5]}),
    ]
    for value, edits, expected in cases:
        assert page.evaluate("([v, e]) => window.surgePages.applyDiff(v, e)", [value, edits]) == expected


def test_relative_urls_work_under_a_stage_path(browser: Any, stack: LocalStack) -> None:
    """Opened as /Prod (no slash), the page moves to /Prod/ and asks for /Prod/config, as under API Gateway."""
    context = browser.new_context()
    page = context.new_page()
    requested: list[tuple[str, str | None]] = []  # (URL, the document that asked: its Referer)

    def route(route: Any) -> None:
        url = route.request.url
        requested.append((url, route.request.headers.get("referer")))
        path = url.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        if path.startswith("Prod"):
            route.continue_(url=f"{stack.url}/{path.removeprefix('Prod').lstrip('/')}")
        else:
            route.abort()

    page.route("**/*", route)
    page.goto(f"{stack.url}/Prod")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    context.close()
    # The first document (/Prod) may have its preloader ask for assets at the wrong level, even after
    # the move has begun; the moved page (/Prod/) never does.
    moved = [url for url, referer in requested if referer == f"{stack.url}/Prod/"]
    assert f"{stack.url}/Prod/config" in moved, requested
    assert all(url.startswith(f"{stack.url}/Prod/") for url in moved), requested
