"""`make smoke` against the local stack (moto server, uvicorn, worker processes): what it prints for a
healthy endpoint, and that it calls a buffered stream buffered."""

from __future__ import annotations

from typing import Protocol

import pytest

from tools.smoke import Frame, SmokeReport, judge_streaming, main, parse, smoke

pytestmark = pytest.mark.crossprocess


class Stack(Protocol):
    """What smoke needs of the local stack fixture (conftest's demo_stack): its URL."""

    url: str


def test_smoke_passes_the_local_stack_and_shows_frames_arriving_over_time(demo_stack: Stack) -> None:
    url = demo_stack.url
    report = smoke(url, parse([url]))
    text = "\n".join(report.lines)
    assert report.failures == [], text
    assert "GET /config" in text and "'echo'" in text
    assert "-> 'hello from make smoke'" in text
    assert "process_generating" in text and "process_completed" in text
    assert text.splitlines()[-1].endswith(": streamed")
    assert main([url, "--stream-api-name", "no_such_function"]) == 0


def test_smoke_of_any_app_calls_its_first_endpoint_and_times_its_first_generator(memory_chat_stack: Stack) -> None:
    """It predicted `/echo` and timed `stream_tokens`, the demo app's: any other app failed."""
    url = memory_chat_stack.url
    report = smoke(url, parse([url]))
    text = "\n".join(report.lines)
    assert report.failures == [], text
    assert "gradio_client predict /recall('Hello!!',)" in text, "Gradio's example input, from the API info"
    assert "process_completed" in text, "the chat's reply, a generator, joined through /queue/join and read"
    assert main([url, "--inputs", "[hi]"]) == 1, "a bad --inputs is one line, not a traceback"


def test_smoke_calls_frames_that_arrive_together_buffered() -> None:
    report = SmokeReport()
    judge_streaming(
        [
            Frame(2.0, "estimation", 90),
            Frame(2.0, "process_starts", 90),
            Frame(2.01, "process_generating", 90),
            Frame(2.02, "process_completed", 90),
        ],
        report,
    )
    assert report.failures and "looks buffered" in report.failures[0]
    lump = SmokeReport()  # the join's estimation came at once, the output in one lump at the end
    judge_streaming(
        [
            Frame(0.02, "estimation", 90),
            Frame(0.3, "process_starts", 90),
            Frame(0.3, "process_generating", 90),
            Frame(0.3, "process_completed", 90),
        ],
        lump,
    )
    assert lump.failures and "all 3 frames arrived within 0 ms" in lump.failures[0]
    spread = SmokeReport()
    judge_streaming([Frame(0.1, "estimation", 90), Frame(0.6, "process_completed", 90)], spread)
    assert spread.failures == []
    unfinished = SmokeReport()
    judge_streaming([Frame(0.1, "estimation", 90), Frame(0.6, "close_stream", 40)], unfinished)
    assert unfinished.failures == ["the SSE stream ended without process_completed"]
    quick = SmokeReport()
    judge_streaming(
        [Frame(0.01, "estimation", 90), Frame(0.02, "process_starts", 90), Frame(0.03, "process_completed", 90)], quick
    )
    assert quick.failures == [] and "too soon to tell" in quick.lines[0], "a 30 ms job is not a buffered stream"
