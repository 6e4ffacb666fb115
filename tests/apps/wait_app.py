"""A test app refusing joins whose expected wait exceeds 1 s (`max_wait_s`), and a burst target (max_size=20)."""

from __future__ import annotations

import time

import surge

app = surge.App(title="bounded wait", max_size=20, max_wait_s=1.0, default_concurrency_limit=1)


@app.function(inputs=["number"], outputs=["number"], eta_hint_s=0.4)
def wait(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.function(inputs=["number"], outputs=["number"])
def instant(value: float) -> float:
    """No ETA hint: before a first run its ETA is unknown, so `max_wait_s` cannot refuse it."""
    return value


empty = surge.App(title="nothing to serve")
"""An app with no function: named as the app, it is refused at start."""
