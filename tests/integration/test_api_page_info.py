"""A Gradio app's `/gradio_api/info` and page carry Gradio's code snippets, with the app's URL as the request
shows it: the page's "Use via API" panel reads them (it stayed blank without them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from surge.application import load_app
from surge.broker import Broker
from surge.declared import declaration, load_declared
from surge.front import create_api_app
from surge.gradio_app import GradioApp
from surge.gradio_page import ROOT_PLACEHOLDER, GradioPage
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


def test_config_names_the_root_and_file_urls_as_the_visitor_reached_the_app(aws: None) -> None:
    """Gradio's `/config` gives the app's root URL and each component's file under it, per request: a
    gallery's `select` gave the function the page's relative URL (`/gradio_api/file=...`), where Gradio's
    gives `https://<host>/gradio_api/file=...`."""
    spec = "tests.apps.gradio_apps:described"
    settings = settings_for(spec)
    client = TestClient(create_api_app(FrontService(load_app(spec), settings, Store(settings), Broker(settings))))
    headers = {"X-Forwarded-Host": "demo.example.com", "X-Forwarded-Proto": "https"}
    config = client.get("/config", headers=headers).json()
    assert config["root"] == "https://demo.example.com" and config["username"] is None
    (image,) = [c for c in config["components"] if c["type"] == "image"]
    assert image["props"]["value"]["url"].startswith("https://demo.example.com/gradio_api/file=")
    assert client.get("/config").json()["root"] == "http://testserver", "each request its own"
    page = client.get("/", headers=headers)
    inline = json.loads(re.search(r"window.gradio_config = (\{.*?\});</script>", page.text).group(1))  # type: ignore[union-attr]
    (image,) = [c for c in inline["components"] if c["type"] == "image"]
    assert image["props"]["value"]["url"].startswith("https://demo.example.com/gradio_api/file="), "the page's too"


def test_info_encodes_a_translated_label_as_gradios_route_does(aws: None) -> None:
    """A ChatInterface's `/flag` labels its parameter with a translation key: Gradio's `/gradio_api/info`
    gives it as an object, and Surge gave the page's `__i18n__{...}` string to `view_api`."""
    spec = "tests.apps.gradio_apps:flagged_chat"
    settings = settings_for(spec)
    client = TestClient(create_api_app(FrontService(load_app(spec), settings, Store(settings), Broker(settings))))
    label = client.get("/gradio_api/info").json()["named_endpoints"]["/flag"]["parameters"][0]["label"]
    assert label == {"key": "chat_interface.chatbot", "_type": "translation_metadata"}


def test_a_multipage_apps_other_page_is_served_at_its_route_with_its_own_config(aws: None, tmp_path: Path) -> None:
    """Gradio serves `with demo.route("Second page", "/second")` at /second; Surge answered 404 there (the
    navbar's link led to `{"detail":"Not Found"}`). Also from a page written for a front without gradio."""
    app_spec = "tests.apps.gradio_apps:multipage"
    settings = settings_for(app_spec)
    app = load_app(app_spec)
    assert isinstance(app, GradioApp)
    app.gradio_page().write(tmp_path)
    assert GradioPage.load(tmp_path).pages.keys() == {"second"}
    client = TestClient(create_api_app(FrontService(app, settings, Store(settings), Broker(settings))))
    page = client.get("/second", headers={"X-Forwarded-Host": "demo.example.com", "X-Forwarded-Proto": "https"})
    assert page.status_code == 200 and ROOT_PLACEHOLDER not in page.text
    config = json.loads(re.search(r"window.gradio_config = (\{.*?\});</script>", page.text).group(1))  # type: ignore[union-attr]
    assert config["current_page"] == "second" and config["root"] == "https://demo.example.com"
    labels = {c["props"].get("label") for c in config["components"]}
    assert {"second_in", "second_out"} <= labels and "home" not in labels
    assert [d["api_name"] for d in config["dependencies"]] == ["second"]
    assert "crypto.getRandomValues" in page.text, "the session-hash shim, as on /"
    assert client.get("/second/", follow_redirects=False).headers["location"] == "../second"
    assert client.get("/third").status_code == 404
    assert client.get("/").status_code == 200


def test_a_page_joining_an_event_surge_leaves_out_is_told_which_and_why(aws: None, tmp_path: Path) -> None:
    """A page with a `@gr.render` joins its render event at load: the visitor's toast read "No function with
    fn_index 1 is served by this app."; it now names the part of the page and why, also from a front
    that reads the app's declaration."""
    app_spec = "tests.apps.gradio_apps:rendered_page"
    settings = settings_for(app_spec)
    app = load_app(app_spec)
    (render_id,) = app.unserved
    (tmp_path / "app.json").write_text(json.dumps(declaration(app, app_spec)))
    declared = load_declared(str(tmp_path / "app.json"))
    assert declared.unserved == app.unserved
    client = TestClient(create_api_app(FrontService(declared, settings, Store(settings), Broker(settings))))
    joined = client.post(
        "/gradio_api/queue/join", json={"data": ["Ann"], "fn_index": render_id, "session_hash": "session000000001"}
    )
    assert joined.status_code == 404
    assert joined.json()["detail"].startswith("Surge does not serve this part of the page (@gr.render function 'show')")
