"""The worker loop in-process against moto: failures stay with their jobs and the worker keeps serving."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from surge.application import load_app
from surge.broker import Broker
from surge.models import Job, JobMessage, JobState, JoinBody
from surge.service import FrontService
from surge.settings import Settings
from surge.store import Store
from surge.worker import Worker
from tests.integration.conftest import settings_for


@contextmanager
def serving(settings: Settings, api_name: str) -> Iterator[Worker]:
    app = load_app(settings.app_module)
    worker = Worker(app, app.get(api_name), settings, Store(settings), Broker(settings))
    thread = threading.Thread(target=worker.serve)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=10)


def submit(settings: Settings, api_name: str, *data: Any, session: str = "session000000001") -> str:
    """Join as a client does; returns the job's id (its `event_id`)."""
    return submit_job(settings, api_name, *data, session=session).job_id


def submit_job(settings: Settings, api_name: str, *data: Any, session: str = "session000000001") -> Job:
    app = load_app(settings.app_module)
    service = FrontService(app, settings, Store(settings), Broker(settings))
    return service.join(JoinBody(data=list(data), api_name=api_name, session_hash=session))


def outcome(
    settings: Settings, event_id: str, session: str = "session000000001", timeout_s: float = 10
) -> dict[str, Any]:
    """The job's `process_completed` message, as its stream will deliver it (the job item's result)."""
    return finished_job(settings, event_id, session, timeout_s).result or {}


def finished_job(settings: Settings, event_id: str, session: str = "session000000001", timeout_s: float = 10) -> Job:
    store = Store(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get_job(session, event_id)
        if job is not None and job.result is not None:
            assert job.result["msg"] == "process_completed" and job.result["event_id"] == event_id
            return job
        time.sleep(0.05)
    raise AssertionError(f"{event_id} never completed")


def outcomes(
    settings: Settings, event_ids: list[str], session: str = "session000000001", timeout_s: float = 30
) -> list[dict[str, Any]]:
    """The `process_completed` of several jobs of one session, reading the session's log once per poll."""
    store = Store(settings)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(set(event_ids)) and time.monotonic() < deadline:
        for job in store.read_session(session):
            if job.result is not None and job.job_id in event_ids:
                found[job.job_id] = job.result
        time.sleep(0.1)
    missing = [e for e in event_ids if e not in found]
    assert not missing, f"{len(missing)} jobs never completed"
    return [found[e] for e in event_ids]


def queue_depth(settings: Settings, url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_an_exception_fails_only_its_job_without_leaking_internals(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app")
    with serving(settings, "crash"):
        first = outcome(settings, submit(settings, "crash", "a"))
        second = outcome(settings, submit(settings, "crash", "b"))
    for result in (first, second):
        assert result["success"] is False
        assert result["output"]["error"] is None, "only surge.Error messages reach clients unless show_error"


def test_wrong_number_of_outputs_and_short_batches_fail_with_a_clear_message(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app")
    with serving(settings, "wrong_arity"):
        result = outcome(settings, submit(settings, "wrong_arity", "a"))
    assert result["output"]["error"] == "wrong_arity must return 2 values."
    with serving(settings, "short_batch"):
        result = outcome(settings, submit(settings, "short_batch", "a"))
    assert "shorter than the batch size 1" in result["output"]["error"]


def test_a_call_past_its_time_limit_fails_and_the_worker_serves_the_next(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app")
    with serving(settings, "hang"):
        slow = outcome(settings, submit(settings, "hang", 2.0))
        quick = outcome(settings, submit(settings, "hang", 0.01))
    assert slow["output"]["error"] == "hang took longer than its limit of 0.3 s."
    assert quick["success"] is True and quick["output"]["data"] == [0.01]


def test_an_error_in_a_batch_fails_only_the_input_that_caused_it(aws: None) -> None:
    settings = settings_for("examples.demo_app:app")
    ids = [
        submit(settings, "trim_words", "hello", 2),
        submit(settings, "trim_words", "world", -1),
        submit(settings, "trim_words", "again", 3),
    ]
    with serving(settings, "trim_words"):
        results = [outcome(settings, event_id) for event_id in ids]
    assert results[0]["output"]["data"] == ["he"]
    assert results[1]["output"]["error"] == "Length must be 0 or more; got -1 for 'world'."
    assert results[2]["output"]["data"] == ["aga"]


def test_a_poison_message_goes_to_the_dead_letter_queue_without_blocking(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app")
    sqs = boto3.client("sqs")
    foreign = JobMessage(
        job_id="j-of-crash",
        session_hash="session000000001",
        api_name="crash",
        group="crash",
        shard=0,
        data=["x"],
        created_at=time.time(),
    ).model_dump_json()
    poison = ["not json at all", json.dumps({"job_id": "no-such-job"}), foreign]
    for body in poison:
        sqs.send_message(QueueUrl=settings.queue_url("fine"), MessageBody=body)
    with serving(settings, "fine"):
        result = outcome(settings, submit(settings, "fine", "still served"))
    assert result["output"]["data"] == ["still served"]
    dead = sqs.receive_message(QueueUrl=settings.dead_letter_queue_url("fine"), MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(poison)


def test_a_message_whose_job_is_gone_is_acknowledged_not_run(aws: None) -> None:
    """A job cancelled (or delivered and forgotten) before a worker took its message: the message is
    dropped, nothing runs, and nothing goes to the dead-letter queue."""
    settings = settings_for("tests.apps.faulty_app:app")
    store = Store(settings)
    cancelled = submit_job(settings, "fine", "cancelled")
    assert store.end_waiting(cancelled, JobState.CANCELLED, {"msg": "process_completed", "event_id": "x"})
    gone = JobMessage(
        job_id="never-admitted",
        session_hash="session000000001",
        api_name="fine",
        group="fine",
        shard=0,
        data=["x"],
        created_at=time.time(),
    )
    boto3.client("sqs").send_message(QueueUrl=settings.queue_url("fine"), MessageBody=gone.model_dump_json())
    with serving(settings, "fine"):
        assert outcome(settings, submit(settings, "fine", "after"))["output"]["data"] == ["after"]
        deadline = time.monotonic() + 10
        while queue_depth(settings, settings.queue_url("fine")) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert queue_depth(settings, settings.queue_url("fine")) == 0
    assert queue_depth(settings, settings.dead_letter_queue_url("fine")) == 0
    job = store.get_job("session000000001", cancelled.job_id)
    assert job is not None and job.state is JobState.CANCELLED and job.started_at is None
    assert store.get_job("session000000001", "never-admitted") is None
    assert store.counters().waiting == 0


def test_a_message_delivered_twice_runs_its_job_once(aws: None) -> None:
    settings = settings_for("examples.demo_app:app")
    job = submit_job(settings, "trim_words", "hello", 2)
    Broker(settings).send(job)  # SQS delivers a standard queue's message at least once
    with serving(settings, "trim_words"):
        result = outcome(settings, job.job_id)
        deadline = time.monotonic() + 10
        while queue_depth(settings, settings.queue_url("trim_words")) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert result["output"]["data"] == ["he"]
    done = Store(settings).get_job("session000000001", job.job_id)
    assert done is not None and (done.state, done.attempt) == (JobState.COMPLETED, 1)
    assert queue_depth(settings, settings.queue_url("trim_words")) == 0
    assert Store(settings).counters().waiting == 0


def test_a_claimed_job_is_running_with_its_start_time_then_completed(aws: None) -> None:
    """No `process_starts` is written by the worker: the claim sets the job running with `started_at`,
    from which the stream makes `process_starts`; the generator's messages and the final one follow."""
    settings = settings_for("examples.demo_app:app")
    store = Store(settings)
    job = submit_job(settings, "stream_tokens", "one two three")
    seen_running: list[Job] = []
    with serving(settings, "stream_tokens"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            current = store.get_job("session000000001", job.job_id)
            assert current is not None
            if current.state is JobState.RUNNING:
                seen_running.append(current)
            if current.result is not None:
                break
            time.sleep(0.01)
        done = finished_job(settings, job.job_id)
    assert seen_running, "the job was seen running before it completed"
    assert all(j.started_at is not None and j.worker_id for j in seen_running)
    assert done.state is JobState.COMPLETED and done.started_at is not None
    assert done.started_at >= job.created_at
    assert [c["msg"] for c in done.chunks] == ["process_generating"] * 4
    assert done.result is not None and done.result["success"] is True
    assert done.result["output"]["data"] == ["one two three"]
    assert any(j.progress is not None and j.progress["msg"] == "progress" for j in seen_running)


def test_the_batch_record_carries_the_whole_cycle_claim_to_results_for_the_fronts_eta(aws: None) -> None:
    """A visitor waits for the claim and the recording as well as the run: the statistics the front's
    ETA and stream timing read say how long a batch takes from claim to results, from the first batch."""
    settings = settings_for("examples.demo_app:app")
    store = Store(settings)
    job = submit_job(settings, "sim_gpu", "x")
    with serving(settings, "sim_gpu") as worker:
        finished_job(settings, job.job_id)
        deadline = time.monotonic() + 5
        while store.stats("sim_gpu").avg_cycle_s is None and time.monotonic() < deadline:
            time.sleep(0.05)
    stats = store.stats("sim_gpu")
    assert stats.avg_batch_s is not None and stats.avg_cycle_s is not None
    assert stats.avg_cycle_s > stats.avg_batch_s
    assert stats.avg_cycle_s == worker.avg_cycle_s


def test_a_job_abandoned_more_than_max_attempts_times_fails_with_a_clear_message(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app", max_attempts=1)
    store = Store(settings)
    event_id = submit(settings, "fine", "cursed")
    job = store.get_job("session000000001", event_id)
    assert job is not None
    assert [j.job_id for j in store.claim([job], "a-dead-worker").claimed] == [event_id]
    with serving(settings, "fine"):
        result = outcome(settings, event_id)
    assert result["output"]["error"] == ("Gave up after 1 attempt(s): the worker running this job stopped each time.")
    assert store.get_job("session000000001", event_id).state is JobState.FAILED  # type: ignore[union-attr]
    assert store.counters().waiting == 0


def test_an_acknowledgement_sqs_refuses_in_part_is_sent_again_or_said(aws: None, caplog: Any) -> None:
    """SQS answers a batch call 200 even where entries failed: a handle no longer valid is logged with
    SQS's reason (it was dropped without a word), and entries failed on SQS's side are sent again."""
    import logging

    from surge.broker import Delivery

    settings = settings_for("examples.demo_app:app")
    broker = Broker(settings)
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=settings.queue_url("echo"), MessageBody="{}")
    (good,) = broker.receive("echo", 1, 0)
    stale = Delivery(message_id="m", receipt_handle="not-a-handle", body="{}", receive_count=1)
    with caplog.at_level(logging.WARNING, logger="surge.broker"):
        broker.delete("echo", [good, stale])
    assert (
        sqs.get_queue_attributes(QueueUrl=settings.queue_url("echo"), AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessagesNotVisible"
        ]
        == "0"
    ), "the valid entry was deleted"
    assert "ReceiptHandleIsInvalid" in caplog.text

    sent: list[list[str]] = []

    def flaky(QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        sent.append([e["Id"] for e in Entries])
        if len(sent) == 1:
            return {
                "Failed": [
                    {"Id": "0", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"},
                    {"Id": "1", "SenderFault": False, "Code": "InternalError"},
                ]
            }
        return {}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="surge.broker"):
        broker._each_batch("echo", "Acknowledging", flaky, [good, good, good], {})
    assert sent == [["0", "1", "2"], ["1"]], "only SQS's own failure is sent again"
    assert "ReceiptHandleIsInvalid" in caplog.text, "the refused entry is said, though the retry succeeded"
