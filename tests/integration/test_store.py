"""The DynamoDB adapter against moto: admission, claims, exactly-once completion, leases."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from surge import protocol
from surge.application import App
from surge.errors import QueueFull
from surge.models import Job, JobState
from surge.settings import Settings
from surge.store import Completion, Store
from surge.store.admission import shard_caps
from surge.store.aws import Conflicted, Transaction

SESSION = "session000000001"


def new_job(job_id: str, group: str = "echo", session: str = SESSION) -> Job:
    return Job(
        job_id=job_id,
        session_hash=session,
        api_name="echo",
        group=group,
        state=JobState.WAITING,
        data=["x"],
        created_at=time.time(),
    )


def make_job(store: Store, job_id: str, group: str = "echo") -> Job:
    """Admit a job and return it as its message carries it (with the shard it was counted in)."""
    return store.admit(new_job(job_id, group), None, 1)


def test_admission_stops_at_max_size_and_reports_the_size(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    for i in range(3):
        store.admit(new_job(f"j{i}"), 3, 1)
    with pytest.raises(QueueFull) as refused:
        store.admit(new_job("j3"), 3, 7)
    assert refused.value.detail == "Queue is full. Max size is 3 and size is 3."
    assert refused.value.retry_after_s == 7
    assert store.counters().waiting == 3 and store.counters().queue_size("echo") == 3
    assert store.get_job(SESSION, "j3") is None, "a refused join leaves no job behind"
    assert [job.job_id for job in store.read_session(SESSION)] == ["j0", "j1", "j2"]


def test_admission_over_several_shards_never_exceeds_max_size_and_every_shard_drains(
    demo: tuple[App, Settings],
) -> None:
    settings = demo[1].model_copy(update={"admission_shards": 4})
    store = Store(settings)
    max_size = 10
    admitted: list[Job] = []
    refusals = 0
    for i in range(25):
        try:
            admitted.append(store.admit(new_job(f"j{i:02d}", group="a" if i % 2 else "b"), max_size, 1))
        except QueueFull:
            refusals += 1
        assert store.counters().waiting <= max_size
    assert (len(admitted), refusals) == (max_size, 15)
    counters = store.counters()
    caps = shard_caps(max_size, 4)
    assert sum(caps) == max_size
    assert len(counters.shards) == 4
    assert all(shard.waiting <= cap for shard, cap in zip(counters.shards, caps, strict=True))
    assert [shard.waiting for shard in counters.shards] == [
        sum(1 for job in admitted if job.shard == i) for i in range(4)
    ], "each job is counted in the shard it was placed in"
    assert counters.queue_size("a") + counters.queue_size("b") == max_size

    claimed, cancelled = admitted[::2], admitted[1::2]
    claim = store.claim(claimed, "w1")
    assert sorted(j.job_id for j in claim.claimed) == sorted(j.job_id for j in claimed) and claim.refused == {}
    for job in cancelled:
        assert store.end_waiting(job, JobState.CANCELLED, protocol.cancelled(job.job_id))
    counters = store.counters()
    assert [shard.waiting for shard in counters.shards] == [0, 0, 0, 0]
    assert counters.queue_size("a") == counters.queue_size("b") == 0
    assert counters.tails("a") == [sum(1 for job in admitted if job.shard == i and job.group == "a") for i in range(4)]
    # Freed places are taken again, still within max_size.
    again = [store.admit(new_job(f"k{i}"), max_size, 1) for i in range(max_size)]
    with pytest.raises(QueueFull):
        store.admit(new_job("k-over"), max_size, 1)
    assert store.counters().waiting == len(again) == max_size


def test_a_claim_writes_one_counters_item_whichever_shards_its_jobs_came_from(demo: tuple[App, Settings]) -> None:
    """A batch's jobs were counted in every shard: its claim's transaction holds the jobs and one counters
    item (the worker's), not one per shard; claims by several workers and a cancel still drain every
    shard and every group's head exactly."""

    import boto3

    settings = demo[1].model_copy(update={"admission_shards": 4})
    store = Store(settings)
    jobs = [store.admit(new_job(f"j{i:02d}", group="a" if i % 3 else "b"), None, 1) for i in range(24)]
    assert len({job.shard for job in jobs[:8]}) > 1, "joins spread over the shards"
    sizes: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["TransactItems"]))

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb.TransactWriteItems", count)  # type: ignore[union-attr]
    workers = Store(settings)
    assert len(workers.claim(jobs[:8], "worker-one").claimed) == 8
    assert len(workers.claim(jobs[8:20], "worker-two").claimed) == 12
    assert sizes == [8 + 1, 12 + 1]
    assert [shard.waiting for shard in store.counters().shards] == [
        sum(1 for job in jobs[20:] if job.shard == i) for i in range(4)
    ]
    for job in jobs[20:]:
        assert store.end_waiting(job, JobState.CANCELLED, protocol.cancelled(job.job_id))
    counters = store.counters()
    assert [shard.waiting for shard in counters.shards] == [0, 0, 0, 0]
    assert counters.queue_size("a") == counters.queue_size("b") == 0
    assert [shard.head for shard in counters.shards] == [shard.tail for shard in counters.shards]


def test_a_retried_admission_counts_once(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = new_job("j1")
    store.admit(job, 10, 1)
    store.admit(job, 10, 1)  # what the SDK does when the first answer was lost
    assert store.counters().waiting == 1


def test_a_retried_admission_returns_the_shard_the_job_is_counted_in(
    demo: tuple[App, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Starts:
        """Each admission tries the shards with room starting one further on (the first one had room)."""

        tries = 0

        def shuffle(self, shards: list[int]) -> None:
            shift = self.tries % len(shards)
            shards[:] = shards[shift:] + shards[:shift]
            self.tries += 1

        def random(self) -> float:
            return 0.5

    monkeypatch.setattr("surge.store.admission.random", Starts())
    monkeypatch.setattr("surge.store.admission.COUNTS_FRESH_S", 0.0)
    store = Store(demo[1].model_copy(update={"admission_shards": 4}))
    job = new_job("j1")
    first = store.admit(job, 10, 1)
    retried = store.admit(job, 10, 1)
    stored = store.get_job(SESSION, "j1")
    assert stored is not None and retried.shard == first.shard == stored.shard
    assert retried.created_at == first.created_at == stored.created_at
    store.claim([retried], "w1")
    assert [shard.waiting for shard in store.counters().shards] == [0, 0, 0, 0]


def test_a_join_that_met_a_conflict_takes_its_place_from_the_try_that_counted_it(
    demo: tuple[App, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams order waiting jobs by `created_at`: a join sent again after DynamoDB cancelled its
    transaction (another join met it on the shard) is counted after the joins that began meanwhile."""
    commit = Transaction.commit
    conflicts = iter([True])

    def conflicting_once(self: Transaction, *args: Any, **kwargs: Any) -> Any:
        if self.what == "Admission" and next(conflicts, False):
            meanwhile.append(store.admit(new_job("j2"), 10, 1))
            raise Conflicted("Admission")
        return commit(self, *args, **kwargs)

    meanwhile: list[Job] = []
    monkeypatch.setattr(Transaction, "commit", conflicting_once)
    store = Store(demo[1])
    first = new_job("j1")
    admitted = store.admit(first, 10, 1)
    stored = store.get_job(SESSION, "j1")
    assert stored is not None and stored.created_at == admitted.created_at
    assert first.created_at < meanwhile[0].created_at < admitted.created_at
    assert store.counters().waiting == 2


def test_a_job_is_claimed_once_and_leaves_the_waiting_count(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    claim = store.claim([job], "w1")
    assert [(j.state, j.attempt, j.worker_id) for j in claim.claimed] == [(JobState.RUNNING, 1, "w1")]
    assert claim.refused == {}
    again = store.claim([job], "w2")
    assert again.claimed == []
    refused = again.refused["j1"]
    assert refused is not None and (refused.state, refused.worker_id, refused.attempt) == (JobState.RUNNING, "w1", 1)
    counters = store.counters()
    assert counters.waiting == 0 and counters.queue_size("echo") == 0
    stored = store.get_job(SESSION, "j1")
    assert stored is not None and stored.state is JobState.RUNNING and stored.started_at is not None


def test_a_claim_of_a_job_that_no_longer_exists_is_refused_with_none(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    store.forget_all([job])
    claim = store.claim([job], "w1")
    assert claim.claimed == [] and claim.refused == {"j1": None}


def test_a_claim_of_several_jobs_drops_only_those_taken_meanwhile(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    jobs = [make_job(store, f"j{i}") for i in range(3)]
    store.claim([jobs[1]], "other")
    claim = store.claim(jobs, "w1")
    assert sorted(j.job_id for j in claim.claimed) == ["j0", "j2"]
    assert list(claim.refused) == ["j1"]
    assert store.counters().waiting == 0


def test_a_claim_larger_than_one_transaction_claims_every_job(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    jobs = [make_job(store, f"j{i:03d}") for i in range(120)]
    claim = store.claim(jobs, "w1")
    assert len(claim.claimed) == 120 and claim.refused == {}
    assert store.counters().waiting == 0


def test_each_job_finishes_exactly_once(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    (running,) = store.claim([make_job(store, "j1")], "w1").claimed
    body = protocol.completed("j1", ["x"], 0.1, None)
    done = Completion(running, JobState.COMPLETED, body)
    assert store.finish([done], held=False) == ["j1"]
    assert store.finish([done], held=False) == []
    assert [ids for _, ids in store.finished_since("echo", "0")] == [["j1"]]  # one notice, for the one finish
    (job,) = store.read_session(SESSION)
    assert (job.state, job.result) == (JobState.COMPLETED, body)
    assert store.get_job(SESSION, "j1").state is JobState.COMPLETED  # type: ignore[union-attr]


def test_a_held_finish_records_every_result_in_one_batch(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    claimed = store.claim([make_job(store, f"j{i}") for i in range(30)], "w1").claimed
    completions = [
        Completion(job, JobState.COMPLETED, protocol.completed(job.job_id, [job.job_id], 0.1, None)) for job in claimed
    ]
    assert sorted(store.finish(completions, held=True)) == sorted(j.job_id for j in claimed)
    jobs = store.read_session(SESSION)
    assert len(jobs) == 30 and all(j.state is JobState.COMPLETED for j in jobs)
    assert all(j.result is not None and j.result["output"]["data"] == [j.job_id] for j in jobs)
    assert store.counters().waiting == 0
    # The batch's finish notice names every job (a stream process reads these instead of far-back logs);
    # the 30 results and the notice took two batch writes (25 + 5, the notice in the last).
    ((key, named),) = store.finished_since("echo", "0")
    assert sorted(named) == sorted(j.job_id for j in claimed)
    assert store.finished_since("echo", key) == []


def test_a_stale_attempt_cannot_finish_a_job_another_worker_reclaimed(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    (first,) = store.claim([make_job(store, "j1")], "w1").claimed
    (second,) = store.claim([first], "w2").claimed
    assert second.attempt == 2
    stale = Completion(first, JobState.COMPLETED, protocol.completed("j1", ["old"], 0.1, None))
    assert store.finish([stale], held=False) == []
    fresh = Completion(second, JobState.COMPLETED, protocol.completed("j1", ["new"], 0.1, None))
    assert store.finish([fresh], held=False) == ["j1"]
    job = store.get_job(SESSION, "j1")
    assert job is not None and job.result is not None and job.result["output"]["data"] == ["new"]
    assert store.counters().waiting == 0, "a takeover does not count the job out twice"


def test_progress_and_chunks_are_recorded_only_by_the_attempt_that_holds_the_job(
    demo: tuple[App, Settings],
) -> None:
    store = Store(demo[1])
    (first,) = store.claim([make_job(store, "j1")], "w1").claimed
    step = protocol.progress("j1", 0.5, None, None, None, "steps")
    before = time.time()
    store.record_live(first, [protocol.generating("j1", ["a"])], (step, 1))
    between = time.time()
    store.record_live(first, [protocol.generating("j1", ["b"])], None)
    job = store.get_job(SESSION, "j1")
    assert job is not None and job.first_output_at is not None
    assert before <= job.first_output_at <= between, "the first live write's time, kept by the later ones"
    assert job is not None and job.progress is not None and job.progress["msg"] == "progress"
    assert job.progress_after == 1, "the progress was reported after the first chunk"
    assert [c["output"]["data"] for c in job.chunks] == [["a"], ["b"]]
    assert [j.worker_id for j in store.claim([job], "w2").claimed] == ["w2"]
    store.record_live(first, [protocol.generating("j1", ["stale"])], None)  # dropped: w1 no longer holds it
    job = store.get_job(SESSION, "j1")
    assert job is not None and len(job.chunks) == 2 and job.worker_id == "w2"


def test_cancel_ends_only_a_waiting_job_of_the_same_session(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    impostor = job.model_copy(update={"session_hash": "someone-else-0001"})
    assert not store.end_waiting(impostor, JobState.CANCELLED, protocol.cancelled("j1"))
    assert store.counters().waiting == 1
    assert store.end_waiting(job, JobState.CANCELLED, protocol.cancelled("j1"))
    assert not store.end_waiting(job, JobState.CANCELLED, protocol.cancelled("j1"))
    assert store.counters().waiting == 0
    claim = store.claim([job], "w1")
    assert claim.claimed == []
    cancelled = claim.refused["j1"]
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert cancelled.result == protocol.cancelled("j1")


def test_a_running_job_is_not_ended_by_a_cancel_but_its_workers_next_live_write_learns_of_it(
    demo: tuple[App, Settings],
) -> None:
    store = Store(demo[1])
    job = make_job(store, "j1")
    assert not store.request_cancel(job), "a waiting job is ended by end_waiting, not marked"
    (running,) = store.claim([job], "w1").claimed
    assert not store.end_waiting(job, JobState.CANCELLED, protocol.cancelled("j1"))
    assert not store.record_live(running, [protocol.generating("j1", ["a"])], None)
    assert store.request_cancel(running)
    assert store.record_live(running, [protocol.generating("j1", ["b"])], None), "the worker learns of the cancel"
    stored = store.get_job(SESSION, "j1")
    assert stored is not None and stored.state is JobState.RUNNING and len(stored.chunks) == 1
    assert store.counters().waiting == 0
    store.finish([Completion(running, JobState.CANCELLED, protocol.cancelled("j1"))], held=True)
    assert not store.request_cancel(running), "an ended job is not marked"
    ended = store.get_job(SESSION, "j1")
    assert ended is not None and ended.state is JobState.CANCELLED and ended.result == protocol.cancelled("j1")


def _session_items(store: Store, settings: Settings) -> list[dict[str, Any]]:
    """Every item of SESSION's log as stored (jobs, result parts, markers)."""
    items: list[dict[str, Any]] = store.client.query(
        TableName=settings.events_table_name,
        KeyConditionExpression="session_hash = :s",
        ExpressionAttributeValues={":s": {"S": SESSION}},
    )["Items"]
    return items


def test_a_running_job_told_cancelled_keeps_a_marker_through_its_finish_and_goes_with_it_once_ended(
    demo: tuple[App, Settings],
) -> None:
    """A stream tells a visitor at once that a running job is cancelled. The worker's finish puts the job's
    item anew (it would read as a fresh completion), so the stream's marker is an item of its own: reads
    see the job as told until it is deleted, with the marker, once it has ended."""
    store = Store(demo[1])
    job, _ = make_job(store, "j1"), make_job(store, "j2")
    (running,) = store.claim([job], "w1").claimed
    assert store.request_cancel(running)
    (seen, other) = store.read_session(SESSION)
    assert seen.cancel_requested and not seen.cancel_delivered and not other.cancel_requested
    store.forget_all([seen.model_copy(update={"cancel_delivered": True})])
    marked = store.read_session(SESSION)[0]
    assert (marked.job_id, marked.state, marked.cancel_delivered) == ("j1", JobState.RUNNING, True)
    store.finish([Completion(running, JobState.COMPLETED, protocol.completed("j1", ["late"], 0.1, None))], held=True)
    ended = store.read_session(SESSION)[0]
    assert (ended.state, ended.cancel_requested, ended.cancel_delivered) == (JobState.COMPLETED, False, True)
    store.forget_all([ended])
    assert [job.job_id for job in store.read_session(SESSION)] == ["j2"]
    left = _session_items(store, demo[1])
    assert [item["sk"]["S"] for item in left] == ["j2"], "the marker went with its job"


def test_what_a_dropped_stream_sent_of_a_generator_is_read_with_the_job_and_goes_with_it_once_delivered(
    demo: tuple[App, Settings],
) -> None:
    """A stream dropped while a generator streams notes how many of its messages it sent: the session's
    next read says so beside the job (through the worker's later writes and finish), and the delivered
    job is deleted with the note."""
    store = Store(demo[1])
    job, _ = make_job(store, "j1"), make_job(store, "j2")
    (running,) = store.claim([job], "w1").claimed
    store.record_live(running, [protocol.generating("j1", ["a"]), protocol.generating("j1", ["b"])], None)
    (seen, other) = store.read_session(SESSION)
    assert (seen.chunks_sent, other.chunks_sent) == (0, 0)
    store.note_sent([seen.model_copy(update={"chunks_sent": 2})])
    store.record_live(running, [protocol.generating("j1", ["c"])], None)
    (resumed, _) = store.read_session(SESSION)
    assert (len(resumed.chunks), resumed.chunks_sent) == (3, 2)
    store.finish([Completion(running, JobState.COMPLETED, protocol.completed("j1", ["abc"], 0.1, None))], held=True)
    ended = store.read_session(SESSION)[0]
    assert (ended.state, ended.chunks_sent) == (JobState.COMPLETED, 2)
    store.forget_all([ended])
    assert [item["sk"]["S"] for item in _session_items(store, demo[1])] == ["j2"], "the note went with its job"


def test_dead_lettered_jobs_fail_with_a_message_from_waiting_or_running(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    waiting = make_job(store, "j1")
    (running,) = store.claim([make_job(store, "j2")], "w1").claimed
    assert store.fail_abandoned(waiting, protocol.failed("j1", "gave up"))
    assert store.fail_abandoned(running, protocol.failed("j2", "gave up"))
    assert not store.fail_abandoned(running, protocol.failed("j2", "gave up"))
    assert not store.fail_abandoned(waiting, protocol.failed("j1", "gave up"))
    assert store.counters().waiting == 0
    jobs = store.read_session(SESSION)
    assert [(j.job_id, j.state) for j in jobs] == [("j1", JobState.FAILED), ("j2", JobState.FAILED)]
    assert [j.result["output"]["error"] for j in jobs if j.result] == ["gave up", "gave up"]


@pytest.mark.parametrize("held", [True, False])
def test_a_result_too_large_for_one_item_is_kept_in_parts_read_whole_and_forgotten_with_its_job(
    demo: tuple[App, Settings], held: bool
) -> None:
    """DynamoDB refuses items over 400 KB: a 1 MB result (a plot's JSON, a large table; CJK text, three
    bytes a character) is written in parts beside its job before the job's item, a session read joins
    them, and forgetting the delivered job deletes its parts too."""
    store = Store(demo[1])
    claimed = store.claim([make_job(store, "big"), make_job(store, "small")], "w1").claimed
    text = "漢字" * 170_000 + "x" * 20_000  # about 1.04 MB as stored
    bodies = {
        "big": protocol.completed("big", [text], 0.1, None),
        "small": protocol.completed("small", ["s"], 0.1, None),
    }
    completions = [Completion(job, JobState.COMPLETED, bodies[job.job_id]) for job in claimed]
    assert sorted(store.finish(completions, held=held)) == ["big", "small"]
    results = {job.job_id: job.result for job in store.read_session(SESSION)}
    assert results == bodies
    items = _session_items(store, demo[1])
    assert len(items) > 3, "the large result is in parts beside its job"
    store.forget_all([job for job in store.read_session(SESSION) if job.job_id == "big"])
    assert [job.job_id for job in store.read_session(SESSION)] == ["small"]
    left = _session_items(store, demo[1])
    assert [item["sk"]["S"] for item in left] == ["small"], "the parts went with the job"


def test_a_batch_of_large_results_recorded_by_a_late_worker_fits_dynamodbs_transaction_size(
    demo: tuple[App, Settings],
) -> None:
    """A worker whose heartbeat lapsed records results in transactions, which DynamoDB refuses over 4 MB
    in all (moto does not): sixteen results of 280 kB went in one transaction of about 4.5 MB, refused on
    AWS on every try, and the batch's results were lost. They go in as many transactions as fit."""
    import boto3

    sizes: list[int] = []

    def measure(params: dict[str, Any], **_: Any) -> None:
        sizes.append(sum(len(json.dumps(item).encode()) for item in params["TransactItems"]))

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(  # type: ignore[union-attr]
        "before-parameter-build.dynamodb.TransactWriteItems", measure
    )
    store = Store(demo[1])
    claimed = store.claim([make_job(store, f"j{i:02d}") for i in range(16)], "w1").claimed
    sizes.clear()
    completions = [
        Completion(job, JobState.COMPLETED, protocol.completed(job.job_id, ["x" * 280_000], 0.1, None))
        for job in claimed
    ]
    assert sorted(store.finish(completions, held=False)) == [f"j{i:02d}" for i in range(16)]
    assert len(sizes) >= 2 and max(sizes) < 4_000_000, sizes
    assert all(job.result == completions[0].body | {"event_id": job.job_id} for job in store.read_session(SESSION))


def test_forget_deletes_delivered_jobs_only(demo: tuple[App, Settings]) -> None:
    store = Store(demo[1])
    jobs = [make_job(store, f"j{i}") for i in range(3)]
    store.forget_all([jobs[0], jobs[2], jobs[2]])
    assert [j.job_id for j in store.read_session(SESSION)] == ["j1"]


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


def test_a_renewed_lease_outlives_the_hour_its_take_gave_its_item(demo: tuple[App, Settings]) -> None:
    """A batch may hold a slot for longer than an hour (no `time_limit_s`): the item's TTL moves with each
    renewal, or DynamoDB's TTL (and the local emulator's sweep) deleted a held lease and a second worker
    took the same slot."""
    from surge_local import emulator

    store = Store(demo[1].model_copy(update={"lease_ttl_s": 30.0}))

    def expires_at() -> float:
        key = {"pk": {"S": "lease#g"}, "sk": {"S": "00000"}}
        return float(store.client.get_item(TableName=demo[1].state_table_name, Key=key)["Item"]["expires_at"]["N"])

    assert store.acquire_lease("g", 1, "a") == 0
    taken = expires_at()
    time.sleep(1.1)
    assert store.renew_lease("g", 0, "a")
    assert expires_at() > taken, "the renewal moved the item's TTL"
    emulator.sweep_expired(taken + 0.5)  # past the take's TTL (provisioned tables have TTL on)
    assert store.acquire_lease("g", 1, "b") is None, "the slot is still held"


def test_a_crowd_at_a_nearly_full_queue_is_refused_at_the_door_not_by_a_stampede_of_transactions(
    demo: tuple[App, Settings],
) -> None:
    """60 joins at once for 3 free places: 3 admitted, the rest refused by the process's own view of the
    shards (a few refused transactions, one shared fresh read), and the counters are exact."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    settings = demo[1].model_copy(update={"admission_shards": 4})
    store = Store(settings)
    max_size = 8
    for i in range(5):
        store.admit(new_job(f"early{i}"), max_size, 1)
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb.*", count)  # type: ignore[union-attr]
    crowd = Store(settings)  # one front process: its clients and its view of the shards

    def join(i: int) -> bool:
        try:
            crowd.admit(new_job(f"crowd{i:02d}"), max_size, 1)
            return True
        except QueueFull:
            return False

    with ThreadPoolExecutor(30) as pool:
        admitted = sum(pool.map(join, range(60)))
    assert admitted == 3
    assert store.counters().waiting == max_size
    # Without the gate each of the 57 refused joins tried the shards its read showed with room, read
    # afresh and tried again: hundreds of transactions and dozens of reads.
    assert calls["TransactWriteItems"] <= 3 + 2 * settings.admission_shards, calls
    assert calls["BatchGetItem"] < 20, calls  # fresh reads shared within FRESH_SHARE_S (one per join: 57)


def test_joins_far_from_a_full_queue_reuse_one_read_of_the_shards_and_max_size_stays_exact(
    demo: tuple[App, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet queue costs a join its two calls, not a counters read every quarter second: while every
    shard has half its share free, one process reuses its read (`COUNTS_ROOMY_S`); the transaction's
    condition still stops the queue at `max_size` exactly."""
    import random
    from collections import Counter

    import boto3

    class Spread:
        """The shards with room in turn, so that ten joins leave each shard half free (drawn at random,
        one shard in about 25 runs took 6 of the 10 and was no longer half free)."""

        turn = 0

        def shuffle(self, shards: list[int]) -> None:
            shift = self.turn % len(shards) if shards else 0
            shards[:] = shards[shift:] + shards[:shift]
            self.turn += 1

        def random(self) -> float:
            return random.random()

    monkeypatch.setattr("surge.store.admission.random", Spread())

    settings = demo[1].model_copy(update={"admission_shards": 4})
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb.*", count)  # type: ignore[union-attr]
    front = Store(settings)
    max_size = 40
    for i in range(10):  # a visitor every 50 ms: the quarter-second reuse alone would read twice
        front.admit(new_job(f"quiet{i}"), max_size, 1)
        time.sleep(0.05)
    assert calls["BatchGetItem"] == 1, calls
    assert calls["TransactWriteItems"] == 10, calls
    admitted = 10
    for i in range(40):
        try:
            front.admit(new_job(f"busy{i}"), max_size, 1)
            admitted += 1
        except QueueFull:
            pass
    assert admitted == max_size
    assert Store(settings).counters().waiting == max_size
