"""The front's logic, shared by the API Lambda and the stream Lambda: join, cancel, and session streams."""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from surge import protocol
from surge.application import App, Function
from surge.broker import Broker
from surge.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull, Unavailable, WaitTooLong
from surge.models import CancelBody, Counters, FunctionStats, Job, JobState, JoinBody, StoredEvent
from surge.observer import Observer
from surge.settings import Settings
from surge.store import NewEvent, Store

T = TypeVar("T")

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "slider": (int, float),
    "checkbox": (bool,),
    "textbox": (str,),
    "dropdown": (str,),
}


class _TimedCache:
    """Values read from DynamoDB that may be a little stale (stats, live workers) for ETA."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, load: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._values.get(key)
        if hit and now - hit[0] < self.ttl_s:
            value: T = hit[1]
            return value
        value = load()
        self._values[key] = (now, value)
        return value


class FrontService:
    """What the HTTP edges call; every method is one request's worth of work."""

    def __init__(
        self, app: App, settings: Settings, store: Store, broker: Broker, observer: Observer | None = None
    ) -> None:
        self.app = app
        self.observer = observer or Observer()
        self.settings = settings
        self.store = store
        self.broker = broker
        self._cache = _TimedCache(ttl_s=2.0)
        self.config = protocol.config(app)
        self.info = protocol.info(app)

    # ---- join ------------------------------------------------------------------------------------

    def join(self, body: JoinBody) -> str:
        """Admit a job: validate, take a place (one conditional write), record it, enqueue its id."""
        if not body.session_hash:
            raise BadRequest("Session hash not found.")
        function = self._function(body)
        self._validate(function, body.data)
        group = function.concurrency_id
        try:
            counters = self.store.admit(group, self.app.max_size, self._retry_after_s(function))
        except QueueFull:
            self.observer.rejected(function.api_name, "queue_full")
            raise
        seq = counters.tail[group]
        estimation = self._estimation(function, "", group, seq, counters)
        eta = estimation["rank_eta"]
        if self.app.max_wait_s is not None and eta is not None and eta > self.app.max_wait_s:
            self.store.leave(group)
            self.observer.rejected(function.api_name, "wait_too_long")
            raise WaitTooLong(eta, self.app.max_wait_s)
        job = Job(
            job_id=secrets.token_hex(16),
            session_hash=body.session_hash,
            api_name=function.api_name,
            group=group,
            seq=seq,
            state=JobState.WAITING,
            data=body.data,
            created_at=time.time(),
        )
        self._record(job, {**estimation, "event_id": job.job_id})
        self.observer.admitted(function.api_name)
        return job.job_id

    def _record(self, job: Job, estimation: dict[str, Any]) -> None:
        try:
            self.store.put_job(job)
        except Unavailable:
            self.store.leave(job.group)
            raise
        try:
            self.store.append(
                NewEvent(job.session_hash, estimation, group=job.group, seq=job.seq, api_name=job.api_name)
            )
            self.broker.send(job.api_name, job.job_id)
        except Unavailable:
            self.store.end_waiting(job, JobState.FAILED, protocol.failed(job.job_id, "Could not enqueue the job."))
            raise

    def _function(self, body: JoinBody) -> Function:
        if body.fn_index is not None:
            if 0 <= body.fn_index < len(self.app.functions):
                return self.app.functions[body.fn_index]
            raise NotFound(f"No function with fn_index {body.fn_index}; this app has {len(self.app.functions)}.")
        if body.api_name:
            try:
                return self.app.get(body.api_name.lstrip("/"))
            except KeyError:
                raise NotFound(f"No function named {body.api_name!r}.") from None
        raise BadRequest("Say which function to run: fn_index or api_name.")

    def _validate(self, function: Function, data: list[Any]) -> None:
        if len(data) != len(function.inputs):
            raise BadRequest(f"{function.api_name} takes {len(function.inputs)} input(s), got {len(data)}.")
        for parameter, value in zip(function.parameters, data, strict=True):
            expected = _JSON_TYPES.get(parameter.component)
            wrong_bool = isinstance(value, bool) and parameter.component in ("number", "slider")
            if value is not None and expected and (not isinstance(value, expected) or wrong_bool):
                raise BadRequest(f"Input {parameter.name!r} of {function.api_name} must be a {parameter.component}.")
        size = len(json.dumps(data, separators=(",", ":")).encode())
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge(f"Inputs are {size} bytes; the limit is {self.settings.max_payload_bytes} bytes.")

    # ---- estimation ------------------------------------------------------------------------------

    def _stats(self, function: Function) -> FunctionStats:
        return self._cache.get(f"stats#{function.api_name}", lambda: self.store.stats(function.api_name))

    def slots(self, function: Function) -> int:
        """Batches of the function that can run at once: live worker slots, capped by the group limit."""
        workers = self._cache.get(f"workers#{function.api_name}", lambda: self.store.live_workers(function.api_name))
        limit = self.app.concurrency_limit(function.concurrency_id)
        live = sum(workers.values())
        if not live:
            return limit or 1
        return min(live, limit) if limit else live

    def _estimation(
        self, function: Function, event_id: str, group: str, seq: int, counters: Counters
    ) -> dict[str, Any]:
        return protocol.estimation_for(
            function, event_id, group, seq, counters, self._stats(function), self.slots(function)
        )

    def _retry_after_s(self, function: Function) -> int:
        batch_s = self._stats(function).avg_batch_s or function.eta_hint_s or 5.0
        return max(1, math.ceil(batch_s))

    # ---- cancel ----------------------------------------------------------------------------------

    def cancel(self, body: CancelBody) -> bool:
        """Cancel a waiting job of this session (its place goes to the next); running jobs finish."""
        job = self.store.get_job(body.event_id)
        if job is None or job.session_hash != body.session_hash:
            raise NotFound("No such job in this session.")
        if job.state is not JobState.WAITING:
            return False
        return self.store.end_waiting(job, JobState.CANCELLED, protocol.cancelled(job.job_id))

    # ---- session stream --------------------------------------------------------------------------

    async def session_messages(self, session_hash: str, poll: PollPolicy) -> AsyncIterator[dict[str, Any]]:
        """Every message of the session's jobs in order, with rank refreshes, then `close_stream`.

        Heartbeats are the SSE layer's job (see `front`).
        """
        reader = SessionReader(session_hash)
        reader.cursor = await anyio.to_thread.run_sync(self.store.read_cursor, session_hash)
        started = time.monotonic()
        idle_since: float | None = None
        interval = poll.min_s
        next_refresh = started + poll.estimation_refresh_s
        while time.monotonic() - started < self.settings.stream_max_s:
            new = reader.take(await anyio.to_thread.run_sync(self.store.read_events, session_hash, reader.query_after))
            for event in new:
                yield event.body
            now = time.monotonic()
            interval = poll.min_s if new else min(interval * poll.backoff, poll.max_s)
            if reader.pending:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= (poll.linger_s if reader.delivered else poll.empty_session_s):
                await anyio.to_thread.run_sync(self.store.write_cursor, session_hash, reader.cursor)
                yield protocol.close_stream()
                return
            if reader.waiting and now >= next_refresh:
                next_refresh = now + poll.estimation_refresh_s
                for message in await anyio.to_thread.run_sync(self._refresh, reader):
                    yield message
            await anyio.sleep(interval)

    def _refresh(self, reader: SessionReader) -> list[dict[str, Any]]:
        counters = self.store.counters()
        messages = []
        for event_id, waiting in reader.waiting.items():
            try:
                function = self.app.get(waiting.api_name)
            except KeyError:
                continue
            message = self._estimation(function, event_id, waiting.group, waiting.seq, counters)
            if (message["rank"], message["queue_size"]) != waiting.last:
                waiting.last = (message["rank"], message["queue_size"])
                messages.append(message)
        return messages


@dataclass(frozen=True)
class PollPolicy:
    """How often a session stream reads the event log: fast after activity, backing off when idle."""

    min_s: float = 0.02
    max_s: float = 0.5
    backoff: float = 1.5
    estimation_refresh_s: float = 0.5
    linger_s: float = 0.3
    empty_session_s: float = 10.0


@dataclass
class _Waiting:
    group: str
    seq: int
    api_name: str
    last: tuple[int, int] = (-1, -1)


@dataclass
class SessionReader:
    """Turns repeated reads of a session's log into each event exactly once, tracking pending jobs.

    Writers stamp events with their own clocks, so a read looks back `lookback_ns` behind the newest
    event it has seen and drops what it already delivered.
    """

    session_hash: str
    cursor: str = "0"
    lookback_ns: int = 2_000_000_000
    pending: set[str] = field(default_factory=set)
    waiting: dict[str, _Waiting] = field(default_factory=dict)
    delivered: bool = False
    _seen: set[str] = field(default_factory=set)

    @property
    def query_after(self) -> str:
        stamp = int(self.cursor.split("#", 1)[0])
        return f"{max(0, stamp - self.lookback_ns):020d}" if self._seen else self.cursor

    def take(self, events: list[StoredEvent]) -> list[StoredEvent]:
        new = [e for e in events if e.sk not in self._seen]
        for event in new:
            self._seen.add(event.sk)
            self._track(event)
        if new:
            self.cursor = max(self.cursor, max(e.sk for e in new))
            floor = self.query_after
            self._seen = {sk for sk in self._seen if sk > floor}
            self._seen.update(e.sk for e in new)
        return new

    def _track(self, event: StoredEvent) -> None:
        body = event.body
        event_id = body.get("event_id")
        if not isinstance(event_id, str):
            return
        message = body.get("msg")
        if message == "estimation":
            self.pending.add(event_id)
            if event.group is not None and event.seq is not None and event.api_name is not None:
                self.waiting.setdefault(event_id, _Waiting(event.group, event.seq, event.api_name))
        elif message == "process_starts":
            self.pending.add(event_id)
            self.waiting.pop(event_id, None)
        elif message == "process_completed":
            self.pending.discard(event_id)
            self.waiting.pop(event_id, None)
            self.delivered = True
