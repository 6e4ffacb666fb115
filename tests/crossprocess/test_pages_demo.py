"""Every example function of `make run` works from the visitor page, in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from surge_local.launcher import LocalStack
from tests.crossprocess.browser import PHONE, launch_chromium

pytestmark = [pytest.mark.crossprocess, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.mark.parametrize(
    ("api_name", "inputs", "expected"),
    [
        ("echo", ["hello"], "hello"),
        ("trim_words", ["surge", "3"], "sur"),
        ("stream_tokens", ["tokens arrive one by one"], "tokens arrive one by one"),
        ("sim_gpu", ["frame"], "frame (batch of 1)"),
    ],
)
def test_every_demo_function_runs_from_the_page(
    browser: Any, demo_stack: LocalStack, api_name: str, inputs: list[str], expected: str
) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(demo_stack.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    for i, value in enumerate(inputs):
        page.fill(f"#in-{api_name}-{i}", value)
    page.click(f"[data-fn={api_name}] button[type=submit]")
    page.wait_for_selector(f"[data-fn={api_name}] .notice.info", timeout=30_000)
    result = page.inner_text(f"[data-fn={api_name}] .output .value")
    context.close()
    assert result == expected


def test_demo_batch_function_error_reaches_the_page(browser: Any, demo_stack: LocalStack) -> None:
    page = browser.new_page()
    page.goto(demo_stack.url + "/")
    page.wait_for_selector("body[data-ready=true]", timeout=15_000)
    page.fill("#in-trim_words-0", "surge")
    page.fill("#in-trim_words-1", "-1")
    page.click("[data-fn=trim_words] button[type=submit]")
    page.wait_for_selector("[data-fn=trim_words] .notice.error", timeout=30_000)
    text = page.inner_text("[data-fn=trim_words] .notice")
    page.close()
    assert "Length must be 0 or more" in text
