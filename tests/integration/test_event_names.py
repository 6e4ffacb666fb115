"""A Gradio event kept out of the API docs (`api_visibility="undocumented"`) is still called by its name, as
Gradio's curl and direct-call routes take it: it runs in the page's lane, by its fn_index."""

from __future__ import annotations

from fastapi.testclient import TestClient

from surge.application import load_app
from surge.broker import Broker
from surge.front import CALL_SESSION, create_api_app
from surge.gradio_app import PAGE_EVENTS
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for

APP = "tests.apps.gradio_apps:undocumented"


def test_an_undocumented_event_is_joined_by_its_name_and_an_unknown_name_is_refused(aws: None) -> None:
    settings = settings_for(APP)
    app = load_app(APP)
    store = Store(settings)
    service = FrontService(app, settings, store, Broker(settings))
    client = TestClient(create_api_app(service))
    whisper = next(d["id"] for d in service.config["dependencies"] if d.get("api_name") == "whisper")
    assert "/whisper" not in service.info["named_endpoints"], "kept out of the API docs"

    called = client.post("/gradio_api/call/whisper", json={"data": ["Quiet Please"]})
    assert called.status_code == 200, called.text
    (job,) = store.read_session(CALL_SESSION + called.json()["event_id"])
    assert job.api_name == PAGE_EVENTS

    joined = client.post(
        "/gradio_api/queue/join", json={"data": ["Hush"], "api_name": "/whisper", "session_hash": "s" * 16}
    )
    assert joined.status_code == 200, joined.text
    (job,) = store.read_session("s" * 16)
    assert job.api_name == PAGE_EVENTS

    assert client.post("/gradio_api/call/shout", json={"data": ["hey"]}).status_code == 200, "a public one, as before"
    missing = client.post("/gradio_api/call/mumble", json={"data": ["x"]})
    assert missing.status_code == 404 and "mumble" in missing.text
    wrong = client.post("/gradio_api/call/whisper", json={"data": []})
    assert wrong.status_code == 400 and f"Event {whisper} takes 1 input(s), got 0" in wrong.text
