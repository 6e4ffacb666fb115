"""The chaos suite's target: a batched stand-in model, a limited one, and a slow one for drop tests."""

from __future__ import annotations

import time

import surge
from tests.apps.timing_app import hold, record

app = surge.App(title="chaos", max_size=None, default_concurrency_limit=None)


@app.function(
    inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=8, concurrency_limit=2, eta_hint_s=0.2
)
def model(texts: list[str]) -> list[list[str]]:
    start = time.time()
    time.sleep(0.1 + 0.01 * len(texts))
    record("model", start=start, end=time.time(), tags=texts)
    return [[f"ok:{t}" for t in texts]]


@app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=4, concurrency_limit=2)
def pair(texts: list[str]) -> list[list[str]]:
    start = time.time()
    time.sleep(0.05)
    record("pair", start=start, end=time.time(), tags=texts)
    return [texts]


@app.function(inputs=["number", "textbox"], outputs=["textbox"], concurrency_limit=1, eta_hint_s=1.0)
def slow(seconds: float, tag: str) -> str:
    record("slow", tag=tag)
    hold(seconds, tag)
    return tag
