"""`make smoke URL=...`: the deployed endpoint as a visitor sees it: GET /config, one prediction through
the official gradio_client, and one session's SSE frames with the time each arrived, to show they
stream rather than arrive in one buffered lump at the end.

By default it predicts the app's first endpoint and times its first generator, with inputs from the
endpoint's API info (Gradio's example inputs, else defaults, else a text, a number or a boolean by type);
`--api-name`, `--inputs`, `--stream-api-name` and `--stream-inputs` choose others.

    python -m tools.smoke https://abc123.execute-api.us-east-1.amazonaws.com/live/
    make smoke URL=http://127.0.0.1:7860 SMOKE_ARGS="--api-name trim_words --inputs '[\\"hello world\\", 3]'"
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
TOO_QUICK_S = 0.2
"""A job whose last frame came this soon after the stream opened says nothing of buffering."""


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


SAMPLE_BY_TYPE: dict[str, Any] = {"str": "hello from make smoke", "float": 1, "int": 1, "bool": True}
"""An input for a parameter with no example and no default, by the Python type its API info gives."""


class Unusable(ValueError):
    """The command line or the app's API info gives no way to call a function: said in one line."""


def endpoints(http: httpx.Client, base: str) -> dict[str, Any]:
    """The app's named endpoints (`/gradio_api/info`), by name without the slash."""
    response = http.get(f"{base}gradio_api/info")
    response.raise_for_status()
    return {name.lstrip("/"): info for name, info in response.json().get("named_endpoints", {}).items()}


def sample_inputs(api_name: str, endpoint: dict[str, Any]) -> list[Any]:
    inputs = []
    for parameter in endpoint.get("parameters", []):
        kind = (parameter.get("python_type") or {}).get("type")
        if "example_input" in parameter:
            inputs.append(parameter["example_input"])
        elif parameter.get("parameter_has_default"):
            inputs.append(parameter.get("parameter_default"))
        elif kind in SAMPLE_BY_TYPE:
            inputs.append(SAMPLE_BY_TYPE[kind])
        else:
            name = parameter.get("parameter_name") or parameter.get("label")
            raise Unusable(f"/{api_name}'s input {name!r} ({kind}) has no example: give the inputs (--inputs)")
    return inputs


def json_list(text: str, flag: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list):
        raise Unusable(
            f"{flag} must be a JSON list, got {text!r}; through make, quote it inside SMOKE_ARGS: "
            f"""SMOKE_ARGS="{flag} '[\\"hi\\"]'\""""
        )
    return value


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
    dependency = config["dependencies"][names.index(api_name)]
    joined = http.post(
        f"{base}gradio_api/queue/join",
        json={
            "data": _with_states(config, dependency, inputs),
            "fn_index": names.index(api_name),
            "session_hash": session,
        },
    )
    if joined.status_code != 200:
        report.fail(f"POST /gradio_api/queue/join answered {joined.status_code}: {joined.text[:200]}")
        return
    frames = [f for f in session_frames(http, base, session, timeout_s=120) if f.msg != "heartbeat"]
    for frame in frames:
        report.say(f"     {frame.at_s:7.3f} s  {frame.msg:<20} {frame.size} bytes")
    judge_streaming(frames, report)


def _with_states(config: dict[str, Any], dependency: dict[str, Any], inputs: Sequence[Any]) -> list[Any]:
    """A join's data: the API's inputs, with None for each `gr.State` input (the API leaves them out, and
    the server fills them in, as gradio_client sends them)."""
    states = {c.get("id") for c in config.get("components", []) if c.get("type") == "state"}
    ids = dependency.get("inputs", [])
    if len(inputs) == len(ids) or not states:
        return list(inputs)
    given = iter(inputs)
    return [None if i in states else next(given, None) for i in ids]


def judge_streaming(frames: Sequence[Frame], report: SmokeReport) -> None:
    """Streamed if the job's frames up to process_completed did not all arrive at once. The estimations
    (sent as the job joins, before any output) and close_stream (a moment after the last job) are left
    out of the span: an early estimation and a lump of output frames is a buffered stream."""
    done = [i for i, frame in enumerate(frames) if frame.msg == "process_completed"]
    if not done:
        report.fail("the SSE stream ended without process_completed")
        return
    job = [frame for frame in frames[: done[0] + 1] if frame.msg != "estimation"]
    span = job[-1].at_s - job[0].at_s
    if job[-1].at_s < TOO_QUICK_S:
        report.say(
            f"skip SSE timing: the job ended {job[-1].at_s:.2f} s after the stream opened, too soon to tell "
            "streamed frames from buffered ones (time a slower function: --stream-api-name, --stream-inputs)"
        )
        return
    if len(job) >= 3 and span < BUFFERED_WINDOW_S:
        report.fail(f"all {len(job)} frames arrived within {span * 1000:.0f} ms: the stream looks buffered")
        return
    report.say(
        f"ok   {len(job)} SSE frames of the job (estimations aside) over {span:.2f} s, "
        f"first after {job[0].at_s:.2f} s: streamed"
    )


def smoke(base: str, args: argparse.Namespace, client_factory: Callable[[], httpx.Client] | None = None) -> SmokeReport:
    base = base if base.endswith("/") else base + "/"
    report = SmokeReport()
    with (client_factory or (lambda: httpx.Client(timeout=30)))() as http:
        config = check_config(http, base, report)
        if not config:
            return report
        try:
            found = endpoints(http, base)
            api_name, inputs = _chosen(found, args.api_name, args.inputs, "--inputs")
            generators = [
                d.get("api_name")
                for d in config.get("dependencies", [])
                if (d.get("types") or {}).get("generator") and d.get("api_name") in found
            ]
            stream_api_name = args.stream_api_name or next(iter(generators), None)
            stream = _chosen(found, stream_api_name, args.stream_inputs, "--stream-inputs") if stream_api_name else None
        except (Unusable, httpx.HTTPError) as error:
            report.fail(str(error))
            return report
        check_prediction(base, api_name, inputs, report)
        if stream is None:
            report.say("skip SSE timing: the app has no generator to time (choose a function with --stream-api-name)")
            return report
        check_streaming(http, base, config, *stream, report)
    return report


def _chosen(found: dict[str, Any], api_name: str | None, inputs: str | None, flag: str) -> tuple[str, list[Any]]:
    """The function to call and its inputs: as given, else from the app's API info (`found`)."""
    if api_name is None:
        if not found:
            raise Unusable("the app lists no named endpoint in /gradio_api/info: choose one with --api-name")
        api_name = next(iter(found))
    if inputs is not None:
        return api_name, json_list(inputs, flag)
    if api_name not in found:
        return api_name, []  # the call says what is wrong, as a visitor would see it
    return api_name, sample_inputs(api_name, found[api_name])


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make smoke", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("url", help="the stack's ApiUrl output")
    parser.add_argument("--api-name", default=None, help="function to predict once (the app's first)")
    parser.add_argument("--inputs", default=None, help="its inputs, as a JSON list (from its API info)")
    parser.add_argument(
        "--stream-api-name", default=None, help="function whose SSE frames are timed (the app's first generator)"
    )
    parser.add_argument("--stream-inputs", default=None, help="its inputs, as a JSON list (from its API info)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        report = smoke(args.url, args)
    except httpx.HTTPError as error:
        sys.stdout.write(f"FAIL {args.url}: {type(error).__name__}: {error} (is the app served there?)\n")
        return 1
    sys.stdout.write("\n".join(report.lines) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
