"""The default example app that `make run` serves: echo, the guide's trim_words, a token stream, sim_gpu."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import surge

app = surge.App(title="Surge demo", max_size=200, default_concurrency_limit=1)


@app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=0.01)
def echo(text: str) -> str:
    return text


@app.function(batch=True, max_batch_size=16, concurrency_limit=2, inputs=["textbox", "number"], outputs=["textbox"])
def trim_words(words: list[str], lengths: list[float]) -> list[list[str]]:
    """The batch function of Gradio's performance guide, rejecting a negative length."""
    trimmed_words = []
    for w, length in zip(words, lengths, strict=True):
        if length < 0:
            raise surge.Error(f"Length must be 0 or more; got {length:g} for {w!r}.")
        trimmed_words.append(w[: int(length)])
    return [trimmed_words]


@app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=1.0)
def stream_tokens(text: str, progress: surge.Progress = surge.Progress()) -> Iterator[str]:  # noqa: B008
    """Like a chat model: yields the text so far with one more word each time, reporting progress."""
    words = text.split()
    so_far = ""
    yield so_far
    for i, word in enumerate(words):
        progress((i + 1, len(words)), desc="generating", unit="tokens")
        time.sleep(0.05)
        so_far = f"{so_far} {word}" if so_far else word
        yield so_far


_device = threading.Lock()
"""This process's one simulated device: its batches never overlap."""


@app.function(
    batch=True, max_batch_size=16, concurrency_limit=None, inputs=["textbox"], outputs=["textbox"], eta_hint_s=0.08
)
def sim_gpu(texts: list[str]) -> list[list[str]]:
    """A stand-in model for load tests: a batch of n costs 50 ms + 2 ms * n."""
    with _device:
        time.sleep(0.050 + 0.002 * len(texts))
    return [[f"{text} (batch of {len(texts)})" for text in texts]]
