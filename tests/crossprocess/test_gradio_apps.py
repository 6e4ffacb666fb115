"""Unchanged Gradio apps served by Surge, checked with the real gradio_client across worker processes."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from surge import protocol
from surge.declared import main
from surge_local.launcher import LocalStack, free_port
from tests.apps.gradio_apps import photo
from tests.apps.timing_app import release
from tests.crossprocess.helpers import join, messages, new_session, records, wait_until

pytestmark = pytest.mark.crossprocess


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


def _stack(spec: str, workers: int | dict[str, int], record_dir: Path) -> LocalStack:
    return LocalStack(spec, port=free_port(), workers=workers, extra_env={"RECORD_DIR": str(record_dir)}).start()


@pytest.fixture(scope="module")
def image_stack(gradio_image_stack: LocalStack) -> LocalStack:
    return gradio_image_stack  # shared with the page tests (tests/crossprocess/conftest.py)


@pytest.fixture(scope="module")
def blocks_stack(record_dir: Path) -> Iterator[LocalStack]:
    # Two workers where crossing workers is the point (a concurrency_id shared fleet-wide), one elsewhere.
    stack = _stack("tests.apps.gradio_apps:blocks", {"first": 2}, record_dir)
    try:
        yield stack
    finally:
        stack.stop()


def test_image_interface_round_trips_a_photo_of_megabytes_across_two_workers(
    image_stack: LocalStack, tmp_path: Path
) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(photo()).save(path)
    assert path.stat().st_size > 2_500_000
    client = Client(image_stack.url, verbose=False)
    jobs = [client.submit(handle_file(str(path)), api_name="/echo_image") for _ in range(4)]
    for job in jobs:
        result = np.asarray(Image.open(job.result()))
        assert result.shape == (1000, 1000, 3)
        assert np.array_equal(result, photo())


def test_an_empty_file_uploads_and_comes_back_empty(image_stack: LocalStack) -> None:
    """An empty file's upload waited for the emulator's "100 Continue" and failed after 10 s with 503."""
    started = time.monotonic()
    response = httpx.post(f"{image_stack.url}/gradio_api/upload", files=[("files", ("empty.txt", b""))], timeout=30)
    assert response.status_code == 200 and time.monotonic() - started < 5, response.text
    (name,) = response.json()
    stored = httpx.get(f"{image_stack.url}/gradio_api/file={name}", follow_redirects=True, timeout=30)
    assert stored.status_code == 200 and stored.content == b""


def test_an_input_file_at_a_private_address_is_never_fetched(image_stack: LocalStack) -> None:
    """A URL is downloaded as Gradio downloads it, by a public address only: never the instance's metadata."""
    client = Client(image_stack.url, verbose=False)
    elsewhere = {"path": "http://169.254.169.254/latest/meta-data", "meta": {"_type": "gradio.FileData"}}
    with pytest.raises(AppError, match=r"Could not fetch the input file .* failed validation"):
        client.predict(elsewhere, api_name="/echo_image")


def test_a_file_input_given_as_a_bare_path_is_read_as_gradio_reads_it_an_upload_yes_a_disk_path_no(
    image_stack: LocalStack, tmp_path: Path
) -> None:
    """`{"path": <upload>}` without `meta` (curl, the docs' examples) is a FileData to Gradio; Surge passed
    the dict on and the worker failed opening the upload's name as a local path."""
    path = tmp_path / "small.png"
    Image.fromarray(photo(8)).save(path)
    (name,) = httpx.post(
        f"{image_stack.url}/gradio_api/upload", files=[("files", ("small.png", path.read_bytes()))]
    ).json()

    def call(value: dict[str, str]) -> list[tuple[str, str]]:
        event_id = httpx.post(f"{image_stack.url}/gradio_api/call/echo_image", json={"data": [value]}).json()[
            "event_id"
        ]
        body = httpx.get(f"{image_stack.url}/gradio_api/call/echo_image/{event_id}", timeout=60).text
        return [
            (kind, data) for kind, data in re.findall(r"event: (\w+)\r?\ndata: (.*)\r?\n", body) if kind != "heartbeat"
        ]

    ((kind, data),) = call({"path": name})
    assert kind == "complete" and json.loads(data)[0]["path"].endswith(".png")
    ((kind, data),) = call({"path": "/etc/passwd"})
    assert kind == "error" and "must first be uploaded" in data


def test_a_script_posting_to_the_run_route_gets_the_output_as_from_gradio(
    image_stack: LocalStack, tmp_path: Path
) -> None:
    """`requests.post(url + "/gradio_api/run/<api_name>", json={"data": [...]})`, the REST call of many
    scripts and tutorials: Gradio answers the output itself; here too, the file by a URL that serves it."""
    path = tmp_path / "small.png"
    Image.fromarray(photo(8)).save(path)
    (name,) = httpx.post(
        f"{image_stack.url}/gradio_api/upload", files=[("files", ("small.png", path.read_bytes()))]
    ).json()
    uploaded = {"path": name, "meta": {"_type": "gradio.FileData"}}
    answer = httpx.post(f"{image_stack.url}/gradio_api/run/echo_image", json={"data": [uploaded]}, timeout=60)
    assert answer.status_code == 200
    body = answer.json()
    assert body["is_generating"] is False and body["changed_state_ids"] == []
    (image,) = body["data"]
    served = httpx.get(image["url"], follow_redirects=True, timeout=30)
    assert served.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.content))), photo(8))
    # A file inline as a data: URL, which Gradio takes as an input too (it was refused as not uploaded).
    inline = {"url": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode(), "meta": uploaded["meta"]}
    answer = httpx.post(f"{image_stack.url}/gradio_api/run/echo_image", json={"data": [inline]}, timeout=60)
    assert answer.status_code == 200, answer.text
    (image,) = answer.json()["data"]
    served = httpx.get(image["url"], follow_redirects=True, timeout=30)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.content))), photo(8))
    broken = {"url": "data:image/png;base64,not*base64", "meta": uploaded["meta"]}
    refused = httpx.post(f"{image_stack.url}/gradio_api/run/echo_image", json={"data": [broken]}, timeout=60)
    assert refused.status_code == 500 and "not valid base64" in refused.json()["error"]


def test_upload_over_max_file_size_is_413_and_files_are_not_listed(image_stack: LocalStack) -> None:
    too_big = b"x" * (50 * 1024 * 1024 + 1)
    response = httpx.post(f"{image_stack.url}/gradio_api/upload", files=[("files", ("big.bin", too_big))], timeout=60)
    assert response.status_code == 413
    names = httpx.post(f"{image_stack.url}/gradio_api/upload", files=[("files", ("a.txt", b"hello"))]).json()
    assert len(names) == 1 and len(names[0].split("/")[1]) == 32
    served = httpx.get(f"{image_stack.url}/gradio_api/file={names[0]}", follow_redirects=True)
    assert served.content == b"hello"
    assert served.headers["content-type"] == "text/plain; charset=utf-8", "served with its type, as Gradio serves it"
    for guess in ("surge/", "surge/" + "A" * 32 + "/a.txt", "../../etc/passwd"):
        # 404 from the front (not a file's name), or from the bucket (403 where S3 lists nothing to the caller)
        assert httpx.get(f"{image_stack.url}/gradio_api/file={guess}", follow_redirects=True).status_code in (403, 404)


def test_batched_event_gets_lists_and_answers_each_caller(blocks_stack: LocalStack, record_dir: Path) -> None:
    client = Client(blocks_stack.url, verbose=False)
    jobs = [client.submit(f"word{i}", i + 1, api_name="/trim_words") for i in range(12)]
    assert [job.result() for job in jobs] == [f"word{i}"[: i + 1] for i in range(12)]
    assert max(r["size"] for r in records(record_dir, "trim_words")) > 1


def test_progress_and_gr_error_behave_as_in_gradio(blocks_stack: LocalStack) -> None:
    client = Client(blocks_stack.url, verbose=False)
    job = client.submit("hello", api_name="/shout")
    assert job.result() == "HELLO"
    with pytest.raises(AppError, match="no shouting allowed") as refused:
        client.predict("fail", api_name="/shout")
    assert (refused.value.title, refused.value.duration) == ("Refused", 3), "gr.Error's title and duration kept"


def test_a_generator_cancelled_while_it_runs_is_closed_at_its_next_output_as_in_gradio(
    blocks_stack: LocalStack, record_dir: Path
) -> None:
    """Gradio closes a cancelled generator at its next `yield`. Surge let it run to its end (40 steps,
    8 s), holding its concurrency slot, so the next call waited behind a job nobody wanted."""
    client = Client(blocks_stack.url, verbose=False)
    job = client.submit("cancelled", api_name="/ticks")
    assert wait_until(lambda: len(job.outputs()) >= 2, 20)

    def steps() -> list[int]:
        return [r["step"] for r in records(record_dir, "ticks") if r["tag"] == "cancelled" and "step" in r]

    at_cancel = max(steps())
    assert job.cancel()
    assert wait_until(lambda: any(r.get("closed") for r in records(record_dir, "ticks")), 15)
    assert max(steps()) < at_cancel + 15, f"the generator ran on to step {max(steps())} of 39 after its cancel"
    next_job = client.submit("next", api_name="/ticks")  # the slot (concurrency_limit=1) is free again
    assert wait_until(lambda: len(next_job.outputs()) >= 1, 20)
    assert next_job.outputs()[0] == "next 0"
    assert next_job.cancel()


def test_a_running_call_its_visitor_cancels_is_told_cancelled_at_once_and_its_late_result_never_comes(
    blocks_stack: LocalStack, record_dir: Path
) -> None:
    """The page's Stop during a function that returns once: Gradio answers the cancel with an empty
    completion at once (the call runs on in its thread). Surge delivered the result when the call ended,
    and the page showed it after its Stop. Now the visitor is told at once, and neither this stream nor a
    later one of the session delivers the late result."""
    session = new_session()
    event_id = join(blocks_stack, session, "pause", ["stopped"]).json()["event_id"]
    seen = []
    for message in messages(blocks_stack, session):
        seen.append(message)
        if message["msg"] == "process_starts":
            assert wait_until(lambda: any(r.get("started") for r in records(record_dir, "pause")), 10)
            cancel = {"session_hash": session, "event_id": event_id}
            assert httpx.post(f"{blocks_stack.url}/gradio_api/cancel", json=cancel).status_code == 200
        if message["msg"] == "process_completed":
            assert not any(r.get("ended") for r in records(record_dir, "pause")), "told only once the call ended"
    release(record_dir, "stopped")  # the call, held until now, ends after its visitor was told
    assert seen[-2:] == [protocol.cancelled(event_id), protocol.close_stream()]
    assert blocks_stack.settings is not None
    key = {"session_hash": {"S": session}, "sk": {"S": event_id}}
    table = blocks_stack.client("dynamodb")

    def recorded() -> bool:
        item = table.get_item(TableName=blocks_stack.settings.events_table_name, Key=key).get("Item") or {}
        return item.get("state", {}).get("S") == "completed"

    assert wait_until(recorded, 10), "its worker records the late result"
    later = list(messages(blocks_stack, session))
    assert later == [protocol.close_stream()], "a later stream of the session does not deliver the late result"


def test_one_file_returned_in_several_outputs_of_a_call_reaches_the_client_in_each(blocks_stack: LocalStack) -> None:
    """Gradio keeps one cache copy per content, so a file returned in two outputs is one path: Surge
    stored it for the first, removed the copy, and handed the second the worker's path (a 404)."""
    client = Client(blocks_stack.url, verbose=False)
    single, listed = client.predict("dup", api_name="/twice")
    assert [Path(p).read_text() for p in [single, *listed]] == ["contents of dup"] * 3


def test_a_function_returning_a_file_it_did_not_create_outside_allowed_folders_is_refused_as_in_gradio(
    blocks_stack: LocalStack,
) -> None:
    """Gradio serves an output file only from the app's folder, the temp folder or `allowed_paths`. The
    worker never launches the app, and Gradio checks only once launched: Surge served /etc/passwd."""
    client = Client(blocks_stack.url, verbose=False)
    with pytest.raises(AppError) as refused:
        client.predict("x", api_name="/outside_file")
    assert refused.value.message is None or "passwd" not in refused.value.message


@pytest.mark.parametrize("name", ["résumé #1.txt", "a+b&c%20d?.txt"])
def test_a_files_name_reaches_the_function_and_comes_back_to_the_client_as_given(
    blocks_stack: LocalStack, tmp_path: Path, name: str
) -> None:
    """Gradio keeps a file's name; Surge replaced every character outside [A-Za-z0-9._ -] with `_`."""
    path = tmp_path / name
    path.write_text("contents é")
    client = Client(blocks_stack.url, verbose=False)
    returned, seen = client.predict(handle_file(str(path)), api_name="/echo_file")
    assert seen == name
    assert Path(returned).name == name and Path(returned).read_text() == "contents é"
    # The page's download link is followed to the bucket, another origin, where a browser ignores the
    # link's `download` name and would leave the app for the file: it is an attachment, named as it is.
    # (moto drops a presigned URL's query when the key holds '#' or '?', so this name has neither)
    (uploaded,) = httpx.post(f"{blocks_stack.url}/gradio_api/upload", files=[("files", ("résumé 1.txt", b"x"))]).json()
    served = httpx.get(f"{blocks_stack.url}/gradio_api/file={quote(uploaded)}", follow_redirects=True)
    assert served.headers["content-disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%201.txt"


def test_an_input_of_900_kb_travels_in_its_queue_message_and_comes_back(blocks_stack: LocalStack) -> None:
    """Gradio takes inputs of megabytes; Surge refused more than 256 KiB with 413 (SQS now carries 1 MiB)."""
    text = "x" * 900_000
    assert Client(blocks_stack.url, verbose=False).predict(text, api_name="/first") == text


def test_shared_concurrency_id_with_limit_one_never_overlaps_across_workers(
    blocks_stack: LocalStack, record_dir: Path
) -> None:
    client = Client(blocks_stack.url, verbose=False)
    jobs = [client.submit(f"t{i}", api_name="/first" if i % 2 else "/second") for i in range(10)]
    assert sorted(job.result() for job in jobs) == sorted(f"t{i}" for i in range(10))
    calls = sorted(records(record_dir, "shared"), key=lambda r: r["start"])
    assert {c["event"] for c in calls} == {"first", "second"}
    assert len({c["pid"] for c in calls}) > 1, "calls should have run in several worker processes"
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(calls))


def test_an_event_with_no_concurrency_limit_runs_its_calls_side_by_side_on_one_worker(
    blocks_stack: LocalStack, record_dir: Path
) -> None:
    """Gradio runs an unlimited event's calls up to `max_threads` at once in its one process; the one
    worker process serving it does too (it ran them one at a time: eight 1.5 s calls took 12 s)."""
    client = Client(blocks_stack.url, verbose=False)
    jobs = [client.submit(f"c{i}", api_name="/lasting") for i in range(8)]
    assert sorted(job.result() for job in jobs) == sorted(f"c{i}" for i in range(8))
    calls = records(record_dir, "lasting")
    assert len(calls) == 8 and len({c["pid"] for c in calls}) == 1, "one worker process ran them all"
    most = max(sum(1 for c in calls if c["start"] <= call["start"] < c["end"]) for call in calls)
    assert most >= 5, f"at most {most} of 8 calls ran at once"


def test_gr_request_shows_the_function_its_callers_session_headers_and_address(blocks_stack: LocalStack) -> None:
    client = Client(blocks_stack.url, verbose=False, headers={"x-demo": "42", "cookie": "secret=1"})
    seen = json.loads(client.predict("t", api_name="/whoami"))
    assert seen["tag"] == "t" and seen["session"] == client.session_hash
    assert seen["headers"]["x-demo"] == "42" and seen["host"] == "127.0.0.1"
    assert "cookie" not in seen["headers"], "credentials do not travel in the queue message"
    # As Gradio's, around the join's request: a header in any case, the URL's parts, the caller's port.
    assert seen["x_demo"] == "42"
    assert seen["path"] == "/gradio_api/queue/join" and seen["method"] == "POST"
    assert seen["base_url"] == blocks_stack.url.rstrip("/") + "/"
    assert isinstance(seen["port"], int) and seen["port"] > 0


def test_the_events_data_reaches_gr_event_data_as_the_page_sent_it(blocks_stack: LocalStack) -> None:
    """A `.select` (`.like`, ...) sends `event_data` and `trigger_id` with the join; `gr.SelectData` and
    `gr.EventData` parameters show them (they were dropped: `evt.index` failed on None)."""
    config = httpx.get(f"{blocks_stack.url}/config").json()
    (fn_index,) = [d["id"] for d in config["dependencies"] if d.get("api_name") == "whoami"]
    (word,) = [c["id"] for c in config["components"] if c["props"].get("elem_id") == "word"]
    session = "e" * 32
    selected = {"index": [1, 0], "value": "y", "row_value": [2, "y"]}
    httpx.post(
        f"{blocks_stack.url}/gradio_api/queue/join",
        json={"data": ["t"], "fn_index": fn_index, "session_hash": session, "event_data": selected, "trigger_id": word},
    ).raise_for_status()
    (done,) = [m for m in messages(blocks_stack, session) if m["msg"] == "process_completed"]
    seen = json.loads(done["output"]["data"][0])
    assert (seen["event"], seen["target"]) == (selected, "word")


def test_a_file_in_the_events_data_is_the_workers_own_copy(blocks_stack: LocalStack) -> None:
    """A gallery's select sends the image selected, as the page was sent it (its name in the files bucket).
    Gradio accepts an event's files only from its cache: the call failed, "File surge/... is not in the
    cache folder and cannot be accessed"."""
    config = httpx.get(f"{blocks_stack.url}/config").json()
    (fn_index,) = [d["id"] for d in config["dependencies"] if d.get("api_name") == "whoami"]
    (word,) = [c["id"] for c in config["components"] if c["props"].get("elem_id") == "word"]
    (name,) = httpx.post(
        f"{blocks_stack.url}/gradio_api/upload", files=[("files", ("picked.png", b"not really a png"))]
    ).json()
    image = {"path": name, "url": f"{blocks_stack.url}/gradio_api/file={name}", "meta": {"_type": "gradio.FileData"}}
    selected = {"index": 0, "value": {"image": image, "caption": None}, "selected": True}
    session = "f" * 32
    httpx.post(
        f"{blocks_stack.url}/gradio_api/queue/join",
        json={"data": ["t"], "fn_index": fn_index, "session_hash": session, "event_data": selected, "trigger_id": word},
    ).raise_for_status()
    (done,) = [m for m in messages(blocks_stack, session) if m["msg"] == "process_completed"]
    assert done["success"], done
    seen = json.loads(done["output"]["data"][0])["event"]["value"]["image"]
    assert seen["path"] != name and Path(seen["path"]).name == "picked.png", "the call's own copy (gone after it)"


def test_gr_info_and_warning_reach_the_visitor_as_gradio_log_messages_before_the_result(
    blocks_stack: LocalStack,
) -> None:
    config = httpx.get(f"{blocks_stack.url}/config").json()
    (fn_index,) = [i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "notice"]
    session = "n" * 32
    joined = (
        httpx.post(
            f"{blocks_stack.url}/gradio_api/queue/join",
            json={"data": ["job7"], "fn_index": fn_index, "session_hash": session},
        )
        .raise_for_status()
        .json()
    )
    seen = []
    with httpx.stream("GET", f"{blocks_stack.url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if seen[-1]["msg"] == "close_stream":
                    break
    logs = [m for m in seen if m["msg"] == "log"]
    assert [(m["level"], m["log"], m["event_id"]) for m in logs] == [
        ("info", "working on job7", joined["event_id"]),
        ("warning", "almost done", joined["event_id"]),
    ]
    assert logs[1]["duration"] == 3 and logs[0]["title"] == "Info"
    kinds = [m["msg"] for m in seen]
    assert kinds.index("log") < kinds.index("process_completed")
    (done,) = [m for m in seen if m["msg"] == "process_completed"]
    assert done["success"] and done["output"]["data"] == ["job7"]


def test_chat_interface_streams_its_reply_and_keeps_the_sessions_history(memory_chat_stack: LocalStack) -> None:
    """gradio_client's `/chat`-style call of a ChatInterface passes the message; the history is the
    session's gr.State, which Gradio keeps in its process and Surge in the state table, so each reply
    knows the earlier turns (as against Gradio: 0, 2, 4 earlier messages)."""
    stack = memory_chat_stack
    client = Client(stack.url, verbose=False)
    job = client.submit("hi there", api_name="/recall")
    outputs = [out for out in job]
    assert job.result() == "0 earlier: hi there"
    assert len(outputs) > 5 and outputs[0] != outputs[-1]
    assert [client.predict(f"turn {i}", api_name="/recall") for i in (2, 3)] == [
        "2 earlier: turn 2",
        "4 earlier: turn 3",
    ]
    assert Client(stack.url, verbose=False).predict("new", api_name="/recall") == "0 earlier: new"
    # The page's "Use via API" bash snippet, as Gradio's frontend writes it (its gr.State input left out).
    u = stack.url
    snippet = (
        f"curl -s -X POST {u}/gradio_api/call/recall -H 'Content-Type: application/json' "
        f"""-d '{{"data": ["Hello!!"]}}' | awk -F'"' '{{ print $4 }}' """
        f"| xargs -I {{}} curl -s -N {u}/gradio_api/call/recall/{{}}"
    )
    said = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=60).stdout
    assert said.rstrip().endswith('event: complete\ndata: ["0 earlier: Hello!!", null]')
    assert 'event: generating\ndata: ["0 earlier: Hello!", null]' in said


def test_a_gr_state_is_kept_per_session_across_workers(record_dir: Path) -> None:
    """A counter in a gr.State, bumped twice, then a worker of it stops: the other goes on from 2."""
    stack = _stack("tests.apps.gradio_apps:counter", {"bump": 2}, record_dir)
    try:
        client = Client(stack.url, verbose=False)
        assert [client.predict(api_name="/bump") for _ in range(2)] == [1, 2]
        # Two worker processes: one serves both functions (as Gradio's one process), the other `bump` alone.
        assert sorted(stack.served[name] for name in stack.workers_of("bump")) == [("bump",), ("bump", "show")]
        alone = next(p for name, p in stack.workers_of("bump").items() if stack.served[name] == ("bump",))
        alone.terminate()
        alone.wait(timeout=60)
        assert [client.predict(api_name="/bump") for _ in range(2)] == [3, 4]
        assert client.predict(api_name="/show") == 4
        assert Client(stack.url, verbose=False).predict(api_name="/show") == 0, "another session: its own state"
    finally:
        stack.stop()


def test_a_file_a_multimodal_chat_keeps_in_its_history_is_there_for_the_next_turn(
    record_dir: Path, tmp_path: Path
) -> None:
    """A multimodal chat keeps the visitor's message, files and all, in a gr.State between its steps and
    turns. The state held the worker's path to the file, which ends with the call (and another worker
    lacks): the next turn read MISSING, and on the page the chat stopped with an error toast."""
    note = tmp_path / "note.txt"
    note.write_text("hello")
    stack = _stack("tests.apps.gradio_apps:multimodal", {"files_seen": 2}, record_dir)
    try:
        client = Client(stack.url, verbose=False)
        first = client.predict({"text": "read this", "files": [handle_file(str(note))]}, api_name="/files_seen")
        assert first == "1 new; earlier: none"
        later = [client.predict({"text": f"and now {i}", "files": []}, api_name="/files_seen") for i in range(3)]
        assert later == ["0 new; earlier: note.txt=hello"] * 3, "on either worker"
    finally:
        stack.stop()


def test_a_file_a_function_wrote_to_the_temp_folder_and_kept_in_a_gr_state_is_there_for_the_next_call(
    record_dir: Path,
) -> None:
    """In Gradio's one process a file a function writes (`tempfile`) is there for the session's next call
    wherever a gr.State keeps its path; here the next call may run on a worker that lacks it (the test
    removes the worker's copy, as another machine would not have it)."""
    stack = _stack("tests.apps.gradio_apps:drafts", 1, record_dir)
    try:
        client = Client(stack.url, verbose=False)
        assert client.predict("first draft", api_name="/write_draft") == "saved"
        (written,) = [Path(r["path"]) for r in records(record_dir, "drafts")]
        written.unlink()
        assert client.predict(api_name="/read_draft") == "first draft"
    finally:
        stack.stop()


def test_a_front_serving_from_the_declaration_runs_the_image_interface(tmp_path: Path) -> None:
    declared = tmp_path / "app.json"
    main(["tests.apps.gradio_apps:image", str(declared)])
    marked = json.loads(declared.read_text())
    marked["config"]["title"] = "from the declaration"
    declared.write_text(json.dumps(marked))
    stack = LocalStack(
        "tests.apps.gradio_apps:image", port=free_port(), tuning={"app_declaration_path": str(declared)}
    ).start()
    try:
        assert httpx.get(f"{stack.url}/config").json()["title"] == "from the declaration"
        path = tmp_path / "photo.png"
        Image.fromarray(photo(300)).save(path)
        result = Client(stack.url, verbose=False).predict(handle_file(str(path)), api_name="/echo_image")
        assert np.array_equal(np.asarray(Image.open(result)), photo(300))
    finally:
        stack.stop()


def test_make_run_refuses_an_unsupported_feature_in_one_line_naming_the_event() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "surge_local.launcher", "--app", "tests.apps.gradio_apps:streamed", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "surge: event 'mirror' (<lambda>) is a .stream() event: streamed inputs need one process per session."
    ]
    assert refused.stdout == ""


def test_a_cancel_is_answered_once_the_stream_has_sent_the_cancelled_completion(blocks_stack: LocalStack) -> None:
    """Gradio's page awaits `/cancel` (then `/reset`), marks the event complete and drops it; Gradio
    answers the cancel once the stream has sent its completion. Answered first, the completion reached a
    dropped event, and the page showed "Error" over the outputs of a Stop button's event. Checked on
    the bytes: once the answer is in, the completion is already in the stream's socket."""
    session = new_session()
    event_id = join(blocks_stack, session, "ticks", ["stopped"]).json()["event_id"]
    url = httpx.URL(blocks_stack.url)
    assert url.host is not None and url.port is not None
    with socket.create_connection((url.host, url.port), timeout=20) as stream:
        stream.sendall(
            f"GET /gradio_api/queue/data?session_hash={session} HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode()
        )
        received = b""
        while received.count(b"process_generating") < 2:
            chunk = stream.recv(65536)
            assert chunk, "the stream ended early"
            received += chunk
        cancel = {"session_hash": session, "event_id": event_id, "fn_index": 0}
        assert httpx.post(f"{blocks_stack.url}/gradio_api/cancel", json=cancel).json() == {"success": True}
        stream.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while chunk := stream.recv(65536):
                received += chunk
    assert b'"process_completed"' in received, "the cancel was answered before its completion was sent"
