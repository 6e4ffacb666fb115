"""A test app that records when each call starts and ends, so tests can check overlap across processes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import surge

app = surge.App(title="timing", default_concurrency_limit=1)


def record(name: str, **fields: object) -> None:
    """Append one JSON line to $RECORD_DIR/<name>.jsonl (O_APPEND: safe across processes)."""
    path = Path(os.environ["RECORD_DIR"]) / f"{name}.jsonl"
    with path.open("a") as out:
        out.write(json.dumps({"pid": os.getpid(), **fields}) + "\n")


def hold(seconds: float, tag: str) -> None:
    """Sleep `seconds`; a negative number holds the call until the test calls `release(record_dir, tag)`
    (at most 60 s), so that a test's own steps cannot outlast a running call on a loaded machine."""
    if seconds >= 0:
        time.sleep(seconds)
        return
    gate = Path(os.environ["RECORD_DIR"]) / f"{tag}.release"
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def release(record_dir: Path, tag: str) -> None:
    """Let the call `hold`ing on `tag` return."""
    (record_dir / f"{tag}.release").touch()


def _timed(name: str, seconds: float, tag: str) -> str:
    start = time.time()
    hold(seconds, tag)
    record(name, start=start, end=time.time(), tag=tag)
    return tag


@app.function(inputs=["number", "textbox"], outputs=["textbox"], concurrency_limit=1, eta_hint_s=0.3)
def limited_one(seconds: float, tag: str) -> str:
    return _timed("limited_one", seconds, tag)


@app.function(inputs=["number", "textbox"], outputs=["textbox"], concurrency_limit=2, eta_hint_s=0.3)
def limited_two(seconds: float, tag: str) -> str:
    return _timed("limited_two", seconds, tag)


@app.function(inputs=["textbox"], outputs=["textbox"], concurrency_limit=None)
def one_at_a_time(text: str) -> str:
    record("one_at_a_time", kind=type(text).__name__)
    time.sleep(0.02)
    return text.upper()


@app.function(inputs=["number", "textbox"], outputs=["textbox"], batch=True, max_batch_size=2, concurrency_limit=None)
def sleepy(seconds: list[float], tags: list[str]) -> list[list[str]]:
    start = time.time()
    record("sleepy_start", start=start, tags=tags)
    time.sleep(max(seconds))
    record("sleepy", start=start, end=time.time(), tags=tags)
    return [tags]


@app.function(inputs=["textbox"], outputs=["textbox"], concurrency_limit=1, eta_hint_s=0.3)
def steps(tag: str) -> Iterator[str]:
    """A generator that holds at its third step until the test releases `tag` (a worker to kill there);
    its steps 0.3 s apart, so that streams read them one by one."""
    for step in range(6):
        record("steps", tag=tag, step=step)
        if step == 2:
            hold(-1, tag)
        time.sleep(0.3)
        yield f"{tag}-{step}"
