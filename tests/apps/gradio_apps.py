"""Unchanged Gradio apps for the cross-process tests: an image echo, a batched event, a streaming chat,
a chat that counts its history, a counter in a gr.State, an Interface with examples, two events sharing a
concurrency_id, an event with no concurrency limit, a public event with queue=False, and one with a feature
Surge refuses."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from tests.apps.timing_app import hold, record

image = gr.Interface(
    lambda photo: photo, gr.Image(type="numpy"), gr.Image(type="numpy", format="png"), api_name="echo_image"
)
image.queue(max_size=50)


def trim_words(words: list[str], lengths: list[float]) -> tuple[list[str]]:
    record("trim_words", size=len(words))
    time.sleep(0.3)
    return ([word[: int(length)] for word, length in zip(words, lengths, strict=True)],)


def shout(text: str, progress: Any = gr.Progress()) -> str:
    for _ in progress.tqdm(range(3), desc="shouting"):
        time.sleep(0.05)
    if text == "fail":
        raise gr.Error("no shouting allowed", title="Refused", duration=3)
    return text.upper()


def _timed(name: str, tag: str) -> str:
    start = time.time()
    time.sleep(0.2)
    record("shared", start=start, end=time.time(), tag=tag, event=name)
    return tag


def first(tag: str) -> str:
    return _timed("first", tag)


def second(tag: str) -> str:
    return _timed("second", tag)


def lasting(tag: str) -> str:
    """An I/O-bound call (a request to some API): with no concurrency limit Gradio runs up to
    `max_threads` of them at once."""
    start = time.time()
    time.sleep(1.5)  # long enough for all eight joins of the test to arrive on a busy machine
    record("lasting", start=start, end=time.time(), tag=tag)
    return tag


def whoami(tag: str, request: gr.Request, event: gr.EventData) -> str:
    """What a function learns of its caller through `gr.Request`, and of the event through `gr.EventData`."""
    target = event.target.elem_id if event.target is not None else None
    return json.dumps(
        {
            "tag": tag,
            "session": request.session_hash,
            "headers": dict(request.headers),
            "x_demo": request.headers["X-Demo"] if "x-demo" in request.headers else None,
            "host": request.client.host,
            "port": request.client.port,
            "path": request.url.path,
            "base_url": str(request.base_url),
            "method": request.method,
            "event": event._data,
            "target": target,
        }
    )


def ticks(tag: str) -> Iterator[str]:
    """A long generator that a visitor cancels: each step and its closing are recorded."""
    try:
        for step in range(40):
            record("ticks", tag=tag, step=step)
            time.sleep(0.2)
            yield f"{tag} {step}"
    finally:
        record("ticks", tag=tag, closed=True)


def pause(tag: str) -> str:
    """A call that returns once, after a while (a model's one long step): its start and end are recorded.
    It returns when the test releases `tag` (`timing_app.hold`), so the test's steps cannot outlast it."""
    record("pause", tag=tag, started=True)
    hold(-1, tag)
    record("pause", tag=tag, ended=True)
    return f"{tag} done"


def twice(tag: str) -> tuple[str, list[str]]:
    """One file of the call's, returned in two outputs (a file, and a list holding it twice)."""
    path = Path(tempfile.mkdtemp()) / f"{tag}.txt"
    path.write_text(f"contents of {tag}")
    return str(path), [str(path), str(path)]


def outside_file(tag: str) -> str:
    """A file of the machine that the app did not create, outside its folder and the temp folder."""
    return "/etc/passwd"


def echo_file(path: str) -> tuple[str, str]:
    """The uploaded file back, and its name as the function saw it."""
    return path, Path(path).name


def notice(tag: str) -> str:
    gr.Info(f"working on {tag}")
    gr.Warning("almost done", duration=3)
    return tag


with gr.Blocks(title="gradio events") as blocks:
    word = gr.Textbox(elem_id="word")
    length = gr.Number()
    out = gr.Textbox()
    go = gr.Button()
    go.click(trim_words, [word, length], out, api_name="trim_words", batch=True, max_batch_size=8)
    go.click(shout, word, out, api_name="shout", time_limit=0.001)  # Gradio reads it only for .stream()
    go.click(first, word, out, api_name="first", concurrency_id="gpu", concurrency_limit=1)
    go.click(second, word, out, api_name="second", concurrency_id="gpu", concurrency_limit=1)
    go.click(lasting, word, out, api_name="lasting", concurrency_limit=None)
    go.click(whoami, word, out, api_name="whoami")
    go.click(notice, word, out, api_name="notice")
    go.click(ticks, word, out, api_name="ticks", concurrency_limit=1)
    go.click(pause, word, out, api_name="pause", concurrency_limit=1)
    go.click(twice, word, [gr.File(), gr.File(file_count="multiple")], api_name="twice")
    go.click(outside_file, word, gr.File(), api_name="outside_file")
    go.click(echo_file, gr.File(type="filepath"), [gr.File(), out], api_name="echo_file")
blocks.queue(max_size=100, default_concurrency_limit=4)


def reply(message: str, history: list[Any]) -> Iterator[str]:
    text = f"You said: {message}"
    for end in range(1, len(text) + 1):
        yield text[:end]


chat = gr.ChatInterface(reply)

with gr.Blocks() as timer:
    clock = gr.Textbox()
    gr.Timer(1.0).tick(lambda: time.ctime(), None, clock, api_name="clock")

with gr.Blocks() as streamed:
    camera = gr.Image(sources=["webcam"], streaming=True)
    camera.stream(lambda frame: frame, camera, camera, api_name="mirror")


def tone() -> Iterator[tuple[int, Any]]:
    """A text-to-speech model's answer in chunks, for a streaming audio output."""
    import numpy as np

    for _ in range(3):
        yield 16000, np.zeros(8000, dtype=np.int16)


with gr.Blocks() as streamed_audio:
    spoken = gr.Audio(streaming=True, autoplay=True)
    gr.Button("speak").click(tone, None, spoken, api_name="speak")

with gr.Blocks() as unqueued:
    box = gr.Textbox()
    box.submit(lambda text: text, box, box, api_name="instant", queue=False)


def recall(message: str, history: list[Any]) -> Iterator[str]:
    """Streams how many messages came before this one (the history Gradio keeps per session)."""
    text = f"{len(history)} earlier: {message}"
    for end in range(1, len(text) + 1):
        yield text[:end]


memory_chat = gr.ChatInterface(recall, api_name="recall")


def bump(total: int) -> tuple[int, int]:
    return total + 1, total + 1


with gr.Blocks() as counter:
    total = gr.State(0)
    shown = gr.Number(label="total")
    gr.Button("bump").click(bump, total, [total, shown], api_name="bump")
    gr.Button("show").click(lambda kept: kept, total, shown, api_name="show")


def watched_note(kept: int) -> str:
    return f"state changed to {kept}"


with gr.Blocks() as watched:
    """A gr.State with a .change listener: Gradio fires it when an event changes the state."""
    watched_total = gr.State(0)
    note = gr.Textbox(label="note")
    gr.Button("bump").click(lambda kept: kept + 1, watched_total, watched_total, api_name="bump")
    gr.Button("same").click(lambda kept: kept, watched_total, watched_total, api_name="same")
    gr.Button("one").click(lambda: 1, None, watched_total, api_name="one")  # writes it without reading it
    watched_total.change(watched_note, watched_total, note, api_name="noted")


with gr.Blocks() as undocumented:
    """An event kept out of the API docs but callable by name (Gradio's `api_visibility="undocumented"`)."""
    said = gr.Textbox(label="text")
    answer = gr.Textbox(label="answer")
    gr.Button("shout").click(lambda text: text.upper(), said, answer, api_name="shout")
    gr.Button("whisper").click(
        lambda text: text.lower(), said, answer, api_name="whisper", api_visibility="undocumented"
    )


def greet(name: str, times: float) -> str:
    return " ".join([f"Hello {name}!"] * int(times))


greeter = gr.Interface(
    greet, [gr.Textbox(label="name"), gr.Number(label="times")], gr.Textbox(label="greeting"), examples=[["Ada", 2]]
)


def write_note(text: str) -> str:
    """A file the function writes, with a name Gradio keeps: the visitor downloads it from the page."""
    path = Path(tempfile.mkdtemp()) / "résumé 1.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


note = gr.Interface(write_note, gr.Textbox(label="text"), gr.File(label="note"), api_name="write_note")


def slow_step(text: str) -> str:
    time.sleep(1.5)
    return text


with gr.Blocks() as gated:
    step_in = gr.Textbox()
    step_out = gr.Textbox()
    gr.Button("go").click(lambda text: text, step_in, step_out, api_name="go")
    # Two page-only steps: a slow one Gradio queues under a limit of 1, and a quick one it runs at once.
    step_in.submit(slow_step, step_in, step_out, api_visibility="undocumented", concurrency_limit=1)
    step_in.change(lambda text: text.upper(), step_in, step_out, api_visibility="undocumented", queue=False)


def shrinking(steps: float) -> Iterator[Any]:
    """A JSON output whose nested lists lose items at two levels from one step to the next (a table losing
    columns and rows): `gradio.utils.diff` numbers such deletes wrongly."""
    yield [[1, 2, 3], 5, 6]
    yield [[1], 5]
    yield {"headers": ["a", "b", "c"], "data": [[1, 2, 3], [4, 5, 6]]}
    yield {"headers": ["a"], "data": [[1], [4]]}


def tokens(count: float) -> Iterator[str]:
    """A chat model's answer streamed a token at a time, the output growing by a few characters a step."""
    text = ""
    for _ in range(int(count)):
        text += "tok "
        yield text


with gr.Blocks() as token_stream:
    gr.Button().click(tokens, gr.Number(), gr.Textbox(), api_name="tokens")
    gr.Button().click(shrinking, gr.Number(), gr.JSON(), api_name="shrinking")


def photo(size: int = 1000) -> np.ndarray:
    """A noisy photo-like RGB image (noise does not compress: a 1000 x 1000 PNG is about 3 MB)."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def files_seen(message: dict[str, Any], history: list[Any]) -> str:
    """A multimodal chat turn: each file of the history, by name, with its contents as this call reads them."""
    seen = []
    for turn in history:
        content = turn["content"]
        for item in content if isinstance(content, list) else [content]:
            path = (item.get("file") or item).get("path") if isinstance(item, dict) else None
            if path:
                seen.append(f"{Path(path).name}={Path(path).read_text() if Path(path).is_file() else 'MISSING'}")
    return f"{len(message.get('files', []))} new; earlier: {', '.join(seen) or 'none'}"


multimodal = gr.ChatInterface(files_seen, multimodal=True)


def _square(shade: int) -> str:
    """A small PNG of one shade, in a folder of its own (Gradio copies it into its cache at start)."""
    from PIL import Image

    path = Path(tempfile.mkdtemp()) / f"shade{shade}.png"
    Image.fromarray(np.full((8, 8, 3), shade, dtype=np.uint8)).save(path)
    return str(path)


def describe(path: str) -> str:
    return f"{Path(path).name}: {Path(path).stat().st_size} bytes"


described = gr.Interface(
    describe,
    gr.Image(type="filepath", value=_square(40)),
    "text",
    examples=[[_square(200)]],
    api_name="describe",
)


def write_draft(text: str) -> tuple[str, str]:
    """A file the function writes where `tempfile` puts it, kept in a gr.State for the session's next call."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as draft:
        draft.write(text)
    record("drafts", path=draft.name)
    return draft.name, "saved"


def read_draft(path: str | None) -> str:
    return Path(path).read_text() if path and Path(path).is_file() else "MISSING"


with gr.Blocks() as drafts:
    kept = gr.State(None)
    said = gr.Textbox()
    gr.Button("write").click(write_draft, said, [kept, said], api_name="write_draft")
    gr.Button("read").click(read_draft, kept, said, api_name="read_draft")


with gr.Blocks() as multipage:
    """A multipage app (`demo.route`): Gradio serves its second page at /second."""
    home_in = gr.Textbox(label="home")
    home_in.submit(lambda text: text, home_in, home_in, api_name="home")
with multipage.route("Second page", "/second"):
    second_in = gr.Textbox(label="second_in")
    second_out = gr.Textbox(label="second_out")
    gr.Button("go").click(lambda text: f"SECOND:{text.upper()}", second_in, second_out, api_name="second")


with gr.Blocks() as closed_api:
    """`queue(api_open=False)`: Gradio refuses direct calls (`/gradio_api/run/`) of queued events."""
    closed_in = gr.Textbox()
    closed_in.submit(lambda text: text.upper(), closed_in, closed_in, api_name="shout")
    closed_in.blur(lambda text: text.lower(), closed_in, closed_in, api_name="quiet", queue=False)
closed_api.queue(api_open=False)


with gr.Blocks() as rendered_page:
    """A page with a `@gr.render` (not served) beside an event that is."""
    rendered_name, rendered_greeting = gr.Textbox(), gr.Textbox()
    rendered_name.submit(lambda text: f"Hello {text}", rendered_name, rendered_greeting, api_name="greet")

    @gr.render(inputs=rendered_name)
    def show(text: str) -> None:
        gr.Markdown(text)


remembered_chat = gr.ChatInterface(lambda message, history: message, save_history=True)
"""A chat that keeps its conversations in the browser: its "New chat" button's icon is a file of gradio's."""

flagged_chat = gr.ChatInterface(lambda message, history: message, flagging_mode="manual")
"""A chat with a Flag button: its `/flag` endpoint's parameter has a translated label."""


def keep_in_history(file: str | None) -> list[dict[str, str | None]]:
    """A chat's step that copies what the page shows into its history state, as a multimodal ChatInterface
    writes its chatbot back to its history: the same file comes back under the name its last output gave it,
    and each message keeps the URL of its copy."""
    return [{"file": {"path": file, "url": f"https://demo.example/gradio_api/file={file}"}}]


with gr.Blocks() as file_history:
    shown = gr.File()
    history = gr.State([])
    echoed = gr.File()
    shown.change(keep_in_history, shown, history, api_name="keep")
    history.change(lambda kept: kept[-1]["file"]["path"] if kept else None, history, echoed, api_name="show")


class _OwnBlocks(gr.Blocks):
    """An app's own subclass of gr.Blocks, which Gradio serves as any Blocks."""


with _OwnBlocks() as own_blocks:
    _own_text = gr.Textbox()
    _own_text.submit(lambda text: text, _own_text, _own_text, api_name="own")

lone_textbox = gr.Textbox()
"""A component, not an app: named as the app, it is refused in one line."""
