"""A running job's live output written behind the function: in order, several messages to a write, no
gap after a failed write, nothing written for a job that ended."""

from __future__ import annotations

import threading
import time
from typing import Any

from surge import protocol
from surge.errors import Unavailable
from surge.live_writes import LiveWrites
from surge.models import Job, JobState

WAIT_S = 5.0


def _job(n: int = 1) -> Job:
    return Job(
        job_id=f"job-{n}",
        session_hash="s" * 16,
        api_name="gen",
        group="gen",
        state=JobState.RUNNING,
        created_at=time.time(),
        attempt=1,
        worker_id="w1",
    )


class SlowStore:
    """Records what each write carried; each write waits for `gate` and the first `fail` writes raise."""

    def __init__(self, fail: int = 0) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail
        self.writes: list[tuple[str, list[Any], Any]] = []
        self.stored: dict[str, list[Any]] = {}
        self.progress: dict[str, tuple[dict[str, Any], int]] = {}
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: tuple[dict[str, Any], int] | None) -> bool:
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise Unavailable("the table refused the write")
            self.writes.append((job.job_id, [c["output"]["data"][0] for c in chunks], progress))
            self.stored.setdefault(job.job_id, []).extend(c["output"]["data"][0] for c in chunks)
            if progress is not None:
                self.progress[job.job_id] = progress
        return False


def _chunk(job: Job, i: int) -> dict[str, Any]:
    return protocol.generating(job.job_id, [i])


def test_messages_that_come_during_a_write_go_together_in_the_next_one_in_order() -> None:
    store = SlowStore()
    live = LiveWrites(store, writers=2)
    job = _job()
    store.gate.clear()
    live.chunk(job, _chunk(job, 0))
    assert store.entered.wait(WAIT_S), "the first message is written at once"
    for i in range(1, 50):  # the function goes on while the write is in flight: nothing waits for it
        live.chunk(job, _chunk(job, i))
    live.progress(job, protocol.progress(job.job_id, None, 49, 50, None, "steps"), 50)
    store.gate.set()
    assert live.idle(WAIT_S)
    assert store.stored[job.job_id] == list(range(50)), "every message once, in order"
    assert len(store.writes) == 2, "one write for the first message, one for the 49 that came during it"
    assert store.progress[job.job_id][1] == 50


def test_a_failed_write_is_retried_with_what_came_after_it_so_the_log_has_no_gap() -> None:
    store = SlowStore(fail=1)
    live = LiveWrites(store, writers=2)
    job = _job()
    store.gate.clear()
    live.chunk(job, _chunk(job, 0))
    assert store.entered.wait(WAIT_S)
    live.chunk(job, _chunk(job, 1))
    store.gate.set()  # the first write fails; the second must not land before its retry
    assert live.idle(WAIT_S)
    assert store.stored[job.job_id] == [0, 1]
    assert [chunks for _, chunks, _ in store.writes] == [[0, 1]], "the retry carries both, in order"


def test_nothing_more_is_written_for_a_job_that_ended_and_jobs_are_written_side_by_side() -> None:
    store = SlowStore()
    live = LiveWrites(store, writers=2)
    first, second = _job(1), _job(2)
    store.gate.clear()
    live.chunk(first, _chunk(first, 0))
    assert store.entered.wait(WAIT_S)
    live.chunk(first, _chunk(first, 1))
    live.chunk(second, _chunk(second, 7))
    live.forget([first])  # it finished: its finish records every message it had
    store.gate.set()
    assert live.idle(WAIT_S)
    assert store.stored == {"job-1": [0], "job-2": [7]}


def test_a_job_is_written_at_most_once_per_gap_however_fast_it_yields() -> None:
    """A stream reads a streaming job every 0.1 s at most: a job's writes come `GAP_S` (50 ms) apart."""
    store = SlowStore()
    live = LiveWrites(store, writers=4)
    job = _job()
    began = time.monotonic()
    for i in range(150):
        live.chunk(job, _chunk(job, i))
        time.sleep(0.002)
    assert live.idle(WAIT_S)
    took = time.monotonic() - began
    assert store.stored[job.job_id] == list(range(150))
    assert len(store.writes) <= took / 0.05 + 2, f"{len(store.writes)} writes in {took:.2f} s"
