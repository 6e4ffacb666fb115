"""max_size, max_wait_s, cancel and bad input against the real stack (moto server, uvicorn, workers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import QueueError

from surge.deadletter import DEAD_LETTER_MESSAGE
from surge_local.launcher import LOCAL_TUNING, LocalStack, free_port
from tests.apps.timing_app import release
from tests.crossprocess.helpers import counters, join, messages, new_session, queue_depth, records, wait_until

pytestmark = pytest.mark.crossprocess


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def queue_stack(record_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack("tests.apps.queue_app:app", port=free_port(), extra_env={"RECORD_DIR": str(record_dir)})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def idle_stack() -> Iterator[LocalStack]:
    """max_size=20, max_wait_s=1, and no workers: nothing ever leaves the queue."""
    stack = LocalStack("tests.apps.wait_app:app", port=free_port(), workers=0).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_full_queue_raises_queue_error_and_answers_503_with_gradios_message(
    queue_stack: LocalStack, record_dir: Path
) -> None:
    client = Client(queue_stack.url, verbose=False)
    running = client.submit(-1, "running", api_name="/slow")  # held until released below
    assert wait_until(lambda: counters(queue_stack).waiting == 0 and running.status().code.name == "PROCESSING", 15)
    waiting = [client.submit(0.1, f"waiting{i}", api_name="/slow") for i in range(2)]
    assert wait_until(lambda: counters(queue_stack).waiting == 2, 10)

    response = join(queue_stack, new_session(), "slow", [0.1, "refused"])
    assert response.status_code == 503
    assert response.json() == {"detail": "Queue is full. Max size is 2 and size is 2."}
    assert int(response.headers["Retry-After"]) >= 1
    with pytest.raises(QueueError):
        client.submit(0.1, "refused too", api_name="/slow").result()

    release(record_dir, "running")
    assert running.result() == "running"
    assert [job.result() for job in waiting] == ["waiting0", "waiting1"]
    assert wait_until(lambda: counters(queue_stack).waiting == 0, 10)


def test_cancel_of_a_waiting_job_frees_its_place_and_it_never_runs(queue_stack: LocalStack, record_dir: Path) -> None:
    client = Client(queue_stack.url, verbose=False)
    running = client.submit(-1, "blocker", api_name="/slow")  # held until released below
    assert wait_until(lambda: running.status().code.name == "PROCESSING", 15)
    doomed = client.submit(0.1, "doomed", api_name="/slow")
    assert wait_until(lambda: counters(queue_stack).waiting == 1, 10)

    assert doomed.cancel()
    assert wait_until(lambda: counters(queue_stack).waiting == 0, 10)
    release(record_dir, "blocker")
    assert running.result() == "blocker"
    assert client.predict(0.1, "after", api_name="/slow") == "after"
    assert "doomed" not in [r["tag"] for r in records(record_dir, "slow")]
    # The cancelled job's message is settled unrun; finished ones are acknowledged within ACK_WITHIN_S.
    assert wait_until(lambda: queue_depth(queue_stack, "slow") == (0, 0), 5)


def test_one_session_cannot_cancel_another_sessions_job(queue_stack: LocalStack) -> None:
    owner = new_session()
    event_id = join(queue_stack, owner, "slow", [0.1, "mine"]).json()["event_id"]
    response = httpx.post(
        f"{queue_stack.url}/gradio_api/cancel",
        json={"session_hash": new_session(), "event_id": event_id, "fn_index": 0},
    )
    assert response.status_code == 404


def test_join_whose_eta_exceeds_max_wait_is_refused_up_front_with_the_expected_wait(idle_stack: LocalStack) -> None:
    session = new_session()
    # eta_hint_s=0.4 and one slot: ranks 0, 1, 2 expect 0.4, 1.0 and 1.4 s (with jobs ahead, the busy slot
    # frees after half a run on average).
    statuses = [join(idle_stack, session, "wait", [0.1]) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 503]
    refused = statuses[2]
    assert (
        refused.json()["detail"] == "The expected wait is 1.4 s, over this app's limit of 1 s: please try again later."
    )
    assert "Retry-After" in refused.headers
    assert counters(idle_stack).waiting == 2
    assert queue_depth(idle_stack, "wait") == (2, 0)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 422, None),
        (b'{"data": [1], "fn_index": 7, "session_hash": "abcdefgh12345678"}', 404, "No function with fn_index 7"),
        (b'{"data": [], "fn_index": 0, "session_hash": "abcdefgh12345678"}', 400, "wait takes 1 input(s), got 0."),
        (b'{"data": [1], "fn_index": 0}', 400, "Session hash not found."),
        (b'{"data": ["x"], "fn_index": 0, "session_hash": "abcdefgh12345678"}', 400, "Input 'seconds' of wait must be"),
        (b'{"data": [1], "fn_index": 0, "session_hash": "a b"}', 422, None),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_leaves_no_trace(
    idle_stack: LocalStack, body: bytes, status: int, detail: str | None
) -> None:
    before = counters(idle_stack), queue_depth(idle_stack, "wait")
    response = httpx.post(
        f"{idle_stack.url}/gradio_api/queue/join", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    if detail:
        assert detail in response.json()["detail"]
    assert (counters(idle_stack), queue_depth(idle_stack, "wait")) == before


def test_a_job_sqs_gives_up_on_fails_with_a_message_its_client_reads(idle_stack: LocalStack) -> None:
    """Received and never finished until the queue's maxReceiveCount (a worker that dies on it each
    time), the job's message moves to the dead-letter queue; the local stack then fails the job as
    DeadLetterFunction does on AWS, instead of leaving its client waiting for ever."""
    assert idle_stack.settings is not None
    waiting = counters(idle_stack).waiting
    session = new_session()
    event_id = join(idle_stack, session, "instant", [1]).json()["event_id"]
    sqs, url = idle_stack.client("sqs"), idle_stack.settings.queue_url("instant")
    receives = 0
    while receives <= 10:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=0, WaitTimeSeconds=0)
        if not got.get("Messages"):
            break  # past maxReceiveCount: SQS moved it to the dead-letter queue on this receive
        receives += 1
    assert receives == idle_stack.settings.max_attempts + 2, "the local queue's maxReceiveCount"

    completed = [m for m in messages(idle_stack, session, timeout_s=30) if m["msg"] == "process_completed"]
    assert [(m["event_id"], m["success"]) for m in completed] == [(event_id, False)]
    assert completed[0]["output"]["error"] == DEAD_LETTER_MESSAGE
    assert wait_until(lambda: counters(idle_stack).waiting == waiting, 10), "its place in the queue is given back"
    assert queue_depth(idle_stack, "instant") == (0, 0)


def _settled_waiting(stack: LocalStack) -> int:
    """The waiting count once no earlier test's dropped session can still be released (a grace period
    with no change): a release during a burst would leave a place the burst had already been refused."""
    quiet_s = float(LOCAL_TUNING["session_grace_s"]) + 1.0
    seen, since = counters(stack).waiting, time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.25)
        now = counters(stack).waiting
        if now != seen:
            seen, since = now, time.monotonic()
    return seen


def test_concurrent_joins_never_overshoot_max_size(idle_stack: LocalStack) -> None:
    already = _settled_waiting(idle_stack)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=idle_stack.url, timeout=60) as http:
            bodies = [{"data": [0.0], "fn_index": 1, "session_hash": new_session()} for _ in range(150)]
            return await asyncio.gather(*(http.post("/gradio_api/queue/join", json=b) for b in bodies))

    responses = asyncio.run(burst())
    admitted = [r.status_code for r in responses].count(200)
    refusals = {r.json()["detail"] for r in responses if r.status_code != 200}
    assert refusals == {"Queue is full. Max size is 20 and size is 20."}
    assert admitted + already == 20
    assert counters(idle_stack).waiting == 20
    assert queue_depth(idle_stack, "instant") == (admitted, 0)
