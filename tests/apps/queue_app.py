"""A test app with a tiny queue (max_size=2) in front of a slow function, for queue-full and cancel tests,
and a generator beside it (no limit) for a stream dropped while it streams."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import surge
from tests.apps.timing_app import record

app = surge.App(title="small queue", max_size=2, default_concurrency_limit=1)


@app.function(inputs=["number", "textbox"], outputs=["textbox"], eta_hint_s=1.0)
def slow(seconds: float, tag: str) -> str:
    """Sleeps `seconds`; a negative number holds the call until the test writes `$RECORD_DIR/<tag>.release`
    (at most 60 s), so a test's steps cannot outlast it on a loaded machine."""
    record("slow", tag=tag)
    if seconds >= 0:
        time.sleep(seconds)
        return tag
    gate = Path(os.environ["RECORD_DIR"]) / f"{tag}.release"
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return tag


@app.function(inputs=["number", "textbox"], outputs=["textbox"], concurrency_limit=None, eta_hint_s=2.0)
def count(steps: float, tag: str) -> Iterator[str]:
    """`tag 0`, `tag 0 1`, ... one more every 0.2 s: each message after the first is a diff of the last."""
    shown = tag
    for k in range(int(steps)):
        time.sleep(0.2)
        shown = f"{shown} {k}"
        yield shown
