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
from surge.models import JoinBody
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
    app = load_app(settings.app_module)
    service = FrontService(app, settings, Store(settings), Broker(settings))
    return service.join(JoinBody(data=list(data), api_name=api_name, session_hash=session))


def outcome(
    settings: Settings, event_id: str, session: str = "session000000001", timeout_s: float = 10
) -> dict[str, Any]:
    store = Store(settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event in store.read_events(session, "0"):
            if event.body["event_id"] == event_id and event.body["msg"] == "process_completed":
                return event.body
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
        for event in store.read_events(session, "0"):
            if event.body["msg"] == "process_completed":
                found[event.body["event_id"]] = event.body
        time.sleep(0.1)
    missing = [e for e in event_ids if e not in found]
    assert not missing, f"{len(missing)} jobs never completed"
    return [found[e] for e in event_ids]


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
    assert "not the batch size 1" in result["output"]["error"]


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
    sqs.send_message(QueueUrl=settings.queue_url("fine"), MessageBody="not json at all")
    sqs.send_message(QueueUrl=settings.queue_url("fine"), MessageBody=json.dumps({"job_id": "no-such-job"}))
    with serving(settings, "fine"):
        result = outcome(settings, submit(settings, "fine", "still served"))
    assert result["output"]["data"] == ["still served"]
    dead = sqs.receive_message(QueueUrl=settings.dead_letter_queue_url("fine"), MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(["not json at all", json.dumps({"job_id": "no-such-job"})])


def test_a_job_abandoned_more_than_max_attempts_times_fails_with_a_clear_message(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app", max_attempts=1)
    store = Store(settings)
    event_id = submit(settings, "fine", "cursed")
    job = store.get_job(event_id)
    assert job is not None
    store.claim([job], "a-dead-worker")
    with serving(settings, "fine"):
        result = outcome(settings, event_id)
    assert result["output"]["error"] == ("Gave up after 1 attempt(s): the worker running this job stopped each time.")
    assert store.counters().waiting == 0
