"""A test app with a tiny queue (max_size=2) in front of a slow function, for queue-full and cancel tests."""

from __future__ import annotations

import time

import surge
from tests.apps.timing_app import record

app = surge.App(title="small queue", max_size=2, default_concurrency_limit=1)


@app.function(inputs=["number", "textbox"], outputs=["textbox"], eta_hint_s=1.0)
def slow(seconds: float, tag: str) -> str:
    record("slow", tag=tag)
    time.sleep(seconds)
    return tag
