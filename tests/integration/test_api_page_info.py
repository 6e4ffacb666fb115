"""A Gradio app's `/gradio_api/info` and page carry Gradio's code snippets, with the app's URL as the request
shows it: the page's "Use via API" panel reads them (it stayed blank without them)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from surge.application import load_app
from surge.broker import Broker
from surge.front import create_api_app
from surge.gradio_page import ROOT_PLACEHOLDER
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for

APP = "tests.apps.gradio_apps:greeter"


def test_the_api_panels_snippets_name_the_apps_url_as_the_visitor_reached_it(aws: None) -> None:
    settings = settings_for(APP)
    client = TestClient(create_api_app(FrontService(load_app(APP), settings, Store(settings), Broker(settings))))
    info = client.get(
        "/gradio_api/info", headers={"X-Forwarded-Host": "demo.example.com", "X-Forwarded-Proto": "https"}
    )
    assert info.status_code == 200 and ROOT_PLACEHOLDER not in info.text
    (endpoint,) = info.json()["named_endpoints"].values()
    snippets = endpoint["code_snippets"]
    assert set(snippets) >= {"python", "javascript", "bash", "cli"}
    assert 'Client("https://demo.example.com")' in snippets["python"]
    assert "https://demo.example.com/gradio_api/call/" in snippets["bash"]
    page = client.get("/")
    assert page.status_code == 200 and ROOT_PLACEHOLDER not in page.text
    assert "http://testserver/gradio_api/call/" in page.text, "the page's inline API info has them too"
