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
