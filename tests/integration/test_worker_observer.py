"""What a worker tells its observer (the deployed edge publishes it as EMF metrics): every batch with
its size, run time and queue wait, and every failure with its reason."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from surge.application import load_app
from surge.broker import Broker
from surge.observer import Observer
from surge.settings import Settings
from surge.store import Store
from surge.worker import Worker
from tests.integration.conftest import settings_for
from tests.integration.test_worker import outcome, submit


class RecordingObserver(Observer):
    def __init__(self) -> None:
        self.batches: list[tuple[str, int, float, float]] = []
        self.failures: list[tuple[str, str]] = []

    def batch_ran(self, api_name: str, size: int, duration_s: float, queue_wait_s: float) -> None:
        self.batches.append((api_name, size, duration_s, queue_wait_s))

    def job_failed(self, api_name: str, reason: str) -> None:
        self.failures.append((api_name, reason))


@contextmanager
def observed(settings: Settings, api_name: str) -> Iterator[RecordingObserver]:
    app = load_app(settings.app_module)
    observer = RecordingObserver()
    worker = Worker(app, app.get(api_name), settings, Store(settings), Broker(settings), observer=observer)
    thread = threading.Thread(target=worker.serve)
    thread.start()
    try:
        yield observer
    finally:
        worker.stop()
        thread.join(timeout=10)


def test_worker_reports_each_batch_with_its_size_duration_and_wait(aws: None) -> None:
    settings = settings_for("examples.demo_app:app")
    ids = [submit(settings, "trim_words", word, 2) for word in ("alpha", "beta", "gamma")]
    with observed(settings, "trim_words") as observer:
        for event_id in ids:
            assert outcome(settings, event_id)["success"] is True
    assert sum(size for _, size, _, _ in observer.batches) == 3
    for api_name, size, duration_s, queue_wait_s in observer.batches:
        assert api_name == "trim_words" and size >= 1
        assert 0 <= duration_s < 5 and 0 <= queue_wait_s < 30
    assert observer.failures == []


def test_worker_reports_failures_with_their_reason(aws: None) -> None:
    settings = settings_for("tests.apps.faulty_app:app")
    with observed(settings, "crash") as crash:
        assert outcome(settings, submit(settings, "crash", "a"))["success"] is False
    with observed(settings, "hang") as hang:
        assert outcome(settings, submit(settings, "hang", 2.0))["success"] is False
    assert crash.failures == [("crash", "error")]
    assert hang.failures == [("hang", "time_limit")]
