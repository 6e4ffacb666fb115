"""The worker loop: receive → lease → claim → run → record → acknowledge, for one app function; idle, it
ends the function's jobs that were counted but never sent (`Worker._reconcile`).

`gpu_worker/worker_main.py` wires it (signals, settings, the user's app); everything else is here so
that it runs the same on a laptop CPU and in an ECS task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from surge import protocol
from surge.application import CALLS, App, Call, Function
from surge.broker import RECEIVE_LIMIT, Delivery
from surge.errors import Error, Unavailable
from surge.eta import smooth
from surge.live_writes import LiveWrites
from surge.models import TERMINAL_STATES, FunctionStats, Job, JobState
from surge.observer import Observer
from surge.ports import Queue, WorkerStore
from surge.settings import Settings
from surge.store import BatchRecord, Completion, chunk_size, stored_size

T = TypeVar("T")
logger = logging.getLogger("surge.worker")

BATCH_RECORD_EVERY_S = 1.0
"""A worker records at most one batch per this interval (the status page's batch log and the front's
statistics need no write per short batch)."""

RECORDING_AHEAD = 2
"""Finished batches that may wait for their results to be written while the loop runs the next."""

IDLE_PAUSE_S = 0.05
"""With no long poll (`poll_wait_s` = 0), how long a loop that received nothing waits before the next look."""
PARK_LIMIT = 100
"""Jobs one worker keeps in hand, unclaimed, while their event's limit is full here (`Function.reserve`).
Parked messages stay invisible under the heartbeat and are received once: leaving them in the queue
instead would spend one SQS receive each per look, and the queue's `maxReceiveCount` would move a job
that waits behind a long step to the dead-letter queue."""

DEFER_S = 1
"""Past `PARK_LIMIT`, how long a job that cannot start here yet stays out of sight in its queue."""

KEEP_LEASE_WAIT_S = 0.05
"""How long a lone worker whose batch ended waits for the next receive, already under way, before it gives
its lease back: a short batch can end before that receive does (SQS answers at once when messages wait)."""

RESULT_LIMIT_BYTES = 4_000_000
"""The largest result (its JSON) a job may return: kept beside the job in parts of its session's log when
too large for the job's item, and sent to the visitor in one message. Larger outputs go as files (S3)."""

LOST_MESSAGE = "This job never reached its queue (its join was cut short after counting it); please try again."
"""What the visitor of a job ended by `Worker._reconcile` reads."""

SCAN_BACKOFF_MAX_S = 3600.0
"""The longest wait between an idle worker's scans for jobs without a message while they find none."""

STREAMED_LIMIT_BYTES = 300_000
"""The most a generator's messages (and notices) may take: they are kept in the job's item, which DynamoDB
caps at 400 KB."""


class JobFailed(Exception):
    """A call failed in a way the client is told about (message already made safe to show).

    `reason` is what the observer is told: `error` or `time_limit`.
    """

    def __init__(
        self,
        message: str,
        reason: str = "error",
        title: str = "Error",
        duration: float | None = 10,
        plain: bool = False,
        visible: bool = True,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.title = title
        """The error's heading and how long the page shows it (`gr.Error(title=, duration=)`)."""
        self.duration = duration
        self.visible = visible
        """Whether the page shows it as a toast (`gr.Error(visible=False)`)."""
        self.plain = plain
        """An exception the app raised (not a `gr.Error`): its visitor gets Gradio's bare error."""


class JobCancelled(Exception):
    """The job's visitor cancelled it while it ran: its generator was closed at its latest output."""


@dataclass
class _Task:
    """One claimed job and the messages that carried it (more than one when SQS delivered it twice)."""

    job: Job
    deliveries: list[Delivery]
    outcome: Completion | None = None
    output: dict[str, Any] = field(default_factory=dict)
    """What the function's framework adds to the `output` of the job's completion (`Call.output`)."""


@dataclass
class _Acks:
    """Messages of finished jobs waiting to be acknowledged together (SQS deletes up to ten per call)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[Delivery] = field(default_factory=list)
    oldest_at: float = 0.0

    def add(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:
            if not self.pending:
                self.oldest_at = time.monotonic()
            self.pending.extend(deliveries)

    def take(self, at_least: int, older_than_s: float) -> list[Delivery]:
        """Everything pending if there are `at_least` or the oldest waited `older_than_s`; else nothing."""
        with self.lock:
            due = len(self.pending) >= at_least or time.monotonic() - self.oldest_at >= older_than_s
            if not self.pending or not due:
                return []
            taken, self.pending = self.pending, []
            return taken


@dataclass
class _Hand:
    """What a worker holds right now, for the heartbeat to keep alive and for shutdown to give back."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    leases: dict[int, str] = field(default_factory=dict)
    """Lease slot → the owner it was taken as (one per loop: loops of one worker must not share a slot)."""
    running: set[str] = field(default_factory=set)
    riders: dict[str, list[Delivery]] = field(default_factory=dict)
    """Copies of a message whose job another batch of this worker runs now (SQS delivered it twice, or it
    was sent twice): kept in hand, invisible, and acknowledged with that batch, instead of returning a
    visibility timeout later to be settled then."""

    def hold(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:
            self.deliveries.update((d.message_id, d) for d in deliveries)

    def drop(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:
            for delivery in deliveries:
                self.deliveries.pop(delivery.message_id, None)

    def snapshot(self) -> tuple[list[Delivery], list[tuple[int, str]]]:
        with self.lock:
            return list(self.deliveries.values()), sorted(self.leases.items())


class LeaseTurns:
    """First come, first served among the loops of one process that wait for a slot of the same
    concurrency group (two functions sharing a `concurrency_id`, or several loops under one limit).

    A lease is taken with a conditional write: whoever asks first after a release gets it. A worker that
    gave the slot back asked again at once for its next job, where the others waited out a backoff, so it
    took the slot again and again, and the other function's callers waited (README, Known limits). Here
    only the loop at the head of its group's line asks the store, and a release in this process wakes
    it at once. Loops of other processes still meet at the store, as before. One per process
    (`worker_main` shares it)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._lines: dict[str, deque[object]] = {}
        self._releases: dict[str, int] = {}

    @contextlib.contextmanager
    def head_of_line(self, group: str, stopping: threading.Event) -> Iterator[bool]:
        """Wait until this loop is first in `group`'s line (yields False if `stopping` is set first);
        it leaves the line on exit."""
        ticket = object()
        with self._changed:
            line = self._lines.setdefault(group, deque())
            line.append(ticket)
            while line[0] is not ticket and not stopping.is_set():
                self._changed.wait(0.2)
        try:
            yield line[0] is ticket
        finally:
            with self._changed:
                line.remove(ticket)
                self._changed.notify_all()

    def releases(self, group: str) -> int:
        with self._changed:
            return self._releases.get(group, 0)

    def wait_for_release(self, group: str, seen: int, timeout_s: float) -> None:
        """Wait up to `timeout_s` for a release in `group` after `seen` (`releases`) in this process."""
        with self._changed:
            self._changed.wait_for(lambda: self._releases.get(group, 0) != seen, timeout_s)

    def released(self, group: str) -> None:
        with self._changed:
            self._releases[group] = self._releases.get(group, 0) + 1
            self._changed.notify_all()


class Worker:
    """Serves one function of the app from its queue until `stop()` is called."""

    def __init__(
        self,
        app: App,
        function: Function,
        settings: Settings,
        store: WorkerStore,
        broker: Queue,
        *,
        slots: int = 1,
        worker_id: str | None = None,
        observer: Observer | None = None,
        turns: LeaseTurns | None = None,
    ) -> None:
        self.app = app
        self.turns = turns or LeaseTurns()
        """Where this process's loops line up for their group's leases (shared by the process's workers)."""
        self.observer = observer or Observer()
        self.function = function
        self.settings = settings
        self.store = store
        self.broker = broker
        self.slots = max(slots, settings.page_event_slots) if function.events is not None else slots
        self.worker_id = worker_id or f"{function.api_name}-{os.getpid()}-{secrets.token_hex(4)}"
        self.limit = app.concurrency_limit(function.concurrency_id)
        self.group = [f.api_name for f in app.functions if f.concurrency_id == function.concurrency_id]
        """The functions that share this one's concurrency limit (its own included)."""
        self.alone = False
        """Whether the last heartbeat found no other live worker of the group: then a loop whose next
        batch is already in hand keeps its lease for it (see `_keeps_lease`)."""
        self.stopping = threading.Event()
        self.hand = _Hand()
        self.parked: deque[Delivery] = deque()
        """Jobs received while their limit was full here (in hand, unclaimed), oldest first."""
        self.parked_lock = threading.Lock()
        self.places: dict[str, Callable[[], None]] = {}
        """Message id → how to give back the place `Function.reserve` gave its job, until the job runs."""
        self.acks = _Acks()
        self.pool = ThreadPoolExecutor(max_workers=max(1, app.max_threads), thread_name_prefix="surge-fn")
        self.ahead = ThreadPoolExecutor(max_workers=max(1, self.slots), thread_name_prefix="surge-ahead")
        """Gathers each loop's next batch while its current one runs."""
        self.aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surge-aside")
        """Best-effort writes (statistics, batch log) that the next batch need not wait for."""
        self.recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="surge-record")
        """Records finished batches (results, then acknowledgement) while the loop runs the next."""
        self.live = LiveWrites(store)
        """Writes running jobs' generator messages, notices and progress behind the function."""
        self.recordings: deque[Future[None]] = deque()
        self.recordings_lock = threading.Lock()
        self.claiming = threading.Lock()
        """One claim at a time among this worker's loops (see `_claim_jobs`)."""
        self.receiving = (
            threading.Lock()
            if self.slots > 1 and self.limit is None and function.events is None and function.reserve is None
            else None
        )
        """Where many loops serve an event with no limit (a Gradio app's: up to `max_threads` at once),
        one long poll at a time among them: an idle loop waits here, not in a receive of its own (forty
        loops would otherwise hold forty requests open), and takes the poll when the loop holding it has
        work. None: each loop polls for itself."""
        self.avg_batch_s: float | None = None
        self.avg_batch_size: float | None = None
        self.avg_cycle_s: float | None = None
        self.batches = 0
        self._logged_at = -BATCH_RECORD_EVERY_S
        self.heartbeat_s = max(0.2, min(settings.lease_ttl_s, settings.visibility_timeout_s) / 3)
        self.received_at = self.reconciled_at = time.monotonic()
        """When this worker last received a message, and last looked for jobs without one (`_reconcile`)."""
        self.scanned_at: float | None = None
        self.scan_every_s = settings.reconcile_every_s
        """How long after its last scan the next may come: doubled by each scan that finds nothing."""
        self.beat_ok_at = 0.0
        """When (monotonic) the heartbeat last landed: until `lease_ttl_s` after it, no other worker
        can take this worker's jobs over (a takeover needs the heartbeat to have lapsed)."""

    # ---- lifecycle -------------------------------------------------------------------------------

    def serve(self) -> None:
        """Run the loop on `slots` threads plus a heartbeat; returns after `stop()` once work in hand is done."""
        self._beat()
        beat = threading.Thread(target=self._heartbeat_loop, name="surge-heartbeat", daemon=True)
        beat.start()
        acker = threading.Thread(target=self._ack_loop, name="surge-ack", daemon=True)
        acker.start()
        threading.Thread(target=self._reconcile_loop, name="surge-reconcile", daemon=True).start()
        loops = [threading.Thread(target=self._loop, name=f"surge-loop-{i}") for i in range(self.slots)]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()
        self.ahead.shutdown(wait=True)
        self.recorder.shutdown(wait=True)
        self.aside.shutdown(wait=True)
        self._acknowledge(at_least=1, older_than_s=0.0)
        self._give_back()
        try:
            self.store.worker_gone(self.function.api_name, self.worker_id)
        except Unavailable:
            logger.warning("could not sign off; the heartbeat item expires by itself")
        self.pool.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        self.stopping.set()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_s):
            self._beat()

    def _reconcile_loop(self) -> None:
        """`_reconcile` on a thread of its own: a scan of a large table must never delay the heartbeat
        (leases, liveness and the visibility of the messages in hand)."""
        while not self.stopping.wait(min(self.heartbeat_s, self.settings.reconcile_every_s)):
            try:
                self._reconcile()
            except Exception:
                logger.exception("looking for jobs without a message failed; trying again later")

    def _reconcile(self) -> None:
        """End the function's jobs that lost their message, so their places of `max_size` are freed.

        A join counts its job, then sends its message: one killed in between (a front process killed, a
        Lambda timed out) left the job counted with no message, its place held for good. Such a job is
        still waiting `orphan_after_s` after it was counted while its queue holds no message at all. An
        idle worker (nothing received for `reconcile_every_s`) reads the counters that often; when its
        group has jobs counted, it asks the queue's counts, and only when they are all zero scans for such
        jobs and ends each as failed (a conditional end: one of several workers doing the same ends it
        once). An idle worker with nothing counted makes one counters read a period, no scan."""
        now = time.monotonic()
        every = self.settings.reconcile_every_s
        if self.received_at > self.reconciled_at:
            self.scan_every_s = every  # work came since the last look: looks are at their shortest again
        if now - self.reconciled_at < every or now - self.received_at < every:
            return
        if self.scanned_at is not None and now - self.scanned_at < self.scan_every_s:
            return
        self.reconciled_at = now
        try:
            if self.store.counters(consistent=False).queue_size(self.function.concurrency_id) == 0:
                return  # nothing counted: nothing to look for
            if not self.broker.holds_none(self.function.api_name):
                return
            before = time.time() - self.settings.orphan_after_s
            found = self.store.waiting_before(self.function.api_name, before)
            self.scanned_at = time.monotonic()
            # A scan that finds nothing (the group's count is another function's, or drifted for good):
            # the next one waits twice as long, up to an hour, until work comes again.
            self.scan_every_s = every if found else min(2 * self.scan_every_s, SCAN_BACKOFF_MAX_S)
            if found and not self.broker.holds_none(self.function.api_name):
                return  # a message came meanwhile (its counts settle within a minute): look again later
            for job in found:
                if self.store.end_waiting(job, JobState.FAILED, protocol.failed(job.job_id, LOST_MESSAGE)):
                    self.observer.job_failed(self.function.api_name, "lost_message")
                    logger.warning("ended job %s of %s: counted, never sent", job.job_id, self.function.api_name)
        except Unavailable as error:
            logger.warning("could not look for jobs without a message (%s); trying again later", error.detail)

    def _ack_loop(self) -> None:
        while not self.stopping.wait(self.settings.ack_within_s / 4):
            self._acknowledge(at_least=RECEIVE_LIMIT, older_than_s=self.settings.ack_within_s)

    def _acknowledge(self, at_least: int, older_than_s: float) -> None:
        """Delete the finished messages that are due (a failure only logs: they come back and are
        acknowledged unrun, their jobs having ended)."""
        due = self.acks.take(at_least, older_than_s)
        if not due:
            return
        try:
            self.broker.delete(self.function.api_name, due)
        except Unavailable:
            logger.warning("could not acknowledge %d finished messages; they return and are settled then", len(due))

    def _beat(self) -> None:
        """Say this worker is alive, renew its leases, and keep the messages in hand invisible."""
        deliveries, leases = self.hand.snapshot()
        try:
            sent = time.monotonic()
            self.store.worker_alive(self.function.api_name, self.worker_id, self.settings.lease_ttl_s, self.slots)
            self.beat_ok_at = sent
            if self.limit is not None:
                self.alone = self._alone_in_group()
            for slot, owner in leases:
                self.store.renew_lease(self.function.concurrency_id, slot, owner)
            if deliveries:
                self.broker.set_visibility(self.function.api_name, deliveries, self.settings.visibility_timeout_s)
        except Unavailable:
            self.alone = False
            logger.warning("heartbeat failed; retrying", extra={"worker_id": self.worker_id})

    def _alone_in_group(self) -> bool:
        """No other live worker serves a function of this one's concurrency group (one query per
        function of the group, once per heartbeat)."""
        return all(set(self.store.live_workers(api_name)) <= {self.worker_id} for api_name in self.group)

    def _give_back(self) -> None:
        deliveries, _ = self.hand.snapshot()
        if deliveries:
            try:
                self.broker.set_visibility(self.function.api_name, deliveries, 0)
            except Unavailable:
                logger.warning("could not give back %d messages; they return when visibility lapses", len(deliveries))
            self.hand.drop(deliveries)

    # ---- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        backoff = 0.1
        ahead: Future[list[Delivery]] | None = None
        kept: int | None = None
        """A lease slot kept from the last batch for the next one (see `_keeps_lease`)."""
        try:
            while not self.stopping.is_set():
                try:
                    current, ahead = ahead, None
                    deliveries = current.result() if current is not None else self._next()
                    if self._prefetch(deliveries):
                        # A full batch means more may wait: the next receive (the same long poll the loop
                        # would make next) runs while this batch does, so the device goes from batch to
                        # batch without waiting for the queue round trips, and a queue that is empty now
                        # costs no extra call (an immediate look came back empty and was followed by the
                        # long poll: two receives per job for a lone user).
                        ahead = self.ahead.submit(self._gather)
                    held, kept = kept, None
                    if deliveries:
                        kept = self._process(deliveries, held, partial(self._keeps_lease, ahead))
                    elif held is not None:
                        self._release(held)
                    if not deliveries and self.settings.poll_wait_s == 0:
                        # No long poll to wait in (tests set none): an idle loop must not spin, or its
                        # receives take the GIL from the call running beside it (each of the call's I/O
                        # waits then costs a switch interval: a 1.5 s step took 12 s).
                        self.stopping.wait(IDLE_PAUSE_S)
                    backoff = 0.1
                except Unavailable as error:
                    logger.warning("AWS call failed (%s); backing off %.1f s", error.detail, backoff)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception:
                    # A bug must not silently end this loop while the heartbeat keeps the worker "alive".
                    logger.exception("worker loop error; continuing")
                    self.stopping.wait(backoff)
        finally:
            if kept is not None:
                self._release(kept)
        if ahead is not None:
            with contextlib.suppress(Exception):
                ahead.result()  # what it gathered is in hand: `serve` gives it back

    def _prefetch(self, deliveries: list[Delivery]) -> bool:
        """Whether to make the next receive while this batch runs: the batch is full, and no other worker
        shares its concurrency limit (a batch held here would wait for a lease that others may get
        first). Not where jobs reserve a place to start (`Function.reserve`, a lane of a page's events)
        either, nor where idle loops share one poll (`receiving`): a job held for later would wait behind
        a long one, where another loop could run it now."""
        if self.function.events is not None or self.function.reserve is not None or self.receiving is not None:
            return False
        return (self.limit is None or self.alone) and len(deliveries) >= self.function.receive_batch_size

    def _keeps_lease(self, ahead: Future[list[Delivery]] | None) -> bool:
        """Whether a loop keeps its lease for its next batch: that batch is in hand already and no other
        worker of the concurrency group was live at the last heartbeat, so nobody waits for the slot.
        Giving it back and taking it again would cost two calls and a gap between jobs (Gradio's
        default limit of 1 puts every job of a plain app under a lease). A worker that starts meanwhile
        waits at most until the next heartbeat, after which the slot is given back after every batch."""
        if not self.alone or ahead is None:
            return False
        try:
            return bool(ahead.result(timeout=KEEP_LEASE_WAIT_S))
        except Exception:  # not back yet (a long poll on an empty queue), or failed: the loop sees which
            return False

    def _next(self) -> list[Delivery]:
        """The next batch: a parked job whose limit has room now (the loop whose call just freed the
        place looks here first), else what the queue gives, less the jobs that cannot start here yet,
        which are parked."""
        if self.function.reserve is None:
            return self._gather()
        return self._unpark() or self._park_unready(self._gather())

    def _reserve(self, delivery: Delivery) -> bool:
        message = delivery.message
        if self.function.reserve is None or message is None or message.api_name != self.function.api_name:
            return True  # nothing to reserve, or a message `_claim` settles without running
        give_back = self.function.reserve(message.data)
        if give_back is None:
            return False
        self.places[delivery.message_id] = give_back
        return True

    def _unpark(self) -> list[Delivery]:
        with self.parked_lock:
            for delivery in self.parked:
                if self._reserve(delivery):
                    self.parked.remove(delivery)
                    return [delivery]
        return []

    def _park_unready(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Keep in hand, unclaimed, the jobs that cannot start here now, so that a loop never blocks on
        one while other jobs wait (they still show their rank); returns the rest."""
        ready: list[Delivery] = []
        unready: list[Delivery] = []
        for delivery in deliveries:
            (ready if self._reserve(delivery) else unready).append(delivery)
        if unready:
            with self.parked_lock:
                room = max(0, PARK_LIMIT - len(self.parked))
                self.parked.extend(unready[:room])
            deferred = unready[room:]
            if deferred:
                logger.warning("%d jobs parked here; %d more left in the queue", PARK_LIMIT, len(deferred))
                self.broker.set_visibility(self.function.api_name, deferred, DEFER_S)
                self.hand.drop(deferred)
        return ready

    def _give_places_back(self, deliveries: Sequence[Delivery], taken: Collection[str] = ()) -> None:
        """Forget the places reserved for these messages' jobs: a job about to run (`taken`, message
        ids) keeps its place for its call to take; every other is given back."""
        for delivery in deliveries:
            give_back = self.places.pop(delivery.message_id, None)
            if give_back is not None and delivery.message_id not in taken:
                give_back()

    def _gather(self, wait_s: int | None = None) -> list[Delivery]:
        """Long-poll for work (`wait_s`, default `poll_wait_s`), then top up to `max_batch_size`
        (waiting up to `batch_wait_ms`)."""
        want = self.function.receive_batch_size
        wait_s = self.settings.poll_wait_s if wait_s is None else wait_s
        deliveries = self._receive(want, wait_s)
        self.hand.hold(deliveries)
        if not deliveries or not self.function.batch:
            return deliveries
        deadline = time.monotonic() + self.function.batch_wait_ms / 1000
        while len(deliveries) < want and not self.stopping.is_set():
            wait_s = 1 if time.monotonic() < deadline else 0
            try:
                more = self.broker.receive(self.function.api_name, want - len(deliveries), wait_s)
            except Unavailable:
                break  # run what is in hand; the messages must not sit here unprocessed
            self.hand.hold(more)
            deliveries.extend(more)
            if not more and time.monotonic() >= deadline:
                break
        return deliveries

    def _receive(self, want: int, wait_s: int) -> list[Delivery]:
        """One receive; where loops share the poll (`receiving`), after the loop before has its work."""
        if self.receiving is None:
            deliveries = self.broker.receive(self.function.api_name, want, wait_s)
        else:
            with self.receiving:  # on stop, the loop polling returns within its wait, and each waiter at once
                if self.stopping.is_set():
                    return []
                deliveries = self.broker.receive(self.function.api_name, want, wait_s)
        if deliveries:
            self.received_at = time.monotonic()
        return deliveries

    def _process(
        self, deliveries: list[Delivery], kept: int | None = None, keep: Callable[[], bool] | None = None
    ) -> int | None:
        """Run what was gathered under a lease (`kept`: one this loop still holds), then hand the batch to
        the recorder thread: the next batch is claimed and runs while this one's results are written. On
        any failure the messages are let go, so SQS redelivers them when their visibility lapses and
        another attempt reclaims the jobs. Returns the lease slot if `keep` says to keep it for the next
        batch (else it is given back)."""
        slot: int | None = kept
        tasks: list[_Task] = []
        handed = False
        kept_slot: int | None = None
        try:
            if slot is None:
                slot = self._acquire_lease()
            if slot is None:
                self.broker.set_visibility(self.function.api_name, deliveries, 0)
                return None
            claiming = time.monotonic()
            tasks = self._claim(deliveries)
            if self.places:
                self._give_places_back(deliveries, self._places_taken(tasks))
            if tasks:
                ran = self._run(tasks)
                self._record_later(tasks, deliveries, claiming, ran)
                handed = True
        finally:
            if not handed:
                self._let_go(tasks, deliveries)
            if self.places:
                self._give_places_back(deliveries)
            if slot is not None and slot >= 0:
                if handed and keep is not None and keep():
                    kept_slot = slot
                else:
                    self._release(slot)
        return kept_slot

    def _places_taken(self, tasks: list[_Task]) -> set[str]:
        """For each claimed job, the one message whose reserved place its call takes."""
        taken: set[str] = set()
        for task in tasks:
            held = [d.message_id for d in task.deliveries if d.message_id in self.places]
            taken.update(held[:1])
        return taken

    def _let_go(self, tasks: list[_Task], deliveries: list[Delivery], finished: set[str] | None = None) -> None:
        """Take the batch's messages out of the hand (copies riding on a job still running here stay),
        and settle the copies that rode on the batch's jobs: acknowledged with the `finished` ones, else
        let go with them."""
        with self.hand.lock:
            self.hand.running.difference_update(t.job.job_id for t in tasks)
            riders = [d for t in tasks for d in self.hand.riders.pop(t.job.job_id, [])]
            riding = {d.message_id for copies in self.hand.riders.values() for d in copies}
            for delivery in [*deliveries, *riders]:
                if delivery.message_id not in riding:
                    self.hand.deliveries.pop(delivery.message_id, None)
        done = [d for d in riders if d.message is not None and d.message.job_id in (finished or set())]
        if done:
            self.acks.add(done)

    def _record_later(
        self, tasks: list[_Task], deliveries: list[Delivery], claiming: float, ran: tuple[list[_Task], float] | None
    ) -> None:
        """Queue the batch's recording (one thread, batches in order). At most `RECORDING_AHEAD` batches
        wait to be recorded: beyond that the loop waits, so results never pile up in memory."""
        with self.recordings_lock:
            while len(self.recordings) >= RECORDING_AHEAD:
                self.recordings.popleft().result()
            self.recordings.append(self.recorder.submit(self._record, tasks, deliveries, claiming, ran))

    def _record(
        self, tasks: list[_Task], deliveries: list[Delivery], claiming: float, ran: tuple[list[_Task], float] | None
    ) -> None:
        """Record the outcomes and acknowledge; the messages stay in hand (kept invisible) until then.
        A failure only logs: the messages return and the jobs are reclaimed and run again."""
        finished: set[str] = set()
        try:
            finished = self._settle(tasks)
            self.avg_cycle_s = smooth(self.avg_cycle_s, time.monotonic() - claiming)
            if ran is not None:
                self._log(*ran)
        except Exception:
            logger.exception("could not record a batch of %s; its messages return", self.function.api_name)
        finally:
            self._let_go(tasks, deliveries, finished)

    def _release(self, slot: int) -> None:
        with self.hand.lock:
            owner = self.hand.leases.pop(slot, self._lease_owner())
        try:
            self.store.release_lease(self.function.concurrency_id, slot, owner)
        except Unavailable:
            logger.warning("could not release lease %d; it lapses by itself", slot)
        self.turns.released(self.function.concurrency_id)

    def _lease_owner(self) -> str:
        """Who holds a lease this loop takes: the worker and the loop, since a slot is taken again by its
        own owner (a lease left by a failed release), and two loops of one worker must not share one."""
        return f"{self.worker_id}/{threading.current_thread().name}"

    def _acquire_lease(self) -> int | None:
        """Wait for a slot of the group's concurrency limit (None: no limit → no lease); None on stop."""
        if self.limit is None:
            return -1
        delay = 0.01
        owner = self._lease_owner()
        group = self.function.concurrency_id
        with self.turns.head_of_line(group, self.stopping) as first:
            while first and not self.stopping.is_set():
                seen = self.turns.releases(group)
                slot = self.store.acquire_lease(group, self.limit, owner)
                if slot is not None:
                    with self.hand.lock:
                        self.hand.leases[slot] = owner
                    return slot
                # Full: the next try comes when a loop of this process gives a slot back, or after the
                # backoff (a slot held elsewhere, or one that lapses).
                self.turns.wait_for_release(group, seen, delay)
                delay = min(delay * 2, 0.2)
        return None

    # ---- claim -----------------------------------------------------------------------------------

    def _claim(self, deliveries: list[Delivery]) -> list[_Task]:
        """Turn messages into claimed jobs (one transaction for the batch, no read before it); settle
        every message that cannot run."""
        poison, candidates = self._classify(deliveries)
        if poison:
            logger.error("dead-lettering %d messages that carry no job of %s", len(poison), self.function.api_name)
            self.broker.dead_letter(self.function.api_name, poison)
            self.hand.drop(poison)
        jobs = {job_id: job for job_id, (job, _) in candidates.items()}
        claimed: list[Job] = []
        riding: set[str] = set()
        with self.claiming:
            self._claim_jobs(jobs, candidates, claimed, riding)
        mine = {job.job_id for job in claimed}
        settled = [d for job_id, (_, carried) in candidates.items() if job_id not in mine | riding for d in carried]
        self.hand.drop(settled)
        return [_Task(job, candidates[job.job_id][1]) for job in claimed]

    def _claim_jobs(
        self,
        jobs: dict[str, Job],
        candidates: dict[str, tuple[Job, list[Delivery]]],
        claimed: list[Job],
        riding: set[str],
    ) -> None:
        """Claim `jobs` (adding to `claimed`, and to `riding` those another batch here runs), and mark the
        claimed ones running here. Under `claiming`: a loop of this worker that meets a job another loop
        claimed a moment ago sees it running here, and rides with it instead of taking it over as a
        claim of its own whose answer was lost (it ran twice with two loops)."""
        while jobs:
            # Retried in place, not let go: a claim whose answer was lost may have been applied, and then
            # only this worker can take its jobs back (to the others their owner is alive), so their
            # messages would go round the queue until SQS dead-letters them. Sent again, the claim finds
            # them running here at no live run of ours and takes them at their current attempt.
            claim = partial(self.store.claim, list(jobs.values()), self.worker_id)
            outcome = self._retrying(claim, "claiming jobs", until_stop=True)
            claimed.extend(outcome.claimed)
            takeovers = partial(self._takeovers, outcome.refused, candidates, riding)
            jobs = self._retrying(takeovers, "claiming jobs", until_stop=True)
        with self.hand.lock:
            self.hand.running.update(job.job_id for job in claimed)

    def _takeovers(
        self, refused: dict[str, Job | None], candidates: dict[str, tuple[Job, list[Delivery]]], riding: set[str]
    ) -> dict[str, Job]:
        """Of the jobs a claim refused: ack those that ended, keep with their run those running here
        (added to `riding`), leave those another live worker runs, and return those whose worker is gone
        (to claim at their current attempt)."""
        again: dict[str, Job] = {}
        ended: list[Delivery] = []
        for job_id, current in refused.items():
            carried = candidates[job_id][1]
            if current is None or current.state in TERMINAL_STATES:
                ended.extend(carried)
            elif (
                current.state is JobState.RUNNING
                and current.worker_id == self.worker_id
                and self._ride(job_id, carried)
            ):
                riding.add(job_id)
            elif current.state is JobState.RUNNING and self._owner_gone(current):
                # With the messages its earlier run streamed: this run's follow them (`_call_generator`).
                again[job_id] = candidates[job_id][0].model_copy(
                    update={
                        "state": JobState.RUNNING,
                        "attempt": current.attempt,
                        "worker_id": current.worker_id,
                        "chunks": current.chunks,
                    }
                )
        if ended:
            self.broker.delete(self.function.api_name, ended)
        return again

    def _classify(self, deliveries: list[Delivery]) -> tuple[list[Delivery], dict[str, tuple[Job, list[Delivery]]]]:
        """Poison (not a job of this function) and claimable jobs, grouped by job (a batch may hold two
        copies of one message)."""
        poison: list[Delivery] = []
        candidates: dict[str, tuple[Job, list[Delivery]]] = {}
        for delivery in deliveries:
            message = delivery.message
            if message is None or message.api_name != self.function.api_name:
                poison.append(delivery)
            else:
                candidates.setdefault(message.job_id, (message.job(), []))[1].append(delivery)
        return poison, candidates

    def _ride(self, job_id: str, copies: list[Delivery]) -> bool:
        """Keep `copies` of a message in hand until the batch of this worker that runs `job_id` is
        recorded; False when no batch here runs it any more."""
        with self.hand.lock:
            if job_id not in self.hand.running:
                return False
            riders = self.hand.riders.setdefault(job_id, [])
            aboard = {d.message_id for d in riders}
            riders.extend(d for d in copies if d.message_id not in aboard)  # a retried claim rides once
            return True

    def _owner_gone(self, job: Job) -> bool:
        """Whether a running job was abandoned: its worker died, or it is ours from a failed attempt."""
        if job.worker_id == self.worker_id:
            with self.hand.lock:
                return job.job_id not in self.hand.running
        return job.worker_id is None or not self.store.is_worker_alive(self.function.api_name, job.worker_id)

    # ---- run -------------------------------------------------------------------------------------

    def _run(self, tasks: list[_Task]) -> tuple[list[_Task], float] | None:
        """Run the claimed jobs (each gets its outcome); returns what ran and how long it took."""
        retry_exhausted = [t for t in tasks if t.job.attempt > self.settings.max_attempts]
        for task in retry_exhausted:
            task.outcome = self._failure(
                task.job,
                JobFailed(
                    f"Gave up after {self.settings.max_attempts} attempt(s): "
                    "the worker running this job stopped each time.",
                    reason="attempts",
                ),
            )
        runnable = [t for t in tasks if t.outcome is None]
        ran = None
        if runnable:
            # No write for the starts: the claim set each job running, which its stream tells the client.
            started = time.monotonic()
            started_at = time.time()
            if self.function.batch:
                self._run_batch(runnable)
            else:
                for task in runnable:
                    self._run_one(task)
            duration_s = time.monotonic() - started
            queue_wait_s = max(0.0, started_at - min(t.job.created_at for t in runnable))
            self.observer.batch_ran(self.function.api_name, len(runnable), duration_s, queue_wait_s)
            self._learn(duration_s, len(runnable))
            ran = (runnable, duration_s)
        return ran

    def _run_batch(self, tasks: list[_Task]) -> None:
        started = time.monotonic()
        columns = [list(column) for column in zip(*(t.job.data for t in tasks), strict=True)]
        try:
            outputs = self._call(self.function.fn, columns, {}, tasks)
            rows = self._batch_rows(outputs, len(tasks))
        except JobFailed as failure:
            if len(tasks) > 1 and isinstance(failure.__cause__, Error) and self.function.split_failed_batch:
                for task in tasks:
                    self._run_batch([task])
                return
            for task in tasks:
                task.outcome = self._failure(task.job, failure)
            return
        duration = time.monotonic() - started
        for task, row in zip(tasks, rows, strict=True):
            try:
                self._check_json(row, task.job)
            except JobFailed as failure:
                task.outcome = self._failure(task.job, failure)
                continue
            body = protocol.completed(task.job.job_id, row, duration, smooth(self.avg_batch_s, duration))
            task.outcome = Completion(task.job, JobState.COMPLETED, _with_output(body, task.output))

    def _batch_rows(self, outputs: Any, size: int) -> list[list[Any]]:
        expected = len(self.function.outputs)
        if not isinstance(outputs, list | tuple) or len(outputs) != expected:
            raise JobFailed(f"{self.function.api_name} must return a list of {expected} output list(s) for a batch.")
        if any(not isinstance(column, list | tuple) or len(column) < size for column in outputs):
            raise JobFailed(f"{self.function.api_name} returned output lists shorter than the batch size {size}.")
        if any(len(column) > size for column in outputs):
            # As Gradio (which zips the lists): each caller gets its own place, the rest is dropped.
            logger.warning("%s returned output lists longer than the batch size %d", self.function.api_name, size)
        return [protocol.finite(row) for row in zip(*(column[:size] for column in outputs), strict=True)]

    def _run_one(self, task: _Task) -> None:
        started = time.monotonic()
        kwargs = self._progress_kwargs(task)
        try:
            if self.function.streams(task.job.data):
                data = self._call_generator(task, kwargs)
            else:
                data = self._row(self._call(self.function.fn, task.job.data, kwargs, [task]), task.job.data)
            self._check_json(data, task.job)
        except JobFailed as failure:
            task.outcome = self._failure(task.job, failure)
            return
        except JobCancelled:
            logger.info("%s: cancelled by its visitor while it ran", self.function.api_name)
            task.outcome = Completion(task.job, JobState.CANCELLED, protocol.cancelled(task.job.job_id))
            return
        duration = time.monotonic() - started
        body = protocol.completed(task.job.job_id, data, duration, smooth(self.avg_batch_s, duration))
        task.outcome = Completion(task.job, JobState.COMPLETED, _with_output(body, task.output))

    def _row(self, value: Any, data: list[Any]) -> list[Any]:
        """The output row of a job with these inputs (as stored) from what its function returned."""
        events = self.function.events
        if events is not None:
            expected = events[data[0]].outputs
            if not isinstance(value, list) or len(value) != expected:
                raise JobFailed(f"Event {data[0]} must return {expected} values.")
            return value
        expected = len(self.function.outputs)
        if expected == 1:
            return [protocol.finite(value)]
        if not isinstance(value, list | tuple) or len(value) != expected:
            raise JobFailed(f"{self.function.api_name} must return {expected} values.")
        return list(protocol.finite(value))

    def _check_json(self, row: list[Any], job: Job | None = None) -> None:
        """Outputs are recorded as JSON in the job's item: one JSON cannot carry (a numpy number, a set),
        or too large for an item with the messages `job` streamed before, fails its job here, with the
        reason, instead of failing every attempt to record it as if the worker had stopped."""
        try:
            size = stored_size(row)
        except (TypeError, ValueError) as error:
            logger.error("%s returned an output that is not JSON: %s", self.function.api_name, error)
            raise JobFailed(f"{self.function.api_name} returned an output that is not JSON: {error}") from None
        streamed = sum(chunk_size(chunk) for chunk in job.chunks) if job is not None else 0
        for what, used, limit in (("returned", size, RESULT_LIMIT_BYTES), ("streamed", streamed, STREAMED_LIMIT_BYTES)):
            if used > limit:
                raise self._too_large(what, used, limit)

    def _too_large(self, what: str, used: int, limit: int) -> JobFailed:
        logger.error("%s %s %d bytes of output, over %d", self.function.api_name, what, used, limit)
        return JobFailed(
            f"{self.function.api_name} {what} {used / 1000:.0f} kB of output; a job can {what[:-2]} at "
            f"most {limit / 1000:.0f} kB here (it is kept in DynamoDB). Return large outputs as files "
            "(gr.File, gr.Image, gr.Audio...), which go through S3."
        )

    def _call_generator(self, task: _Task, kwargs: dict[str, Any]) -> list[Any]:
        job = task.job
        previous: list[Any] | None = None
        simple = job.caller is not None and job.caller.simple_format
        diff = protocol.diff if simple else self.function.chunk_diff or protocol.diff
        # A job run again after its worker died holds the messages its earlier run streamed, which its
        # visitor may have applied: this run's first replaces each output whole as a diff (a whole value
        # there would be read as a diff, and gradio_client's call failed), and the log stays one sequence.
        earlier = len(job.chunks)
        after = any(message.get("msg") == "process_generating" for message in job.chunks)  # not notices alone

        stopped = False
        streamed, counted = 0, 0  # bytes of the job's messages, and how many of them are counted
        over = 0

        def consume() -> list[Any] | None:
            nonlocal previous, stopped, streamed, counted, over
            values = _iterated(self.function.fn(*job.data, **kwargs))
            try:
                for value in values:
                    if self.live.cancelled(job):
                        stopped = True
                        break
                    row = self._row(value, job.data)
                    message = protocol.generating(job.job_id, _chunk(row, previous, diff, after))
                    # With the messages before it: an earlier run's, notices (`gr.Info`) sent meanwhile.
                    streamed += sum(chunk_size(chunk) for chunk in job.chunks[counted:]) + chunk_size(message)
                    counted = len(job.chunks) + 1
                    if streamed > STREAMED_LIMIT_BYTES:
                        # Stopped here: its item could not hold more, and each live write would fail until
                        # the generator's end while its visitor saw the output freeze.
                        over, stopped = streamed, True
                        break
                    job.chunks.append(message)
                    self.live.chunk(job, message)
                    previous = row
                    if self.live.cancelled(job):
                        stopped = True
                        break
            finally:
                close = getattr(values, "close", None)
                if stopped and close is not None:
                    close()  # its `finally` blocks run now, as when Gradio closes a cancelled generator
            if stopped and not over:
                # What came after the cancel was refused by the store: the visitor never saw it, and Gradio
                # sends nothing after a cancel either, so the job's record ends where the visitor's view did.
                del job.chunks[earlier + self.live.written(job) :]
            return previous

        final = self._call(lambda: consume(), [], {}, [task])
        return self._generated(final, over, stopped)

    def _generated(self, final: list[Any] | None, over: int, stopped: bool) -> list[Any]:
        """A generator's last outputs, or why it has none: it streamed `over` bytes, it was cancelled, or it
        yielded nothing."""
        if over:
            raise self._too_large("streamed", over, STREAMED_LIMIT_BYTES)
        if stopped:
            raise JobCancelled
        if final is None:
            raise JobFailed(f"{self.function.api_name} yielded nothing.")
        return list(final)

    def _notifier(self, job: Job) -> Callable[[str, str, str, float | None, bool], None]:
        """Notices to the job's visitor travel with its messages (after what came before them); a failed
        write is only logged: the job goes on."""

        def notify(message: str, level: str, title: str, duration: float | None, visible: bool) -> None:
            body = protocol.log(job.job_id, message, level, title, duration, visible)
            job.chunks.append(body)
            self.live.chunk(job, body)

        return notify

    def _call(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], tasks: list[_Task]) -> Any:
        """Run user code in the pool with the time limit; turn every failure into `JobFailed`."""
        calls = tuple(Call(t.job.session_hash, t.job.caller, self._notifier(t.job), t.output) for t in tasks)
        future: Future[Any] = self.pool.submit(_invoke, fn, args, kwargs, calls)
        try:
            return future.result(timeout=self.function.time_limit_s)
        except FutureTimeout:
            raise JobFailed(
                f"{self.function.api_name} took longer than its limit of {self.function.time_limit_s} s.",
                reason="time_limit",
            ) from None
        except Error as error:
            raise JobFailed(error.message, title=error.title, duration=error.duration, visible=error.visible) from error
        except JobFailed:
            raise
        except Exception as error:
            logger.exception("%s raised", self.function.api_name, extra={"event_ids": [t.job.job_id for t in tasks]})
            message = str(error) if self.app.show_error else None
            raise JobFailed(message or "", plain=True) from error

    def _progress_kwargs(self, task: _Task) -> dict[str, Any]:
        if self.function.progress_arg is None:
            return {}
        job = task.job

        def sink(value: float | None, index: int | None, length: int | None, desc: str | None, unit: str) -> None:
            # Every report replaces the one not yet written (`LiveWrites` writes a job at most every
            # `GAP_S`): the latest is always written, as Gradio sends its latest every 10 ms, so a
            # `progress(0, "Starting")` followed at once by a tqdm loop's 0/5 shows 0/5 during the first step.
            self.live.progress(job, protocol.progress(job.job_id, value, index, length, desc, unit), len(job.chunks))

        return {self.function.progress_arg: _bound_progress(sink)}

    def _failure(self, job: Job, failure: JobFailed) -> Completion:
        """The job's error for its visitor: the failure's message, title and duration."""
        self.observer.job_failed(self.function.api_name, failure.reason)
        if job.chunks and sum(chunk_size(chunk) for chunk in job.chunks) > STREAMED_LIMIT_BYTES:
            job = job.model_copy(update={"chunks": []})  # streamed more than an item holds: the error alone
        body = protocol.failed(
            job.job_id, str(failure) or None, failure.title, failure.duration, failure.plain, failure.visible
        )
        return Completion(job, JobState.FAILED, body)

    # ---- record ----------------------------------------------------------------------------------

    def _settle(self, tasks: list[_Task]) -> set[str]:
        """Record the outcomes (retrying while AWS refuses: results are not thrown away), then ack;
        returns the jobs recorded."""
        completions = [t.outcome for t in tasks if t.outcome is not None]
        self.live.forget([t.job for t in tasks])  # the finish records every message they had

        def finish() -> list[str]:
            held = time.monotonic() < self.beat_ok_at + self.settings.lease_ttl_s - self.heartbeat_s
            return self.store.finish(completions, held=held)

        finished = set(self._retrying(finish))
        done = [d for t in tasks if t.job.job_id in finished for d in t.deliveries]
        if done:
            # The results are recorded: the messages are only bookkeeping now, acknowledged in batches.
            self.acks.add(done)
            self._acknowledge(at_least=RECEIVE_LIMIT, older_than_s=self.settings.ack_within_s)
        return finished

    def _retrying(self, call: Callable[[], T], what: str = "recording results", until_stop: bool = False) -> T:
        """Retry a call while AWS refuses (up to about a minute): results are not thrown away, and a
        claim whose answer was lost is settled by the worker that sent it. The call must be safe to
        repeat. `until_stop`: give up once the worker is stopping (it signs off, so its claims can be
        taken over at once)."""
        delay = 0.1
        while True:
            try:
                return call()
            except Unavailable:
                if delay > 30 or (until_stop and self.stopping.is_set()):
                    raise
                logger.warning("%s failed; retrying in %.1f s", what, delay)
                time.sleep(delay)
                delay *= 2

    def _log(self, tasks: list[_Task], duration_s: float) -> None:
        """Record the batch for the status page and the front's ETA, unless one was recorded within
        `BATCH_RECORD_EVERY_S` (the log then samples batches; the statistics are the running ones)."""
        now = time.monotonic()
        if now - self._logged_at < BATCH_RECORD_EVERY_S:
            return
        self._logged_at = now
        failed = sum(1 for t in tasks if t.outcome is not None and t.outcome.state is JobState.FAILED)
        record = BatchRecord(time.time(), len(tasks), failed, duration_s, self.worker_id)
        self.aside.submit(self._log_batch, record, self._stats())

    def _learn(self, duration_s: float, size: int) -> None:
        """Smooth the batch duration and size for ETA; the batch record carries them to the front."""
        self.avg_batch_s = smooth(self.avg_batch_s, duration_s)
        self.avg_batch_size = smooth(self.avg_batch_size, size)
        self.batches += 1

    def _stats(self) -> FunctionStats:
        return FunctionStats(
            avg_batch_s=self.avg_batch_s,
            avg_batch_size=self.avg_batch_size,
            batches=self.batches,
            avg_cycle_s=self.avg_cycle_s,
        )

    def _log_batch(self, record: BatchRecord, stats: FunctionStats) -> None:
        """One put: the status page's batch log and the front's statistics (best effort)."""
        try:
            self.store.record_batch(self.function.api_name, record, stats)
        except Unavailable:
            logger.warning("could not record the batch for the status page and ETA")


def _chunk(
    row: list[Any],
    previous: list[Any] | None,
    diff: Callable[[list[Any], list[Any]], list[Any]],
    after: bool,
) -> list[Any]:
    """A generator step's outputs as stored: whole for the first, else as diffs against the step before
    (for every caller: a stream to Gradio's curl API rebuilds whole values, `sse.simple_stream`); the first
    step of a run that comes `after` an earlier run's messages replaces each output whole, as a diff
    (`_call_generator`)."""
    if previous is None and not after:
        return row
    if previous is None:
        return [[["replace", [], output]] for output in row]
    return diff(previous, row)


def _with_output(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`body` with what the framework added to its `output` (`Call.output`), those of its keys that say
    something (Gradio sends `changed_state_ids: []` too; absent, the page reads the same)."""
    said = {key: value for key, value in extra.items() if value}
    if said:
        body["output"] = {**body["output"], **said}
    return body


def _invoke(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], calls: tuple[Call, ...]) -> Any:
    """Run user code with `CALLS` naming the jobs it serves (a coroutine's run copies it along)."""
    token = CALLS.set(calls)
    try:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(fn(*args, **kwargs))
        return fn(*args, **kwargs)
    finally:
        CALLS.reset(token)


def _iterated(values: Any) -> Any:
    """An async generator's values, each awaited on an event loop of this thread (the context's `CALLS`
    goes with each step); anything else as it is. Closing the iterator closes the async generator."""
    if not inspect.isasyncgen(values):
        return values

    def steps() -> Iterator[Any]:
        loop = asyncio.new_event_loop()
        try:
            while True:
                try:
                    yield loop.run_until_complete(values.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run_until_complete(values.aclose())
            loop.close()

    return steps()


def _bound_progress(sink: Callable[[float | None, int | None, int | None, str | None, str], None]) -> Any:
    from surge.application import Progress

    return Progress().bind(sink)
