"""A test app with a tiny queue (max_size=2) in front of a slow function, for queue-full and cancel tests,
and a generator beside it (no limit) for a stream dropped while it streams."""

from __future__ import annotations

import time
from collections.abc import Iterator

import surge
from tests.apps.timing_app import hold, record

app = surge.App(title="small queue", max_size=2, default_concurrency_limit=1)


@app.function(inputs=["number", "textbox"], outputs=["textbox"], eta_hint_s=1.0)
def slow(seconds: float, tag: str) -> str:
    """Sleeps `seconds`, or (negative) holds until the test releases `tag` (`timing_app.hold`)."""
    record("slow", tag=tag)
    hold(seconds, tag)
    return tag


@app.function(inputs=["number", "textbox"], outputs=["textbox"], concurrency_limit=None, eta_hint_s=2.0)
def count(steps: float, tag: str) -> Iterator[str]:
    """`tag 0`, `tag 0 1`, ... one more every 0.2 s: each message after the first is a diff of the last."""
    shown = tag
    for k in range(int(steps)):
        time.sleep(0.2)
        shown = f"{shown} {k}"
        yield shown
