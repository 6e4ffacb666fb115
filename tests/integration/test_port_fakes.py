"""The unit tier's fakes keep the adapters' semantics: the same steps through `InMemory*` and through
`Store`/`Broker` on moto give the same answers (claims, counters, leases, delivery)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest
from moto import mock_aws

from surge.broker import Broker
from surge.models import Job, JobState
from surge.ports import Queue, StreamStore, WorkerStore
from surge.store import Store
from tests.integration.conftest import settings_for
from tests.unit.fakes import InMemoryQueue, InMemoryStore

SESSION = "session000000001"
T0 = time.time()


class PortStore(WorkerStore, StreamStore, Protocol):
    """Every store port: what the worker loop and the stream reader ask of a store."""


@dataclass
class Ports:
    store: PortStore
    queue: Queue
    admit: Callable[[Job], Job]
    """The front's join (admission), which no port of the worker or the stream names."""
    send: Callable[[Job], object]


@pytest.fixture(params=["in-memory", "moto"])
def ports(request: pytest.FixtureRequest) -> Iterator[Ports]:
    if request.param == "in-memory":
        fake = InMemoryStore(shards=4)
        queue = InMemoryQueue(visibility_timeout_s=30)
        yield Ports(fake, queue, fake.admit, queue.send)
        return
    with mock_aws():
        settings = settings_for("tests.apps.faulty_app:app")
        store = Store(settings)
        broker = Broker(settings)
        yield Ports(store, broker, lambda job: store.admit(job, None, 1), broker.send)


def _job(n: int) -> Job:
    return Job(
        job_id=f"job-{n}",
        session_hash=SESSION,
        api_name="fine",
        group="fine",
        state=JobState.WAITING,
        data=[f"x{n}"],
        created_at=T0 + n,
    )


def test_a_waiting_job_is_claimed_once_and_counted_out_of_the_line(ports: Ports) -> None:
    first, second = ports.admit(_job(1)), ports.admit(_job(2))
    assert ports.store.counters().waiting == 2
    (claimed,) = ports.store.claim([first], "w1").claimed
    assert (claimed.state, claimed.attempt, claimed.worker_id) == (JobState.RUNNING, 1, "w1")
    again = ports.store.claim([first], "w2")
    assert again.claimed == [] and again.refused[first.job_id] is not None
    assert again.refused[first.job_id].worker_id == "w1"  # type: ignore[union-attr]
    assert ports.store.claim([_job(9)], "w1").refused == {"job-9": None}, "a job that is gone"
    assert ports.store.counters().waiting == 1
    assert ports.store.end_waiting(second, JobState.CANCELLED, {"msg": "process_completed"})
    assert not ports.store.end_waiting(first, JobState.CANCELLED, {"msg": "process_completed"}), "it runs"
    assert ports.store.counters().waiting == 0


def test_a_stale_attempt_writes_nothing_and_a_takeover_claims_at_the_attempt_seen(ports: Ports) -> None:
    job = ports.admit(_job(1))
    (mine,) = ports.store.claim([job], "w1").claimed
    taken = mine.model_copy(update={"state": JobState.RUNNING})
    (theirs,) = ports.store.claim([taken], "w2").claimed
    assert theirs.attempt == 2
    ports.store.record_live(mine, [{"msg": "process_generating"}], None)  # the first attempt's: dropped
    ports.store.record_live(theirs, [{"msg": "process_generating", "n": 2}], None)
    assert [j.chunks for j in ports.store.read_session(SESSION)] == [[{"msg": "process_generating", "n": 2}]]


def test_a_takeover_carrying_fewer_messages_than_the_run_streamed_is_refused_with_them(ports: Ports) -> None:
    """A worker whose heartbeat lapsed while it still ran can stream more between the read a takeover
    carries and the takeover's claim: the claim is refused with the list as it is, which the next carries
    (the new run's messages then follow every one of the dead run's)."""
    (mine,) = ports.store.claim([ports.admit(_job(1))], "w1").claimed
    ports.store.record_live(mine, [{"msg": "process_generating", "n": 1}], None)
    (seen,) = ports.store.read_session(SESSION)
    ports.store.record_live(mine, [{"msg": "process_generating", "n": 2}], None)  # after the takeover's read
    assert ports.store.claim([mine.model_copy(update={"state": JobState.RUNNING})], "w2").claimed == []
    refused = ports.store.claim([seen], "w2").refused[seen.job_id]
    assert refused is not None and [c["n"] for c in refused.chunks] == [1, 2]
    (theirs,) = ports.store.claim([refused], "w2").claimed
    assert (theirs.worker_id, theirs.attempt) == ("w2", 2)


def test_reads_come_in_the_order_jobs_were_counted_and_forgotten_jobs_are_gone(ports: Ports) -> None:
    jobs = []
    for n in (3, 1, 2):
        jobs.append(ports.admit(_job(n)))
        time.sleep(0.002)
    assert [j.created_at for j in jobs] == sorted(j.created_at for j in jobs), "the time each was counted"
    assert [j.job_id for j in ports.store.read_session(SESSION)] == ["job-3", "job-1", "job-2"]
    ports.store.forget_all([jobs[0]])
    assert [j.job_id for j in ports.store.read_session(SESSION)] == ["job-1", "job-2"]


def test_leases_are_held_up_to_the_limit_and_given_back(ports: Ports) -> None:
    assert ports.store.acquire_lease("fine", 2, "w1") == 0
    assert ports.store.acquire_lease("fine", 2, "w2") == 1
    assert ports.store.acquire_lease("fine", 2, "w3") is None
    assert ports.store.renew_lease("fine", 0, "w1") and not ports.store.renew_lease("fine", 0, "w3")
    ports.store.release_lease("fine", 0, "w3")  # not its lease: nothing happens
    assert ports.store.acquire_lease("fine", 2, "w3") is None
    ports.store.release_lease("fine", 0, "w1")
    assert ports.store.acquire_lease("fine", 2, "w3") == 0


def test_a_message_received_is_hidden_until_given_back_and_gone_once_deleted(ports: Ports) -> None:
    job = ports.admit(_job(1))
    ports.send(job)
    (delivery,) = ports.queue.receive("fine", 10, 0)
    assert delivery.message is not None and delivery.message.job_id == job.job_id
    assert ports.queue.receive("fine", 10, 0) == [], "hidden while in hand"
    ports.queue.set_visibility("fine", [delivery], 0)
    (again,) = ports.queue.receive("fine", 10, 0)
    assert again.receive_count == 2, "redelivered"
    ports.queue.delete("fine", [again])
    assert ports.queue.receive("fine", 10, 0) == []
