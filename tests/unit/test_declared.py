"""An app's declaration: the front serves from it what it serves from the app (functions, settings,
/config, /info), and a Gradio app's front then never imports gradio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from surge import protocol
from surge.application import load_app
from surge.declared import DeclarationMismatch, DeclaredApp, declaration, main
from surge.settings import Settings
from surge.wiring import build_front

FIELDS = ("fn_index", "api_name", "inputs", "outputs", "batch", "max_batch_size", "concurrency_limit", "concurrency_id")


def _round_trip(spec: str) -> tuple[object, DeclaredApp]:
    app = load_app(spec)
    return app, DeclaredApp(json.loads(json.dumps(declaration(app, spec))))


def test_a_gradio_app_declared_serves_the_same_config_info_and_functions() -> None:
    app, declared = _round_trip("tests.apps.gradio_apps:blocks")
    assert protocol.config(declared) == protocol.config(app)  # type: ignore[arg-type]
    assert protocol.info(declared) == protocol.info(app)  # type: ignore[arg-type]
    for mine, theirs in zip(declared.functions, app.functions, strict=True):  # type: ignore[attr-defined]
        assert [getattr(mine, f) for f in FIELDS] == [getattr(theirs, f) for f in FIELDS]
        assert (mine.is_generator, mine.progress_arg is None) == (theirs.is_generator, theirs.progress_arg is None)
    assert (declared.max_size, declared.concurrency_limit("gpu")) == (100, 1)


def test_a_declared_gradio_app_keeps_its_pages_lane() -> None:
    """The front joins a page event into the lane by its fn_index: the declaration must carry the lane's
    events, or a front built from it (every deploy) would answer 404 to the page's chat box."""
    app, declared = _round_trip("tests.apps.gradio_apps:chat")
    lane, kept = app.get("page_events"), declared.get("page_events")  # type: ignore[attr-defined]
    assert kept.events == lane.events and kept.events
    for fn_index, event in kept.events.items():
        assert declared.by_index(fn_index) is kept and kept.streams([fn_index]) is event.streams
    assert protocol.config(declared) == protocol.config(app)  # type: ignore[arg-type]


def test_a_surge_app_declared_gets_surges_own_config() -> None:
    app, declared = _round_trip("examples.demo_app:app")
    assert declared.wire_config() is None
    assert protocol.config(declared) == protocol.config(app)  # type: ignore[arg-type]


def test_the_front_of_a_declared_gradio_app_never_imports_gradio(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    main(["examples.gradio_image_app:demo", str(path)])
    probe = (
        "import sys; from surge.settings import Settings; from surge.wiring import build_front; "
        "from surge.front import create_api_app; "
        f"s = Settings(app_module='examples.gradio_image_app:demo', app_declaration_path={str(path)!r}, "
        "events_table_name='e', state_table_name='s', queue_url_prefix='q-', "
        "files_bucket_name='f'); "
        "service = build_front(s); create_api_app(service); "
        "print(service.config['dependencies'][0]['api_name'], 'gradio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sepia", "False"]


def test_a_front_refuses_the_declaration_of_another_app(tmp_path: Path) -> None:
    """A layer built for another app than the stack's AppModule would serve the wrong app without a word."""
    path = tmp_path / "app.json"
    main(["examples.demo_app:app", str(path)])
    settings = Settings(
        app_module="examples.gradio_image_app:demo",
        app_declaration_path=str(path),
        events_table_name="e",
        state_table_name="s",
        queue_url_prefix="q-",
    )
    with pytest.raises(DeclarationMismatch) as refused:
        build_front(settings)
    assert str(refused.value) == (
        f"the app declaration {path} is of APP_MODULE=examples.demo_app:app, but APP_MODULE is "
        "examples.gradio_image_app:demo: build the AppLayer for this app "
        "(APP_MODULE=examples.gradio_image_app:demo sam build) or deploy with AppModule=examples.demo_app:app"
    )
    assert build_front(settings.model_copy(update={"app_module": "examples.demo_app:app"})).app.functions


def test_declaring_an_app_that_cannot_load_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["examples.nope:app", str(tmp_path / "app.json")])
    assert exited.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("surge: APP=examples.nope:app: no module 'examples.nope'"), said
    assert not (tmp_path / "app.json").exists()
