"""Stacks shared across the cross-process modules: a Gradio app's stack takes tens of seconds to start on
two cores (the front and every worker import gradio), so the modules that drive the same app share one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from surge_local.launcher import LocalStack, free_port


@pytest.fixture(scope="session")
def gradio_image_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """`tests.apps.gradio_apps:image` with two workers (a photo crosses workers): the client and the page tests."""
    records = tmp_path_factory.mktemp("image-records")
    stack = LocalStack(
        "tests.apps.gradio_apps:image", port=free_port(), workers=2, extra_env={"RECORD_DIR": str(records)}
    ).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def memory_chat_stack() -> Iterator[LocalStack]:
    """`tests.apps.gradio_apps:memory_chat` (a ChatInterface keeping its history in a gr.State): each test
    talks in sessions of its own, as every visitor does."""
    stack = LocalStack("tests.apps.gradio_apps:memory_chat", port=free_port()).start()
    try:
        yield stack
    finally:
        stack.stop()
