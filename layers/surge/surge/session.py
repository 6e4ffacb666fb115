"""A session's event stream: read the log once per event, refresh rank/ETA, survive outages, notice drops.

The stream app hands `SessionStream.messages()` to the SSE layer; everything here is protocol-agnostic
except the message bodies, which come from the log as the writers stored them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from surge import protocol
from surge.errors import Unavailable
from surge.models import StoredEvent

if TYPE_CHECKING:
    from surge.service import FrontService

logger = logging.getLogger("surge.session")

RUNNING_MESSAGES = frozenset({"process_starts", "progress", "process_generating"})
"""News of a running job: its next output is near, so the stream reads fast again."""


@dataclass(frozen=True)
class PollPolicy:
    """How often a session stream reads the event log: fast after activity, backing off when idle."""

    min_s: float = 0.02
    max_s: float = 0.5
    backoff: float = 1.5
    estimation_refresh_s: float = 0.5
    rescan_s: float = 5.0
    linger_s: float = 1.0
    """How long a stream stays open once nothing of its session is pending: a client's next join may
    be in flight (gradio_client closes its reader on `close_stream`; a job joined just before it would
    then hang). Each second costs about $3.33 per million requests in stream Lambda time."""
    empty_session_s: float = 10.0
    outage_retry_s: float = 1.0
    wait_fraction: float = 0.25
    wait_max_s: float = 5.0

    def next_s(self, interval: float, *, running: bool, eta_left_s: float | None, linger_left_s: float | None) -> float:
        """Seconds until the next read of the log, so that reads per job do not grow with the wait.

        `running`: a read just brought news of a running job (its output comes soon: read fast).
        `eta_left_s`: every pending job is waiting and the soonest is expected to start in this many
        seconds (read at a fraction of it, at most `wait_max_s` apart: a deep queue costs a few
        reads, not one per `max_s`). `linger_left_s`: nothing is pending and the stream closes in
        this many seconds unless a new job arrives (one read at the end).
        """
        if running:
            return self.min_s
        backoff = min(interval * self.backoff, self.max_s)
        if linger_left_s is not None:
            return max(self.min_s, linger_left_s)
        if eta_left_s is not None:
            return max(backoff, min(self.wait_max_s, eta_left_s * self.wait_fraction))
        return backoff


@dataclass
class Waiting:
    """A job of the session that has not started: enough to recompute its rank from the counters."""

    group: str
    seq: int
    api_name: str
    last: tuple[int, int] = (-1, -1)
    starts_by: float | None = None
    """When (monotonic) the latest estimation expects it to start; None while unknown."""
    first_rank: tuple[float, int] | None = None
    latest_rank: tuple[float, int] | None = None
    """(monotonic time, rank) of the first and the latest estimation seen: how fast the line moves."""

    def starts_in_s(self, now: float) -> float | None:
        """Seconds until it should start: from how fast its rank has been falling when that is known
        (it counts every overhead), else from the server's ETA."""
        if self.first_rank and self.latest_rank and self.latest_rank[1] < self.first_rank[1]:
            (t0, r0), (t1, r1) = self.first_rank, self.latest_rank
            return max(0.0, r1 * (t1 - t0) / (r0 - r1) - (now - t1))
        return None if self.starts_by is None else max(0.0, self.starts_by - now)


@dataclass
class SessionReader:
    """Turns repeated reads of a session's log into each event exactly once, tracking pending jobs.

    Writers stamp events with their own clocks before the write lands, so a read looks back
    `lookback_ns` behind the newest event it has seen, and while jobs are pending a periodic rescan
    from `start` catches writes that landed later than that (an SDK retry after a lost answer).
    Delivered sort keys are remembered for the stream's life, so nothing is sent twice.
    """

    session_hash: str
    cursor: str = "0"
    start: str = "0"
    lookback_ns: int = 2_000_000_000
    pending: set[str] = field(default_factory=set)
    waiting: dict[str, Waiting] = field(default_factory=dict)
    delivered: bool = False
    _seen: set[str] = field(default_factory=set)

    @property
    def query_after(self) -> str:
        stamp = int(self.cursor.split("#", 1)[0])
        return f"{max(0, stamp - self.lookback_ns):020d}" if self._seen else self.cursor

    def note_estimation(self, body: dict[str, Any]) -> None:
        """Remember when an estimation expects its waiting job to start."""
        waiting = self.waiting.get(str(body.get("event_id")))
        if waiting is None:
            return
        now = time.monotonic()
        eta, rank = body.get("rank_eta"), body.get("rank")
        if isinstance(eta, int | float):
            waiting.starts_by = now + eta
        if isinstance(rank, int):
            waiting.latest_rank = (now, rank)
            waiting.first_rank = waiting.first_rank or waiting.latest_rank

    def eta_left_s(self, now: float) -> float | None:
        """Seconds until the soonest waiting job should start, if every pending job waits with an ETA."""
        if not self.pending or len(self.waiting) < len(self.pending):
            return None
        lefts = [w.starts_in_s(now) for w in self.waiting.values()]
        if any(left is None for left in lefts):
            return None
        return min(left for left in lefts if left is not None)

    def take(self, events: list[StoredEvent]) -> list[StoredEvent]:
        new = [e for e in events if e.sk not in self._seen]
        for event in new:
            self._seen.add(event.sk)
            self._track(event)
        if new:
            self.cursor = max(self.cursor, max(e.sk for e in new))
        return sorted(new, key=lambda e: e.sk)

    def _track(self, event: StoredEvent) -> None:
        body = event.body
        event_id = body.get("event_id")
        if not isinstance(event_id, str):
            return
        message = body.get("msg")
        if message == "estimation":
            self.pending.add(event_id)
            if event.group is not None and event.seq is not None and event.api_name is not None:
                self.waiting.setdefault(event_id, Waiting(event.group, event.seq, event.api_name))
            self.note_estimation(body)
        elif message == "process_starts":
            self.pending.add(event_id)
            self.waiting.pop(event_id, None)
        elif message == "process_completed":
            self.pending.discard(event_id)
            self.waiting.pop(event_id, None)
            self.delivered = True


class SessionStream:
    """One open `/queue/data` connection of a session."""

    def __init__(self, service: FrontService, session_hash: str, poll: PollPolicy) -> None:
        self.service = service
        self.store = service.store
        self.session_hash = session_hash
        self.poll = poll
        self.reader = SessionReader(session_hash)
        self.closed = False
        self.opened_at = time.time()

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message of the session's jobs in order, with rank refreshes, then `close_stream`.

        Heartbeats are the SSE layer's job. If the client drops before `close_stream`, its waiting
        jobs are released after the grace period unless it reconnects (see `_dropped`).
        """
        try:
            async for message in self._messages():
                yield message
        finally:
            if not self.closed:
                asyncio.get_running_loop().create_task(self._dropped())

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        await self._call(self.store.session_connected, self.session_hash, self.opened_at)
        self.reader.cursor = self.reader.start = await self._call(self.store.read_cursor, self.session_hash)
        started = time.monotonic()
        next_rescan = started + self.poll.rescan_s
        idle_since: float | None = None
        interval = self.poll.min_s
        next_refresh = started + self.poll.estimation_refresh_s
        while time.monotonic() - started < self.service.settings.stream_max_s:
            now = time.monotonic()
            after = self.reader.query_after
            if self.reader.pending and now >= next_rescan:
                after, next_rescan = self.reader.start, now + self.poll.rescan_s
            new = self.reader.take(await self._call(self.store.read_events, self.session_hash, after))
            for event in new:
                yield event.body
            now = time.monotonic()
            if self.reader.pending:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= (self.poll.linger_s if self.reader.delivered else self.poll.empty_session_s):
                await self._call(self.store.write_cursor, self.session_hash, self.reader.cursor)
                self.closed = True
                yield protocol.close_stream()
                return
            refresh = bool(self.reader.waiting) and now >= next_refresh
            if refresh:
                for message in await self._call(self.service.refresh, self.reader.waiting):
                    self.reader.note_estimation(message)
                    yield message
            lingering = idle_since is not None and self.reader.delivered
            interval = self.poll.next_s(
                interval,
                running=any(e.body.get("msg") in RUNNING_MESSAGES for e in new),
                eta_left_s=self.reader.eta_left_s(now),
                linger_left_s=(idle_since or now) + self.poll.linger_s - now if lingering else None,
            )
            if refresh:
                next_refresh = now + max(self.poll.estimation_refresh_s, interval)
            await anyio.sleep(interval)

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking store call in a thread; while AWS refuses, wait and retry (the stream stays open)."""
        while True:
            try:
                return await anyio.to_thread.run_sync(fn, *args)
            except Unavailable as error:
                logger.warning("stream read failed (%s); retrying", error.detail)
                await anyio.sleep(self.poll.outage_retry_s)

    async def _dropped(self) -> None:
        """The client went away mid-session: after the grace period, release its waiting jobs
        unless a newer stream of the same session has opened meanwhile."""
        waiting = list(self.reader.waiting)
        try:
            await anyio.to_thread.run_sync(self.store.session_gone, self.session_hash, self.opened_at)
            await anyio.sleep(self.service.settings.session_grace_s)
            gone = bool(waiting) and await anyio.to_thread.run_sync(self.store.session_is_gone, self.session_hash)
            if gone:
                released = await anyio.to_thread.run_sync(self.service.release_session, self.session_hash, waiting)
                logger.info("released %d waiting jobs of a dropped session", released)
        except Unavailable:
            logger.warning("could not release a dropped session's jobs; workers skip them at claim time")
