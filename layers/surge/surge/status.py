"""The operator's view of the queue, behind `/status`: per function what waits, runs and ran, with ETA and workers.

Everything comes from the shared state (counters, leases, worker heartbeats, stats, batch log), so every
front instance shows the same picture; `StatusBoard.snapshot` is what the JSON endpoint returns.
"""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel

from surge.application import App, Function
from surge.errors import start_failure_message
from surge.eta import estimate_eta, slots_for
from surge.models import Counters
from surge.store import Store


class WorkerView(BaseModel):
    worker_id: str
    slots: int


class BatchView(BaseModel):
    """One recent batch: when it ended (epoch s), jobs in it, how many failed, seconds it ran."""

    finished_at: float
    size: int
    failed: int
    duration_s: float


class FunctionStatus(BaseModel):
    """One function. `waiting` and `running` count its concurrency group, shared with functions of the same id."""

    api_name: str
    fn_index: int
    concurrency_id: str
    batch: bool
    max_batch_size: int
    generator: bool
    waiting: int
    running: int | None
    """Batches holding a lease of the group; None when the group has no limit (no leases are taken)."""
    concurrency_limit: int | None
    workers: list[WorkerView]
    cannot_start: str | None = None
    """While no worker is live and the latest could not start: what raised (its text where the app shows
    errors), as its visitors are told."""
    slots: int
    avg_batch_s: float | None
    avg_batch_size: float | None
    batches: int
    eta_new_s: float | None
    """Seconds a job joining now is expected to take until its result (Gradio's `rank_eta`)."""
    recent_batches: list[BatchView]


class DepthPoint(BaseModel):
    t: float
    waiting: int
    groups: dict[str, int]


class StatusSnapshot(BaseModel):
    title: str
    generated_at: float
    max_size: int | None
    waiting: int
    """Jobs waiting app-wide: what `max_size` bounds."""
    functions: list[FunctionStatus]
    depth_history: list[DepthPoint]
    history_s: float
    sample_every_s: int


class StatusBoard:
    """Builds `StatusSnapshot`s from the store, at most one per `cache_s` per process.

    Each snapshot also leaves a queue-depth sample (one per `sample_every_s` bucket, whoever writes it
    first), so the depth history covers the time someone had the status page open.
    """

    def __init__(
        self,
        app: App,
        store: Store,
        *,
        recent: int = 20,
        history_s: float = 300.0,
        sample_every_s: int = 2,
        cache_s: float = 1.0,
    ) -> None:
        self.app = app
        self.store = store
        self.recent = recent
        self.history_s = history_s
        self.sample_every_s = sample_every_s
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._last: tuple[float, StatusSnapshot] | None = None

    def snapshot(self) -> StatusSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_s:
                return self._last[1]
            snapshot = self._build()
            self._last = (now, snapshot)
            return snapshot

    def _build(self) -> StatusSnapshot:
        counters = self.store.counters()
        self.store.sample_depth(counters, self.sample_every_s)
        now = time.time()
        running = {group: self._running(group) for group in dict.fromkeys(f.concurrency_id for f in self.app.functions)}
        history = self.store.depth_history(now - self.history_s)
        return StatusSnapshot(
            title=self.app.title,
            generated_at=now,
            max_size=self.app.max_size,
            waiting=counters.waiting,
            functions=[self._function(f, counters, running[f.concurrency_id]) for f in self.app.functions],
            depth_history=[DepthPoint(t=s.t, waiting=s.waiting, groups=s.groups) for s in history],
            history_s=self.history_s,
            sample_every_s=self.sample_every_s,
        )

    def _running(self, group: str) -> int | None:
        if self.app.concurrency_limit(group) is None:
            return None
        return self.store.held_leases(group)

    def _function(self, function: Function, counters: Counters, running: int | None) -> FunctionStatus:
        group = function.concurrency_id
        limit = self.app.concurrency_limit(group)
        fleet = self.store.fleet(function.api_name)
        workers = fleet.workers
        failure = fleet.cannot_start
        stats = self.store.stats(function.api_name)
        slots = slots_for(workers, limit)
        waiting = counters.queue_size(group)
        recent = self.store.recent_batches(function.api_name, self.recent)
        return FunctionStatus(
            api_name=function.api_name,
            fn_index=function.fn_index,
            concurrency_id=group,
            batch=function.batch,
            max_batch_size=function.max_batch_size,
            generator=function.is_generator,
            waiting=waiting,
            running=running,
            concurrency_limit=limit,
            workers=[WorkerView(worker_id=w, slots=n) for w, n in sorted(workers.items())],
            cannot_start=(
                start_failure_message(function.api_name, failure.kind, failure.detail, self.app.show_error)
                if failure is not None
                else None
            ),
            slots=slots,
            avg_batch_s=stats.avg_batch_s,
            avg_batch_size=stats.avg_batch_size,
            batches=stats.batches,
            eta_new_s=estimate_eta(function, waiting, stats, slots),
            recent_batches=[
                BatchView(finished_at=b.finished_at, size=b.size, failed=b.failed, duration_s=b.duration_s)
                for b in recent
            ],
        )
