"""`make smoke` against the local stack (moto server, uvicorn, worker processes): what it prints for a
healthy endpoint, and that it calls a buffered stream buffered."""

from __future__ import annotations

import json
from typing import Protocol

import pytest

from tools.smoke import Frame, SmokeReport, judge_streaming, main, parse, smoke

pytestmark = pytest.mark.crossprocess


class Stack(Protocol):
    """What smoke needs of the local stack fixture (conftest's demo_stack): its URL."""

    url: str


def test_smoke_passes_the_local_stack_and_shows_frames_arriving_over_time(demo_stack: Stack) -> None:
    url = demo_stack.url
    # 20 words, a word each 0.05 s: a stream that lasts well past the check's 0.2 s "too soon to tell"
    # (the demo's example input of 4 words ended 25-95 ms past it: a busy machine could tip it over).
    report = smoke(url, parse([url, "--stream-inputs", json.dumps([" ".join(f"w{i}" for i in range(20))])]))
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


def _frames(*frames: tuple[float, str]) -> list[Frame]:
    return [Frame(at_s, msg, 40 if msg == "close_stream" else 90) for at_s, msg in frames]


@pytest.mark.parametrize(
    ("frames", "failure"),
    [
        (
            _frames(
                (2.0, "estimation"), (2.0, "process_starts"), (2.01, "process_generating"), (2.02, "process_completed")
            ),
            "all 3 frames arrived within 20 ms: the stream looks buffered",
        ),
        (  # the join's estimation came at once, the output in one lump at the end
            _frames(
                (0.02, "estimation"), (0.3, "process_starts"), (0.3, "process_generating"), (0.3, "process_completed")
            ),
            "all 3 frames arrived within 0 ms: the stream looks buffered",
        ),
        (_frames((0.1, "estimation"), (0.6, "process_completed")), None),
        (_frames((0.1, "estimation"), (0.6, "close_stream")), "the SSE stream ended without process_completed"),
    ],
)
def test_smoke_calls_frames_that_arrive_together_buffered(frames: list[Frame], failure: str | None) -> None:
    report = SmokeReport()
    judge_streaming(frames, report)
    assert report.failures == ([failure] if failure else [])


def test_a_job_too_quick_to_tell_is_not_called_buffered() -> None:
    quick = SmokeReport()
    judge_streaming(_frames((0.01, "estimation"), (0.02, "process_starts"), (0.03, "process_completed")), quick)
    assert quick.failures == [] and "too soon to tell" in quick.lines[0], "a 30 ms job is not a buffered stream"


def test_smoke_of_an_address_nothing_answers_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["http://127.0.0.1:9/"]) == 1
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("FAIL http://127.0.0.1:9/: ConnectError"), said
