"""The load generator: simulated users speaking Gradio's sse_v3 protocol over httpx, on 127.0.0.1 only.

Closed loop: N users, each joins with a fresh session hash, reads that session's stream until its
`process_completed`, then joins again at once (the stream is read on to `close_stream` in the
background, so the seconds a stream stays open are measured too). Open loop: arrivals at a fixed
rate, each one request. A user refused with "queue full" (HTTP 503) waits `reject_backoff_s` (±50 %)
and tries again, as a person would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

BATCH_OF = re.compile(r"\(batch of (\d+)\)$")


@dataclass
class Sample:
    """One request that ended: times are `time.monotonic()` seconds."""

    joined: float
    done: float
    started: float | None
    batch_size: int | None
    ok: bool
    error: str | None = None


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    rejections: list[float] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    join_s: list[tuple[float, float]] = field(default_factory=list)
    """(time, seconds) of each admitted join: the API Lambda's share of the bill."""
    streams: list[tuple[float, float]] = field(default_factory=list)
    """(closed at, seconds open) of each session stream: the stream Lambda's share of the bill."""
    readers: set[asyncio.Task[None]] = field(default_factory=set)
    """Streams still being read (to `close_stream`) after their request completed."""

    def error(self, kind: str) -> None:
        self.errors.append((time.monotonic(), kind))


@dataclass(frozen=True)
class Target:
    url: str
    fn_index: int


async def discover(client: httpx.AsyncClient, url: str, api_name: str) -> Target:
    if urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError("the load generator only talks to 127.0.0.1")
    config = (await client.get(f"{url}/config")).raise_for_status().json()
    names = [str(d.get("api_name", "")).lstrip("/") for d in config["dependencies"]]
    return Target(url, names.index(api_name))


class Session:
    """One join and its stream."""

    def __init__(
        self, client: httpx.AsyncClient, target: Target, recorder: Recorder, timeout_s: float, user: int
    ) -> None:
        self.client = client
        # Each simulated user is its own client address, as API Gateway would report it.
        self.headers = {"x-forwarded-for": f"10.{user >> 16 & 255}.{user >> 8 & 255}.{user & 255}"}
        self.target = target
        self.recorder = recorder
        self.timeout_s = timeout_s
        self.hash = uuid.uuid4().hex

    async def request(self, text: str) -> bool | None:
        """Run one request; True when it completed, False when it failed, None when refused (queue full)."""
        joined = time.monotonic()
        try:
            response = await self.client.post(
                f"{self.target.url}/gradio_api/queue/join",
                json={"data": [text], "fn_index": self.target.fn_index, "session_hash": self.hash},
                headers=self.headers,
            )
        except httpx.HTTPError as error:
            self.recorder.error(f"join {type(error).__name__}")
            return False
        if response.status_code == 503:
            self.recorder.rejections.append(time.monotonic())
            return None
        if response.status_code == 429:
            self.recorder.error("join rate-limited (429)")
            return None
        if response.status_code != 200:
            self.recorder.error(f"join HTTP {response.status_code}")
            return False
        self.recorder.join_s.append((time.monotonic(), time.monotonic() - joined))
        event_id = response.json()["event_id"]
        completed: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(self._read(event_id, joined, completed))
        self.recorder.readers.add(reader)
        reader.add_done_callback(self.recorder.readers.discard)
        try:
            sample = await asyncio.wait_for(asyncio.shield(completed), self.timeout_s)
        except TimeoutError:
            reader.cancel()
            sample = Sample(joined, time.monotonic(), None, None, False, "timeout")
        self.recorder.samples.append(sample)
        if sample.error:
            self.recorder.error(sample.error)
        return sample.ok

    async def _read(self, event_id: str, joined: float, completed: asyncio.Future[Sample]) -> None:
        opened = time.monotonic()
        started: float | None = None
        try:
            async with self.client.stream(
                "GET",
                f"{self.target.url}/gradio_api/queue/data",
                params={"session_hash": self.hash},
                headers=self.headers,
            ) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"stream HTTP {response.status_code}")
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    message: dict[str, Any] = json.loads(line[6:])
                    kind = message.get("msg")
                    if kind == "process_starts" and message.get("event_id") == event_id:
                        started = time.monotonic()
                    elif kind == "process_completed" and message.get("event_id") == event_id:
                        _settle(completed, _sample(message, joined, started))
                    elif kind == "close_stream":
                        break
        except (httpx.HTTPError, RuntimeError, ValueError) as error:
            _settle(completed, Sample(joined, time.monotonic(), started, None, False, f"stream {error!s:.40}"))
        finally:
            now = time.monotonic()
            self.recorder.streams.append((now, now - opened))
            _settle(completed, Sample(joined, now, started, None, False, "stream closed early"))


def _settle(future: asyncio.Future[Sample], sample: Sample) -> None:
    if not future.done():
        future.set_result(sample)


def _sample(message: dict[str, Any], joined: float, started: float | None) -> Sample:
    now = time.monotonic()
    if not message.get("success"):
        error = str(message.get("output", {}).get("error") or "failed")
        return Sample(joined, now, started, None, False, f"failed: {error:.40}")
    data = message.get("output", {}).get("data") or [""]
    match = BATCH_OF.search(str(data[0]))
    return Sample(joined, now, started, int(match.group(1)) if match else None, True)


@dataclass
class Load:
    """What to send: `users` closed-loop users, or `rate_per_s` open-loop arrivals, until `stop_at`."""

    users: int = 0
    rate_per_s: float = 0.0
    reject_backoff_s: float = 2.0
    timeout_s: float = 120.0
    ramp_s: float = 1.0
    """Users start spread over this many seconds, not all in one instant."""


_TLS = ssl.create_default_context()
"""One TLS context for every client (each would otherwise load the CA bundle; the targets are plain HTTP)."""


def client_for(users: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=max(20, users * 2))
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0, connect=30.0), verify=_TLS)


USERS_PER_CLIENT = 4
"""Closed-loop users share an HTTP client this many at a time. httpcore's connection pool scans all its
connections (a socket check each) on every request and every response it closes, so a pool's cost
grows with its size. One pool for 1,000 users kept the generator's core busy in pool bookkeeping while
the target sat idle; pools of 32 users still spent 62 % of the generator's samples in
`_assign_requests_to_connections` at 1,000 users (py-spy), and the streams of admitted jobs opened
seconds late, so their results looked late."""


async def run(client: httpx.AsyncClient, target: Target, load: Load, recorder: Recorder, stop_at: float) -> None:
    """Generate load until `stop_at` (monotonic), then let requests in flight finish (at most `timeout_s`).
    `client` serves an open loop; closed-loop users get small clients of their own (`USERS_PER_CLIENT`)."""
    if load.rate_per_s > 0:
        await _open_loop(client, target, load, recorder, stop_at)
        return
    async with contextlib.AsyncExitStack() as clients:
        pool = [
            await clients.enter_async_context(client_for(USERS_PER_CLIENT))
            for _ in range(max(1, -(-load.users // USERS_PER_CLIENT)))
        ]
        spread_s = load.ramp_s / max(1, load.users)
        users = [
            asyncio.create_task(_user(pool[i // USERS_PER_CLIENT], target, load, recorder, stop_at, i, i * spread_s))
            for i in range(load.users)
        ]
        await asyncio.gather(*users)


async def _user(
    client: httpx.AsyncClient, target: Target, load: Load, recorder: Recorder, stop_at: float, user: int, delay_s: float
) -> None:
    await asyncio.sleep(delay_s)
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        outcome = await Session(client, target, recorder, load.timeout_s, user).request(f"u{n}")
        if outcome is None:
            await asyncio.sleep(load.reject_backoff_s * random.uniform(0.5, 1.5))
        elif outcome is False:
            await asyncio.sleep(0.5)


async def _open_loop(client: httpx.AsyncClient, target: Target, load: Load, recorder: Recorder, stop_at: float) -> None:
    tasks: set[asyncio.Task[bool | None]] = set()
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        task = asyncio.create_task(Session(client, target, recorder, load.timeout_s, n).request(f"a{n}"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(random.expovariate(load.rate_per_s))
    if tasks:
        await asyncio.gather(*tasks)
