"""The front's logic, shared by the API Lambda and the stream Lambda: join, cancel, and session streams."""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from surge import protocol
from surge.application import App, Function
from surge.broker import Broker
from surge.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull, Unavailable, WaitTooLong
from surge.models import CancelBody, Counters, FunctionStats, Job, JobState, JoinBody
from surge.observer import Observer
from surge.session import Waiting
from surge.settings import Settings
from surge.store import NewEvent, Store

T = TypeVar("T")
logger = logging.getLogger("surge.service")

ENQUEUE_FAILED = "Could not enqueue the job; please try again."
COMPENSATE_FOR_S = 15.0
"""How long a join keeps trying to undo a half-done admission before it gives up (and logs it)."""

FULL_HOLD_S = 0.25
"""After a "queue full" answer, how long this process refuses joins without a DynamoDB write."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "slider": (int, float),
    "checkbox": (bool,),
    "textbox": (str,),
    "dropdown": (str,),
}


def _compensate(fn: Callable[..., Any], *args: Any, for_s: float = COMPENSATE_FOR_S) -> None:
    """Call `fn` until it succeeds or `for_s` passes (a short AWS outage must not leave drift)."""
    deadline = time.monotonic() + for_s
    delay = 0.05
    while True:
        try:
            fn(*args)
            return
        except Unavailable:
            if time.monotonic() + delay > deadline:
                logger.error("giving up on %s after %.0f s: counters may drift", fn.__name__, for_s)
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class _TimedCache:
    """Values read from DynamoDB that may be a little stale (stats, live workers) for ETA."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}
        self._loading = threading.Lock()

    def get(self, key: str, load: Callable[[], T]) -> T:
        """The cached value, or a fresh one. Only one thread loads at a time: the others take the
        stale value meanwhile (or wait for the first load), so a burst of joins makes one read."""
        hit = self._values.get(key)
        if hit and time.monotonic() - hit[0] < self.ttl_s:
            value: T = hit[1]
            return value
        if hit and not self._loading.acquire(blocking=False):
            stale: T = hit[1]
            return stale
        if not hit:
            self._loading.acquire()
        try:
            hit = self._values.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl_s:
                cached: T = hit[1]
                return cached
            value = load()
            self._values[key] = (time.monotonic(), value)
            return value
        finally:
            self._loading.release()


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
        # One read of the app's counters serves every stream of this process for a moment (rank
        # refreshes of many sessions in one process, as in `make run`, cost one read, not one each).
        self._counters = _TimedCache(ttl_s=0.25)
        self._full: tuple[float, int] | None = None
        """Until when (monotonic) joins are refused without asking DynamoDB, and the size it reported."""
        self.config = protocol.config(app)
        self.info = protocol.info(app)

    # ---- join ------------------------------------------------------------------------------------

    def join(self, body: JoinBody) -> str:
        """Admit a job: validate, check the expected wait, admit and record it (one conditional
        transaction), enqueue its id, and append its first estimation."""
        if not body.session_hash:
            raise BadRequest("Session hash not found.")
        function = self._function(body)
        self._validate(function, body.data)
        group = function.concurrency_id
        self._refuse_while_full(function)
        if self.app.max_wait_s is not None:
            self._refuse_long_wait(function, self.app.max_wait_s)
        job = Job(
            job_id=secrets.token_hex(16),
            session_hash=body.session_hash,
            api_name=function.api_name,
            group=group,
            seq=0,
            state=JobState.WAITING,
            data=body.data,
            created_at=time.time(),
        )
        self._admit(job, function)
        self._enqueue(job, function)
        self.observer.admitted(function.api_name)
        return job.job_id

    def _refuse_while_full(self, function: Function) -> None:
        """For `FULL_HOLD_S` after a "queue full" answer, this process refuses joins at once.

        A viral crowd retries a full queue hundreds of times a second; each try would be reads and a
        failed conditional write on the one counters item (which takes about 1,000 writes a second).
        A place that frees meanwhile is taken by the first join after the hold.
        """
        full = self._full
        if full is not None and time.monotonic() < full[0]:
            self.observer.rejected(function.api_name, "queue_full")
            raise QueueFull(self.app.max_size or 0, full[1], self._retry_after_s(function))

    def _refuse_long_wait(self, function: Function, max_wait_s: float) -> None:
        """`max_wait_s`: refuse up front when the expected wait of a new arrival is already over it."""
        ahead = self.store.counters(consistent=False).queue_size(function.concurrency_id)
        eta = protocol.estimate_eta(function, ahead, self._stats(function), self.slots(function))
        if eta is not None and eta > max_wait_s:
            self.observer.rejected(function.api_name, "wait_too_long")
            raise WaitTooLong(eta, max_wait_s)

    def _admit(self, job: Job, function: Function) -> None:
        try:
            self.store.admit(job, self.app.max_size, self._retry_after_s(function))
        except QueueFull as refused:
            self._full = (time.monotonic() + FULL_HOLD_S, refused.size)
            self.observer.rejected(function.api_name, "queue_full")
            raise
        except Unavailable:
            # The answer was lost: the admission may have landed. Ending the job settles it either way.
            _compensate(self.store.end_waiting, job, JobState.FAILED, protocol.failed(job.job_id, ENQUEUE_FAILED))
            raise

    def _enqueue(self, job: Job, function: Function) -> None:
        """Append the job's first estimation, then send its message. The estimation goes first so that
        the session's stream knows of the job as early as possible (a client's stream closes when none
        of its jobs is pending); if the send fails, ending the job tells that stream so."""
        try:
            counters = self.store.counters()
            seq = counters.tail.get(job.group, 1)  # an upper bound of the job's place: never optimistic
            estimation = self._estimation(function, job.job_id, job.group, seq, counters)
            event = NewEvent(job.session_hash, estimation, group=job.group, seq=seq, api_name=job.api_name)
            _compensate(self.store.append, event)
        except Unavailable:
            logger.warning("job %s enqueued without its first estimation", job.job_id)
        try:
            self.broker.send(job.api_name, job.job_id)
        except Unavailable:
            _compensate(self.store.end_waiting, job, JobState.FAILED, protocol.failed(job.job_id, ENQUEUE_FAILED))
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
        workers = self._cache.get(f"workers#{function.api_name}", lambda: self.store.live_workers(function.api_name))
        return protocol.slots_for(workers, self.app.concurrency_limit(function.concurrency_id))

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

    # ---- session stream ------------------------------------------------------------------------

    def refresh(self, waiting: dict[str, Waiting]) -> list[dict[str, Any]]:
        """New estimations for a session's waiting jobs whose rank or queue size changed (one read)."""
        counters = self._counters.get("counters", self.store.counters)
        messages = []
        for event_id, job in waiting.items():
            try:
                function = self.app.get(job.api_name)
            except KeyError:
                continue
            message = self._estimation(function, event_id, job.group, job.seq, counters)
            if (message["rank"], message["queue_size"]) != job.last:
                job.last = (message["rank"], message["queue_size"])
                messages.append(message)
        return messages

    def release_session(self, session_hash: str, waiting: list[str]) -> int:
        """Cancel a gone session's waiting jobs (as Gradio does when a client drops), freeing places."""
        released = 0
        for job in self.store.get_jobs(waiting).values():
            if job.session_hash == session_hash and job.state is JobState.WAITING:
                released += self.store.end_waiting(job, JobState.CANCELLED, protocol.cancelled(job.job_id))
        return released
