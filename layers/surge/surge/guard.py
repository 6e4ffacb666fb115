"""Front-door protections of the local and Lambda fronts: body size limit and per-client join rate.

In AWS, API Gateway throttling is the first line (see template.yaml); these also hold locally and
inside each Lambda execution environment.
"""

from __future__ import annotations

import json
import math
import threading
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from surge.gradio_page import root_url
from surge.models import Caller


class BodyLimit:
    """Answer 413 naming the limit before reading more than `max_bytes` of a request body."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None, why: str = "") -> None:
        """`paths`: a limit of their own for some paths (uploads), instead of `max_bytes`; `why`: what makes
        up `max_bytes`, said with it."""
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}
        self.why = why

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.paths.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(send, max_bytes)
            return
        seen = 0
        over = answered = started = False

        async def limited() -> Message:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                over = True
                raise _TooLarge
            return message

        async def answer(message: Message) -> None:
            # A body without a length (chunked) trips the limit while the app reads it: FastAPI takes the
            # error for a bad body and answers 400; the 413 goes out instead. A response already begun
            # (one that streams while it reads) is ended where it is.
            nonlocal answered, started
            if not over:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not answered:
                answered = True
                await self._end(send, max_bytes, started)

        try:
            await self.app(scope, limited, answer)
        except _TooLarge:
            if not answered:
                answered = True
                await self._end(send, max_bytes, started)

    async def _end(self, send: Send, max_bytes: int, started: bool) -> None:
        if started:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self._refuse(send, max_bytes)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        why = f" ({self.why})" if self.why and max_bytes == self.max_bytes else ""
        body = json.dumps({"detail": f"Request body is over the limit of {max_bytes} bytes{why}."}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class RateLimiter:
    """Token buckets per client: `rate_per_s` joins a second with bursts up to `burst`."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after_s(self, client: str) -> int:
        """0 if the client may go ahead now (and a token is taken), else whole seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if len(self._buckets) >= self.max_clients:
                self._buckets.clear()
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0
            self._buckets[client] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate_per_s))


def client_address(scope: Scope) -> str:
    """The caller's address as API Gateway saw it, else the socket peer (local runs).

    Not `X-Forwarded-For`: API Gateway appends the real address on the right of whatever the client
    sent, so its leftmost entry is the client's to choose. Mangum keeps the REST API event in
    `scope["aws.event"]`, whose `requestContext.identity.sourceIp` API Gateway sets itself.
    """
    event = scope.get("aws.event")
    if isinstance(event, dict):
        identity = (event.get("requestContext") or {}).get("identity") or {}
        source_ip = identity.get("sourceIp")
        if isinstance(source_ip, str) and source_ip:
            return source_ip
    client = scope.get("client")
    return str(client[0]) if client else "?"


def client_port(scope: Scope) -> int | None:
    """The caller's port where the front sees its socket; None behind API Gateway (its address is the
    client's there, its port not)."""
    client = scope.get("client")
    if isinstance(scope.get("aws.event"), dict) or not client or not isinstance(client[1], int):
        return None
    return client[1]


PRIVATE_HEADERS = frozenset({"cookie", "authorization"})
CALLER_HEADERS_MAX_BYTES = 8192
"""Headers a function sees of its caller, at most (the queue message carries them)."""


def caller_of(request: Request, route_path: str) -> Caller:
    """Who is joining, for the function's `gr.Request`: headers (less credentials, within
    `CALLER_HEADERS_MAX_BYTES`), the caller's address as `client_address` finds it, the query string; and
    the app's public URL as this request to `route_path` shows it."""
    headers: dict[str, str] = {}
    size = 0
    for name, value in request.headers.items():
        size += len(name) + len(value)
        if name in PRIVATE_HEADERS or size > CALLER_HEADERS_MAX_BYTES:
            continue
        headers[name] = value
    return Caller(
        headers=headers,
        client_host=client_address(request.scope),
        client_port=client_port(request.scope),
        query_params=dict(request.query_params),
        url=str(request.url),
        root_url=root_url(request, route_path),
    )
