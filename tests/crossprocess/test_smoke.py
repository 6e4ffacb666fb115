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


def test_smoke_calls_frames_that_arrive_together_buffered() -> None:
    report = SmokeReport()
    judge_streaming(
        [Frame(2.0, "estimation", 90), Frame(2.01, "process_generating", 90), Frame(2.02, "process_completed", 90)],
        report,
    )
    assert report.failures and "looks buffered" in report.failures[0]
    spread = SmokeReport()
    judge_streaming([Frame(0.1, "estimation", 90), Frame(0.6, "process_completed", 90)], spread)
    assert spread.failures == []
    unfinished = SmokeReport()
    judge_streaming([Frame(0.1, "estimation", 90), Frame(0.6, "close_stream", 40)], unfinished)
    assert unfinished.failures == ["the SSE stream ended without process_completed"]
