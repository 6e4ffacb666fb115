"""Gradio's curl API (the page's "Use via API", bash), in-process against moto with a real worker loop:
`POST /gradio_api/call/<api_name>` answers an event id, `GET /gradio_api/call/<api_name>/<event_id>`
streams `event: generating` / `complete` / `error` frames with whole outputs, as Gradio sends them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
from fastapi.testclient import TestClient

from surge.application import load_app
from surge.broker import Broker
from surge.declared import declaration, load_declared
from surge.front import DIRECT_CALLS_CLOSED, create_local_app
from surge.service import FrontService
from surge.settings import Settings
from surge.store import Store
from tests.integration.conftest import settings_for
from tests.integration.test_worker import serving


def _events(body: str) -> list[tuple[str, str]]:
    return re.findall(r"event: (\w+)\r?\ndata: (.*)\r?\n", body)


def test_a_call_streams_whole_chunks_then_its_outputs_and_errors_are_gradios(aws: None) -> None:
    settings = settings_for("examples.demo_app:app", heartbeat_interval_s=30)
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    answer = client.post("/gradio_api/call/stream_tokens", json={"data": ["one two three"]})
    assert answer.status_code == 200 and list(answer.json()) == ["event_id"]
    event_id = answer.json()["event_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", event_id)
    with serving(settings, "stream_tokens"):
        body = client.get(f"/gradio_api/call/stream_tokens/{event_id}").text
    events = _events(body)
    assert events[-1] == ("complete", '["one two three"]')
    generating = [data for kind, data in events if kind == "generating"]
    assert generating[-2:] == ['["one two"]', '["one two three"]'], "each chunk whole, not a diff"
    assert {kind for kind, _ in events} == {"generating", "complete"}, "no rank, start or progress frames"

    failing = client.post("/gradio_api/call/trim_words", json={"data": ["word", -1]}).json()["event_id"]
    with serving(settings, "trim_words"):
        body = client.get(f"/gradio_api/call/trim_words/{failing}").text
    ((kind, data),) = _events(body)
    assert kind == "error" and '"error": "' in data
    assert service.store.counters().waiting == 0


def test_a_bad_call_is_refused_with_why_and_changes_nothing(aws: None) -> None:
    settings = settings_for("examples.demo_app:app")
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    unknown = client.post("/gradio_api/call/nosuch", json={"data": ["hi"]})
    assert unknown.status_code == 404 and unknown.json() == {"detail": "No function named 'nosuch'."}
    too_few = client.post("/gradio_api/call/echo", json={"data": []})
    assert too_few.status_code == 400 and too_few.json() == {"detail": "echo takes 1 input(s), got 0."}
    assert client.post("/gradio_api/call/echo", json={"inputs": ["hi"]}).status_code == 422
    unknown_name = client.post("/gradio_api/call/v2/echo", json={"txt": "hi"})
    assert unknown_name.status_code == 400 and "`txt` is not a valid key-word argument" in unknown_name.json()["detail"]
    assert client.post("/gradio_api/call/v2/echo", json={}).json() == {
        "detail": "No value provided for required argument: text"
    }
    assert client.post("/gradio_api/call/v2/nosuch", json={"text": "hi"}).status_code == 404
    assert client.get("/gradio_api/call/echo/not-an-id").status_code == 422
    assert service.store.counters().waiting == 0


def test_the_api_pages_curl_command_with_inputs_by_name_is_served(aws: None) -> None:
    """Gradio 6's "Use via API" page shows `POST /gradio_api/call/v2/<api_name>` with the inputs by name
    (`{"text": "hi"}`); Surge answered 404."""
    settings = settings_for("examples.demo_app:app", heartbeat_interval_s=30)
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    answer = client.post("/gradio_api/call/v2/echo", json={"text": "by name"})
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["event_id"]
    with serving(settings, "echo"):
        body = client.get(f"/gradio_api/call/echo/{event_id}").text
    assert _events(body)[-1] == ("complete", '["by name"]')


def test_a_stream_of_no_such_call_says_so_at_once_as_gradios(aws: None) -> None:
    """Gradio answers `event: error` / `data: "404: Not Found"`; Surge sent nothing for 10 s and closed."""
    settings = settings_for("examples.demo_app:app", heartbeat_interval_s=30)
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    body = client.get(f"/gradio_api/call/echo/{'0' * 32}").text
    assert _events(body) == [("error", '"404: Not Found"')]
    event_id = client.post("/gradio_api/call/echo", json={"data": ["once"]}).json()["event_id"]
    with serving(settings, "echo"):
        assert _events(client.get(f"/gradio_api/call/echo/{event_id}").text)[-1] == ("complete", '["once"]')
    assert _events(client.get(f"/gradio_api/call/echo/{event_id}").text) == [("error", '"404: Not Found"')]


def _run_items(settings: Settings) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(settings.events_table_name)
    return [item for item in table.scan()["Items"] if str(item["session_hash"]).startswith("run-")]


def test_a_direct_call_answers_the_output_as_gradios_run_route_does(aws: None) -> None:
    """`POST /gradio_api/run/<api_name>` (the REST call of many scripts): the answer is the output itself,
    with Gradio's keys; an error is HTTP 500 with Gradio's error body; `fn_index` names the event as in
    Gradio; `/api/<api_name>` is the same route."""
    settings = settings_for("examples.demo_app:app")
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    with serving(settings, "echo"):
        answer = client.post("/gradio_api/run/echo", json={"data": ["hello"]})
        assert answer.status_code == 200
        body = answer.json()
        assert body["data"] == ["hello"] and body["is_generating"] is False
        assert {"duration", "average_duration", "render_config", "changed_state_ids", "used_cache"} <= set(body)
        echo_index = service.app.get("echo").fn_index
        by_index = client.post("/gradio_api/run/predict", json={"data": ["by index"], "fn_index": echo_index})
        assert by_index.json()["data"] == ["by index"]
        assert client.post("/gradio_api/api/echo", json={"data": ["old path"]}).json()["data"] == ["old path"]
        # An input past those the function takes is left out, as Gradio leaves it (refused, an old script
        # that passed one more stopped working).
        assert client.post("/gradio_api/run/echo", json={"data": ["a", "b"]}).json()["data"] == ["a"]
    with serving(settings, "trim_words"):
        failed = client.post("/gradio_api/run/trim_words", json={"data": ["word", -1]})
    assert failed.status_code == 500 and isinstance(failed.json()["error"], str)
    assert client.post("/gradio_api/run/nosuch", json={"data": ["hi"]}).status_code == 404
    assert client.post("/gradio_api/run/echo", json={"data": []}).status_code == 400
    assert client.post("/gradio_api/run/echo", json={"inputs": ["hi"]}).status_code == 422
    assert service.store.counters().waiting == 0
    assert _run_items(settings) == [], "each answered call's job is gone from the log"


def test_a_direct_call_of_a_generator_answers_its_first_step_and_stops_it(aws: None) -> None:
    """As Gradio's direct call: the generator's first output with `is_generating: true`, and nothing goes
    on with it (Gradio never resumes it; here the job is cancelled, so no worker computes the rest)."""
    settings = settings_for("examples.demo_app:app")
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    words = " ".join(f"w{i}" for i in range(200))  # 10 s of tokens, were it run to the end
    with serving(settings, "stream_tokens"):
        started = time.monotonic()
        answer = client.post("/gradio_api/run/stream_tokens", json={"data": [words]})
        # The test client returns once the call's stream was read to its end after the answer: at the
        # job's completion, 10 s away had the generator gone on.
        assert time.monotonic() - started < 8, "the call's job ran to its end"
        assert answer.status_code == 200
        assert answer.json()["data"] == [""] and answer.json()["is_generating"] is True
        deadline = time.monotonic() + 8
        while (states := [item["state"] for item in _run_items(settings) if "#" not in str(item["sk"])]) == ["running"]:
            assert time.monotonic() < deadline, "the generator ran on"
            time.sleep(0.1)
    # Cancelled by the worker (or already forgotten by the call's stream, which saw it so).
    assert states in ([], ["cancelled"]), "the worker stopped the generator (run to its end, it ends 'completed')"
    assert service.store.counters().waiting == 0


def test_a_direct_call_that_outwaits_its_limit_is_cancelled_and_told_why(aws: None) -> None:
    settings = settings_for("examples.demo_app:app", run_wait_s=0.5)
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    answer = client.post("/gradio_api/run/echo", json={"data": ["nobody serves this"]})  # no worker runs
    assert answer.status_code == 504
    assert "did not finish within 0.5 s" in answer.json()["error"] and "/gradio_api/call/echo" in answer.json()["error"]
    assert service.store.counters().waiting == 0, "the waiting job left its place"
    assert {item["state"] for item in _run_items(settings)} <= {"cancelled"}


def test_a_generator_streams_thousands_of_small_steps_to_its_end(aws: None) -> None:
    """An LLM-style answer of 2,000 tokens, one `yield` each: each step is kept in the job's item (400 KB
    in all) as its diff alone. Kept as whole messages (about 140 bytes for a 4-character step), the job
    failed at about 1,300 steps with "streamed 306 kB of output", where Gradio streams them all."""
    settings = settings_for("tests.apps.gradio_apps:token_stream")
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    session = "tokens-session-0001"
    joined = client.post("/gradio_api/queue/join", json={"data": [2000], "api_name": "tokens", "session_hash": session})
    assert joined.status_code == 200
    with serving(settings, "tokens"):
        body = client.get("/gradio_api/queue/data", params={"session_hash": session}).text
    frames = [json.loads(line[len("data: ") :]) for line in body.splitlines() if line.startswith("data: ")]
    generating = [frame for frame in frames if frame["msg"] == "process_generating"]
    (completed,) = [frame for frame in frames if frame["msg"] == "process_completed"]
    assert completed["success"] is True, completed["output"]
    assert completed["output"]["data"] == ["tok " * 2000]
    assert len(generating) == 2000, "every step reaches the visitor, as in Gradio"


def test_a_call_of_a_generator_streams_hundreds_of_steps_each_whole_to_its_end(aws: None) -> None:
    """Gradio's curl API sends each generator step whole. Kept whole in the job's item, 600 steps of a
    growing answer (about 720 kB in all) failed the job at step 306 with "streamed 727 kB of output", where
    Gradio streams them all (and on DynamoDB each write past 400 KB had failed meanwhile); each step is
    kept as its diff, and the call's stream rebuilds it whole."""
    settings = settings_for("tests.apps.gradio_apps:token_stream")
    service = FrontService(load_app(settings.app_module), settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    event_id = client.post("/gradio_api/call/tokens", json={"data": [600]}).json()["event_id"]
    with serving(settings, "tokens"):
        body = client.get(f"/gradio_api/call/tokens/{event_id}").text
    events = _events(body)
    assert events[-1] == ("complete", json.dumps(["tok " * 600]))
    generating = [json.loads(data) for kind, data in events if kind == "generating"]
    assert generating == [["tok " * n] for n in range(1, 601)], "every step, whole, in order"
    assert service.store.counters().waiting == 0

    # Outputs whose nested lists shrink at two levels: each step whole and right (gradio.utils.diff
    # misnumbers such deletes: the third and fourth came out as [5, 6] and [[3], [5]]).
    event_id = client.post("/gradio_api/call/shrinking", json={"data": [4]}).json()["event_id"]
    with serving(settings, "shrinking"):
        body = client.get(f"/gradio_api/call/shrinking/{event_id}").text
    generating = [json.loads(data) for kind, data in _events(body) if kind == "generating"]
    assert generating == [
        [[[1, 2, 3], 5, 6]],
        [[[1], 5]],
        [{"headers": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}],
        [{"headers": ["a"], "data": [[1], [4]]}],
    ]


def test_an_app_that_closes_its_api_refuses_direct_calls_of_queued_events_as_gradio(aws: None, tmp_path: Path) -> None:
    """`demo.queue(api_open=False)`: Gradio answers a direct call of a queued event 404 with its reason and
    still runs a `queue=False` one; the queue stays open. Surge served every direct call. The setting
    travels in the declaration a front without gradio reads."""
    settings = settings_for("tests.apps.gradio_apps:closed_api")
    app = load_app(settings.app_module)
    assert not app.api_open and app.unqueued == {"quiet", app.get("quiet").fn_index}
    (tmp_path / "app.json").write_text(json.dumps(declaration(app, settings.app_module)))
    declared = load_declared(str(tmp_path / "app.json"))
    assert (declared.api_open, declared.unqueued) == (app.api_open, app.unqueued)
    service = FrontService(declared, settings, Store(settings), Broker(settings))
    client = TestClient(create_local_app(service))
    refused = client.post("/gradio_api/run/shout", json={"data": ["hi"]})
    assert refused.status_code == 404 and refused.json() == {"detail": DIRECT_CALLS_CLOSED}
    by_index = client.post("/gradio_api/run/predict", json={"data": ["hi"], "fn_index": app.get("shout").fn_index})
    assert by_index.status_code == 404
    assert service.store.counters().waiting == 0, "a refused call changes nothing"
    with serving(settings, "quiet"):
        assert client.post("/gradio_api/run/quiet", json={"data": ["HI"]}).json()["data"] == ["hi"]
    joined = client.post(
        "/gradio_api/queue/join", json={"data": ["hi"], "api_name": "shout", "session_hash": "session000000001"}
    )
    assert joined.status_code == 200 and joined.json()["event_id"]
