"""A Gradio app turned into Surge's App, in one process: its settings, Gradio's own config and info,
Gradio's processing on the worker side, and what is refused at start."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from surge import protocol
from surge.application import Progress, load_app
from surge.errors import Error
from surge.front import unserved_router
from surge.gradio_app import GradioApp, Unsupported
from surge.held_launch import held_launch
from tests.apps.gradio_apps import blocks


def test_each_event_keeps_its_gradio_settings_and_the_queue_its_own() -> None:
    app = load_app("tests.apps.gradio_apps:blocks")
    assert isinstance(app, GradioApp)
    assert (app.max_size, app.default_concurrency_limit, app.max_threads) == (100, 4, 40)
    trim, shout, first, second = (app.get(name) for name in ("trim_words", "shout", "first", "second"))
    assert (trim.batch, trim.max_batch_size, trim.inputs, trim.outputs) == (True, 8, ["textbox", "number"], ["textbox"])
    assert [f.fn_index for f in (trim, shout, first, second)] == [0, 1, 2, 3]
    assert first.concurrency_id == second.concurrency_id == "gpu"
    assert app.concurrency_limit("gpu") == 1
    assert app.concurrency_limit(shout.concurrency_id) == 4, "an event without its own limit takes the queue's default"


def test_config_and_info_are_gradios_own() -> None:
    app = load_app("tests.apps.gradio_apps:blocks")
    config = protocol.config(app)
    gradio_config = blocks.get_config_file()
    assert config["dependencies"] == [
        dict(d, targets=[list(t) for t in d["targets"]]) for d in gradio_config["dependencies"]
    ]
    assert [c["id"] for c in config["components"]] == [c["id"] for c in gradio_config["components"]]
    assert (config["protocol"], config["api_prefix"], config["version"]) == ("sse_v3", "/gradio_api", gr.__version__)
    assert protocol.info(app) == blocks.get_api_info()


def test_the_worker_runs_gradios_preprocess_function_and_postprocess(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    app = load_app("tests.apps.gradio_apps:blocks")
    reports: list[tuple[Any, ...]] = []
    progress = Progress().bind(lambda *report: reports.append(report))
    assert app.get("shout").fn("hi", surge_progress=progress) == "HI"
    assert reports and reports[-1][1:3] == (3, 3) and reports[-1][3] == "shouting"
    assert app.get("trim_words").fn(["hello", "world"], [2, 3]) == [["he", "wor"]]
    with pytest.raises(Error, match="no shouting allowed") as refused:
        app.get("shout").fn("fail")
    assert refused.value.title == "Refused"


def test_a_generator_streams_with_gradios_diffs() -> None:
    app = load_app("tests.apps.gradio_apps:chat")
    function = app.functions[0]
    assert function.api_name == "reply" and function.inputs == ["textbox", "state"]
    chunks = list(function.fn("hey", None))
    assert chunks[-1][0] == "You said: hey" and len(chunks) == len("You said: hey")
    assert function.chunk_diff is not None
    assert function.chunk_diff(chunks[0], chunks[1])[0] == [["append", [], "o"]]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.apps.gradio_apps:timer", r"event 'clock' \(<lambda>\) runs on a timer"),
        ("tests.apps.gradio_apps:unqueued", r"event 'instant' \(<lambda>\) sets queue=False"),
    ],
)
def test_what_surge_cannot_honour_is_refused_at_start_naming_the_event(spec: str, message: str) -> None:
    with pytest.raises(Unsupported, match=message):
        load_app(spec)


def test_state_shared_between_events_is_refused() -> None:
    with gr.Blocks() as shared:
        count = gr.State(0)
        box = gr.Textbox()
        box.submit(lambda n: n + 1, count, count, api_name="bump")
        box.change(lambda n: str(n), count, box, api_name="show")
    with pytest.raises(Unsupported, match=r"event 'bump' .* writes a gr.State that event 'show' reads"):
        GradioApp(shared)


def test_json_and_label_outputs_are_json_as_gradio_sends_them() -> None:
    """`gr.JSON` postprocesses to a pydantic `JsonData`, which the worker could not record (every attempt
    failed as if the worker had died); Gradio's queue sends its JSON."""
    demo = gr.Interface(
        lambda text: ({"long": 0.8, "short": 0.2}, {"text": text, "n": [1, 2]}),
        "text",
        [gr.Label(), gr.JSON()],
        api_name="classify",
    )
    label, data = GradioApp(demo).get("classify").fn("hi")
    assert data == {"text": "hi", "n": [1, 2]}
    assert label["label"] == "long" and [c["label"] for c in label["confidences"]] == ["long", "short"]
    json.dumps([label, data])


def test_show_error_is_launchs_default_and_launch_auth_is_refused() -> None:
    """Without `launch(show_error=True)` an exception's message stays on the worker, as in Gradio (a bare
    `gr.Blocks()` says True, which `launch()` overrides); a login Surge would not ask for is refused."""
    assert load_app("tests.apps.gradio_apps:blocks").show_error is False
    demo = gr.Interface(lambda text: text, "text", "text")
    with held_launch():
        demo.launch(auth=("admin", "secret"))
    with pytest.raises(Unsupported, match=r"^launch\(auth=...\) asks for Gradio's login"):
        GradioApp(demo)


def test_demo_launch_in_the_apps_module_is_held_and_its_settings_kept() -> None:
    """In a fresh process (gradio not yet imported, as in `make run` and the workers), `load_app` of a
    module ending with `demo.launch(...)` returns the app without serving it, with launch()'s settings."""
    probe = (
        "from surge.application import load_app; app = load_app('tests.apps.gradio_launched'); "
        "print(app.show_error, app.max_threads, app.max_file_size, app.default_concurrency_limit, "
        "app.blocks.theme.name, [f.api_name for f in app.functions])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "True 7 1048576 2 soft ['reverse']"
    assert "Running on" not in loaded.stdout + loaded.stderr


def test_the_pages_events_surge_does_not_serve_are_named_at_start_and_answered_with_why() -> None:
    """A ChatInterface's chat box and an Interface's examples run UI events outside Gradio's queue, which
    Surge does not serve: `make run` says so under its URL, and the page's calls get the reason."""
    app = load_app("tests.apps.gradio_apps:chat")
    page, history = app.notes
    assert page.startswith("note: Gradio's page also runs 28 UI event(s) outside the queue (_clear_and_save_textbox,")
    assert history.startswith("note: event 'reply' reads and writes a gr.State, which Gradio keeps per session")
    assert not any("\n" in note for note in app.notes) and load_app("tests.apps.gradio_apps:blocks").notes == []
    front = FastAPI()
    front.include_router(unserved_router(SimpleNamespace(config=protocol.config(app))))  # type: ignore[arg-type]
    clear = [d["id"] for d in protocol.config(app)["dependencies"] if d["api_name"] == "_clear_and_save_textbox"]
    page_call = TestClient(front).post("/gradio_api/run/predict", json={"data": ["hi"], "fn_index": clear[0]})
    assert page_call.status_code == 404
    assert page_call.json()["error"].startswith("Surge does not serve the page's event '_clear_and_save_textbox'")
    curl = TestClient(front).post("/gradio_api/call/reply", json={"data": ["hi"]})
    assert curl.status_code == 404 and "POST /gradio_api/queue/join" in curl.json()["detail"]
