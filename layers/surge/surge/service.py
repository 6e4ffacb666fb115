"""The front's join and cancel, shared by the API Lambda and the local front: no HTTP, no stream."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from surge import protocol
from surge.application import App, Function
from surge.broker import Broker
from surge.errors import BadRequest, NotFound, PayloadTooLarge, QueueFull, Unavailable, WaitTooLong
from surge.eta import Estimator
from surge.models import Caller, CancelBody, Job, JobState, JoinBody
from surge.observer import Observer
from surge.settings import Settings
from surge.store import Store
from surge.wake import Waker

logger = logging.getLogger("surge.service")

ENQUEUE_FAILED = "Could not enqueue the job; please try again."
COMPENSATE_FOR_S = 15.0
"""How long a join keeps trying to undo a half-done admission before it gives up (and logs it)."""

MAX_INPUT_DEPTH = 100
"""How deep a join's inputs (and event data) may nest lists and objects: a worker parses its message with
pydantic, whose parser stops at 200 levels (such a message was dead-lettered and its visitor never told)."""

FULL_HOLD_S = 0.25
"""After a "queue full" answer, how long this process refuses joins without a DynamoDB write."""

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "slider": (int, float),
    "checkbox": (bool,),
    "textbox": (str,),
    "dropdown": (str,),
}


def compensate(fn: Callable[..., Any], *args: Any, for_s: float = COMPENSATE_FOR_S) -> Any:
    """Call `fn` until it succeeds or `for_s` passes (a short AWS outage must not leave drift)."""
    deadline = time.monotonic() + for_s
    delay = 0.05
    while True:
        try:
            return fn(*args)
        except Unavailable:
            if time.monotonic() + delay > deadline:
                logger.error("giving up on %s after %.0f s: counters may drift", fn.__name__, for_s)
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether `value` nests lists or dicts more than `limit` levels deep (counting `value` itself)."""
    level = [value] if isinstance(value, list | dict) else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, list | dict)
        ]
    return bool(level)


def _carried_size(value: Any, what: str) -> int:
    """The bytes `value` (a join's inputs, or its event data) takes in the job's message, or a 400 when no
    message can carry it: nested past what a worker's parser reads, or holding a lone surrogate
    (`"\\ud800"`: valid JSON, no valid text, which no queue or table takes)."""
    if _nested_deeper(value, MAX_INPUT_DEPTH):
        raise BadRequest(f"{what}: lists or objects nested more than {MAX_INPUT_DEPTH} levels deep.")
    try:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except UnicodeEncodeError:
        raise BadRequest(f"{what} must be valid Unicode text (a string holds a lone surrogate).") from None


class FrontService:
    """What the HTTP edges call; every method is one request's worth of work."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        store: Store,
        broker: Broker,
        observer: Observer | None = None,
        waker: Waker | None = None,
    ) -> None:
        self.app = app
        self.observer = observer or Observer()
        self.settings = settings
        self.store = store
        self.broker = broker
        self.estimator = Estimator(app, store.stats, store.fleet)
        self.waker = waker
        self._full: tuple[float, int] | None = None
        """Until when (monotonic) joins are refused without asking DynamoDB, and the size it reported."""
        self.config = protocol.config(app)
        self.info = protocol.info(app)

    # ---- join ------------------------------------------------------------------------------------

    def join(self, body: JoinBody, caller: Caller | None = None) -> Job:
        """Admit a job: validate, check the expected wait, then two calls: one transaction creates the
        job in its session's log and counts it in an admission shard, one message carries it to the
        function's queue. The session's stream learns of it from the log."""
        body = self._by_event_name(body)
        if not body.session_hash:
            raise BadRequest("Session hash not found.")
        function = self._function(body)
        data = self._validate(function, body)
        self._refuse_while_full(function)
        if self.app.max_wait_s is not None:
            self._refuse_long_wait(function, self.app.max_wait_s)
        if body.event_data is not None or body.trigger_id is not None:
            _carried_size(body.event_data, "event_data")
            event = {"event_data": body.event_data, "trigger_id": body.trigger_id}
            caller = (caller or Caller()).model_copy(update=event)
        job = Job(
            job_id=secrets.token_hex(16),
            session_hash=body.session_hash,
            api_name=function.api_name,
            group=function.concurrency_id,
            state=JobState.WAITING,
            data=data,
            created_at=time.time(),
            caller=caller,
        )
        job = self._admit(job, function)
        self._enqueue(job)
        self.observer.admitted(function.api_name)
        self._wake(function)
        return job

    def _wake(self, function: Function) -> None:
        """With no live worker of the function, wake its service (rate-limited, idempotent) and tell
        every front when a worker is expected. Autoscaling alone can take a quarter of an hour to notice
        a queue that was idle for hours."""
        if self.waker is None:
            return
        fleet = self.estimator.fleet(function)
        if fleet is None or fleet.workers:
            return
        state = self.waker.wake(self.app.host_of(function).api_name)
        if state.starting and state.asked:
            try:
                self.store.record_wake(function.api_name, state.eta_s)
                self.estimator.fleet_changed(function)
            except Unavailable:
                logger.warning("could not record that a worker of %s is starting", function.api_name)

    def _refuse_while_full(self, function: Function) -> None:
        """For `FULL_HOLD_S` after a "queue full" answer, this process refuses joins at once.

        A viral crowd retries a full queue hundreds of times a second; each try would be a failed
        conditional transaction on the counters. A place that frees meanwhile goes to the first join after.
        """
        full = self._full
        if full is not None and time.monotonic() < full[0]:
            self.observer.rejected(function.api_name, "queue_full")
            raise QueueFull(self.app.max_size or 0, full[1], self.estimator.retry_after_s(function))

    def _refuse_long_wait(self, function: Function, max_wait_s: float) -> None:
        """`max_wait_s`: refuse up front when the expected wait of a new arrival is already over it."""
        ahead = self.store.counters(consistent=False).queue_size(function.concurrency_id)
        eta = self.estimator.eta(function, ahead)
        if eta is not None and eta > max_wait_s:
            self.observer.rejected(function.api_name, "wait_too_long")
            raise WaitTooLong(eta, max_wait_s)

    def _admit(self, job: Job, function: Function) -> Job:
        try:
            return self.store.admit(job, self.app.max_size, self.estimator.retry_after_s(function))
        except QueueFull as refused:
            self._full = (time.monotonic() + FULL_HOLD_S, refused.size)
            self.observer.rejected(function.api_name, "queue_full")
            raise
        except Unavailable:
            # The answer was lost: the admission may have landed. Ending the job settles it either way.
            compensate(self._end_if_admitted, job)
            raise

    def _end_if_admitted(self, job: Job) -> None:
        found = self.store.get_job(job.session_hash, job.job_id)
        if found is not None:
            self.store.end_waiting(found, JobState.FAILED, protocol.failed(job.job_id, ENQUEUE_FAILED))

    def _enqueue(self, job: Job) -> None:
        """Send the admitted job's message; on any failure (AWS unavailable, or a message that cannot be
        sent) the admission is undone, so a job is never counted without a message."""
        try:
            self.broker.send(job)
        except Exception:
            compensate(self.store.end_waiting, job, JobState.FAILED, protocol.failed(job.job_id, ENQUEUE_FAILED))
            raise

    def page_event(self, api_name: str) -> int | None:
        """The fn_index of a page event named `api_name` that a lane serves (one kept out of the API docs:
        Gradio's curl and direct-call routes still take it by name, and so do these); None if there is
        no such event, or a function has that name."""
        name = api_name.lstrip("/")
        if any(function.api_name == name for function in self.app.functions):
            return None
        for dependency in self.config.get("dependencies", []):
            fn_index = dependency.get("id")
            if dependency.get("api_name") == name and isinstance(fn_index, int):
                lane = self.app.by_index(fn_index)
                if lane is not None and lane.events is not None:
                    return fn_index
        return None

    def _by_event_name(self, body: JoinBody) -> JoinBody:
        """A join that names a page event by its api_name alone, as one naming it by fn_index."""
        if body.fn_index is not None or not body.api_name:
            return body
        fn_index = self.page_event(body.api_name)
        return body if fn_index is None else body.model_copy(update={"fn_index": fn_index})

    def _function(self, body: JoinBody) -> Function:
        if body.fn_index is not None:
            function = self.app.by_index(body.fn_index)
            if function is not None:
                return function
            raise NotFound(
                self.app.unserved.get(
                    body.fn_index, f"No function with fn_index {body.fn_index} is served by this app."
                )
            )
        if body.api_name:
            try:
                return self.app.get(body.api_name.lstrip("/"))
            except KeyError:
                raise NotFound(f"No function named {body.api_name!r}.") from None
        raise BadRequest("Say which function to run: fn_index or api_name.")

    def _validate(self, function: Function, body: JoinBody) -> list[Any]:
        """The job's data: the inputs, checked (a lane's job also carries which event it runs). Inputs past
        those the function takes are left out, as Gradio leaves them (a script that passes one more still
        runs); too few are refused."""
        if function.events is not None:
            if body.fn_index is None or body.fn_index not in function.events:
                raise BadRequest(f"{function.api_name} runs the page's own events: join one by its fn_index.")
            count = function.events[body.fn_index].inputs
            if len(body.data) < count:
                raise BadRequest(f"Event {body.fn_index} takes {count} input(s), got {len(body.data)}.")
            inputs = body.data[:count]
            data = [body.fn_index, *inputs]
        else:
            count = len(function.inputs)
            if len(body.data) < count:
                raise BadRequest(f"{function.api_name} takes {count} input(s), got {len(body.data)}.")
            inputs = data = body.data[:count]
        size = _carried_size(data, "Inputs")
        for parameter, value in zip(function.parameters, inputs, strict=False):
            expected = _JSON_TYPES.get(parameter.component)
            wrong_bool = isinstance(value, bool) and parameter.component in ("number", "slider")
            if value is not None and expected and (not isinstance(value, expected) or wrong_bool):
                raise BadRequest(f"Input {parameter.name!r} of {function.api_name} must be a {parameter.component}.")
        if size > self.settings.max_payload_bytes:
            raise PayloadTooLarge(f"Inputs are {size} bytes; the limit is {self.settings.max_payload_bytes} bytes.")
        return data

    # ---- cancel ----------------------------------------------------------------------------------

    def cancel(self, body: CancelBody) -> bool:
        """Cancel a job of this session. A waiting one ends here (its place goes to the next); a running one
        is marked, and its worker stops a generator at its next output, as Gradio closes it (a function
        that returns once runs to its end: Python cannot stop a thread, nor can Gradio)."""
        job = self.store.get_job(body.session_hash, body.event_id)
        if job is None:
            raise NotFound("No such job in this session.")
        if job.state is JobState.WAITING and self.store.end_waiting(
            job, JobState.CANCELLED, protocol.cancelled(job.job_id)
        ):
            return True
        return self.store.request_cancel(job)
