"""A Gradio app turned into Surge's App, in one process: its settings, Gradio's own config and info,
Gradio's processing on the worker side, and what is refused at start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from fastapi import FastAPI

from surge import protocol
from surge.application import CALLS, AppNotFound, Call, Progress, load_app
from surge.errors import Error
from surge.gradio_app import GradioApp, Unsupported
from surge.held_launch import held_launch
from surge.settings import Settings
from surge.store.page_state import Kept
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
    assert shout.time_limit_s is None, "Gradio applies `time_limit` only to .stream() events; shout's runs unbounded"


def test_config_and_info_are_gradios_own() -> None:
    app = load_app("tests.apps.gradio_apps:blocks")
    config = protocol.config(app)
    gradio_config = blocks.get_config_file()
    assert config["dependencies"] == [
        dict(d, targets=[list(t) for t in d["targets"]]) for d in gradio_config["dependencies"]
    ]
    assert [c["id"] for c in config["components"]] == [c["id"] for c in gradio_config["components"]]
    assert (config["protocol"], config["api_prefix"], config["version"]) == ("sse_v3", "/gradio_api", gr.__version__)
    info = protocol.info(app)
    snippets = {name: endpoint.pop("code_snippets") for name, endpoint in info["named_endpoints"].items()}
    assert info == blocks.get_api_info()
    assert all(set(s) == {"python", "javascript", "bash", "cli"} for s in snippets.values()), "the API panel's"
    # launch() sets the page's footer; it never runs here, and /config said none (no "Use via API" link).
    assert config["footer_links"] == ["api", "gradio", "settings"]


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


def test_a_gr_error_leaves_its_traceback_in_the_workers_log_unless_it_says_not_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Gradio's queue prints a gr.Error's traceback (`print_exception=True`, its default); the worker's
    log had nothing of it, so an operator could not tell where a refusal came from."""

    def refuse(text: str) -> str:
        raise gr.Error(f"refused {text}", print_exception=text == "loud")

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(refuse, box, box, api_name="refuse")
    function = GradioApp(demo).get("refuse")
    for text in ("loud", "quiet"):
        with pytest.raises(Error, match=f"refused {text}"):
            function.fn(text)
    logged = [r for r in caplog.records if r.name == "surge.gradio" and "raised gr.Error" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


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
        ("tests.apps.gradio_apps:streamed", r"event 'mirror' \(<lambda>\) is a .stream\(\) event"),
        (
            "tests.apps.gradio_apps:streamed_audio",
            r"event 'speak' \(tone\) streams its output to gr.Audio\(streaming=True\).*streaming=False",
        ),
    ],
)
def test_what_surge_cannot_honour_is_refused_at_start_naming_the_event(spec: str, message: str) -> None:
    with pytest.raises(Unsupported, match=message):
        load_app(spec)


class _KeptStates:
    """An in-memory stand-in for the state table's `gstate#` items (the port `PageStateStore`)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[int, tuple[bytes, float]]] = {}
        self.props: dict[str, dict[int, dict[str, bytes]]] = {}
        self.reads = 0
        self.writes = 0
        self.now = 1000.0

    def load(self, session_hash: str, lives: dict[int, float] | None = None) -> Kept:
        self.reads += 1
        lives = lives or {}
        states = {
            block_id: value
            for block_id, (value, written) in self.items.get(session_hash, {}).items()
            if block_id not in lives or self.now - written <= lives[block_id]
        }
        return Kept(states, {k: dict(v) for k, v in self.props.get(session_hash, {}).items()})

    def save(
        self,
        session_hash: str,
        pickled: dict[int, bytes],
        props: dict[int, dict[str, bytes]] | None = None,
        dropped: dict[int, list[str]] | None = None,
    ) -> None:
        props = {k: v for k, v in (props or {}).items() if v}
        dropped = {k: v for k, v in (dropped or {}).items() if v}
        if pickled or props or dropped:
            self.writes += 1
            self.items.setdefault(session_hash, {}).update((k, (v, self.now)) for k, v in pickled.items())
            kept = self.props.setdefault(session_hash, {})
            for block_id, changed in props.items():
                kept.setdefault(block_id, {}).update(changed)
            for block_id, names in dropped.items():
                for name in names:
                    kept.get(block_id, {}).pop(name, None)


def _as_session(session_hash: str, fn: Any, *args: Any) -> Any:
    token = CALLS.set((Call(session_hash, None),))
    try:
        return fn(*args)
    finally:
        CALLS.reset(token)


def test_a_gr_state_is_kept_per_session_between_events() -> None:
    """Gradio keeps a session's gr.State in its process; here each call reads the session's kept values
    and writes back only what changed, so two events share one state and sessions never see each other's."""
    app = load_app("tests.apps.gradio_apps:counter")
    assert isinstance(app, GradioApp) and app.notes == []
    kept = _KeptStates()
    app.states = kept  # type: ignore[assignment]
    bump, show = app.get("bump").fn, app.get("show").fn
    assert [_as_session("session-one", bump, None) for _ in range(3)] == [[None, 1], [None, 2], [None, 3]], (
        "a state's value stays on the server, as in Gradio"
    )
    writes = kept.writes
    assert _as_session("session-one", show, None) == 3 and kept.writes == writes, (
        "a read changes nothing, writes nothing"
    )
    assert _as_session("session-two", show, None) == 0, "another session starts from the initial value"


def test_choices_an_event_gave_a_dropdown_are_valid_inputs_of_the_sessions_later_calls() -> None:
    """Gradio keeps, per session, the component an event returned and checks later inputs against it: a
    dropdown filled by one event takes its new choices in the next (Surge refused them: "Value: p2 is not
    in the list of choices: ['x']"). Only properties a later call's preprocess reads are kept, and only
    what changed is written."""
    with gr.Blocks() as demo:
        picked = gr.Dropdown(["x"], label="dd", interactive=True)
        note = gr.Textbox()
        gr.Button().click(lambda: gr.Dropdown(choices=["p1", "p2"], value="p2"), None, picked, api_name="fill")
        gr.Button().click(lambda: gr.Dropdown(label="files"), None, picked, api_name="relabel")
        gr.Button().click(lambda: gr.Dropdown(choices=["x"]), None, picked, api_name="reset")
        picked.change(lambda value: f"DD={value}", picked, note, api_name="show")
        gr.Button().click(lambda: gr.Textbox(interactive=False), None, note, api_name="lock")
        note.submit(lambda text: text, note, note, api_name="echo")
    app = GradioApp(demo)
    kept = _KeptStates()
    app.states = kept  # type: ignore[assignment]
    show = app.get("show").fn
    with pytest.raises(Error, match=r"Value: p2 is not in the list of choices: \['x'\]"):
        _as_session("s", show, "p2")
    _as_session("s", app.get("fill").fn)
    assert _as_session("s", show, "p2") == "DD=p2"
    with pytest.raises(Error, match="not in the list of choices"):
        _as_session("other", show, "p2")  # another session: the dropdown as the app declares it
    writes = kept.writes
    _as_session("s", app.get("relabel").fn)
    assert kept.writes == writes, "a label changes nothing a later call reads: nothing written"
    assert _as_session("s", show, "p1") == "DD=p1", "a later update keeps the choices, as Gradio's merges"
    _as_session("s", app.get("reset").fn)
    assert kept.props["s"] == {picked._id: {}}, "back to the declared choices: the kept ones are dropped"
    with pytest.raises(Error, match="not in the list of choices"):
        _as_session("s", show, "p1")
    reads, writes = kept.reads, kept.writes
    _as_session("s", app.get("lock").fn)
    assert _as_session("s", app.get("echo").fn, "hi") == "hi"
    assert (kept.reads, kept.writes) == (reads, writes), "a Textbox has nothing to keep: no read, no write"


def test_samples_an_event_gave_a_dataset_are_what_a_later_click_picks() -> None:
    """A Dataset keeps its samples as `raw_samples`, which its preprocess reads: updated examples
    (`gr.Dataset(samples=...)`) are what a later click picks, as in Gradio."""
    with gr.Blocks() as demo:
        shelf = gr.Dataset(components=["textbox"], samples=[["old"]], type="values")
        out = gr.Textbox()
        gr.Button().click(lambda: gr.Dataset(samples=[["new"]]), None, shelf, api_name="restock")
        shelf.click(lambda sample: sample[0], shelf, out, api_name="pick")
    app = GradioApp(demo)
    app.states = _KeptStates()  # type: ignore[assignment]
    assert _as_session("s", app.get("pick").fn, 0) == "old"
    _as_session("s", app.get("restock").fn)
    assert _as_session("s", app.get("pick").fn, 0) == "new"
    assert _as_session("other", app.get("pick").fn, 0) == "old"


def test_an_event_that_changes_a_gr_state_names_it_for_the_pages_change_listeners() -> None:
    """Gradio's completion carries `changed_state_ids`, and its page fires the `.change` listeners of those
    states; without them a `gr.State(...).change(...)` never ran on Surge's page."""
    app = load_app("tests.apps.gradio_apps:watched")
    assert isinstance(app, GradioApp)
    app.states = _KeptStates()  # type: ignore[assignment]
    (state_id,) = [b._id for b in app.blocks.blocks.values() if isinstance(b, gr.State)]
    outputs = []
    for api_name in ("bump", "same", "one", "bump", "one"):
        call = Call("session-one", None)
        token = CALLS.set((call,))
        try:
            app.get(api_name).fn(*[None] * len(app.get(api_name).inputs))
        finally:
            CALLS.reset(token)
        outputs.append(call.output["changed_state_ids"])
    # Writing the kept value again is no change (against the initial value it was one: a ChatInterface's
    # history listener, whose chain writes the history back, fired itself without end).
    assert outputs == [[state_id], [], [], [state_id], [state_id]]


def test_a_gr_error_that_is_not_to_be_shown_stays_off_the_page() -> None:
    """`gr.Error(visible=False)` marks the outputs without a toast: its completion says `visible: false`."""

    def refuse(text: str) -> str:
        raise gr.Error(f"quietly refused {text}", visible=False, print_exception=False)

    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(refuse, box, box, api_name="refuse")
    with pytest.raises(Error) as raised:
        GradioApp(demo).get("refuse").fn("x")
    assert raised.value.visible is False
    body = protocol.failed("e1", raised.value.message, raised.value.title, raised.value.duration, False, False)
    assert body["output"]["visible"] is False and body["output"]["error"] == "quietly refused x"


def test_config_says_the_apps_theme_whether_or_not_the_page_was_built_first() -> None:
    """Gradio's /config names the theme and carries its hash and body colours; Surge's said null for
    each when /config was asked before the page (launch() prepares them; Surge prepared them with the
    page only)."""
    config = GradioApp(gr.ChatInterface(lambda message, history: message, multimodal=True)).wire_config()
    assert config["theme"] == "default"
    assert config["theme_hash"] and config["body_css"]


def test_a_state_with_a_time_to_live_starts_again_from_its_initial_value_once_it_lapses() -> None:
    with gr.Blocks() as demo:
        total = gr.State(10, time_to_live=60)
        gr.Button().click(lambda kept: (kept + 1, kept + 1), total, [total, gr.Number()], api_name="bump")
        gr.Button().click(lambda kept: kept, total, gr.Number(), api_name="show")
    app = GradioApp(demo)
    kept = _KeptStates()
    app.states = kept  # type: ignore[assignment]
    bump, show = app.get("bump").fn, app.get("show").fn
    assert [_as_session("s", bump, None)[1] for _ in range(2)] == [11, 12]
    kept.now += 59
    assert _as_session("s", bump, None)[1] == 13, "setting the state starts its life again"
    kept.now += 59
    assert _as_session("s", show, None) == 13, "59 s after it was last set, it is still there"
    kept.now += 2
    assert _as_session("s", show, None) == 10, "61 s after, Gradio has dropped it: the initial value"


def test_a_state_that_cannot_be_kept_fails_the_call_with_why() -> None:
    with gr.Blocks() as demo:
        holder = gr.State(None)
        gr.Button().click(lambda: threading.Lock(), None, holder, api_name="keep_a_lock")
    app = GradioApp(demo)
    app.states = _KeptStates()  # type: ignore[assignment]
    with pytest.raises(Error, match=r"A gr.State holds a lock, which Surge cannot keep between calls"):
        _as_session("session-one", app.get("keep_a_lock").fn)


def test_a_worker_runs_an_unlimited_events_calls_up_to_max_threads_at_once_as_gradios_process_does() -> None:
    """Gradio runs an event with no concurrency limit up to `max_threads` calls at once: its worker does
    too (`WORKER_SLOTS=auto`), where a limited event runs up to its limit and the page's own events keep
    their lane's count. A Surge app's unlimited function stays one device per worker (test_worker_loop)."""
    from worker_main import served_here, worker_slots

    with gr.Blocks() as demo:
        box = gr.Textbox()
        gr.Button().click(lambda text: text, box, box, api_name="unlimited", concurrency_limit=None)
        gr.Button().click(lambda text: text, box, box, api_name="limited", concurrency_limit=2)
        gr.Button().click(lambda text: text, box, box, api_name="default")
        box.change(lambda text: text, box, box, api_visibility="undocumented", queue=False)
    app = GradioApp(demo)
    slots = {f.api_name: worker_slots(app, f, "auto") for f in app.functions}
    lane = [f.api_name for f in app.functions if f.events is not None]
    assert slots == {"unlimited": 40, "limited": 2, "default": 1, **dict.fromkeys(lane, 1)}
    assert len(lane) == 1 and app.notes == [], "nothing differs from Gradio to note at start"
    hosted = [(f.api_name, n) for f, n in served_here(app, "unlimited", "auto")]
    assert hosted == [("unlimited", 40), (lane[0], 1)], "the lane hosted beside it keeps its own count"
    everything = gr.Blocks()
    with everything:
        box = gr.Textbox()
        gr.Button().click(lambda text: text, box, box, api_name="fast")
    everything.queue(default_concurrency_limit=None)
    everything.max_threads = 12  # as `launch(max_threads=12)` sets it
    app = GradioApp(everything)
    assert worker_slots(app, app.get("fast"), "auto") == 12
    assert worker_slots(app, app.get("fast"), "3") == 3, "WORKER_SLOTS overrides"


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
    app = load_app("tests.apps.gradio_apps:blocks")
    assert app.show_error is False
    assert protocol.config(app)["show_error"] is False, "/config says what Gradio's says once launched"
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
    assert loaded.stdout.strip() == "True 7 1048576 2 soft ['reverse', 'page_events']"
    assert "Running on" not in loaded.stdout + loaded.stderr


def test_queue_settings_under_a_main_guard_are_taken_and_nothing_else_of_the_block_runs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """`if __name__ == "__main__": demo.queue(max_size=8, ...).launch(...)`: an import skips that block,
    which left max_size and the concurrency limit at Gradio's defaults (no queue-full answer at all).
    `load_app` runs the block's `queue`/`launch` calls (launch held), less the launch arguments that need
    the block's own names (said when Surge would have used one), and nothing else of it (no argument
    parsing, no prints)."""
    caplog.set_level("WARNING", logger="surge.held_launch")
    app = load_app("tests.apps.gradio_main_guarded")
    assert (app.max_size, app.default_concurrency_limit, app.show_error, app.max_threads) == (8, 3, True, 7)
    printed = capsys.readouterr()
    assert "guarded block ran" not in printed.out + printed.err and "Running on" not in printed.out
    assert caplog.messages == [
        f"{Path('tests/apps/gradio_main_guarded.py').resolve()}:31: ran demo.launch(show_error=True, max_threads=7) "
        "from the __main__ block without max_file_size, which only the app's own run can evaluate"
    ], "the port is Gradio's server's, dropped without a word; max_file_size is Surge's, said"


def test_an_app_that_parses_its_command_line_at_import_gets_app_args_not_the_launchers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`args = parser.parse_args()` at the top of app.py (argparse): it read the launcher's `--app ...
    --port ...` and exited, so `make run` stopped on an argparse usage line. The app now sees the command
    line `python app.py $APP_ARGS` gives it; one that still exits is said in one line naming APP_ARGS."""
    (tmp_path / "parsing_app.py").write_text(
        "import argparse, sys\n"
        "import gradio as gr\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--greeting', required=True)\n"
        "args = parser.parse_args()\n"
        "seen = list(sys.argv)\n"
        "demo = gr.Interface(lambda name: f'{args.greeting} {name}', 'text', 'text', api_name='greet')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    launcher_argv = ["surge_local/launcher.py", "--app", "parsing_app:demo", "--port", "7860"]
    monkeypatch.setattr(sys, "argv", launcher_argv)
    with pytest.raises(AppNotFound, match=r'exited while loading \(code 2\).*APP_ARGS="--model small"'):
        load_app("parsing_app:demo")
    monkeypatch.setenv("APP_ARGS", "--greeting 'good day'")
    app = load_app("parsing_app:demo")
    assert app.get("greet").fn("Ada") == "good day Ada"
    assert sys.modules["parsing_app"].seen == [str(tmp_path / "parsing_app.py"), "--greeting", "good day"]
    assert sys.argv == launcher_argv, "the process's own command line is put back"


def test_launch_arguments_read_from_the_apps_command_line_are_dropped_and_the_app_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`demo.queue(max_size=3).launch(server_port=int(sys.argv[1]))` for `python app.py 7861`: under
    `make run` (or a worker) the command line is the launcher's, so `int(sys.argv[1])` fails; the app
    failed to load ("invalid literal for int()"). The port is dropped silently, a setting Surge takes
    with a warning, and a queue part that cannot run is skipped with one: the app loads."""
    caplog.set_level("WARNING", logger="surge.held_launch")
    (tmp_path / "argv_app.py").write_text(
        "import sys\n"
        "import gradio as gr\n"
        "demo = gr.Interface(lambda x: x, 'text', 'text', api_name='same')\n"
        "if __name__ == '__main__':\n"
        "    demo.queue(max_size=3).launch(server_port=int(sys.argv[1]))\n"
        "    demo.launch(show_error=True, max_threads=int(sys.argv[2]))\n"
        "    demo.queue(default_concurrency_limit=int(sys.argv[3]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["surge_local.launcher", "--app", "argv_app:demo"])
    app = load_app("argv_app:demo")
    assert (app.max_size, app.show_error, app.max_threads, app.default_concurrency_limit) == (3, True, 40, 1)
    file = tmp_path / "argv_app.py"
    assert caplog.messages == [
        f"{file}:6: ran demo.launch(show_error=True) from the __main__ block without max_threads, which only "
        "the app's own run can evaluate",
        f"{file}:7: not run from the __main__ block (list index out of range)",
    ]


def test_a_share_link_or_an_open_address_asked_of_launch_is_noted_as_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`launch(share=True, server_name="0.0.0.0")` went unsaid: the user waited for a public link; likewise an
    MCP server asked for (`mcp_server=True`)."""
    (tmp_path / "shared_app.py").write_text(
        "import gradio as gr\n"
        "demo = gr.Interface(lambda x: x, 'text', 'text', api_name='same')\n"
        "if __name__ == '__main__':\n"
        "    demo.launch(share=True, server_name='0.0.0.0', server_port=7861, mcp_server=True)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app("shared_app:demo")
    assert [note for note in app.notes if "launch(" in note] == [
        "note: launch(share=True) is not taken: Surge opens no share link (deployed, its endpoint is public)",
        "note: launch(server_name='0.0.0.0') is not taken: make run listens on 127.0.0.1 only",
        "note: launch(mcp_server=True) is not taken: Surge serves no MCP server (/gradio_api/mcp/)",
    ]


def test_translations_given_to_launch_reach_the_pages_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch(i18n=gr.I18n(...))` translates the app's labels in Gradio's page; Surge's /config said
    `i18n_translations: null` and the page showed the keys."""
    (tmp_path / "translated_app.py").write_text(
        "import gradio as gr\n"
        "i18n = gr.I18n(en={'greet': 'Greeting'}, fr={'greet': 'Salutation'})\n"
        "with gr.Blocks() as demo:\n"
        "    box = gr.Textbox(label=i18n('greet'))\n"
        "    box.submit(lambda text: text, box, box, api_name='same')\n"
        "if __name__ == '__main__':\n"
        "    demo.launch(i18n=i18n)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app("translated_app:demo")
    assert isinstance(app, GradioApp)
    assert app.wire_config()["i18n_translations"] == {"en": {"greet": "Greeting"}, "fr": {"greet": "Salutation"}}


@pytest.mark.parametrize(
    "statement",
    [
        "demo.queue(max_size=4).launch(auth=args.users, server_port=args.port)",
        "demo.queue(max_size=args.size).launch(auth=('admin', 'pass'))",  # no part of the chain runs
    ],
)
def test_a_login_under_a_main_guard_is_refused_even_when_its_value_needs_the_blocks_names(
    statement: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`launch(auth=args.users)` cannot be evaluated outside the block, nor can a chain whose queue part
    needs the block's names; serving the app without its login would open it to anyone, so it is refused
    as an evaluated `auth` is."""
    module = f"guarded_login_{abs(hash(statement))}"
    (tmp_path / f"{module}.py").write_text(
        "import gradio as gr\n"
        "demo = gr.Interface(lambda x: x, 'text', 'text')\n"
        "if __name__ == '__main__':\n"
        "    args = object()\n"
        f"    {statement}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(Unsupported, match=r"launch\(auth=\.\.\.\) asks for Gradio's login"):
        load_app(f"{module}:demo")


def test_the_pages_own_events_run_in_one_lane_through_the_queue() -> None:
    """A ChatInterface's chat box (and an Interface's examples, a Blocks' private steps) run events that
    Gradio's API does not list, most with queue=False: they share one lane, `page_events`, and the config
    the page reads says queue: true for every served event, so the page joins the queue for each."""
    app = load_app("tests.apps.gradio_apps:chat")
    assert [f.api_name for f in app.functions] == ["reply", "page_events"] and app.notes == []
    lane = app.get("page_events")
    config = protocol.config(app)
    served = [d for d in config["dependencies"] if d["backend_fn"]]
    assert served and all(d["queue"] is True for d in served)
    assert set(lane.events or {}) == {d["id"] for d in served} - {app.get("reply").fn_index}
    (clear,) = [d["id"] for d in config["dependencies"] if d["api_name"] == "_clear_and_save_textbox"]
    assert app.by_index(clear) is lane and lane.streams([clear]) is False
    reply = app.get("reply")
    assert app.host_of(lane) is reply and app.served_by(reply) == [reply, lane], "the lane runs in reply's workers"
    assert app.host_of(reply) is reply and app.served_by(lane) == [lane]
    kept = _KeptStates()
    app.states = kept  # type: ignore[attr-defined]
    textbox, _saved = _as_session("session-one", lane.fn, clear, "hi there")
    assert textbox["value"] == ""
    assert (kept.reads, kept.writes) == (0, 1), "a step that only writes a state reads nothing first"
    assert load_app("tests.apps.gradio_apps:blocks").notes == []
    instant = load_app("tests.apps.gradio_apps:unqueued")
    assert instant.notes == [
        "note: event 'instant' sets queue=False; Surge runs it on a worker through the queue, "
        "under no concurrency limit"
    ]
    assert instant.concurrency_limit(instant.get("instant").concurrency_id) is None


def test_a_deployments_way_in_lowers_the_largest_upload_clients_are_told() -> None:
    """Behind API Gateway an upload travels base64 inside Lambda's 6 MB request: /config says the lower
    limit, so Gradio's page and gradio_client refuse a larger file before sending it."""
    settings = Settings(
        app_module="tests.apps.gradio_apps:image",
        events_table_name="events",
        state_table_name="state",
        queue_url_prefix="http://sqs/",
        ingress_body_limit_bytes=4_400_000,
    )
    assert GradioApp(gr.Interface(lambda x: x, "image", "image"), settings).wire_config()["max_file_size"] == 4_400_000
    small = gr.Interface(lambda x: x, "image", "image")
    small.max_file_size = 1_000
    assert GradioApp(small, settings).wire_config()["max_file_size"] == 1_000
    local = settings.model_copy(update={"ingress_body_limit_bytes": 0})
    assert GradioApp(gr.Interface(lambda x: x, "image", "image"), local).max_file_size == 50 * 1024 * 1024


def test_a_timer_event_is_served_and_its_cost_named_at_start() -> None:
    """A gr.Timer ticks in the page (Gradio 5+), which joins its event each time, as against Gradio."""
    app = load_app("tests.apps.gradio_apps:timer")
    assert app.get("clock").fn()
    assert app.notes == ["note: event 'clock' runs on a gr.Timer: every open page joins it each 1 s, one job each time"]


def test_a_deep_link_button_is_named_at_start_as_not_served() -> None:
    with gr.Blocks() as demo:
        text = gr.Textbox()
        text.submit(lambda value: value, text, text, api_name="echo")
        gr.DeepLinkButton()
    assert [note for note in GradioApp(demo).notes if "DeepLinkButton" in note] == [
        "note: gr.DeepLinkButton is not served: Gradio saves the session's component values in its process "
        "(/gradio_api/deep_link), which Surge does not keep; the button copies no link"
    ]


def test_an_unload_event_is_named_at_start_as_not_run() -> None:
    """Gradio runs `demo.unload(fn)` when a page's tab closes; Surge cannot see that, and said nothing."""
    with gr.Blocks() as demo:
        text = gr.Textbox()
        text.submit(lambda value: value, text, text, api_name="echo")
        demo.unload(lambda: None)
    (note,) = GradioApp(demo).notes
    assert note.startswith("note: the page's event") and "is demo.unload()" in note


def test_an_app_whose_every_event_is_inside_gr_render_is_refused_naming_them() -> None:
    """Surge said only that the app had no public event, which a render-only app plainly has on its page."""
    with gr.Blocks() as demo:
        count = gr.Number(value=2)

        @gr.render(inputs=count)
        def buttons(n: float) -> None:
            for i in range(int(n)):
                gr.Button(f"Button {i}").click(lambda: None, None, None, api_name=f"press_{i}")

    with pytest.raises(Unsupported, match=r"no public event .*@gr.render function 'buttons' is inside @gr.render"):
        GradioApp(demo)

    app = load_app("tests.apps.gradio_apps:rendered_page")
    assert isinstance(app, GradioApp)
    served = app.blocks
    assert any(note.startswith("note: the page's @gr.render function 'show' is not served") for note in app.notes)
    # The visitor whose page joins it is told what is not served and why (it read "No function with fn_index 1
    # is served by this app.").
    (render_id,) = [i for i, fn in served.fns.items() if fn.renderable is not None]
    assert app.unserved == {
        render_id: "Surge does not serve this part of the page (@gr.render function 'show'): it is inside "
        "@gr.render: rendering needs the session's state in one process."
    }


def test_a_blocks_mounted_in_fastapi_keeps_the_mounts_settings_and_the_fastapi_app_is_named_as_such() -> None:
    """`gr.mount_gradio_app` shows errors by default (it is launch for an app run by uvicorn); Surge
    served the mounted Blocks with show_error off, and pointed at the FastAPI app said only its type."""

    with gr.Blocks() as demo:
        text = gr.Textbox()
        text.submit(lambda value: value, text, text, api_name="echo")
    mounted = gr.mount_gradio_app(FastAPI(), demo, path="/gradio")
    assert GradioApp(demo).show_error is True
    with gr.Blocks() as guarded:
        text = gr.Textbox()
        text.submit(lambda value: value, text, text, api_name="echo")
    gr.mount_gradio_app(FastAPI(), guarded, path="/", auth=("admin", "secret"))
    with pytest.raises(Unsupported, match="asks for Gradio's login"):
        GradioApp(guarded)
    sys.modules["mounted_app"] = SimpleNamespace(app=mounted, __name__="mounted_app")  # type: ignore[assignment]
    try:
        with pytest.raises(AppNotFound, match=r"name the Blocks it mounts .*APP=module:demo"):
            load_app("mounted_app:app")
    finally:
        del sys.modules["mounted_app"]


def test_a_state_whose_file_urls_name_other_files_has_changed() -> None:
    """Only a file's own `url` (beside its `path`) is left out of the comparison: a state holding bare URLs
    of two different files is a change (a first take counted every such URL the same, and the new value
    was never kept)."""
    import pickle

    from surge.gradio_app import _map_strings, _same_files

    def by_contents(value: object) -> object:
        return _map_strings(value, lambda text: text, file_urls=False)

    before = {"latest": "/gradio_api/file=/tmp/a/cat.png"}
    assert not _same_files(pickle.dumps(before), {"latest": "/gradio_api/file=/tmp/b/dog.png"}, by_contents)
    kept = {"file": {"path": "same", "url": "https://demo.example/gradio_api/file=/tmp/a/img.png"}}
    again = {"file": {"path": "same", "url": "https://demo.example/gradio_api/file=/tmp/b/img.png"}}
    assert _same_files(pickle.dumps(kept), again, by_contents), "a file's own URL names one of its copies"


def test_an_apps_own_subclass_of_blocks_is_served_and_a_component_is_refused_in_one_line() -> None:
    """`class MyBlocks(gr.Blocks)` was refused ("is a MyBlocks; expected ... a gr.Blocks"), and a
    component named as the app crashed with an AttributeError: only the class's module was looked at."""
    from surge.application import AppNotFound, load_app
    from surge.gradio_app import GradioApp

    app = load_app("tests.apps.gradio_apps:own_blocks")
    assert isinstance(app, GradioApp) and [f.api_name for f in app.functions] == ["own"]
    with pytest.raises(AppNotFound, match=r"is a Textbox; expected a surge\.App or a gr\.Blocks"):
        load_app("tests.apps.gradio_apps:lone_textbox")
