"""The DynamoDB adapter against moto: admission, claims, exactly-once completion, leases."""

from __future__ import annotations

import time

import pytest

from surge import protocol
from surge.application import App
from surge.errors import QueueFull
from surge.models import Job, JobState
from surge.settings import Settings
from surge.store import Completion, Store


def new_job(job_id: str, group: str = "echo") -> Job:
    return Job(
        job_id=job_id,
        session_hash="session000000001",
        api_name="echo",
        group=group,
        seq=0,
        state=JobState.WAITING,
        data=["x"],
        created_at=time.time(),
    )


def make_job(store: Store, job_id: str, group: str = "echo") -> Job:
    job = new_job(job_id, group)
    store.admit(job, None, 1)
    return job


def test_admission_stops_at_max_size_and_reports_the_size(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    for i in range(3):
        store.admit(new_job(f"j{i}"), 3, 1)
    with pytest.raises(QueueFull) as refused:
        store.admit(new_job("j3"), 3, 7)
    assert refused.value.detail == "Queue is full. Max size is 3 and size is 3."
    assert refused.value.retry_after_s == 7
    assert store.counters().waiting == 3 and store.counters().queue_size("echo") == 3
    assert store.get_job("j3") is None, "a refused join leaves no job behind"


def test_a_retried_admission_counts_once(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = new_job("j1")
    store.admit(job, 10, 1)
    store.admit(job, 10, 1)  # what the SDK does when the first answer was lost
    assert store.counters().waiting == 1


def test_a_job_is_claimed_once_and_leaves_the_waiting_count(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    claimed = store.claim([job], "w1")
    assert [(j.state, j.attempt, j.worker_id) for j in claimed] == [(JobState.RUNNING, 1, "w1")]
    assert store.claim([job], "w2") == []
    counters = store.counters()
    assert counters.waiting == 0 and counters.queue_size("echo") == 0


def test_a_claim_of_several_jobs_drops_only_those_taken_meanwhile(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    jobs = [make_job(store, f"j{i}") for i in range(3)]
    store.claim([jobs[1]], "other")
    claimed = store.claim(jobs, "w1")
    assert sorted(j.job_id for j in claimed) == ["j0", "j2"]
    assert store.counters().waiting == 0


def test_each_job_finishes_exactly_once(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    (running,) = store.claim([make_job(store, "j1")], "w1")
    done = Completion(running, JobState.COMPLETED, protocol.completed("j1", ["x"], 0.1, None))
    assert store.finish([done]) == ["j1"]
    assert store.finish([done]) == []
    events = store.read_events("session000000001", "0")
    assert [e.body["msg"] for e in events].count("process_completed") == 1
    assert store.get_job("j1").state is JobState.COMPLETED  # type: ignore[union-attr]


def test_a_stale_attempt_cannot_finish_a_job_another_worker_reclaimed(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    (first,) = store.claim([make_job(store, "j1")], "w1")
    (second,) = store.claim([first], "w2")
    assert second.attempt == 2
    stale = Completion(first, JobState.COMPLETED, protocol.completed("j1", ["old"], 0.1, None))
    assert store.finish([stale]) == []
    fresh = Completion(second, JobState.COMPLETED, protocol.completed("j1", ["new"], 0.1, None))
    assert store.finish([fresh]) == ["j1"]


def test_cancel_ends_only_a_waiting_job_of_the_same_session(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    impostor = job.model_copy(update={"session_hash": "someone-else"})
    assert not store.end_waiting(impostor, JobState.CANCELLED, protocol.cancelled("j1"))
    assert store.end_waiting(job, JobState.CANCELLED, protocol.cancelled("j1"))
    assert not store.end_waiting(job, JobState.CANCELLED, protocol.cancelled("j1"))
    assert store.counters().waiting == 0
    assert store.claim([job], "w1") == []


def test_dead_lettered_jobs_fail_with_a_message_from_waiting_or_running(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    waiting = make_job(store, "j1")
    (running,) = store.claim([make_job(store, "j2")], "w1")
    assert store.fail_abandoned(waiting, protocol.failed("j1", "gave up"))
    assert store.fail_abandoned(running, protocol.failed("j2", "gave up"))
    assert not store.fail_abandoned(running, protocol.failed("j2", "gave up"))
    assert store.counters().waiting == 0
    bodies = [e.body for e in store.read_events("session000000001", "0") if e.body["msg"] == "process_completed"]
    assert [b["output"]["error"] for b in bodies] == ["gave up", "gave up"]


def test_leases_cap_the_group_and_expire(demo: tuple[App, Settings]) -> None:
    settings = demo[1].model_copy(update={"lease_ttl_s": 1.0})
    store = Store(settings)
    assert store.acquire_lease("g", 2, "a") == 0
    assert store.acquire_lease("g", 2, "b") == 1
    assert store.acquire_lease("g", 2, "c") is None
    assert store.held_leases("g") == 2
    store.release_lease("g", 0, "a")
    assert store.acquire_lease("g", 2, "c") == 0
    time.sleep(1.1)
    assert store.held_leases("g") == 0
    assert store.acquire_lease("g", 2, "d") == 0
    assert not store.renew_lease("g", 0, "c")
