"""Gradio's curl API (the page's "Use via API", bash), in-process against moto with a real worker loop:
`POST /gradio_api/call/<api_name>` answers an event id, `GET /gradio_api/call/<api_name>/<event_id>`
streams `event: generating` / `complete` / `error` frames with whole outputs, as Gradio sends them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from surge.application import load_app
from surge.broker import Broker
from surge.front import create_local_app
from surge.service import FrontService
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
    too_many = client.post("/gradio_api/call/echo", json={"data": ["hi", "there"]})
    assert too_many.status_code == 400 and too_many.json() == {"detail": "echo takes 1 input(s), got 2."}
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
