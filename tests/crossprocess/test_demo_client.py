"""The default example app through the official gradio_client, against moto + uvicorn + worker processes."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from surge_local.launcher import LocalStack
from tests.crossprocess.helpers import counters, join, messages, new_session, queue_depth, wait_until

pytestmark = pytest.mark.crossprocess


@pytest.fixture(scope="module")
def client(demo_stack: LocalStack) -> Client:
    return Client(demo_stack.url, verbose=False)


def test_predict_echo_returns_the_input(client: Client) -> None:
    assert client.predict("hello surge", api_name="/echo") == "hello surge"
    # One input too many is left out, as Gradio leaves it (it was refused with a bare 400).
    assert client.predict("hello", "extra", api_name="/echo") == "hello"


def test_trim_words_batch_function_answers_each_caller(client: Client) -> None:
    assert client.predict("hello world", 5, api_name="/trim_words") == "hello"


def test_trim_words_negative_length_raises_app_error_naming_the_problem(client: Client) -> None:
    with pytest.raises(AppError, match="Length must be 0 or more; got -2"):
        client.predict("abc", -2, api_name="/trim_words")


def test_generator_streams_progressive_outputs_then_the_final_value(client: Client) -> None:
    job = client.submit("the quick brown fox", api_name="/stream_tokens")
    chunks = list(job)
    assert chunks[-4:] == ["the", "the quick", "the quick brown", "the quick brown fox"]
    assert job.result() == "the quick brown fox"


def test_a_long_generator_reaches_the_client_whole_and_in_order(client: Client) -> None:
    """Its messages are written behind it, several to a write: the client still gets every yield once,
    in order (the chunks are diffs, so a gap or a swap would show as a wrong text)."""
    words = [f"w{i}" for i in range(40)]
    job = client.submit(" ".join(words), api_name="/stream_tokens")
    seen = list(job)
    assert job.result() == " ".join(words)
    assert seen == [""] + [" ".join(words[: i + 1]) for i in range(len(words))]


def test_generator_reports_progress_on_the_raw_stream(demo_stack: LocalStack) -> None:
    session = new_session()
    event_id = join(demo_stack, session, "stream_tokens", ["one two three"]).json()["event_id"]
    seen = [m for m in messages(demo_stack, session) if m.get("event_id") == event_id]
    kinds = [m["msg"] for m in seen]
    assert kinds[0] == "estimation" and kinds[-1] == "process_completed"
    assert kinds.index("process_starts") < kinds.index("process_generating")
    progress = [m["progress_data"][0] for m in seen if m["msg"] == "progress"]
    # each report is sent while the stream sees the job running: the last (3/3, 50 ms before the end)
    # can land with the job's last output and be overtaken by its completion, as Gradio's own may
    assert progress and all(p["length"] == 3 and p["unit"] == "tokens" for p in progress), progress
    indices = [p["index"] for p in progress]
    assert indices == sorted(indices) and set(indices) <= {1, 2, 3}, progress
    generating = [m["output"]["data"] for m in seen if m["msg"] == "process_generating"]
    assert generating[0] == [""]
    assert generating[1] == [[["replace", [], "one"]]] or generating[1] == [[["append", [], "one"]]]
    assert generating[2] == [[["append", [], " two"]]]


def test_several_jobs_of_one_client_share_one_stream(client: Client) -> None:
    jobs = [client.submit(f"message {i}", api_name="/echo") for i in range(8)]
    assert [job.result() for job in jobs] == [f"message {i}" for i in range(8)]


def test_sim_gpu_forms_batches_under_a_burst_and_never_exceeds_max_batch_size(demo_stack: LocalStack) -> None:
    clients = [Client(demo_stack.url, verbose=False) for _ in range(4)]

    def call(i: int) -> str:
        result: str = clients[i % 4].predict(f"req{i}", api_name="/sim_gpu")
        return result

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, range(64)))
    sizes = [int(re.search(r"batch of (\d+)", r).group(1)) for r in results]  # type: ignore[union-attr]
    assert all(r.startswith(f"req{i} ") for i, r in enumerate(results))
    assert max(sizes) > 1
    assert max(sizes) <= 16


def test_counters_return_to_zero_when_the_queue_drains(demo_stack: LocalStack, client: Client) -> None:
    jobs = [client.submit(f"x{i}", api_name="/sim_gpu") for i in range(20)]
    for job in jobs:
        job.result()
    assert wait_until(lambda: counters(demo_stack).waiting == 0, 10)
    after = counters(demo_stack)
    assert all(after.queue_size(group) == 0 for group in after.tail)
    # Finished messages are acknowledged ten to a call or within ACK_WITHIN_S (1 s): then none is left.
    assert wait_until(lambda: queue_depth(demo_stack, "sim_gpu") == (0, 0), 5)


def test_close_stream_comes_right_behind_the_last_pending_completion(demo_stack: LocalStack) -> None:
    """As Gradio: no linger after the last completion, and never while a job of the session is pending."""
    session = new_session()
    slow = join(demo_stack, session, "stream_tokens", ["one two three four"]).json()["event_id"]
    fast = join(demo_stack, session, "echo", ["hi"]).json()["event_id"]
    seen = list(messages(demo_stack, session))
    kinds = [(m["msg"], m.get("event_id")) for m in seen]
    completions = [event_id for kind, event_id in kinds if kind == "process_completed"]
    assert sorted(completions) == sorted([slow, fast])
    assert kinds[-1] == ("close_stream", None)
    assert kinds[-2][0] == "process_completed"  # nothing in between: the close follows the last completion


def test_a_predict_loop_of_concurrent_clients_loses_no_call(demo_stack: LocalStack) -> None:
    """gradio_client 2.x cancels every job tagged to a reader that closes: a stream that lingers and
    closes while the client's next join is in flight loses that call. Each client's next predict here
    joins right after the previous completion."""

    def loop(i: int) -> list[str]:
        own = Client(demo_stack.url, verbose=False)
        return [own.predict(f"c{i} r{r}", api_name="/echo") for r in range(12)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(loop, range(8)))
    assert results == [[f"c{i} r{r}" for r in range(12)] for i in range(8)]


def test_a_join_right_after_close_stream_waits_for_a_slow_reader_to_hang_up(
    demo_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's reader that has been sent `close_stream` but not parsed it yet (here held 80 ms, as a
    loaded machine holds it) still counts as open: gradio_client tags a job whose join returns meanwhile to
    that reader and cancels it when the reader closes. The join answers once the reader hung up."""
    real = httpx.Response.iter_bytes
    frame = b'data: {"msg":"close_stream"'

    def slow_close(self: httpx.Response, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        for chunk in real(self, *args, **kwargs):
            at = chunk.find(frame)
            if at < 0:
                yield chunk
                continue
            yield chunk[:at]
            time.sleep(0.08)
            yield chunk[at:]

    monkeypatch.setattr(httpx.Response, "iter_bytes", slow_close)
    own = Client(demo_stack.url, verbose=False)
    for r in range(3):
        first = own.submit(f"a{r}", api_name="/echo")
        assert first.result() == f"a{r}"
        # The reader is parsing up to close_stream now; this join returns well within its 80 ms.
        assert own.predict(f"b{r}", api_name="/echo") == f"b{r}"


def test_each_process_of_the_stack_is_a_session_and_so_a_scheduling_group_of_its_own(demo_stack: LocalStack) -> None:
    """A load generator started from the same shell (200 gradio_client threads) otherwise out-schedules the
    emulators thread by thread: joins took seconds and gradio_client's 5 s join timeout failed most calls."""
    sessions = {name: os.getsid(process.pid) for name, process in demo_stack.processes.items()}
    assert all(sessions[name] == process.pid for name, process in demo_stack.processes.items()), sessions
    assert os.getsid(0) not in sessions.values()
