"""The worker loop through in-memory ports: receive → claim → run → record → acknowledge, no AWS.

Each test queues jobs, serves until every message is settled (a receive finds the queue empty, and the
test stops the worker there), and reads what a client's stream would: each job's final message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

import surge
from surge import protocol
from surge.application import CALLS, Function
from surge.broker import Delivery
from surge.errors import Unavailable
from surge.models import Job, JobState
from surge.ports import WorkerStore
from surge.settings import Settings
from surge.store import Claim
from surge.worker import LeaseTurns, Worker
from tests.unit.fakes import InMemoryQueue, InMemoryStore, ManualClock, memory_settings

SESSION = "session000000001"


class Served:
    """An app whose functions count the inputs they ran on."""

    def __init__(self, concurrency_limit: int | None = None) -> None:
        self.ran: list[Any] = []
        self.lock = threading.Lock()
        self.app = surge.App(title="ports", default_concurrency_limit=concurrency_limit)
        app = self.app

        @app.function(inputs=["textbox"], outputs=["textbox"])
        def shout(text: str) -> str:
            self._ran(text)
            if text == "refuse":
                raise surge.Error("Refused: 'refuse' is not a word.")
            if text == "crash":
                raise RuntimeError("internal detail")
            if text == "quiet":
                raise surge.Error("Refused without a toast.", visible=False)
            if text == "note":
                (call,) = CALLS.get()
                call.output["changed_state_ids"] = [7]  # as a Gradio event's runner reports a changed gr.State
            if text == "set":
                return {text}  # type: ignore[return-value]
            if text == "nan":
                return NOT_FINITE  # type: ignore[return-value]
            return text.upper()

        @app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=4)
        def shout_batch(texts: list[str]) -> list[list[Any]]:
            for text in texts:
                self._ran(text)
            return [[{"set": {text}, "nan": NOT_FINITE}.get(text, text.upper()) for text in texts]]

    def _ran(self, value: Any) -> None:
        with self.lock:
            self.ran.append(value)


class _Overlap:
    """What a test's function ran, and how many of its calls ran at once at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: list[Any] = []
        self.now = self.peak = 0

    @contextlib.contextmanager
    def running(self, value: Any) -> Iterator[None]:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.ran.append(value)
        try:
            yield
        finally:
            with self.lock:
                self.now -= 1


NOT_FINITE = {"x": float("inf"), "y": [float("nan"), 1.5, -float("inf")]}


def _settings() -> Settings:
    return memory_settings("tests.unit.test_worker_loop:app", poll_wait_s=0, ack_within_s=0.05)


def _join(
    store: InMemoryStore, queue: InMemoryQueue, api_name: str, value: Any, n: int = 0, *, sent: bool = True
) -> Job:
    """Admit a job and queue its message, as the front's join does (not `sent`: a join cut short between)."""
    job = Job(
        job_id=f"job-{api_name}-{n}",
        session_hash=SESSION,
        api_name=api_name,
        group=api_name,
        state=JobState.WAITING,
        data=[value],
        created_at=time.time(),
    )
    placed = store.admit(job)
    if sent:
        queue.send(placed)
    return placed


def _serve_until_drained(
    served: Served,
    api_name: str,
    store: WorkerStore,
    queue: InMemoryQueue,
    function: Function | None = None,
    slots: int = 1,
) -> Worker:
    function = function or served.app.get(api_name)
    worker = Worker(served.app, function, _settings(), store, queue, slots=slots)

    def stop_when_drained() -> None:
        if queue.depth(api_name) == 0:  # nothing visible and nothing in flight: every message settled
            worker.stop()
        else:
            time.sleep(0.001)  # messages in flight: the loop polls again, as a long poll would

    queue.on_empty = stop_when_drained
    runner = threading.Thread(target=worker.serve)
    runner.start()
    runner.join(timeout=5)
    stuck = runner.is_alive()
    worker.stop()
    runner.join(timeout=5)
    assert not stuck, f"the worker left {queue.depth(api_name)} message(s) unsettled"
    return worker


def _result(store: InMemoryStore, job: Job) -> dict[str, Any]:
    stored = store.get_job(SESSION, job.job_id)
    assert stored is not None and stored.result is not None, f"{job.job_id} has no final message"
    return stored.result


def test_worker_loop_runs_each_queued_job_once_records_completions_and_acknowledges() -> None:
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "shout", word, i) for i, word in enumerate(["one", "two", "three"])]

    _serve_until_drained(served, "shout", store, queue)

    assert sorted(served.ran) == ["one", "three", "two"]
    for job, word in zip(jobs, ["ONE", "TWO", "THREE"], strict=True):
        result = _result(store, job)
        assert (result["msg"], result["event_id"], result["success"]) == ("process_completed", job.job_id, True)
        assert result["output"]["data"] == [word]
        done = store.get_job(SESSION, job.job_id)
        assert done is not None and (done.state, done.attempt) == (JobState.COMPLETED, 1)
    assert queue.depth("shout") == 0, "every message is acknowledged"
    assert store.counters().waiting == 0, "claims count the jobs out of the line"


def test_worker_loop_runs_a_batch_function_once_per_batch_under_a_concurrency_lease() -> None:
    served, store, queue = Served(concurrency_limit=1), InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "shout_batch", word, i) for i, word in enumerate(["a", "b", "c"])]

    _serve_until_drained(served, "shout_batch", store, queue)

    assert sorted(served.ran) == ["a", "b", "c"]
    assert [_result(store, job)["output"]["data"] for job in jobs] == [["A"], ["B"], ["C"]]
    assert queue.depth("shout_batch") == 0
    assert store.calls["acquire_lease"] >= 1 and not store.leases.held, "the lease is given back after the batch"


def test_a_lone_worker_keeps_its_lease_from_batch_to_batch_and_gives_it_back_when_idle() -> None:
    """Gradio's default limit of 1 puts every job of a plain app under a lease: a worker with no other
    live worker in its concurrency group goes from job to job without giving the slot back and taking it
    again (two calls and a gap each), and gives it back once the queue is empty."""
    served, store, queue = Served(concurrency_limit=1), InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "shout", f"w{i}", i) for i in range(8)]

    _serve_until_drained(served, "shout", store, queue)

    assert [_result(store, job)["output"]["data"] for job in jobs] == [[f"W{i}"] for i in range(8)]
    taken = store.calls["acquire_lease"]
    assert taken < 4, f"the slot was taken {taken} times for 8 jobs (once per job before)"
    assert store.calls["release_lease"] == store.calls["acquire_lease"], "each taking is given back once"
    assert not store.leases.held, "the lease is given back when the queue is empty"


@pytest.mark.parametrize("limit", [1, None])
def test_two_loops_of_one_worker_never_hold_one_slot_of_a_limit_and_never_run_one_job_twice(limit: int | None) -> None:
    """A worker with two slots under a limit of 1: its second loop must not take the slot its first holds
    (a lease is taken again by its own owner, and the owner was the worker), so at most one job runs at a
    time; and a copy of a message whose job the other loop claimed a moment ago rides with that run
    instead of being taken over as the loop's own lost claim (each job runs once)."""
    calls = _Overlap()
    ran = calls.ran
    app = surge.App(title="two loops", default_concurrency_limit=limit)

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def work(text: str) -> str:
        with calls.running(text):
            time.sleep(0.002 if limit is None else 0.01)
        return text

    store, queue = InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "work", f"w{i}", i) for i in range(12)]
    for job in jobs:
        queue.send(job)  # copies, as a standard queue may deliver
    served = SimpleNamespace(app=app)
    _serve_until_drained(served, "work", store, queue, slots=2)  # type: ignore[arg-type]
    assert calls.peak <= (limit or 2), f"{calls.peak} jobs ran at once under a limit of {limit}"
    assert sorted(ran) == sorted(f"w{i}" for i in range(12)), "each job ran once"
    assert not store.leases.held


def test_a_worker_sharing_its_concurrency_group_gives_the_lease_back_after_every_job() -> None:
    """Another live worker of the group may be waiting for the slot: it is given back after each job."""
    served, store, queue = Served(concurrency_limit=1), InMemoryStore(), InMemoryQueue()
    store.worker_alive("shout", "another-worker", 60.0, 1)
    jobs = [_join(store, queue, "shout", f"w{i}", i) for i in range(4)]

    _serve_until_drained(served, "shout", store, queue)

    assert [_result(store, job)["output"]["data"] for job in jobs] == [[f"W{i}"] for i in range(4)]
    assert store.calls["acquire_lease"] == 4 and store.calls["release_lease"] == 4
    assert not store.leases.held


@pytest.mark.parametrize("api_name", ["shout", "shout_batch"])
def test_a_message_delivered_twice_runs_its_job_once(api_name: str) -> None:
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    job = _join(store, queue, api_name, "hello")
    queue.send(job)  # a standard queue delivers at least once

    _serve_until_drained(served, api_name, store, queue)

    assert served.ran == ["hello"]
    done = store.get_job(SESSION, job.job_id)
    assert done is not None and (done.state, done.attempt) == (JobState.COMPLETED, 1)
    assert _result(store, job)["output"]["data"] == ["HELLO"]
    assert queue.depth(api_name) == 0, "both copies are acknowledged"
    assert not queue.dead.get(api_name), "a duplicate is not poison"
    assert store.counters().waiting == 0, "the job left the line once"


def test_a_copy_received_while_its_job_runs_here_is_acknowledged_with_that_run() -> None:
    """A second copy of a message reaches another slot of the worker running its job: its claim is
    refused, and the copy is held and acknowledged when the run is recorded. Let go instead, it would
    stay hidden for the visibility timeout (60 s here) and be settled only when it came back."""
    entered, release = threading.Event(), threading.Event()
    app = surge.App(title="copies", default_concurrency_limit=None)  # both slots may claim at once
    ran: list[str] = []

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def slow(text: str) -> str:
        ran.append(text)
        entered.set()
        release.wait(5)
        return text.upper()

    store, queue = InMemoryStore(), InMemoryQueue()
    queue.on_empty = lambda: time.sleep(0.001)
    job = _join(store, queue, "slow", "hello")
    worker = Worker(app, app.get("slow"), _settings(), store, queue, slots=2)
    runner = threading.Thread(target=worker.serve)
    runner.start()
    try:
        assert entered.wait(5), "the job runs"
        queue.send(job)  # the copy arrives while the job runs
        deadline = time.monotonic() + 5
        while store.calls["claim"] < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert store.calls["claim"] == 2, "the other slot received the copy and its claim was refused"
        release.set()
        deadline = time.monotonic() + 5
        while queue.depth("slow") and time.monotonic() < deadline:
            time.sleep(0.005)
        assert queue.depth("slow") == 0, "both copies are acknowledged once the run is recorded"
    finally:
        release.set()
        worker.stop()
        runner.join(5)
    assert ran == ["hello"]
    assert _result(store, job)["output"]["data"] == ["HELLO"]
    assert store.counters().waiting == 0


def test_a_function_that_raises_fails_its_job_with_the_message_and_the_message_is_acknowledged() -> None:
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    refused = _join(store, queue, "shout", "refuse", 0)
    crashed = _join(store, queue, "shout", "crash", 1)
    fine = _join(store, queue, "shout", "fine", 2)
    quiet = _join(store, queue, "shout", "quiet", 3)
    noted = _join(store, queue, "shout", "note", 4)

    _serve_until_drained(served, "shout", store, queue)

    result = _result(store, refused)
    assert result["success"] is False
    assert result["output"]["error"] == "Refused: 'refuse' is not a word."
    hidden = _result(store, crashed)
    assert hidden["success"] is False and hidden["output"] == {"error": None}, "no internals, as Gradio's payload"
    assert set(result["output"]) == {"error", "title", "visible", "duration"}, "an app's error keeps its heading"
    for job in (refused, crashed):
        stored = store.get_job(SESSION, job.job_id)
        assert stored is not None and stored.state is JobState.FAILED
    assert _result(store, fine)["output"]["data"] == ["FINE"], "the worker serves on after a failure"
    assert _result(store, quiet)["output"]["visible"] is False, "gr.Error(visible=False): no toast"
    assert _result(store, noted)["output"]["changed_state_ids"] == [7], "what the framework adds to the output"
    assert _result(store, fine)["output"]["changed_state_ids"] == [], "as Gradio's, the key with none"
    assert sorted(served.ran) == ["crash", "fine", "note", "quiet", "refuse"], "a failure is not retried"
    assert queue.depth("shout") == 0


@pytest.mark.parametrize("api_name", ["shout", "shout_batch"])
def test_an_output_json_cannot_carry_fails_its_job_with_the_reason_and_the_rest_run(api_name: str) -> None:
    """Recording it failed on every attempt, as if the worker had stopped, until the job gave up."""
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    odd = _join(store, queue, api_name, "set", 0)
    fine = _join(store, queue, api_name, "fine", 1)

    _serve_until_drained(served, api_name, store, queue)

    failed = _result(store, odd)
    assert failed["success"] is False
    reason = "Object of type set is not JSON serializable"
    assert failed["output"]["error"] == f"{api_name} returned an output that is not JSON: {reason}"
    assert _result(store, fine)["output"]["data"] == ["FINE"]
    assert queue.depth(api_name) == 0


@pytest.mark.parametrize("api_name", ["shout", "shout_batch"])
def test_nan_and_infinity_in_an_output_reach_the_client_as_null_as_gradios_queue_sends_them(api_name: str) -> None:
    """They were sent as `NaN`/`Infinity`, which is not JSON: JavaScript's JSON.parse (the page,
    @gradio/client) refused the message, and the direct-call route answered 500 "Internal error"."""
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    job = _join(store, queue, api_name, "nan", 0)

    _serve_until_drained(served, api_name, store, queue)

    result = _result(store, job)
    assert result["success"] is True
    assert result["output"]["data"] == [{"x": None, "y": [None, 1.5, None]}]
    json.dumps(result, allow_nan=False)  # strict JSON


def test_an_output_too_large_for_the_jobs_item_fails_its_job_with_the_reason_at_once() -> None:
    """A job's result is written to its DynamoDB item (400 KB at most): a larger one was refused on every
    try to record it, and the visitor waited for ever. It fails at once, saying to return a file."""
    app = surge.App(title="big", default_concurrency_limit=None)

    @app.function(inputs=["number"], outputs=["textbox"])
    def big(n: float) -> str:
        return "x" * int(n) if n > 0 else "漢" * int(-n)  # 3 bytes each as stored (UTF-8), 6 as \\uXXXX

    store, queue = InMemoryStore(), InMemoryQueue()
    small, large, wide = (_join(store, queue, "big", size, i) for i, size in enumerate([1000, 5_000_000, -100_000]))
    worker = Worker(app, app.get("big"), _settings(), store, queue)
    queue.on_empty = lambda: worker.stop() if queue.depth("big") == 0 else time.sleep(0.001)
    runner = threading.Thread(target=worker.serve)
    runner.start()
    runner.join(timeout=5)
    assert not runner.is_alive(), "the worker kept retrying to record the result"
    assert _result(store, small)["output"]["data"] == ["x" * 1000]
    assert _result(store, wide)["output"]["data"] == ["漢" * 100_000], "300 kB as stored: it fits"
    failed = _result(store, large)
    assert failed["success"] is False and "5000 kB of output" in failed["output"]["error"]
    assert "as files" in failed["output"]["error"]


@pytest.mark.parametrize("noted", [False, True])
def test_a_generator_past_what_its_item_holds_is_stopped_there_and_fails_with_the_reason(noted: bool) -> None:
    """A generator rewriting a large output at each step (a table, a 20 kB text replaced), or sending a
    large notice (`gr.Info`) before each: its messages live in the job's item, so past
    `STREAMED_LIMIT_BYTES` each write of them would be refused. It ran to its end (the visitor's output
    frozen meanwhile, each refused write sent again) and only then failed; it is closed at the step
    that crosses the bound and fails at once, saying to return a file."""
    from surge.worker import STREAMED_LIMIT_BYTES

    app = surge.App(title="tables", default_concurrency_limit=None)
    produced: list[int] = []
    closed: list[bool] = []

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def tables(steps: str) -> Iterator[str]:
        try:
            for i in range(int(steps)):
                produced.append(i)
                text = chr(ord("a") + i % 26) * 20_000  # a different text each step: each diff replaces it
                if noted:
                    (call,) = CALLS.get()
                    assert call.notify is not None
                    call.notify(text, "info", "", None, True)
                yield str(i) if noted else text
        finally:
            closed.append(True)

    store, queue = InMemoryStore(), InMemoryQueue()
    job = _join(store, queue, "tables", "100")
    _serve_until_drained(SimpleNamespace(app=app), "tables", store, queue)  # type: ignore[arg-type]

    failed = _result(store, job)
    assert failed["success"] is False and "as files" in failed["output"]["error"]
    assert f"a job can stream at most {STREAMED_LIMIT_BYTES // 1000} kB" in failed["output"]["error"]
    # 20 kB and a little envelope a step: the 15th crosses 300 kB (of 100 steps, all run before).
    assert len(produced) == 15 and closed == [True], "stopped at the step that crossed the bound"


def test_a_message_whose_job_is_gone_is_acknowledged_and_a_foreign_one_dead_lettered() -> None:
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    cancelled = _join(store, queue, "shout", "cancelled", 0)
    assert store.end_waiting(cancelled, JobState.CANCELLED, {"msg": "process_completed"})
    queue.send_body("shout", "not json at all")

    _serve_until_drained(served, "shout", store, queue)

    assert served.ran == []
    assert queue.depth("shout") == 0
    assert queue.dead["shout"] == ["not json at all"]
    stored = store.get_job(SESSION, cancelled.job_id)
    assert stored is not None and stored.state is JobState.CANCELLED


def test_a_job_whose_worker_died_runs_again_once_its_message_comes_back() -> None:
    clock = ManualClock()
    served, store, queue = Served(), InMemoryStore(clock=clock), InMemoryQueue(visibility_timeout_s=60, clock=clock)
    job = _join(store, queue, "shout", "orphan")
    assert len(queue.receive("shout", 1, 0)) == 1  # a worker took the message,
    store.worker_alive("shout", "dead-worker", 30, 1)
    assert store.claim([job], "dead-worker").claimed  # claimed the job, and died
    clock.advance(61)  # its heartbeat lapsed, and the message's visibility

    _serve_until_drained(served, "shout", store, queue)

    assert served.ran == ["orphan"]
    done = store.get_job(SESSION, job.job_id)
    assert done is not None and (done.state, done.attempt) == (JobState.COMPLETED, 2)
    assert _result(store, job)["output"]["data"] == ["ORPHAN"]
    assert queue.depth("shout") == 0


def _rerun_after_death(
    steps: int,
    streamed: Callable[[str], list[dict[str, Any]]],
    ended: JobState = JobState.COMPLETED,
    cancel_at: int | None = None,
) -> Job:
    """A generator of `steps` steps whose first worker recorded `streamed(job_id)` and died; the job as
    it ends (in state `ended`) once another worker has run it again, its visitor cancelling it as that
    run reaches step `cancel_at`."""
    app = surge.App(title="steps", default_concurrency_limit=None)
    joined: list[Job] = []

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def stepper(text: str) -> Iterator[str]:
        for i in range(steps):
            if i == cancel_at:
                running = store.get_job(SESSION, joined[0].job_id)
                assert running is not None and store.request_cancel(running)  # the visitor clicks Stop
            time.sleep(0.002)
            yield f"{text}-{i}"

    clock = ManualClock()
    store, queue = InMemoryStore(clock=clock), InMemoryQueue(visibility_timeout_s=60, clock=clock)
    job = _join(store, queue, "stepper", "zz")
    joined.append(job)
    assert len(queue.receive("stepper", 1, 0)) == 1
    store.worker_alive("stepper", "dead-worker", 30, 1)
    (running,) = store.claim([job], "dead-worker").claimed
    assert not store.record_live(running, streamed(job.job_id), None)  # the visitor saw these; the worker died
    clock.advance(61)

    _serve_until_drained(SimpleNamespace(app=app), "stepper", store, queue)  # type: ignore[arg-type]

    done = store.get_job(SESSION, job.job_id)
    assert done is not None and (done.state, done.attempt) == (ended, 2)
    return done


def test_a_generator_whose_worker_died_mid_stream_runs_again_as_one_sequence_its_visitor_can_apply() -> None:
    """The visitor had applied the dead run's first steps. The new run's first step is a whole-output
    `replace` diff, not a whole value (which gradio_client read as a diff and failed the call: "not
    enough values to unpack"), so the log read from any point applies cleanly and ends at the result."""
    from gradio_client.utils import apply_diff

    def streamed(job_id: str) -> list[dict[str, Any]]:
        return [protocol.generating(job_id, ["zz-0"]), protocol.generating(job_id, [[["replace", [], "zz-1"]]])]

    done = _rerun_after_death(4, streamed)
    chunks = [chunk["output"]["data"] for chunk in done.chunks]
    assert chunks[:2] == [["zz-0"], [[["replace", [], "zz-1"]]]], "the earlier run's messages stay first"
    assert chunks[2] == [[["replace", [], "zz-0"]]], "the new run starts over as a diff"
    values, shown = chunks[0], [chunks[0]]
    for data in chunks[1:]:  # as the client applies them, whichever stream sent which
        values = [apply_diff(value, edits) for value, edits in zip(values, data, strict=True)]
        shown.append(values)
    assert shown == [["zz-0"], ["zz-1"], ["zz-0"], ["zz-1"], ["zz-2"], ["zz-3"]]
    assert done.result is not None and done.result["output"]["data"] == ["zz-3"]


def test_a_generator_whose_dead_run_sent_only_a_notice_starts_with_whole_outputs() -> None:
    """A notice (`gr.Info`) is no output: a client holding no value yet takes the first step whole."""
    done = _rerun_after_death(1, lambda job_id: [protocol.log(job_id, "loading", "info", "Info")])
    assert [chunk["msg"] for chunk in done.chunks] == ["log", "process_generating"]
    assert done.chunks[1]["output"]["data"] == ["zz-0"]


def test_a_generator_run_again_after_its_worker_died_and_then_cancelled_keeps_what_its_visitor_saw() -> None:
    """The record of a cancelled second run ends where the visitor's view did: the dead run's messages,
    then the new run's up to the cancel, nothing yielded after it."""

    def streamed(job_id: str) -> list[dict[str, Any]]:
        return [protocol.generating(job_id, ["zz-0"]), protocol.generating(job_id, [[["replace", [], "zz-1"]]])]

    done = _rerun_after_death(200, streamed, JobState.CANCELLED, cancel_at=10)
    assert done.result == protocol.cancelled(done.job_id)
    chunks = [chunk["output"]["data"] for chunk in done.chunks]
    assert chunks[:3] == [["zz-0"], [[["replace", [], "zz-1"]]], [[["replace", [], "zz-0"]]]]
    assert len(chunks) <= 2 + 10, f"the new run's steps up to the cancel at step 10, none after: {chunks}"
    assert '"zz-10"' not in json.dumps(done.chunks) and '"10"]' not in json.dumps(done.chunks)


class AnswerLost(InMemoryStore):
    """The first claim is applied, and its answer lost on the way back (a connection reset mid-call)."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def claim(self, jobs: Sequence[Job], worker_id: str) -> Claim:
        outcome = super().claim(jobs, worker_id)
        if not self.lost:
            self.lost += 1
            raise Unavailable("Claiming jobs failed; please try again shortly.")
        return outcome


def test_a_claim_whose_answer_was_lost_is_settled_by_its_worker_at_once() -> None:
    """The claim was applied, so the job is running under this worker; to every other worker its owner
    is alive, so only this one can take it back. It claims again in place: let go instead, the message
    would go round the queue (here: hidden for the 60 s visibility timeout) and, received by the other
    workers each time, end in the dead-letter queue with its job never run."""
    served, store, queue = Served(), AnswerLost(), InMemoryQueue(visibility_timeout_s=60)
    job = _join(store, queue, "shout", "lost")

    _serve_until_drained(served, "shout", store, queue)

    assert store.lost == 1 and store.calls["claim"] == 3  # lost, refused (running here), taken back
    assert served.ran == ["lost"]
    assert _result(store, job)["output"]["data"] == ["LOST"]
    done = store.get_job(SESSION, job.job_id)
    assert done is not None and done.state is JobState.COMPLETED
    assert store.counters().waiting == 0


def test_finished_messages_are_acknowledged_ten_to_a_call_not_one_call_per_job() -> None:
    """A lone function runs one job per batch; its messages are acknowledged together once recorded
    (SQS deletes up to ten per call), and none is left in flight or run again."""
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "shout", f"w{i}", i) for i in range(12)]

    _serve_until_drained(served, "shout", store, queue)

    assert sorted(served.ran) == sorted(f"w{i}" for i in range(12))
    assert all(_result(store, job)["success"] for job in jobs)
    assert queue.depth("shout") == 0
    assert queue.calls["delete"] <= 2, queue.calls


def test_the_next_batch_runs_while_the_previous_one_is_being_recorded() -> None:
    """The device does not wait for the finish write: while the first batch's results are still being
    recorded, the loop has already claimed and run the next one; both are then recorded and acknowledged."""
    served, queue = Served(), InMemoryQueue()
    overlapped: list[bool] = []

    class SlowRecording(InMemoryStore):
        def finish(self, completions: Any, *, held: bool) -> list[str]:
            if not overlapped:  # the first batch's write takes until the next batch has run (at most 3 s)
                deadline = time.monotonic() + 3
                while len(served.ran) < 2 and time.monotonic() < deadline:
                    time.sleep(0.005)
                overlapped.append(len(served.ran) >= 2)
            return super().finish(completions, held=held)

    store = SlowRecording()
    jobs = [_join(store, queue, "shout", word, i) for i, word in enumerate(["first", "second"])]

    _serve_until_drained(served, "shout", store, queue)

    assert overlapped == [True], "the second batch ran while the first was being recorded"
    assert [_result(store, job)["output"]["data"] for job in jobs] == [["FIRST"], ["SECOND"]]
    assert queue.depth("shout") == 0


def test_a_job_whose_limit_is_full_waits_in_hand_and_one_that_does_not_run_gives_its_place_back() -> None:
    """A job that cannot start here yet (`Function.reserve`, a Gradio page's limited step) is parked in
    the worker, received once, while the worker's other loops stay free; a job whose place was reserved
    but that does not run (its visitor left) gives the place back at once, so the next one starts."""
    served, store, queue = Served(), InMemoryStore(), InMemoryQueue()
    shout = served.app.get("shout")
    lock = threading.Lock()
    place: list[str] = []  # the one place under a limit of 1: who holds it
    overlaps: list[str] = []

    def reserve(data: list[Any]) -> Any:
        with lock:
            if place:
                return None
            place.append(data[0])
            return place.clear

    def run(text: str) -> str:
        with lock:
            if len(place) != 1:
                overlaps.append(text)
        try:
            time.sleep(0.05)
            return str(shout.fn(text))
        finally:
            place.clear()

    received: list[Delivery] = []
    receive = queue.receive

    def counted(api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
        got = receive(api_name, max_messages, wait_s)
        received.extend(got)
        return got

    queue.receive = counted  # type: ignore[method-assign]
    left = _join(store, queue, "shout", "left", 0)
    assert store.end_waiting(left, JobState.CANCELLED, {"msg": "process_completed"})
    jobs = [_join(store, queue, "shout", word, i) for i, word in enumerate(["one", "two", "three"], start=1)]

    limited = dataclasses.replace(shout, fn=run, reserve=reserve)
    _serve_until_drained(served, "shout", store, queue, function=limited, slots=3)

    assert sorted(served.ran) == ["one", "three", "two"], "the job whose visitor left never ran"
    assert overlaps == [], "the limit held"
    assert [_result(store, job)["output"]["data"] for job in jobs] == [["ONE"], ["TWO"], ["THREE"]]
    assert max(d.receive_count for d in received) == 1, "a parked job is received once"
    assert not queue.dead.get("shout")
    assert not place, "every place was taken by a call or given back"


def test_a_generator_runs_at_its_own_pace_and_its_messages_share_writes_in_order() -> None:
    """A generator's messages are written behind it: 40 quick yields do not wait for 40 writes of 20 ms
    each (one per yield took 6.5 s for 200 tokens before), and what was written comes in order."""
    app = surge.App(title="tokens", default_concurrency_limit=None)
    yielded_at: list[float] = []

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def tokens(text: str) -> Iterator[str]:
        out = text
        for i in range(40):
            out += f" t{i}"
            yielded_at.append(time.monotonic())
            yield out

    class SlowWrites(InMemoryStore):
        def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: Any) -> bool:
            time.sleep(0.02)
            return super().record_live(job, chunks, progress)

    store, queue = SlowWrites(), InMemoryQueue()
    job = _join(store, queue, "tokens", "go")
    _serve_until_drained(SimpleNamespace(app=app), "tokens", store, queue)  # type: ignore[arg-type]

    assert yielded_at[-1] - yielded_at[0] < 10 * 0.02, "39 writes in its way would take 0.78 s"
    assert store.calls["record_live"] < 40
    done = store.get_job(SESSION, job.job_id)
    assert (
        done is not None
        and done.result is not None
        and done.result["output"]["data"] == ["go" + "".join(f" t{i}" for i in range(40))]
    )
    assert len(done.chunks) == 40, "the finish records every message"


def test_an_async_generator_and_a_callable_whose_call_yields_stream_as_gradio_streams_them() -> None:
    """Both were run as functions returning once: the generator object itself was the output ("returned
    an output that is not JSON"), so the visitor got an error where Gradio streams."""
    app = surge.App(title="kinds", default_concurrency_limit=None)
    closed: list[str] = []

    async def aio(text: str) -> AsyncIterator[str]:
        try:
            for i in range(3):
                await asyncio.sleep(0.001)
                yield f"{text} {i}"
        finally:
            closed.append(text)

    class Counter:
        def __call__(self, text: str) -> Iterator[str]:
            for i in range(3):
                yield f"{text} {i}"

    app.function(inputs=["textbox"], outputs=["textbox"])(aio)
    app.function(inputs=["textbox"], outputs=["textbox"], api_name="counted")(Counter())
    store, queue = InMemoryStore(), InMemoryQueue()
    for api_name in ("aio", "counted"):
        job = _join(store, queue, api_name, api_name)
        _serve_until_drained(SimpleNamespace(app=app), api_name, store, queue)  # type: ignore[arg-type]
        done = store.get_job(SESSION, job.job_id)
        assert done is not None and done.result is not None
        assert done.result["output"]["data"] == [f"{api_name} 2"], done.result
        assert [c["msg"] for c in done.chunks] == ["process_generating"] * 3
    assert closed == ["aio"], "the async generator is closed at its end"


def test_a_progress_report_right_behind_another_is_written_while_the_step_after_it_runs() -> None:
    """A function reports "Starting", then at once its loop's 0/5, then works on its first step: the
    visitor is shown 0/5 during that step, as Gradio sends its latest report every 10 ms. Reports within
    0.1 s of the one before were dropped, so "Starting" stayed until the first step ended."""
    app = surge.App(title="steps", default_concurrency_limit=None)
    shown: list[tuple[Any, Any, Any]] = []

    class Recorded(InMemoryStore):
        def record_live(self, job: Job, chunks: list[dict[str, Any]], progress: Any) -> bool:
            if progress is not None:
                unit = progress[0]["progress_data"][0]
                shown.append((unit["index"], unit["length"], unit["desc"]))
            return super().record_live(job, chunks, progress)

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def steps(text: str, progress: surge.Progress = surge.Progress()) -> str:  # noqa: B008
        progress(0, desc="Starting")
        progress((0, 5), desc="Working")
        deadline = time.monotonic() + 2.0
        while (0, 5, "Working") not in shown and time.monotonic() < deadline:
            time.sleep(0.01)  # the first step, during which the visitor's view is what was last written
        return text

    store, queue = Recorded(), InMemoryQueue()
    job = _join(store, queue, "steps", "go")
    _serve_until_drained(SimpleNamespace(app=app), "steps", store, queue)  # type: ignore[arg-type]

    assert shown[-1] == (0, 5, "Working"), shown
    assert _result(store, job)["output"]["data"] == ["go"]


def test_a_worker_runs_as_many_batches_at_once_as_its_functions_concurrency_limit() -> None:
    """Gradio's one process runs an event with `concurrency_limit=3` three at a time: a worker does too
    (`WORKER_SLOTS=auto`, the default), one at a time under a limit of 1 or none; a number overrides."""
    from worker_main import worker_slots

    app = surge.App(title="slots", default_concurrency_limit=1)

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_limit=3)
    def three(text: str) -> str:
        return text

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def one(text: str) -> str:
        return text

    @app.function(inputs=["textbox"], outputs=["textbox"], concurrency_limit=None)
    def unlimited(text: str) -> str:
        return text

    slots = {name: worker_slots(app, app.get(name), "auto") for name in ("three", "one", "unlimited")}
    assert slots == {"three": 3, "one": 1, "unlimited": 1}
    assert worker_slots(app, app.get("three"), "2") == 2


def test_many_loops_on_an_unlimited_event_run_its_calls_at_once_with_one_receive_at_a_time() -> None:
    """A Gradio app's unlimited event runs up to `max_threads` calls at once on one worker: its loops
    share one long poll (forty receives held open at once would hold forty of the queue's requests), yet
    every loop with nothing to run is ready, so a burst runs side by side."""
    calls = _Overlap()
    ran, lock = calls.ran, calls.lock
    app = surge.App(title="unlimited", default_concurrency_limit=None)

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def call_out(text: str) -> str:
        with calls.running(text):
            time.sleep(0.5)  # an I/O wait (an API call): the loops' calls overlap, however late a loop starts
        return text.upper()

    class PollingQueue(InMemoryQueue):
        """Receives that take a moment, as a long poll does, counting how many are open at once."""

        def __init__(self) -> None:
            super().__init__()
            self.open, self.most_open = 0, 0

        def receive(self, api_name: str, max_messages: int, wait_s: int) -> list[Delivery]:
            with lock:
                self.open += 1
                self.most_open = max(self.most_open, self.open)
            time.sleep(0.005)
            try:
                return super().receive(api_name, max_messages, wait_s)
            finally:
                with lock:
                    self.open -= 1

    store, queue = InMemoryStore(), PollingQueue()
    jobs = [_join(store, queue, "call_out", f"w{i}", i) for i in range(16)]
    _serve_until_drained(SimpleNamespace(app=app), "call_out", store, queue, slots=8)  # type: ignore[arg-type]
    assert sorted(ran) == sorted(f"w{i}" for i in range(16)), "each job ran once"
    assert [_result(store, job)["output"]["data"] for job in jobs] == [[f"W{i}"] for i in range(16)]
    assert calls.peak >= 6, f"at most {calls.peak} of 8 loops ran at once"
    assert queue.most_open == 1, f"{queue.most_open} receives were open at once"


def _serve_together(workers: list[Worker], until: Callable[[], bool], timeout_s: float = 10) -> None:
    threads = [threading.Thread(target=worker.serve) for worker in workers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=5)


def _longest_run(names: list[str]) -> int:
    longest = run = 0
    for i, name in enumerate(names):
        run = run + 1 if i and names[i - 1] == name else 1
        longest = max(longest, run)
    return longest


def test_two_functions_sharing_a_concurrency_id_in_one_process_take_turns_with_its_slot() -> None:
    """Two events with one `concurrency_id` and a limit of 1, each with its own queue of callers, served
    by one worker process (`make run`): Gradio's one queue serves them first come, first served. The
    worker that gave the slot back took it again for its next job before the other's backoff ended, so
    one function's callers waited until the other's ran out (the slowest call 2.9 s against 0.7 s)."""
    ran: list[str] = []
    lock = threading.Lock()
    app = surge.App(title="shared", default_concurrency_limit=1)

    def timed(name: str) -> Any:
        def call(text: str) -> str:
            with lock:
                ran.append(name)
            time.sleep(0.02)
            return text

        return call

    for name in ("first", "second"):
        app.function(inputs=["textbox"], outputs=["textbox"], api_name=name, concurrency_id="gpu")(timed(name))
    store, queue = InMemoryStore(), InMemoryQueue()
    for i in range(8):
        for name in ("first", "second"):
            _join(store, queue, name, f"{name}{i}", i)
    turns = LeaseTurns()  # one per process, as worker_main shares it (each its own: 8 jobs of one, then the other)
    workers = [Worker(app, app.get(name), _settings(), store, queue, turns=turns) for name in ("first", "second")]
    for worker in workers:
        worker._beat()  # both live before either runs: neither keeps the slot as a lone worker would
    _serve_together(workers, until=lambda: len(ran) >= 16)
    assert sorted(ran) == sorted(["first"] * 8 + ["second"] * 8), "every job ran once"
    assert _longest_run(ran) <= 2, f"one function held the slot for {_longest_run(ran)} jobs in a row: {ran}"
    assert not store.leases.held


def test_a_running_generator_its_visitor_cancels_stops_at_its_next_output_and_ends_cancelled() -> None:
    app = surge.App(title="cancel")
    steps: list[int] = []
    closed = threading.Event()
    cancel = threading.Event()
    requested = threading.Event()

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def count(text: str) -> Iterator[str]:
        try:
            for i in range(50):
                steps.append(i)
                if i == 2:
                    cancel.set()
                    requested.wait(5)  # the visitor's Stop has landed (its thread may come late)
                time.sleep(0.02)
                yield f"{text}{i}"
        finally:
            closed.set()

    store, queue = InMemoryStore(), InMemoryQueue()
    job = _join(store, queue, "count", "n")

    def visitor_cancels() -> None:
        assert cancel.wait(5)
        running = store.get_job(SESSION, job.job_id)
        assert running is not None and store.request_cancel(running)
        requested.set()

    visitor = threading.Thread(target=visitor_cancels)
    visitor.start()
    _serve_until_drained(SimpleNamespace(app=app), "count", store, queue)  # type: ignore[arg-type]
    visitor.join(5)

    assert len(steps) < 15, f"the generator ran on to step {steps[-1]} after its visitor cancelled at step 2"
    assert closed.is_set(), "the generator was closed (its finally ran), as Gradio closes a cancelled one"
    done = store.get_job(SESSION, job.job_id)
    assert done is not None and done.state is JobState.CANCELLED
    assert done.result == protocol.cancelled(job.job_id)
    assert done.chunks[0]["output"]["data"] == ["n0"], "what was written before the cancel is kept"
    assert len(done.chunks) <= 3, "nothing it yielded after the cancel (at step 2) is recorded, as Gradio sends none"


def test_a_cancelled_generators_record_ends_where_its_visitors_view_did() -> None:
    """Outputs yielded after the cancel are refused by the store, so the visitor never saw them; they must
    not reach the job's final record either (they did: the page showed a step after Stop)."""
    app = surge.App(title="cancel")
    store, queue = InMemoryStore(), InMemoryQueue()
    joined: list[Job] = []

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def count(text: str) -> Iterator[str]:
        for i in range(200):
            if i == 10:
                running = store.get_job(SESSION, joined[0].job_id)
                assert running is not None and store.request_cancel(running)  # the visitor clicks Stop
            time.sleep(0.002)
            yield f"{text}{i}"

    joined.append(_join(store, queue, "count", "n"))
    _serve_until_drained(SimpleNamespace(app=app), "count", store, queue)  # type: ignore[arg-type]

    done = store.get_job(SESSION, joined[0].job_id)
    assert done is not None and done.state is JobState.CANCELLED
    recorded = json.dumps(done.chunks)
    assert '"n10"' not in recorded and '["append", [], "10"]' not in recorded, recorded


def test_a_gradio_batch_that_raises_fails_every_caller_of_the_batch_once_as_gradio_does() -> None:
    """Gradio gives a batch's error to each of its callers and runs it once. The worker ran the inputs
    again one by one (a `surge.App`'s way): good inputs ran twice, side effects and all."""
    import gradio as gr

    from surge.gradio_app import GradioApp

    ran: list[list[str]] = []

    def judge(texts: list[str]) -> list[list[str]]:
        ran.append(list(texts))
        if "bad" in texts:
            raise gr.Error("bad in batch " + ",".join(texts))
        return [[text.upper() for text in texts]]

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        box.submit(judge, box, out, api_name="judge", batch=True, max_batch_size=4)
    store, queue = InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "judge", text, i) for i, text in enumerate(["ok", "bad", "fine"])]

    _serve_until_drained(SimpleNamespace(app=GradioApp(demo)), "judge", store, queue)  # type: ignore[arg-type]

    assert ran == [["ok", "bad", "fine"]], "one run of the batch"
    for job in jobs:
        result = _result(store, job)
        assert (result["success"], result["output"]["error"]) == (False, "bad in batch ok,bad,fine")


def test_a_surge_batch_that_raises_surge_error_fails_only_the_bad_inputs_caller() -> None:
    ran: list[list[str]] = []
    app = surge.App(title="batches")

    @app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=4)
    def judge(texts: list[str]) -> list[list[str]]:
        ran.append(list(texts))
        if "bad" in texts:
            raise surge.Error("bad in batch " + ",".join(texts))
        return [[text.upper() for text in texts]]

    store, queue = InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "judge", text, i) for i, text in enumerate(["ok", "bad", "fine"])]

    _serve_until_drained(SimpleNamespace(app=app), "judge", store, queue)  # type: ignore[arg-type]

    assert ran == [["ok", "bad", "fine"], ["ok"], ["bad"], ["fine"]]
    assert [_result(store, job)["success"] for job in jobs] == [True, False, True]
    assert _result(store, jobs[1])["output"]["error"] == "bad in batch bad"


def test_a_batch_whose_output_lists_run_longer_than_the_batch_gives_each_caller_its_own_as_gradio_does() -> None:
    """Gradio zips a batch's output lists: extra items are dropped and every caller gets its own. Surge
    failed every caller of the batch, so an app that worked on Gradio broke here."""
    app = surge.App(title="batches")

    @app.function(inputs=["textbox"], outputs=["textbox"], batch=True, max_batch_size=4)
    def padded(texts: list[str]) -> list[list[str]]:
        return [[text.upper() for text in texts] + ["EXTRA"]]

    store, queue = InMemoryStore(), InMemoryQueue()
    jobs = [_join(store, queue, "padded", text, i) for i, text in enumerate(["a", "b", "c"])]

    _serve_until_drained(SimpleNamespace(app=app), "padded", store, queue)  # type: ignore[arg-type]

    assert [_result(store, job)["output"]["data"] for job in jobs] == [["A"], ["B"], ["C"]]


def test_an_idle_worker_ends_a_job_counted_without_a_message_and_frees_its_place() -> None:
    """A join counts its job, then sends its message: a front killed in between (`kill -9` under load
    left one such job in 1,740 joins) left it counted for good, a place of `max_size` held and the
    counters never back to zero. An idle worker whose queue holds nothing ends it once it is old enough;
    a job whose message is in the queue, or one counted just now, is left alone."""
    app = surge.App(title="orphans")

    @app.function(inputs=["textbox"], outputs=["textbox"])
    def shout(text: str) -> str:
        return text.upper()

    store, queue = InMemoryStore(), InMemoryQueue()
    settings = memory_settings("tests.unit.test_worker_loop:app", orphan_after_s=1.0, reconcile_every_s=0.05)
    worker = Worker(app, app.get("shout"), settings, store, queue)

    lost = _join(store, queue, "shout", "x", 1, sent=False)  # joins cut short after counting their jobs
    time.sleep(1.1)
    young = _join(store, queue, "shout", "y", 2, sent=False)
    time.sleep(0.06)
    queued = _join(store, queue, "shout", "z")
    time.sleep(0.2)
    worker._reconcile()
    assert [store.get_job(SESSION, j.job_id).state for j in (lost, young, queued)] == [JobState.WAITING] * 3, (  # type: ignore[union-attr]
        "the queue holds a message: nothing is ended"
    )
    queue.queues["shout"].clear()  # that message was taken and its job ended elsewhere; now the queue holds none
    store.jobs.end_waiting(queued, JobState.CANCELLED, protocol.cancelled(queued.job_id))
    time.sleep(0.06)
    worker._reconcile()
    ended = store.get_job(SESSION, lost.job_id)
    assert ended is not None and ended.state is JobState.FAILED
    assert ended.result is not None and "never reached its queue" in ended.result["output"]["error"]
    assert store.get_job(SESSION, young.job_id).state is JobState.WAITING, "counted just now: its send may be under way"  # type: ignore[union-attr]
    assert store.counters().queue_size("shout") == 1, "the lost job's place is free; the young one keeps its own"
    calls = store.jobs.calls["waiting_before"]
    worker.reconciled_at = time.monotonic()  # it has just looked
    worker._reconcile()
    assert store.jobs.calls["waiting_before"] == calls, "at most one look per reconcile_every_s"
