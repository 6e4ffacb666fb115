"""`make smoke URL=...`: the deployed endpoint as a visitor sees it. GET /config, one prediction through
the official gradio_client, and one session's SSE frames with the time each arrived, to show they
stream rather than arrive in one buffered lump at the end.

    python -m tools.smoke https://abc123.execute-api.us-east-1.amazonaws.com/live/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from gradio_client import Client

# Frames that all arrive within this window, though the job took longer, were held back somewhere.
BUFFERED_WINDOW_S = 0.05


@dataclass(frozen=True)
class Frame:
    at_s: float
    msg: str
    size: int


@dataclass
class SmokeReport:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.lines.append(f"FAIL {line}")
        self.failures.append(line)


def check_config(http: httpx.Client, base: str, report: SmokeReport) -> dict[str, Any]:
    started = time.monotonic()
    response = http.get(f"{base}config")
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        report.fail(f"GET /config answered {response.status_code}: {response.text[:200]}")
        return {}
    config: dict[str, Any] = response.json()
    names = [d.get("api_name") for d in config.get("dependencies", [])]
    report.say(f"ok   GET /config in {elapsed:.2f} s: protocol {config.get('protocol')}, functions {names}")
    return config


def check_prediction(base: str, api_name: str, inputs: Sequence[Any], report: SmokeReport) -> None:
    started = time.monotonic()
    try:
        result = Client(base, verbose=False).predict(*inputs, api_name=f"/{api_name}")
    except Exception as error:  # any failure of the client is what a visitor would see
        report.fail(f"gradio_client predict /{api_name}: {type(error).__name__}: {error}")
        return
    report.say(
        f"ok   gradio_client predict /{api_name}{tuple(inputs)!r} -> {result!r} in {time.monotonic() - started:.2f} s"
    )


def session_frames(http: httpx.Client, base: str, session: str, timeout_s: float) -> Iterator[Frame]:
    """The session's SSE frames, each stamped with seconds since the stream was requested."""
    started = time.monotonic()
    with http.stream("GET", f"{base}gradio_api/queue/data", params={"session_hash": session}, timeout=timeout_s) as r:
        r.raise_for_status()
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                raw, buffer = buffer.split("\n\n", 1)
                if not raw.startswith("data: "):
                    continue
                message = json.loads(raw[len("data: ") :])
                yield Frame(time.monotonic() - started, str(message.get("msg")), len(raw))
                if message.get("msg") == "close_stream":
                    return


def check_streaming(
    http: httpx.Client, base: str, config: dict[str, Any], api_name: str, inputs: Sequence[Any], report: SmokeReport
) -> None:
    names = [d.get("api_name") for d in config.get("dependencies", [])]
    if api_name not in names:
        report.say(f"skip SSE timing: the app has no function {api_name!r} (choose one with --stream-api-name)")
        return
    session = uuid.uuid4().hex
    joined = http.post(
        f"{base}gradio_api/queue/join",
        json={"data": list(inputs), "fn_index": names.index(api_name), "session_hash": session},
    )
    if joined.status_code != 200:
        report.fail(f"POST /gradio_api/queue/join answered {joined.status_code}: {joined.text[:200]}")
        return
    frames = [f for f in session_frames(http, base, session, timeout_s=120) if f.msg != "heartbeat"]
    for frame in frames:
        report.say(f"     {frame.at_s:7.3f} s  {frame.msg:<20} {frame.size} bytes")
    judge_streaming(frames, report)


def judge_streaming(frames: Sequence[Frame], report: SmokeReport) -> None:
    """Streamed if the frames up to process_completed did not all arrive at once (close_stream, which
    the front sends a moment after the last job, is left out of the span)."""
    done = [i for i, frame in enumerate(frames) if frame.msg == "process_completed"]
    if not done:
        report.fail("the SSE stream ended without process_completed")
        return
    job = frames[: done[0] + 1]
    span = job[-1].at_s - job[0].at_s
    if len(job) >= 3 and span < BUFFERED_WINDOW_S:
        report.fail(f"all {len(job)} frames arrived within {span * 1000:.0f} ms: the stream looks buffered")
        return
    report.say(f"ok   {len(job)} SSE frames over {span:.2f} s, first after {job[0].at_s:.2f} s: streamed")


def smoke(base: str, args: argparse.Namespace, client_factory: Callable[[], httpx.Client] | None = None) -> SmokeReport:
    base = base if base.endswith("/") else base + "/"
    report = SmokeReport()
    with (client_factory or (lambda: httpx.Client(timeout=30)))() as http:
        config = check_config(http, base, report)
        if config:
            check_prediction(base, args.api_name, json.loads(args.inputs), report)
            check_streaming(http, base, config, args.stream_api_name, json.loads(args.stream_inputs), report)
    return report


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make smoke", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the stack's ApiUrl output")
    parser.add_argument("--api-name", default="echo", help="function to predict once")
    parser.add_argument("--inputs", default='["hello from make smoke"]', help="its inputs, as a JSON list")
    parser.add_argument("--stream-api-name", default="stream_tokens", help="function whose SSE frames are timed")
    parser.add_argument("--stream-inputs", default='["one two three four five six seven eight"]')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    report = smoke(args.url, args)
    sys.stdout.write("\n".join(report.lines) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
