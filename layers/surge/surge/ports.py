"""Ports: the store and queue calls the worker loop and the stream reader make, one Protocol per concept.

`surge.store.Store` (DynamoDB) and `surge.broker.Broker` (SQS) are the adapters; the unit tier's
`InMemory<Port>` fakes are the others. Each Protocol names only what its callers use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from surge.broker import Delivery
from surge.models import Counters, FunctionStats, Job, JobState
from surge.store import BatchRecord, Claim, Completion


class LiveOutput(Protocol):
    """Where a running job's live output goes (`surge.live_writes.LiveWrites` writes it)."""

    def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: tuple[dict[str, Any], int] | None) -> bool:
        """Append generator messages and notices and set the progress (body, messages before it), in one
        write; dropped when the job is no longer this attempt's. True when its visitor has cancelled the
        job (nothing is written then)."""
        ...


class Jobs(LiveOutput, Protocol):
    """A worker's transitions of the jobs it runs: claim, progress, generator output, finish."""

    def claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        """Move jobs to `running` for `worker_id`: a `waiting` job, or a `running` one at the attempt given
        (its worker is gone) whose streamed messages are still the ones given. Every other job is refused
        (with the job as it is, if it exists), so a duplicated message never runs a job twice."""
        ...

    def finish(self, completions: Sequence[Completion], *, held: bool) -> list[str]:
        """Record terminal states; returns the ids finished (all when `held`, the worker's lease is fresh)."""
        ...

    def waiting_before(self, api_name: str, before: float) -> list[Job]:
        """The function's jobs still waiting that were counted before `before` (epoch seconds)."""
        ...

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        """End a job that never started, freeing its place; False if it was no longer waiting."""
        ...


class SessionLog(Protocol):
    """A stream's view of its session's jobs: read them, end a waiting one, forget delivered ones."""

    def read_session(self, session_hash: str) -> list[Job]:
        """Every job of the session (strongly consistent), oldest first."""
        ...

    def end_waiting(self, job: Job, state: JobState, body: dict[str, Any]) -> bool:
        """End a job that never started and count it out of the line; False if it no longer waited."""
        ...

    def request_cancel(self, job: Job) -> bool:
        """Ask the worker running this job to stop it (a generator stops at its next output); False if
        it no longer runs."""
        ...

    def forget_all(self, jobs: Sequence[Job]) -> None:
        """Delete delivered jobs of any sessions (as the stream last read them, so with the parts of a
        result kept in parts): the streams of one process that close together share the writes."""
        ...

    def note_sent(self, jobs: Sequence[Job]) -> None:
        """For running jobs of a stream its client dropped, how many generator messages it had sent
        (`chunks_sent`): the session's next stream sends from there."""
        ...

    def finished_since(self, api_name: str, after: str) -> list[tuple[str, list[str]]]:
        """The function's batch finish notices with keys after `after`, oldest first: (key, job ids)."""
        ...


class Admission(Protocol):
    """The sharded counters of jobs that joined and left the line: ranks and queue sizes come from them."""

    def counters(self, consistent: bool = True) -> Counters: ...


class Leases(Protocol):
    """Slots of a concurrency group's limit, each held by one worker until released or expired."""

    def acquire_lease(self, group: str, limit: int, owner: str) -> int | None:
        """A free (or expired, or already `owner`'s) slot below `limit`, now `owner`'s; None if all are held."""
        ...

    def renew_lease(self, group: str, slot: int, owner: str) -> bool: ...

    def release_lease(self, group: str, slot: int, owner: str) -> None: ...


class Workers(Protocol):
    """The fleet records a worker writes and reads: its liveness, and each batch with its statistics."""

    def worker_alive(self, api_name: str, worker_id: str, alive_for_s: float, slots: int) -> None: ...

    def worker_gone(self, api_name: str, worker_id: str) -> None: ...

    def is_worker_alive(self, api_name: str, worker_id: str) -> bool: ...

    def live_workers(self, api_name: str) -> dict[str, int]:
        """Worker id → slots, for the function's workers whose heartbeat has not lapsed."""
        ...

    def record_batch(self, api_name: str, batch: BatchRecord, stats: FunctionStats) -> None: ...


class Queue(Protocol):
    """One queue per function, delivering each message at least once until it is deleted."""

    def receive(self, api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
        """Up to `max_messages` visible messages, each hidden for the visibility timeout (a long poll of
        up to `wait_s` when none is visible)."""
        ...

    def delete(self, api_name: str, deliveries: Sequence[Delivery]) -> None: ...

    def set_visibility(self, api_name: str, deliveries: Sequence[Delivery], timeout_s: int) -> None:
        """Keep messages in hand hidden for `timeout_s` more, or (0) give them back at once."""
        ...

    def holds_none(self, api_name: str) -> bool:
        """Whether the function's queue holds no message at all (none visible, in flight or delayed)."""
        ...

    def dead_letter(self, api_name: str, deliveries: Sequence[Delivery]) -> None: ...


class WorkerStore(Jobs, Leases, Workers, Admission, Protocol):
    """Everything the worker loop asks of the store."""


class StreamStore(SessionLog, Admission, Protocol):
    """Everything the stream reader asks of the store."""
