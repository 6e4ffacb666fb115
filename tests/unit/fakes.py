"""In-memory fakes of `surge.ports` for the unit tier: the same semantics as the DynamoDB and SQS
adapters (conditional claims, counters that jobs join and leave, expiring leases, at-least-once
delivery with visibility), no sockets. Every port method counts its calls in `calls`."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from surge.broker import RECEIVE_LIMIT, Delivery
from surge.models import TERMINAL_STATES, Counters, FunctionStats, Job, JobMessage, JobState, Shard
from surge.settings import Settings
from surge.store import BatchRecord, Claim, Completion
from surge.store.fleet import Fleet

Clock = Callable[[], float]


class ManualClock:
    """Epoch seconds that move only when a test says so (visibility and lease expiry without sleeping)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryAdmission:
    """`Admission`: shards that count jobs joining (tails) and leaving (heads) the line, per group."""

    def __init__(self, shards: int = 1) -> None:
        self.shards = [Shard() for _ in range(shards)]
        self.calls: Counter[str] = Counter()
        self._next = itertools.count()
        self._lock = threading.Lock()

    def join(self, job: Job) -> Job:
        """Count a job into a shard (round robin), as the front's admission transaction does."""
        with self._lock:
            shard = next(self._next) % len(self.shards)
            counted = self.shards[shard]
            counted.joined += 1
            counted.tail[job.group] = counted.tail.get(job.group, 0) + 1
        return job.model_copy(update={"shard": shard})

    def leave(self, jobs: Sequence[Job]) -> None:
        """Count waiting jobs out of their shards (a claim or an end of a waiting job)."""
        with self._lock:
            for job in jobs:
                counted = self.shards[job.shard]
                counted.left += 1
                counted.head[job.group] = counted.head.get(job.group, 0) + 1

    def counters(self, consistent: bool = True) -> Counters:
        with self._lock:
            self.calls["counters"] += 1
            self.calls["counters_consistent"] += int(consistent)
            return Counters(shards=[shard.model_copy(deep=True) for shard in self.shards])


def _claimable(job: Job, current: Job | None) -> bool:
    """The claim's condition: waiting, or running at the attempt the claimer saw (its worker is gone) with
    the messages it carries all that run has streamed."""
    if current is None:
        return False
    if job.state is JobState.WAITING:
        return current.state is JobState.WAITING
    return (
        current.state is JobState.RUNNING and current.attempt == job.attempt and len(current.chunks) == len(job.chunks)
    )


def _held_by(job: Job, current: Job | None) -> bool:
    """Whether `current` is still the running attempt of `job`'s worker."""
    return (
        current is not None
        and current.state is JobState.RUNNING
        and current.attempt == job.attempt
        and current.worker_id == job.worker_id
    )


class InMemoryJobs:
    """`Jobs` and `SessionLog` over one dict of session logs; a claim or an end of a waiting job counts
    it out of `admission`, as the DynamoDB transactions do."""

    def __init__(self, admission: InMemoryAdmission | None = None, clock: Clock = time.time) -> None:
        self.admission = admission or InMemoryAdmission()
        self.clock = clock
        self.items: dict[tuple[str, str], Job] = {}
        self.notices: list[tuple[str, str, list[str]]] = []
        """Finish notices: (api_name, key, job ids), keys in order."""
        self.cancel_requested: set[tuple[str, str]] = set()
        """Running jobs their visitors cancelled (the store's `cancel_requested` attribute)."""
        self.markers: set[tuple[str, str]] = set()
        """Running jobs a stream told their visitors were cancelled (the store's marker items)."""
        self.sent: dict[tuple[str, str], int] = {}
        """Running jobs' generator messages a dropped stream had sent (the store's `#sent` items)."""
        self.calls: Counter[str] = Counter()
        self._lock = threading.RLock()

    def admit(self, job: Job) -> Job:
        """Create a waiting job and count it in a shard (the front's join); returns it with its shard and,
        as the DynamoDB store, the time it was counted as its `created_at`."""
        placed = self.admission.join(job.model_copy(update={"created_at": self.clock()}))
        with self._lock:
            self.items[(placed.session_hash, placed.job_id)] = placed.model_copy(deep=True)
        return placed

    def get(self, session_hash: str, job_id: str) -> Job | None:
        with self._lock:
            job = self.items.get((session_hash, job_id))
            return None if job is None else job.model_copy(deep=True)

    # ---- Jobs ------------------------------------------------------------------------------------

    def claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        with self._lock:
            self.calls["claim"] += 1
            now = self.clock()
            claimed: list[Job] = []
            refused: dict[str, Job | None] = {}
            leaving: list[Job] = []
            for job in jobs:
                key = (job.session_hash, job.job_id)
                current = self.items.get(key)
                if current is None or not _claimable(job, current):
                    refused[job.job_id] = None if current is None else current.model_copy(deep=True)
                    continue
                if job.state is JobState.WAITING:
                    leaving.append(job)
                running = {"state": JobState.RUNNING, "worker_id": worker_id, "started_at": now}
                self.items[key] = current.model_copy(update={**running, "attempt": current.attempt + 1})
                claimed.append(job.model_copy(update={**running, "attempt": job.attempt + 1}))
            self.admission.leave(leaving)
            return Claim(claimed, refused)

    def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: tuple[dict[str, Any], int] | None) -> bool:
        with self._lock:
            self.calls["record_live"] += 1
            if not chunks and progress is None:
                return False  # as the store: nothing to write, no call
            key = (job.session_hash, job.job_id)
            current = self.items.get(key)
            if current is None:
                return False
            if key in self.cancel_requested:
                return True
            update: dict[str, Any] = {"chunks": [*current.chunks, *(dict(body) for body in chunks)]}
            if current.first_output_at is None:
                update["first_output_at"] = time.time()
            if progress is not None:
                update.update({"progress": dict(progress[0]), "progress_after": progress[1]})
            self._running_update(job, update)
            return False

    def request_cancel(self, job: Job) -> bool:
        """The front's cancel of a running job: its worker learns it from its next live write."""
        with self._lock:
            key = (job.session_hash, job.job_id)
            current = self.items.get(key)
            if current is None or current.state is not JobState.RUNNING:
                return False
            self.cancel_requested.add(key)
            return True

    def _running_update(self, job: Job, update: dict[str, Any]) -> None:
        """A stale write (the job moved on to another attempt or state) is dropped, as the adapter's."""
        key = (job.session_hash, job.job_id)
        current = self.items.get(key)
        if current is not None and _held_by(job, current):
            self.items[key] = current.model_copy(update=update)

    def finish(self, completions: Sequence[Completion], *, held: bool) -> list[str]:
        with self._lock:
            self.calls["finish"] += 1
            done: list[str] = []
            for completion in completions:
                job = completion.job
                key = (job.session_hash, job.job_id)
                if held or _held_by(job, self.items.get(key)):
                    final = {
                        "state": completion.state,
                        "result": completion.body,
                        "data": [],
                        "finished_at": self.clock(),
                    }
                    self.items[key] = job.model_copy(update=final, deep=True)
                    self.cancel_requested.discard(key)  # the finish puts the whole item
                    done.append(job.job_id)
            if done:
                stamp = f"{int(self.clock() * 1000):013d}#{len(self.notices):06d}"  # epoch ms, as the store's
                self.notices.append((completions[0].job.api_name, stamp, done))
            return done

    def finished_since(self, api_name: str, after: str) -> list[tuple[str, list[str]]]:
        with self._lock:
            self.calls["finished_since"] += 1
            return [(key, list(ids)) for name, key, ids in self.notices if name == api_name and key > after]

    # ---- SessionLog ------------------------------------------------------------------------------

    def read_session(self, session_hash: str) -> list[Job]:
        with self._lock:
            self.calls["read_session"] += 1
            jobs = [
                job.model_copy(
                    update={
                        "cancel_requested": key in self.cancel_requested,
                        "cancel_delivered": key in self.markers,
                        "chunks_sent": self.sent.get(key, 0),
                    },
                    deep=True,
                )
                for key, job in self.items.items()
                if key[0] == session_hash
            ]
        return sorted(jobs, key=lambda job: job.created_at)

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        with self._lock:
            self.calls["end_waiting"] += 1
            key = (job.session_hash, job.job_id)
            current = self.items.get(key)
            if current is None or current.state is not JobState.WAITING:
                return False
            self.items[key] = current.model_copy(update={"state": state, "result": body})
            self.admission.leave([current])
            return True

    def waiting_before(self, api_name: str, before: float) -> list[Job]:
        with self._lock:
            self.calls["waiting_before"] += 1
            return [
                job.model_copy(deep=True)
                for job in self.items.values()
                if job.api_name == api_name and job.state is JobState.WAITING and job.created_at < before
            ]

    def forget_all(self, jobs: Sequence[Job]) -> None:
        by_key = {(job.session_hash, job.job_id): job for job in jobs}
        with self._lock:
            self.calls["forget"] += -(-len(by_key) // 25)  # as the store: 25 writes to a batch write
            for key, job in by_key.items():
                if job.cancel_delivered and job.state not in TERMINAL_STATES:
                    self.markers.add(key)  # its worker puts it anew: the marker says it was told
                    continue
                self.items.pop(key, None)
                self.markers.discard(key)
                if job.chunks_sent:
                    self.sent.pop(key, None)

    def note_sent(self, jobs: Sequence[Job]) -> None:
        with self._lock:
            self.calls["note_sent"] += -(-len(jobs) // 25)
            self.sent.update({(job.session_hash, job.job_id): job.chunks_sent for job in jobs})


class InMemoryLeases:
    """`Leases`: one owner per slot until released, or until `ttl_s` after its last renewal."""

    def __init__(self, ttl_s: float = 30.0, clock: Clock = time.time) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.held: dict[tuple[str, int], tuple[str, float]] = {}
        """(group, slot) → (owner, until)."""
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire_lease(self, group: str, limit: int, owner: str) -> int | None:
        with self._lock:
            self.calls["acquire_lease"] += 1
            now = self.clock()
            for slot in range(limit):
                holder = self.held.get((group, slot))
                if holder is None or holder[1] < now or holder[0] == owner:
                    self.held[(group, slot)] = (owner, now + self.ttl_s)
                    return slot
            return None

    def renew_lease(self, group: str, slot: int, owner: str) -> bool:
        with self._lock:
            self.calls["renew_lease"] += 1
            holder = self.held.get((group, slot))
            if holder is None or holder[0] != owner:
                return False
            self.held[(group, slot)] = (owner, self.clock() + self.ttl_s)
            return True

    def release_lease(self, group: str, slot: int, owner: str) -> None:
        with self._lock:
            self.calls["release_lease"] += 1
            holder = self.held.get((group, slot))
            if holder is not None and holder[0] == owner:
                del self.held[(group, slot)]


class InMemoryWorkers:
    """`Workers`: heartbeats that lapse, and the batch log whose newest record carries the statistics.

    `stats` and `fleet` are what `surge.eta.Estimator` is built with (as the front passes the store's)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self.alive: dict[tuple[str, str], tuple[float, int]] = {}
        """(api name, worker id) → (alive until, slots)."""
        self.batches: dict[str, list[tuple[BatchRecord, FunctionStats]]] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def worker_alive(self, api_name: str, worker_id: str, alive_for_s: float, slots: int) -> None:
        with self._lock:
            self.calls["worker_alive"] += 1
            self.alive[(api_name, worker_id)] = (self.clock() + alive_for_s, slots)

    def worker_gone(self, api_name: str, worker_id: str) -> None:
        with self._lock:
            self.calls["worker_gone"] += 1
            self.alive.pop((api_name, worker_id), None)

    def is_worker_alive(self, api_name: str, worker_id: str) -> bool:
        with self._lock:
            self.calls["is_worker_alive"] += 1
            found = self.alive.get((api_name, worker_id))
            return found is not None and found[0] >= self.clock()

    def live_workers(self, api_name: str) -> dict[str, int]:
        return self.fleet(api_name).workers

    def record_batch(self, api_name: str, batch: BatchRecord, stats: FunctionStats) -> None:
        with self._lock:
            self.calls["record_batch"] += 1
            self.batches.setdefault(api_name, []).append((batch, stats))

    def stats(self, api_name: str) -> FunctionStats:
        with self._lock:
            self.calls["stats"] += 1
            logged = self.batches.get(api_name)
            return logged[-1][1].model_copy() if logged else FunctionStats()

    def fleet(self, api_name: str) -> Fleet:
        with self._lock:
            self.calls["fleet"] += 1
            now = self.clock()
            live = {w: slots for (api, w), (until, slots) in self.alive.items() if api == api_name and until >= now}
            return Fleet(live)


class InMemoryStore:
    """Every store port at once (`WorkerStore` and `StreamStore`), as `surge.store.Store` composes its
    adapters: the concept fakes are reachable as attributes, and `calls` adds up their counts."""

    def __init__(self, shards: int = 1, lease_ttl_s: float = 30.0, clock: Clock = time.time) -> None:
        self.admission = InMemoryAdmission(shards)
        self.jobs = InMemoryJobs(self.admission, clock)
        self.leases = InMemoryLeases(lease_ttl_s, clock)
        self.workers = InMemoryWorkers(clock)

    @property
    def calls(self) -> Counter[str]:
        return self.admission.calls + self.jobs.calls + self.leases.calls + self.workers.calls

    def admit(self, job: Job) -> Job:
        return self.jobs.admit(job)

    def get_job(self, session_hash: str, job_id: str) -> Job | None:
        return self.jobs.get(session_hash, job_id)

    def counters(self, consistent: bool = True) -> Counters:
        return self.admission.counters(consistent)

    def claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        return self.jobs.claim(jobs, worker_id)

    def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: tuple[dict[str, Any], int] | None) -> bool:
        return self.jobs.record_live(job, chunks, progress)

    def request_cancel(self, job: Job) -> bool:
        return self.jobs.request_cancel(job)

    def finish(self, completions: Sequence[Completion], *, held: bool) -> list[str]:
        return self.jobs.finish(completions, held=held)

    def read_session(self, session_hash: str) -> list[Job]:
        return self.jobs.read_session(session_hash)

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        return self.jobs.end_waiting(job, state, body)

    def waiting_before(self, api_name: str, before: float) -> list[Job]:
        return self.jobs.waiting_before(api_name, before)

    def forget_all(self, jobs: Sequence[Job]) -> None:
        self.jobs.forget_all(jobs)

    def note_sent(self, jobs: Sequence[Job]) -> None:
        self.jobs.note_sent(jobs)

    def finished_since(self, api_name: str, after: str) -> list[tuple[str, list[str]]]:
        return self.jobs.finished_since(api_name, after)

    def acquire_lease(self, group: str, limit: int, owner: str) -> int | None:
        return self.leases.acquire_lease(group, limit, owner)

    def renew_lease(self, group: str, slot: int, owner: str) -> bool:
        return self.leases.renew_lease(group, slot, owner)

    def release_lease(self, group: str, slot: int, owner: str) -> None:
        self.leases.release_lease(group, slot, owner)

    def worker_alive(self, api_name: str, worker_id: str, alive_for_s: float, slots: int) -> None:
        self.workers.worker_alive(api_name, worker_id, alive_for_s, slots)

    def worker_gone(self, api_name: str, worker_id: str) -> None:
        self.workers.worker_gone(api_name, worker_id)

    def is_worker_alive(self, api_name: str, worker_id: str) -> bool:
        return self.workers.is_worker_alive(api_name, worker_id)

    def live_workers(self, api_name: str) -> dict[str, int]:
        return self.workers.live_workers(api_name)

    def record_batch(self, api_name: str, batch: BatchRecord, stats: FunctionStats) -> None:
        self.workers.record_batch(api_name, batch, stats)


@dataclass
class _Message:
    message_id: str
    body: str
    visible_at: float = 0.0
    receive_count: int = 0
    receipt_handle: str = ""
    """The handle of the latest receive: only it deletes or hides the message (older ones are stale)."""


@dataclass
class InMemoryQueue:
    """`Queue`: per function, messages delivered at least once: a receive hides what it returns for
    `visibility_timeout_s`, and a message comes back when that lapses unless deleted.

    A receive never blocks: with nothing visible it answers at once, as a long poll that timed out, and
    calls `on_empty` (unit tests stop the worker there, so a loop ends when its queue is drained)."""

    visibility_timeout_s: int = 60
    clock: Clock = time.time
    on_empty: Callable[[], None] | None = None
    queues: dict[str, list[_Message]] = field(default_factory=dict)
    dead: dict[str, list[str]] = field(default_factory=dict)
    """Bodies moved to each function's dead-letter queue."""
    calls: Counter[str] = field(default_factory=Counter)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, job: Job) -> str:
        """Enqueue a job as the front does; returns the message id. Sending one job twice is a duplicate."""
        return self.send_body(job.api_name, JobMessage.of(job).model_dump_json())

    def send_body(self, api_name: str, body: str) -> str:
        with self._lock:
            message = _Message(f"m{next(self._ids)}", body)
            self.queues.setdefault(api_name, []).append(message)
            return message.message_id

    def depth(self, api_name: str) -> int:
        """Messages not yet deleted, visible or in flight."""
        with self._lock:
            return len(self.queues.get(api_name, []))

    def receive(self, api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
        with self._lock:
            self.calls["receive"] += 1
            now = self.clock()
            visible = [m for m in self.queues.get(api_name, []) if m.visible_at <= now]
            taken = visible[: max(1, min(RECEIVE_LIMIT, max_messages))]
            for message in taken:
                message.receive_count += 1
                message.receipt_handle = f"{message.message_id}#{message.receive_count}"
                message.visible_at = now + self.visibility_timeout_s
            deliveries = [Delivery(m.message_id, m.receipt_handle, m.body, m.receive_count) for m in taken]
        if not deliveries and self.on_empty is not None:
            self.on_empty()
        return deliveries

    def delete(self, api_name: str, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            self.calls["delete"] += 1
            handles = {d.receipt_handle for d in deliveries}
            messages = self.queues.get(api_name, [])
            messages[:] = [m for m in messages if m.receipt_handle not in handles]

    def set_visibility(self, api_name: str, deliveries: Sequence[Delivery], timeout_s: int) -> None:
        with self._lock:
            self.calls["set_visibility"] += 1
            handles = {d.receipt_handle for d in deliveries}
            for message in self.queues.get(api_name, []):
                if message.receipt_handle in handles:
                    message.visible_at = self.clock() + timeout_s

    def holds_none(self, api_name: str) -> bool:
        with self._lock:
            self.calls["holds_none"] += 1
            return not self.queues.get(api_name)

    def dead_letter(self, api_name: str, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            self.calls["dead_letter"] += 1
            self.dead.setdefault(api_name, []).extend(d.body or "(empty)" for d in deliveries)
        self.delete(api_name, deliveries)


def memory_settings(app_module: str, **overrides: Any) -> Settings:
    """Settings for code run on these fakes: the table and queue names are never used."""
    return Settings(
        app_module=app_module,
        events_table_name="events",
        state_table_name="state",
        queue_url_prefix="memory://",
        **overrides,
    )
