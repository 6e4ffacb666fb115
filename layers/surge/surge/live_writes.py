"""A running job's live output (generator messages, notices, progress), written behind the function.

A generator that yields a token every few milliseconds must not wait for DynamoDB at each one: it would
run at the pace of the writes (measured here: 200 tokens of 5 ms each took 6.5 s, against 1.3 s in
Gradio), and every write of a growing item costs write units by its size. `LiveWrites` takes each
message at once and writes a job's messages in the order they came, each write carrying everything that
came while the one before it was in flight; a job's writes never overlap, and a failed one is retried
with what came after it, so the log never skips a message (chunks are diffs: a gap would corrupt what
the visitor sees). The job's finish records every message anyway (`JobStore.finish` puts the whole item),
so `forget` drops what is still pending for jobs that ended, and a write that lands after the finish is
refused by its condition (the job is no longer running). A write refused because the job's visitor
cancelled it marks the job `cancelled`: the worker stops its generator, with no call of its own to learn it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from surge.errors import Unavailable
from surge.models import Job
from surge.ports import LiveOutput

logger = logging.getLogger("surge.live_writes")

WRITERS = 4
"""Threads writing live output: one job's writes never overlap, so up to this many jobs are written at once."""

GAP_S = 0.05
"""The least time between two writes of one job: a stream reads a streaming job's log every 0.1 s at
most, so writing more often only costs CPU and write units (each write rewrites the growing item)."""

RETRY_S = 0.2
"""After a failed write, how long its job's messages wait before the next try (they keep accumulating)."""


@dataclass
class _Pending:
    job: Job
    chunks: list[dict[str, Any]] = field(default_factory=list)
    progress: tuple[dict[str, Any], int] | None = None


class LiveWrites:
    """The worker's writer of live output: `chunk` and `progress` return at once."""

    def __init__(self, store: LiveOutput, writers: int = WRITERS) -> None:
        self.store = store
        self.writers = writers
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        """Job id → what is still to write for it, jobs in the order they first had something pending."""
        self._flying: set[str] = set()
        self._live: set[str] = set()
        """Jobs whose output may still be written (not forgotten)."""
        self._began: dict[str, float] = {}
        """Job id → when (monotonic) its latest write began."""
        self._cancelled: set[str] = set()
        """Live jobs whose visitor cancelled them (a write found it): nothing more is written for them."""
        self._written: dict[str, int] = {}
        """Job id → how many of its messages were written (the visitor may have seen them)."""
        self._threads: list[threading.Thread] = []

    def chunk(self, job: Job, body: dict[str, Any]) -> None:
        """One more generator message or notice of a running job, after the ones before it."""
        with self._cond:
            self._entry(job).chunks.append(body)

    def progress(self, job: Job, body: dict[str, Any], after: int) -> None:
        """The job's latest progress, reported after `after` of its messages (replaces one not yet written)."""
        with self._cond:
            self._entry(job).progress = (body, after)

    def cancelled(self, job: Job) -> bool:
        """Whether a write for this running job found that its visitor cancelled it."""
        with self._cond:
            return job.job_id in self._cancelled

    def written(self, job: Job) -> int:
        """How many of the job's messages were written: after a cancel, the ones its visitor may have seen."""
        with self._cond:
            return self._written.get(job.job_id, 0)

    def forget(self, jobs: list[Job]) -> None:
        """These jobs ended (their finish records every message): nothing more is written for them."""
        with self._cond:
            for job in jobs:
                self._live.discard(job.job_id)
                self._cancelled.discard(job.job_id)
                self._written.pop(job.job_id, None)
                self._pending.pop(job.job_id, None)
                self._began.pop(job.job_id, None)

    def idle(self, timeout_s: float) -> bool:
        """Wait until nothing is pending or being written (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._flying, timeout_s)

    def _entry(self, job: Job) -> _Pending:
        """Under the lock: the pending entry of `job`, waking a writer (started on first use)."""
        if job.job_id in self._cancelled:
            return _Pending(job)  # its job is stopping: nothing more of it is written
        self._live.add(job.job_id)
        entry = self._pending.get(job.job_id)
        if entry is not None:
            return entry  # a writer already knows it is pending: a progress bar's every step costs a lock
        entry = self._pending[job.job_id] = _Pending(job)
        if not self._threads:
            for i in range(self.writers):
                thread = threading.Thread(target=self._write_loop, name=f"surge-live-{i}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._cond.notify_all()
        return entry

    def _take(self) -> tuple[_Pending | None, float | None]:
        """Under the lock: the oldest pending entry whose job has no write in flight and whose latest
        write began `GAP_S` ago or more; else how long until one may be due (None: nothing pending)."""
        now = time.monotonic()
        soonest: float | None = None
        for job_id, entry in self._pending.items():
            if job_id in self._flying:
                continue
            due = self._began.get(job_id, now - GAP_S) + GAP_S - now
            if due > 0:
                soonest = due if soonest is None else min(soonest, due)
                continue
            del self._pending[job_id]
            self._flying.add(job_id)
            self._began[job_id] = now
            return entry, None
        return None, soonest

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                entry, wait_s = self._take()
                while entry is None:
                    self._cond.wait(wait_s)
                    entry, wait_s = self._take()
            outcome = self._write(entry)
            failed = outcome is None
            with self._cond:
                job_id = entry.job.job_id
                if outcome and job_id in self._live:
                    self._cancelled.add(job_id)
                    self._pending.pop(job_id, None)
                elif outcome is False and job_id in self._live:
                    self._written[job_id] = self._written.get(job_id, 0) + len(entry.chunks)
                if failed and job_id in self._live:
                    self._put_back(entry)
                if failed:
                    self._cond.wait_for(lambda: False, RETRY_S)  # the retry comes later, with what came meanwhile
                self._flying.discard(job_id)
                self._cond.notify_all()

    def _put_back(self, entry: _Pending) -> None:
        """Under the lock: a failed write's messages go before those that came during it."""
        later = self._pending.pop(entry.job.job_id, None)
        if later is not None:
            entry.chunks.extend(later.chunks)
            entry.progress = later.progress or entry.progress
        self._pending[entry.job.job_id] = entry

    def _write(self, entry: _Pending) -> bool | None:
        """Whether the job's visitor cancelled it; None when the write failed (to be retried)."""
        try:
            return self.store.record_live(entry.job, entry.chunks, entry.progress)
        except Unavailable as error:
            logger.warning("could not write a running job's output (%s); retrying", error.detail)
            return None
        except Exception:
            logger.exception("writing a running job's output failed; retrying")
            return None
