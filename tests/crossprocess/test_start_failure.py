"""A worker whose app cannot start (its `@app.setup` raises): visitors are told, not left waiting.

Before, the worker exited and the jobs waited with rank 0 and no ETA until `WORKER_START_LIMIT_S`
(20 minutes), gradio_client's predict with them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from surge.store import Store
from surge_local.launcher import LocalStack, free_port
from tests.crossprocess.helpers import counters, join, messages, new_session, wait_until

pytestmark = pytest.mark.crossprocess

TOLD = "The workers of predict could not start (loading the app raised RuntimeError); please try again later."


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[tuple[LocalStack, Path]]:
    flag = tmp_path / "broken"
    flag.touch()
    stack = LocalStack(
        "tests.apps.broken_setup_app:app", port=free_port(), workers=0, extra_env={"BROKEN_SETUP": str(flag)}
    ).start()
    try:
        yield stack, flag
    finally:
        stack.stop()


def test_a_worker_that_cannot_start_fails_the_waiting_jobs_and_later_ones_until_one_starts(
    broken: tuple[LocalStack, Path],
) -> None:
    stack, flag = broken
    waiting = new_session()
    assert join(stack, waiting, "predict", ["early"]).status_code == 200
    worker = stack.start_worker("predict", "broken")
    assert worker.wait(timeout=60) != 0, "the worker exits: its app could not start"

    assert _completions(stack, waiting) == [(False, TOLD)]
    assert wait_until(lambda: counters(stack).waiting == 0, 10), "its place is freed"

    # After one failed start, a job that joins waits for the next try, which may start (a flaky download):
    # it is told only when that try fails too.
    later = new_session()
    assert join(stack, later, "predict", ["later"]).status_code == 200
    assert _completions(stack, later, within_s=4) == [], "no worker has failed since it joined"
    assert stack.start_worker("predict", "broken-again").wait(timeout=60) != 0
    assert _completions(stack, later) == [(False, TOLD)]

    # Failed twice in a row: a visitor joining now is told at once, through its stream; gradio_client
    # shows a stream's error as the app's (a 503 on the join would read "Queue is full! Please try again."
    # in every Gradio client).
    client = Client(stack.url, verbose=False)
    with pytest.raises(AppError) as told:
        client.predict("late", api_name="/predict")
    assert str(told.value) == TOLD
    assert wait_until(lambda: counters(stack).waiting == 0, 10)

    flag.unlink()  # the operator mends it; the next worker starts and clears the failure
    stack.start_worker("predict", "mended")
    assert stack.settings is not None
    store = Store(stack.settings, client=stack.client("dynamodb"))
    assert wait_until(lambda: store.fleet("predict").cannot_start is None, 30), "its start clears the failure"
    assert client.predict("olleh", api_name="/predict") == "hello"


def _completions(stack: LocalStack, session: str, within_s: float = 30) -> list[tuple[bool, str]]:
    """(success, error) of the session's completions, reading its stream for at most `within_s` (a job
    left waiting gets estimations for ever)."""
    deadline = time.monotonic() + within_s
    completed = []
    for message in messages(stack, session):
        if message["msg"] == "process_completed":
            completed.append((message["success"], message["output"].get("error")))
        if time.monotonic() > deadline:
            break
    return completed
