"""A test app whose functions fail in the ways a worker must survive."""

from __future__ import annotations

import time

import surge

app = surge.App(title="faulty", default_concurrency_limit=None)


@app.function(inputs=["textbox"], outputs=["textbox"])
def crash(text: str) -> str:
    raise RuntimeError(f"internal detail {text}")


@app.function(inputs=["textbox"], outputs=["textbox", "textbox"])
def wrong_arity(text: str) -> str:
    return text


@app.function(inputs=["number"], outputs=["number"], time_limit_s=0.3)
def hang(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=8)
def short_batch(texts: list[str]) -> list[list[str]]:
    return [texts[:-1]]


@app.function(inputs=["textbox"], outputs=["textbox"])
def fine(text: str) -> str:
    return text
