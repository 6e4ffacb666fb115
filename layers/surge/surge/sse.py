"""Server-Sent Events framing for gradio_client: `data: <compact json>` frames, LF only, nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from surge import protocol


def frame(message: dict[str, Any] | str) -> ServerSentEvent:
    data = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
    return ServerSentEvent(data=data, sep="\n")


async def _frames(messages: AsyncIterator[dict[str, Any] | str]) -> AsyncIterator[ServerSentEvent]:
    async for message in messages:
        yield frame(message)


def event_stream(
    messages: AsyncIterator[dict[str, Any] | str], heartbeat_s: float, heartbeat: dict[str, Any] | str | None = None
) -> EventSourceResponse:
    """Stream `messages`, with a heartbeat frame whenever `heartbeat_s` passes (gradio_client ignores them)."""
    beat = protocol.heartbeat() if heartbeat is None else heartbeat
    return EventSourceResponse(
        _frames(messages),
        sep="\n",
        ping=heartbeat_s,
        ping_message_factory=lambda: frame(beat),
    )


def _simple(message: dict[str, Any], outputs: dict[str, list[Any]]) -> ServerSentEvent | None:
    """One message of a job as Gradio's curl API sends it (`event: complete` / `generating` / `error`, the
    outputs as `data`); rank, start, progress and notices are not sent there. A generator's steps are kept
    as diffs against the step before (as the page's stream sends them); `outputs` holds each job's last
    whole outputs, from which each step is sent whole, as Gradio sends them there."""
    kind = message.get("msg")
    output = message.get("output") or {}  # a dict, or the text of an error of no job (`protocol.unknown_call`)
    if kind == "process_completed":
        event, data = ("complete", output.get("data")) if message.get("success") else ("error", output)
    elif kind == "process_generating" and message.get("success"):
        event, data = "generating", _whole(outputs, str(message.get("event_id")), output.get("data") or [])
    elif kind == "process_generating":
        event, data = "error", output
    else:
        return None
    return ServerSentEvent(data=json.dumps(data), event=event, sep="\n")


def _whole(outputs: dict[str, list[Any]], event_id: str, data: list[Any]) -> list[Any]:
    """A generator step's whole outputs: its first step is whole, each later one edits the one before. A
    step that is no edit list of them (a worker of a version that kept curl steps whole) is taken whole."""
    before = outputs.get(event_id)
    try:
        whole = data if before is None else [protocol.apply_diff(*pair) for pair in zip(before, data, strict=True)]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        whole = data
    outputs[event_id] = whole
    return whole


async def _simple_frames(messages: AsyncIterator[dict[str, Any] | str]) -> AsyncIterator[ServerSentEvent]:
    outputs: dict[str, list[Any]] = {}
    async for message in messages:
        if isinstance(message, dict):
            framed = _simple(message, outputs)
            if framed is not None:
                yield framed


def simple_stream(messages: AsyncIterator[dict[str, Any] | str], heartbeat_s: float) -> EventSourceResponse:
    """A call's messages in the format of Gradio's `GET /gradio_api/call/<api_name>/<event_id>`."""
    return EventSourceResponse(
        _simple_frames(messages),
        sep="\n",
        ping=heartbeat_s,
        ping_message_factory=lambda: ServerSentEvent(data="null", event="heartbeat", sep="\n"),
    )
