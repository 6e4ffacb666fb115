"""The operator view's data and the pages router, on DynamoDB and SQS through moto in-process."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from surge.application import App
from surge.broker import Broker
from surge.eta import slots_for
from surge.front import create_api_app
from surge.models import FunctionStats, JoinBody
from surge.service import FrontService
from surge.settings import Settings
from surge.status import StatusBoard
from surge.store import BatchRecord, Store
from surge.wiring import build_front
from surge.worker import Worker
from surge_local.provision import provision
from tests.apps import pages_app


@pytest.fixture
def settings() -> Iterator[Settings]:
    with mock_aws():
        resources = provision(pages_app.app)
        yield Settings(app_module="tests.apps.pages_app:app", **vars(resources))


@pytest.fixture
def service(settings: Settings) -> FrontService:
    return build_front(settings)


def _join(service: FrontService, api_name: str, text: str = "x") -> str:
    function = service.app.get(api_name)
    data: list[object] = [text] * len(function.inputs)
    return service.join(JoinBody(data=data, api_name=api_name, session_hash="session-" + "a" * 16)).job_id


def _batch(size: int, failed: int, duration_s: float, worker_id: str) -> BatchRecord:
    return BatchRecord(time.time(), size, failed, duration_s, worker_id)


def test_store_batch_log_returns_latest_batches_oldest_first(settings: Settings) -> None:
    store = Store(settings)
    for size in range(1, 6):
        stats = FunctionStats(avg_batch_s=0.1 * size, avg_batch_size=float(size), batches=size)
        store.record_batch("batched", _batch(size, size % 2, 0.1 * size, "w1"), stats)
    store.record_batch(
        "slow_echo",
        _batch(9, 0, 1.0, "w2"),
        FunctionStats(avg_batch_s=1.0, avg_batch_size=9, batches=1, avg_cycle_s=1.25),
    )

    recent = store.recent_batches("batched", limit=3)

    assert [b.size for b in recent] == [3, 4, 5]
    assert [b.failed for b in recent] == [1, 0, 1]
    assert recent[-1].duration_s == pytest.approx(0.5)
    assert recent[0].finished_at <= recent[-1].finished_at <= time.time()
    # The newest batch record carries the worker's smoothed statistics, which the ETA reads.
    assert store.stats("batched") == FunctionStats(avg_batch_s=0.5, avg_batch_size=5.0, batches=5)
    assert store.stats("slow_echo").avg_batch_s == pytest.approx(1.0)
    assert store.stats("slow_echo").cycle_s == pytest.approx(1.25)
    assert store.stats("held") == FunctionStats()


def test_store_depth_sample_is_written_once_per_bucket(settings: Settings, service: FrontService) -> None:
    store = Store(settings)
    _join(service, "held")
    _join(service, "held")
    _join(service, "slow_echo")
    counters = store.counters()

    first = store.sample_depth(counters, every_s=3600)
    second = store.sample_depth(counters, every_s=3600)
    history = store.depth_history(time.time() - 7200)

    assert (first, second) == (True, False)
    assert len(history) == 1
    assert history[0].waiting == 3
    assert history[0].groups == {"held": 2, "slow_echo": 1}


def test_status_snapshot_counts_waiting_running_workers_and_eta(settings: Settings, service: FrontService) -> None:
    store = Store(settings)
    for _ in range(3):
        _join(service, "slow_echo")
    _join(service, "batched")
    store.worker_alive("slow_echo", "slow-w1", 30, 1)
    store.worker_alive("batched", "batched-w1", 30, 2)
    store.worker_alive("batched", "batched-w2", 30, 1)
    assert store.acquire_lease("slow_echo", 1, "slow-w1") == 0
    store.record_batch("slow_echo", _batch(1, 0, 2.0, "slow-w1"), FunctionStats(avg_batch_s=2.0, avg_batch_size=1.0))

    snapshot = StatusBoard(service.app, store).snapshot()

    assert (snapshot.waiting, snapshot.max_size) == (4, pages_app.MAX_SIZE)
    slow = next(f for f in snapshot.functions if f.api_name == "slow_echo")
    assert (slow.waiting, slow.running, slow.concurrency_limit) == (3, 1, 1)
    assert [w.worker_id for w in slow.workers] == ["slow-w1"]
    # A new arrival has 3 ahead, one at a time, 2 s each, plus its own run, and half of the running one.
    assert slow.eta_new_s == pytest.approx(9.0)
    assert [(b.size, b.duration_s) for b in slow.recent_batches] == [(1, 2.0)]
    batched = next(f for f in snapshot.functions if f.api_name == "batched")
    assert (batched.waiting, batched.running, batched.slots) == (1, 0, 1)
    assert len(batched.workers) == 2
    assert snapshot.depth_history[-1].waiting == 4


def test_status_shows_a_function_whose_workers_cannot_start_until_one_starts(
    settings: Settings, service: FrontService
) -> None:
    """The operator saw "Live workers 0" and nothing of why; visitors were told (`worker_main.started`)."""
    store = Store(settings)
    store.record_start_failure("slow_echo", RuntimeError("the weights at /models/x.bin are missing"))

    slow = next(f for f in StatusBoard(service.app, store).snapshot().functions if f.api_name == "slow_echo")
    assert slow.cannot_start == (
        "The workers of slow_echo could not start (loading the app raised RuntimeError); please try again later."
    )
    store.worker_alive("slow_echo", "slow-w1", 30, 1)
    slow = next(f for f in StatusBoard(service.app, store).snapshot().functions if f.api_name == "slow_echo")
    assert slow.cannot_start is None, "a live worker serves its jobs"
    store.clear_start_failure("slow_echo")
    assert store.fleet("slow_echo").start_failure is None


def test_status_snapshot_reports_no_running_count_for_unlimited_group(settings: Settings) -> None:
    app = App(title="unlimited", max_size=None, default_concurrency_limit=None)

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def free(text: str) -> str:
        return text

    provision(app)
    snapshot = StatusBoard(app, Store(settings)).snapshot()

    assert snapshot.max_size is None
    assert (snapshot.functions[0].running, snapshot.functions[0].concurrency_limit) == (None, None)


def test_status_snapshot_is_cached_briefly(settings: Settings, service: FrontService) -> None:
    board = StatusBoard(service.app, Store(settings), cache_s=60)
    before = board.snapshot()
    _join(service, "held")

    assert board.snapshot() is before
    assert StatusBoard(service.app, Store(settings), cache_s=0).snapshot().waiting == 1


def test_slots_follow_live_workers_capped_by_limit() -> None:
    assert slots_for({}, None) == 1
    assert slots_for({}, 3) == 3
    assert slots_for({"a": 2, "b": 2}, 3) == 3
    assert slots_for({"a": 2, "b": 2}, None) == 4


def test_worker_logs_each_batch_with_its_failures(settings: Settings, service: FrontService) -> None:
    """A worker logs the batch it ran, counting the jobs that failed (here: a division by zero)."""
    settings = settings.model_copy(update={"poll_wait_s": 1})
    store = Store(settings)
    service.join(JoinBody(data=[1, 0], api_name="divide", session_hash="s" * 16))
    worker = Worker(service.app, service.app.get("divide"), settings, store, Broker(settings), worker_id="divide-w")
    thread = threading.Thread(target=worker.serve)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not store.recent_batches("divide", 5) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=30)

    (batch,) = store.recent_batches("divide", 5)
    assert (batch.size, batch.failed, batch.worker_id) == (1, 1, "divide-w")
    assert batch.duration_s >= 0


def test_pages_router_serves_pages_assets_and_status_json(service: FrontService) -> None:
    client = TestClient(create_api_app(service))

    visitor = client.get("/")
    assert client.head("/").status_code == 200  # uptime monitors probe with HEAD
    operator = client.get("/status")
    snapshot = client.get("/gradio_api/surge/status")

    assert visitor.status_code == operator.status_code == snapshot.status_code == 200
    assert 'content="1000000"' in visitor.text
    assert "script-src 'self' 'sha256-" in visitor.headers["content-security-policy"]
    assert [f["api_name"] for f in snapshot.json()["functions"]] == [f.api_name for f in service.app.functions]
    for page in (visitor.text, operator.text):
        for url in re.findall(r'(?:src|href)="([^"]+)"', page):
            # Relative URLs only, so the pages work under an API Gateway stage path such as /Prod/.
            assert not url.startswith("/"), url
            if url.startswith("static/"):
                asset = client.get("/" + url)
                assert asset.status_code == 200
                assert asset.headers["content-type"].startswith(("text/css", "text/javascript"))
    assert client.get("/static/../pages.py").status_code == 404
    assert client.get("/static/nothing.js").status_code == 404


def test_pages_scripts_fetch_relative_urls_only() -> None:
    from surge.pages import STATIC_DIR

    for script in STATIC_DIR.glob("*.js"):
        text = script.read_text()
        urls = re.findall(r'(?:fetch|EventSource)\(\s*"([^"]*)', text)
        assert urls, script.name
        assert all(not url.startswith("/") for url in urls), (script.name, urls)
