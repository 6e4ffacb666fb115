"""The front's protections, in-process against moto: body limit, rate limit, CORS, session isolation."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from surge import protocol
from surge.application import load_app
from surge.broker import Broker
from surge.front import _alive_for, create_local_app, session_hub
from surge.models import Caller, Job, JobState, JoinBody
from surge.service import FrontService
from surge.session import PollPolicy, SessionStream
from surge.settings import Settings
from surge.store import Completion, Store
from tests.integration.conftest import settings_for

JOIN = "/gradio_api/queue/join"


def front(settings: Settings) -> tuple[FrontService, TestClient]:
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    return service, TestClient(create_local_app(service))


def join_body(text: str) -> dict[str, object]:
    return {"data": [text], "fn_index": 0, "session_hash": secrets.token_hex(16)}


def test_a_body_over_the_limit_gets_413_naming_the_limit_and_changes_nothing(aws: None) -> None:
    service, client = front(settings_for("examples.demo_app:app", max_payload_bytes=1000))
    response = client.post("/gradio_api/queue/join", json=join_body("x" * 20_000))
    assert response.status_code == 413
    assert response.json() == {
        "detail": "Request body is over the limit of 5096 bytes "
        "(MAX_PAYLOAD_BYTES, 1000, for the inputs and 4096 for the rest of the request)."
    }
    inputs_over = client.post("/gradio_api/queue/join", json=join_body("x" * 2_000))
    assert inputs_over.status_code == 413 and "the limit is 1000 bytes" in inputs_over.json()["detail"]
    # Chunked, with no length to refuse it by up front: the limit trips while the body is read (it was
    # answered 400 "There was an error parsing the body").
    body = json.dumps(join_body("x" * 20_000)).encode()
    for path in ("/gradio_api/queue/join", "/gradio_api/call/echo"):
        chunked = iter([body[i : i + 4096] for i in range(0, len(body), 4096)])
        response = client.post(path, content=chunked, headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["detail"].startswith("Request body is over the limit")
    assert service.store.counters().waiting == 0


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("route", "body", "refusal"),
    [
        (JOIN, {"data": ["\ud800"], "fn_index": 0}, "valid Unicode text"),
        ("/gradio_api/call/echo", {"data": ["a\udfffb"]}, "valid Unicode text"),
        ("/gradio_api/run/echo", {"data": ["\ud800"]}, "valid Unicode text"),
        ("/gradio_api/call/v2/echo", {"text": "\ud800"}, "valid Unicode text"),
        (JOIN, {"data": ["x"], "fn_index": 0, "event_data": {"k": "\udfff"}}, "event_data must be valid Unicode"),
        (JOIN, {"data": [_nested(150)], "fn_index": 0}, "more than 100 levels deep"),
        ("/gradio_api/run/echo", {"data": [_nested(256)]}, "more than 100 levels deep"),
        (JOIN, {"data": ["x"], "fn_index": 0, "event_data": _nested(120)}, "more than 100 levels deep"),
    ],
    ids=["join surrogate", "call", "run", "call v2", "event data", "join deep", "run 256 deep", "event data deep"],
)
def test_inputs_no_queue_message_can_carry_are_refused_and_change_nothing(
    aws: None, route: str, body: dict[str, Any], refusal: str
) -> None:
    """A lone surrogate (`"\\ud800"`, valid JSON, no valid text) or inputs nested past what a worker's
    parser reads: the job was counted, then its message failed (500) or was dead-lettered unread, and it
    held a place of `max_size` for good: 50 such requests filled a queue of 50. Refused before counting."""
    service, client = front(settings_for("examples.demo_app:app"))
    session = {"session_hash": secrets.token_hex(16)} if route == JOIN else {}
    text = json.dumps({**body, **session})  # escapes kept as JSON escapes
    response = client.post(route, content=text, headers={"content-type": "application/json"})
    assert response.status_code == 400 and refusal in response.json()["detail"], response.text
    assert service.store.counters().waiting == 0
    fine = client.post(JOIN, json={**join_body("x"), "event_data": _nested(100)})
    assert fine.status_code == 200, "within the bound, the job is taken"


def test_a_number_json_cannot_carry_gets_422_naming_the_field_not_a_500(aws: None) -> None:
    """`NaN` (Python's parser takes it) in a field FastAPI validates: its 422 echoed the input, and the
    answer failed to encode (500 "Internal error")."""
    service, client = front(settings_for("examples.demo_app:app"))
    body = '{"data": ["x"], "fn_index": NaN, "session_hash": "' + secrets.token_hex(16) + '"}'
    response = client.post(JOIN, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "fn_index"]]
    surrogate = '{"data": ["x"], "fn_index": 0, "session_hash": "\\ud800abcdefgh"}'
    response = client.post(JOIN, content=surrogate, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert service.store.counters().waiting == 0


def test_a_message_that_cannot_be_sent_undoes_its_admission(aws: None) -> None:
    """Any failure of the send, not only AWS's, leaves no job counted without a message."""

    class Refusing(Broker):
        def send(self, job: Job) -> None:
            raise TypeError("cannot encode")

    settings = settings_for("examples.demo_app:app")
    store = Store(settings)
    service = FrontService(load_app(settings.app_module), settings, store, Refusing(settings))
    session = secrets.token_hex(16)
    with pytest.raises(TypeError):
        service.join(JoinBody(data=["x"], fn_index=0, session_hash=session))
    assert store.counters().waiting == 0
    (failed,) = store.read_session(session)
    assert failed.state is JobState.FAILED


def test_a_client_joining_too_fast_gets_429_with_retry_after(aws: None) -> None:
    # One token per 5 s: a loaded machine taking a second over these joins must not refill one.
    _, client = front(settings_for("examples.demo_app:app", join_rate_per_s=0.2, join_burst=3))
    codes = [client.post("/gradio_api/queue/join", json=join_body("hi")).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    spoofed = client.post("/gradio_api/queue/join", json=join_body("hi"), headers={"x-forwarded-for": "10.0.0.9"})
    assert spoofed.status_code == 429, "a forwarded-for header the client wrote buys no new budget"
    response = client.post("/gradio_api/queue/join", json=join_body("hi"))
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


def test_a_session_hash_as_the_javascript_client_draws_it_is_taken_and_a_shorter_one_refused(aws: None) -> None:
    """@gradio/client picks `Math.random().toString(36).substring(2)`: about ten characters, as few as eight."""
    _, client = front(settings_for("examples.demo_app:app"))
    for session, status in (("k3j9x0a1b2", 200), ("abcd1234", 200), ("abc1234", 422), ("abc-12345+", 422)):
        body = {"data": ["hi"], "fn_index": 0, "session_hash": session}
        assert client.post("/gradio_api/queue/join", json=body).status_code == status, session
    assert client.get("/gradio_api/queue/data", params={"session_hash": "abc1234"}).status_code == 422


def test_cors_allows_the_configured_origins_only(aws: None) -> None:
    _, client = front(settings_for("examples.demo_app:app", cors_allow_origins="https://demo.example"))
    allowed = client.options(
        "/gradio_api/queue/join",
        headers={"Origin": "https://demo.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.headers.get("access-control-allow-origin") == "https://demo.example"
    other = client.get("/config", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_session_never_reads_another_sessions_events(aws: None) -> None:
    settings = settings_for("examples.demo_app:app")
    service, _ = front(settings)
    owner = secrets.token_hex(16)
    job = service.join(JoinBody(data=["secret"], fn_index=0, session_hash=owner))
    hub = session_hub(service)

    async def read(session: str) -> list[dict[str, object]]:
        stream = SessionStream(hub, session, PollPolicy(empty_session_s=0.3, max_s=0.05))
        return [message async for message in stream.messages()]

    stranger = asyncio.run(read(secrets.token_hex(16)))
    assert stranger == [{"msg": "close_stream", "event_id": None}]
    client = TestClient(create_local_app(service))
    unknown = client.post("/gradio_api/cancel", json={"session_hash": secrets.token_hex(16), "event_id": "0" * 32})
    assert unknown.status_code == 404
    theirs = client.post("/gradio_api/cancel", json={"session_hash": secrets.token_hex(16), "event_id": job.job_id})
    assert theirs.status_code == 404, "a session cannot cancel another session's job"
    still = service.store.get_job(owner, job.job_id)
    assert still is not None and still.state is JobState.WAITING
    assert service.store.counters().waiting == 1
    own = client.post("/gradio_api/cancel", json={"session_hash": owner, "event_id": job.job_id})
    assert (own.status_code, own.json()) == (200, {"success": True})
    assert service.store.counters().waiting == 0


def test_the_heartbeat_stream_ends_at_the_stream_bound(aws: None) -> None:
    _, client = front(settings_for("examples.demo_app:app", stream_max_s=0.3, heartbeat_interval_s=0.1))
    with client.stream("GET", f"/gradio_api/heartbeat/{secrets.token_hex(16)}") as response:
        body = "".join(response.iter_text())
    assert response.status_code == 200
    assert "ALIVE" in body


def test_the_heartbeat_stream_says_alive_at_once_as_gradios() -> None:
    """Gradio's heartbeat sends `ALIVE` as it opens; Surge's said nothing until its first ping (15 s)."""

    async def first() -> Any:
        return await asyncio.wait_for(anext(_alive_for(600)), 5)

    assert asyncio.run(first()) == "ALIVE"


def test_a_stream_at_its_bound_tells_each_pending_job_why_frees_the_waiting_one_and_closes(aws: None) -> None:
    """No Gradio client reconnects a data stream: at `STREAM_MAX_S` (under Lambda's 15 minutes) a job
    the client still waits for gets an error naming the limit, never a silent end or a cancellation.
    The running job is asked to stop, and its end is never sent again: the session's next stream sent
    a second completion for it once its worker recorded one."""
    service, _ = front(settings_for("examples.demo_app:app", stream_max_s=1.0))
    session = secrets.token_hex(16)
    running = service.join(JoinBody(data=["slow"], fn_index=0, session_hash=session))
    waiting = service.join(JoinBody(data=["behind"], fn_index=0, session_hash=session))
    (claimed,) = service.store.claim([running], "worker-1").claimed
    hub = session_hub(service)

    async def read() -> list[dict[str, object]]:
        stream = SessionStream(hub, session, PollPolicy(max_s=0.05))
        return [message async for message in stream.messages()]

    messages = asyncio.run(read())
    assert messages[-1] == {"msg": "close_stream", "event_id": None}
    ends = {m["event_id"]: m for m in messages if m["msg"] == "process_completed"}
    assert set(ends) == {running.job_id, waiting.job_id}
    assert all(end["success"] is False for end in ends.values())
    assert "still running at the 1 s limit of one connection (STREAM_MAX_S)" in str(ends[running.job_id]["output"])
    assert "before the job started, so it was cancelled" in str(ends[waiting.job_id]["output"])
    assert service.store.counters().waiting == 0, "the waiting job's place went to the next"
    assert service.store.claim([waiting], "worker-1").claimed == [], "the cancelled job never runs"
    still = service.store.get_job(session, running.job_id)
    assert still is not None and still.state is JobState.RUNNING, "a running job's item is left to its worker"
    assert still.cancel_requested, "nobody will receive its result: its worker is asked to stop it"
    late = protocol.completed(running.job_id, ["late"], 0.01, None)
    assert service.store.finish([Completion(claimed, JobState.COMPLETED, late)], held=False) == [running.job_id]
    after = service.join(JoinBody(data=["next"], fn_index=0, session_hash=session))  # the visitor tries again
    (next_run,) = service.store.claim([after], "worker-1").claimed
    done = protocol.completed(after.job_id, ["next"], 0.01, None)
    assert service.store.finish([Completion(next_run, JobState.COMPLETED, done)], held=False) == [after.job_id]
    again = asyncio.run(read())
    assert [m["msg"] for m in again if m.get("event_id") == running.job_id] == [], "its end went once"
    assert [m["msg"] for m in again if m.get("event_id") == after.job_id][-1] == "process_completed"
    assert again[-1] == {"msg": "close_stream", "event_id": None}


def test_joins_waiting_for_their_turn_leave_the_streams_threads_free(aws: None) -> None:
    """A crowd's joins take turns on threads of their own (`join_threads`): while every turn is taken
    and more joins wait, a stream still reads its session and answers, and `/config` still answers.
    Before, joins ran on the process's one pool: a crowd of them held every thread, and the streams of
    admitted jobs could not read their sessions (at 1,000 users, results went undelivered for seconds)."""
    settings = settings_for("examples.demo_app:app", thread_pool_size=2, join_threads=1)
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    held, entered = threading.Event(), threading.Event()
    admit = service.join

    def join_held(body: JoinBody, caller: Caller | None = None) -> Job:
        entered.set()
        held.wait(30)
        return admit(body, caller)

    service.join = join_held  # type: ignore[method-assign]
    with TestClient(create_local_app(service, PollPolicy(empty_session_s=0.3))) as client:
        joins = [
            threading.Thread(target=lambda: codes.append(client.post(JOIN, json=join_body("hi")).status_code))
            for _ in range(3)
        ]
        codes: list[int] = []
        for join in joins:
            join.start()
        assert entered.wait(10), "a join holds the only turn"
        time.sleep(0.5)  # and the other two wait for it (on the previous front: both pool threads taken)
        stream: list[str] = []
        reader = threading.Thread(
            target=lambda: stream.append(
                client.get("/gradio_api/queue/data", params={"session_hash": secrets.token_hex(16)}).text
            )
        )
        reader.start()
        reader.join(20)
        answered_while_held = not held.is_set() and bool(stream)
        config = client.get("/config").status_code
        held.set()
        for join in joins:
            join.join(30)
    assert answered_while_held, "the stream read its session and closed while every join turn was taken"
    assert "close_stream" in stream[0]
    assert config == 200
    assert codes == [200, 200, 200], "the held joins are admitted once they get their turn"
    assert service.store.counters().waiting == 3


def test_queue_status_says_how_many_wait_as_gradios_does(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio serves `GET /gradio_api/queue/status` (an estimation with the queue's size); Surge had no
    such route, and a monitor polling it got a 404."""
    from gradio.server_messages import EstimationMessage

    monkeypatch.setattr("surge.front.QUEUE_STATUS_FRESH_S", 0.0)  # no reuse of the counters read
    _, client = front(settings_for("examples.demo_app:app"))
    assert client.get("/gradio_api/queue/status").json() == EstimationMessage(queue_size=0).model_dump(mode="json")
    for text in ("a", "b", "c"):
        assert client.post("/gradio_api/queue/join", json=join_body(text)).status_code == 200
    assert client.get("/gradio_api/queue/status").json() == EstimationMessage(queue_size=3).model_dump(mode="json")
