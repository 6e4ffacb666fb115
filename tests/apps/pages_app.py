"""App for the browser tests of the pages: a slow function (rank falls), a stream with progress, a failing
division, an image, a batch function for bursts, and `held`, which the tests run no worker for (it fills the queue).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import surge

MAX_SIZE = 8

app = surge.App(title="Pages test", max_size=MAX_SIZE, default_concurrency_limit=1)


@app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=0.7)
def slow_echo(text: str) -> str:
    time.sleep(0.7)
    return text


@app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=1.5)
def count_words(text: str, progress: surge.Progress = surge.Progress()) -> Iterator[str]:  # noqa: B008
    """Yields the text so far, one more word every 0.25 s, reporting progress in words."""
    words = text.split()
    so_far = ""
    for i, word in enumerate(words):
        time.sleep(0.25)
        so_far = f"{so_far} {word}".strip()
        progress((i + 1, len(words)), desc="counting", unit="words")
        yield so_far


@app.function(inputs=["number", "number"], outputs=["number"], eta_hint_s=0.05)
def divide(a: float, b: float) -> float:
    if b == 0:
        raise surge.Error("Cannot divide by zero.")
    return a / b


@app.function(inputs=["image"], outputs=["image", "textbox", "json"], eta_hint_s=0.05)
def inspect_image(image: str) -> tuple[str, str, dict[str, Any]]:
    """Echo an uploaded image (a data URL) with its media type and size."""
    header, _, payload = image.partition(",")
    media_type = header.removeprefix("data:").split(";")[0]
    return image, f"{media_type}, {len(payload)} base64 characters", {"media_type": media_type, "chars": len(payload)}


@app.function(batch=True, max_batch_size=2, inputs=["textbox"], outputs=["textbox"], eta_hint_s=1.0)
def batched(texts: list[str]) -> list[list[str]]:
    time.sleep(1.0)
    return [[text.upper() for text in texts]]


@app.function(inputs=["textbox"], outputs=["textbox"])
def held(text: str) -> str:
    return text
