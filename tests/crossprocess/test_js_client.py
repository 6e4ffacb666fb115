"""The official JavaScript client (`@gradio/client` in Node, tests/js) against the local stack, unchanged:
predictions, errors, the queue's status events and files, as a caller of the JS client sees them."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from surge_local.launcher import LocalStack, free_port

pytestmark = pytest.mark.crossprocess

JS = Path(__file__).resolve().parents[1] / "js"
Line = dict[str, Any]


@pytest.fixture(scope="module")
def node() -> str:
    """Node and the installed client; a missing one fails the tests (CI has both), never skips them."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: these tests run @gradio/client in Node 20+ (apt-get install nodejs)")
    if not (JS / "node_modules" / "@gradio" / "client" / "package.json").is_file():
        pytest.fail("@gradio/client is not installed: run `make tests/js/node_modules/.installed` (npm ci)")
    return found


def run_js(node: str, url: str, calls: list[dict[str, Any]], timeout_s: float = 30) -> list[Line]:
    """Every call at once from one connected client (tests/js/predict.mjs); the JSON lines it printed."""
    done = subprocess.run(
        [node, str(JS / "predict.mjs"), url, json.dumps(calls)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and lines[0]["event"] == "connected", done.stdout + done.stderr
    return lines


def of_call(lines: list[Line], call: int, event: str | None = None) -> list[Line]:
    return [line for line in lines if line.get("call") == call and (event is None or line["event"] == event)]


@pytest.fixture(scope="module")
def image_stack() -> Iterator[LocalStack]:
    stack = LocalStack("examples.gradio_image_app:demo", port=free_port()).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_predict_returns_each_functions_output_with_the_clients_own_short_session_hash(
    node: str, demo_stack: LocalStack
) -> None:
    lines = run_js(
        node,
        demo_stack.url,
        [
            {"endpoint": "/echo", "data": ["hello from node"], "mode": "predict"},
            {"endpoint": "/trim_words", "data": {"words": "hello world", "lengths": 5}, "mode": "predict"},
        ],
    )
    assert len(lines[0]["session_hash"]) < 16, "the client draws about ten characters from Math.random"
    assert "/echo" in lines[0]["endpoints"]
    assert of_call(lines, 0) == [{"call": 0, "event": "result", "data": ["hello from node"]}]
    assert of_call(lines, 1) == [{"call": 1, "event": "result", "data": ["hello"]}]


def test_a_function_that_raises_gives_the_client_an_error_with_its_message(node: str, demo_stack: LocalStack) -> None:
    lines = run_js(
        node,
        demo_stack.url,
        [
            {"endpoint": "/trim_words", "data": ["abc", -2], "mode": "predict"},
            {"endpoint": "/trim_words", "data": ["abc", -2], "mode": "submit"},
        ],
    )
    message = "Length must be 0 or more; got -2 for 'abc'."
    assert of_call(lines, 0) == [{"call": 0, "event": "error", "message": message, "stage": "error"}]
    last = of_call(lines, 1)[-1]
    assert (last["event"], last["stage"], last["message"]) == ("status", "error", message)
    assert not of_call(lines, 1, "data")


def test_a_generator_streams_its_outputs_and_progress_then_completes(node: str, demo_stack: LocalStack) -> None:
    # 50 ms a word, 1 s in all: progress is the latest value of a running job, so a stream that first
    # reads the job after a shorter run (it reads a waiting job every 0.5 s at most) shows none.
    words = " ".join(["one", "two"] + [f"w{i}" for i in range(18)])
    lines = run_js(node, demo_stack.url, [{"endpoint": "/stream_tokens", "data": [words], "mode": "submit"}])
    outputs = [line["data"] for line in of_call(lines, 0, "data")]
    assert outputs[0] == [""] and outputs[-1] == [words]
    assert ["one two"] in outputs, "partial outputs arrive as the generator yields them"
    progress = [line["progress_data"][0] for line in of_call(lines, 0, "status") if line.get("progress_data")]
    assert progress and progress[-1]["length"] == 20 and progress[-1]["unit"] == "tokens"
    assert of_call(lines, 0, "status")[-1]["stage"] == "complete"


def test_a_waiting_job_sees_its_place_in_the_queue_and_an_eta(node: str, demo_stack: LocalStack) -> None:
    """stream_tokens runs one job at a time (`default_concurrency_limit=1`): of four joined together,
    the later ones wait behind the first and are shown their rank."""
    words = " ".join(f"w{i}" for i in range(8))
    calls = [{"endpoint": "/stream_tokens", "data": [words], "mode": "submit"} for _ in range(4)]
    lines = run_js(node, demo_stack.url, calls, timeout_s=45)
    queued = [line for line in lines if line["event"] == "status" and line.get("size") is not None]
    assert max(line["position"] for line in queued) >= 1, queued
    assert all(line["size"] >= line["position"] + 1 for line in queued), "a line counts the job itself"
    assert all(isinstance(line["eta"], int | float) for line in queued)
    for call in range(4):
        assert of_call(lines, call, "data")[-1]["data"] == [words]
        assert of_call(lines, call, "status")[-1]["stage"] == "complete"


def _on_queue_app(node: str, record_dir: Path, calls: list[dict[str, Any]]) -> list[Line]:
    """`calls` from one client against a stack of `queue_app` (limit 1, max_size 2)."""
    stack = LocalStack("tests.apps.queue_app:app", port=free_port(), extra_env={"RECORD_DIR": str(record_dir)})
    stack.start()
    try:
        return run_js(node, stack.url, calls, timeout_s=40)
    finally:
        stack.stop()


def _cancelled_while_waiting(start_after_s: float, cancel_after_s: float) -> dict[str, Any]:
    """A call of `/slow` that waits behind another (limit 1) and is cancelled: the client drops its stream."""
    return {
        "endpoint": "/slow",
        "data": [1, "cancelled"],
        "mode": "submit",
        "start_after_s": start_after_s,
        "cancel_after_s": cancel_after_s,
    }


def test_a_session_goes_on_after_its_client_cancels_a_waiting_job(node: str, tmp_path: Path) -> None:
    """@gradio/client 2.7 fails on a cancelled job's empty completion (its own TypeError), drops its
    stream, and opens another for its next call. Surge sent that completion again on the new stream, the
    client failed on it again, and its next call never ended (on Gradio it does)."""
    calls = [
        {"endpoint": "/slow", "data": [2, "ahead"], "mode": "submit"},
        _cancelled_while_waiting(0.3, 0.5),
        {"endpoint": "/slow", "data": [0.1, "after"], "mode": "predict", "start_after_s": 4},
    ]
    lines = _on_queue_app(node, tmp_path, calls)
    assert of_call(lines, 1, "cancel"), lines
    assert [line["data"] for line in of_call(lines, 2, "result")] == [["after"]], lines


def test_a_generator_streaming_while_the_client_drops_its_stream_ends_with_its_whole_output(
    node: str, tmp_path: Path
) -> None:
    """@gradio/client drops its stream when a cancelled job's completion trips it, with a generator of the
    session still streaming; the client's next call opens another. That stream sent the generator's
    messages from its first again, and the client applied the diffs twice. It sends the rest."""
    calls = [
        {"endpoint": "/slow", "data": [3, "ahead"], "mode": "submit"},
        {"endpoint": "/count", "data": [12, "n"], "mode": "submit", "start_after_s": 0.2},
        _cancelled_while_waiting(0.4, 0.4),
        {"endpoint": "/slow", "data": [0.1, "after"], "mode": "predict", "start_after_s": 1.8},
    ]
    lines = _on_queue_app(node, tmp_path, calls)
    assert of_call(lines, 2, "cancel"), lines
    assert not of_call(lines, 1, "error"), lines
    assert of_call(lines, 1, "data")[-1]["data"] == ["n " + " ".join(str(k) for k in range(12))], lines
    assert [line["data"] for line in of_call(lines, 3, "result")] == [["after"]], lines


def test_a_gradio_app_takes_an_uploaded_photo_and_returns_a_file_url_the_client_can_fetch(
    node: str, image_stack: LocalStack, tmp_path: Path
) -> None:
    photo = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    lines = run_js(
        node,
        image_stack.url,
        [
            {"endpoint": "/sepia", "data": {"photo": {"file": str(path)}, "strength": 1}, "mode": "predict"},
            {"endpoint": "/sepia", "data": [None, 0.5], "mode": "submit"},
        ],
    )
    ((result,),) = [line["data"] for line in of_call(lines, 0, "result")]
    assert result["url"].startswith(f"{image_stack.url}/gradio_api/file="), "an absolute URL, as Gradio gives"
    toned = np.asarray(Image.open(io.BytesIO(httpx.get(result["url"], follow_redirects=True).content)))
    assert toned.shape == (16, 16, 3) and toned[0, 0, 0] > toned[0, 0, 2] and not np.array_equal(toned, photo)
    error = of_call(lines, 1, "status")[-1]
    assert (error["stage"], error["message"], error["title"]) == ("error", "Upload a photo first.", "Error")
