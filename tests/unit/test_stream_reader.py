"""The stream reader through in-memory ports: what a session's client sees, and what it costs in reads.

The hub's counters tick is shortened (`counters_tick_s`, `FRESH_GAP_S`) so that a test sees several
ticks within a fraction of a second; nothing else is faked but the store.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import surge
from surge import protocol
from surge.errors import Unavailable
from surge.eta import Estimator
from surge.models import FunctionStats, Job, JobState
from surge.session import FIRST_READ_MAX_S, PollPolicy, SessionHub, SessionStream
from surge.settings import Settings
from surge.store import BatchRecord, Completion
from tests.unit.fakes import InMemoryStore, memory_settings

AHEAD = "a" * 32
WAIT_LIMIT_S = 3.0
FAST_POLL = PollPolicy(min_s=0.005, max_s=0.02, streaming_max_s=0.02)


@pytest.fixture(autouse=True)
def quick_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("surge.session.FRESH_GAP_S", 0.005)


def _app() -> surge.App:
    app = surge.App(title="ports", default_concurrency_limit=None)

    @app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=0.5)
    def shout(text: str) -> str:
        return text.upper()

    return app


def _settings() -> Settings:
    return memory_settings(
        "tests.unit.test_stream_reader:app", counters_tick_s=0.02, rescan_s=60.0, session_grace_s=60.0
    )


def _hub(store: InMemoryStore, app: surge.App | None = None) -> SessionHub:
    app = app or _app()
    return SessionHub(app, _settings(), store, Estimator(app, store.workers.stats, store.workers.fleet))


def _admit(store: InMemoryStore, session: str, n: int) -> Job:
    job = Job(
        job_id=f"job-{session[:4]}-{n}",
        session_hash=session,
        api_name="shout",
        group="shout",
        state=JobState.WAITING,
        data=[f"x{n}"],
        created_at=time.time(),
    )
    return store.admit(job)


def _started(store: InMemoryStore, letter: str) -> tuple[str, Job, Job]:
    """A session of one job that a worker has claimed: the session, the job as admitted, as claimed."""
    session = letter * 32
    job = _admit(store, session, 0)
    (claimed,) = store.claim([job], "worker-1").claimed
    return session, job, claimed


def _run(store: InMemoryStore, job: Job, worker_id: str = "worker-1") -> None:
    """What a worker records for a job: the claim (it starts), then its completion."""
    (claimed,) = store.claim([job], worker_id).claimed
    done = protocol.completed(job.job_id, [str(job.data[0]).upper()], 0.01, None)
    assert store.finish([Completion(claimed, JobState.COMPLETED, done)], held=True) == [job.job_id]


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.002)


def _reading(stream: SessionStream, seen: list[dict[str, Any]]) -> asyncio.Task[None]:
    async def read() -> None:
        async for message in stream.messages():
            seen.append(message)

    return asyncio.ensure_future(read())


def _ranks(seen: list[dict[str, Any]]) -> list[tuple[int, int, float | None]]:
    return [(m["rank"], m["queue_size"], m["rank_eta"]) for m in seen if m["msg"] == "estimation"]


def test_sessions_far_back_cost_no_log_reads_while_ranks_and_etas_follow_the_counters() -> None:
    store = InMemoryStore(shards=2)
    ahead = [_admit(store, AHEAD, i) for i in range(40)]  # no worker runs: these stay in line
    behind = [f"{i:032d}" for i in range(3)]
    for session in behind:
        _admit(store, session, 0)
    hub = _hub(store)
    streams = [SessionStream(hub, session, PollPolicy()) for session in behind]
    seen: dict[str, list[dict[str, Any]]] = {session: [] for session in behind}

    async def watch() -> None:
        tasks = [_reading(stream, seen[stream.session_hash]) for stream in streams]
        await _until(lambda: all(_ranks(seen[s]) for s in behind), "a first rank for every session")
        first_ranks_read = store.calls["counters_consistent"]
        store.claim(ahead[:10], "worker-1")  # ten jobs ahead start (one transaction): only the line moves
        await _until(lambda: all(len(_ranks(seen[s])) >= 2 for s in behind), "a second rank for every session")
        # A first rank needs a strongly consistent read (it must count the job itself); once every job
        # has one, the ticks read eventually consistent (half the read units): at most a tick already
        # under way when the ranks were shown is strongly consistent.
        assert store.calls["counters_consistent"] <= first_ranks_read + 1
        assert store.calls["counters"] - store.calls["counters_consistent"] >= 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(watch())

    for session in behind:
        first, *later = _ranks(seen[session])
        # The rank is the honest bound from the tails read after the job was seen (42 of the 43 may be
        # ahead); the ETA is the hint's 0.5 s per batch of one, for the jobs ahead and its own, and half
        # of one for the running job to end.
        assert first == (42, 43, 21.75)
        assert later == [(32, 33, 16.75)], "the line moved by the ten that started, and nothing else changed"
        assert not [m for m in seen[session] if m["msg"] != "estimation"], "nothing started, nothing closed"
    assert store.calls["read_session"] == len(behind), "each log is read once, when its stream opens"
    assert store.calls["counters"] == hub.reads >= 2, "ranks come from the hub's counters reads"


def test_a_hub_whose_visitors_all_wait_far_back_reads_the_counters_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Lambda on demand each waiting visitor's stream reads the counters itself: one 40 jobs back
    (an expected wait of 20 s) is told its place at the slow tick, not at the base one, and a new job
    with no expected wait yet brings the base tick back."""
    monkeypatch.setattr("surge.session.SLOW_TICK_S", 0.2)
    store = InMemoryStore(shards=2)
    for i in range(40):
        _admit(store, AHEAD, i)
    session = "f" * 32
    _admit(store, session, 0)
    hub = _hub(store)  # base tick 0.02 s
    stream = SessionStream(hub, session, PollPolicy())
    seen: list[dict[str, Any]] = []
    counted: dict[str, float] = {}

    async def watch() -> None:
        task = _reading(stream, seen)
        await _until(lambda: bool(_ranks(seen)), "a first rank")
        counted["tick"] = hub.tick_s()
        reads = store.calls["counters"]
        await asyncio.sleep(1.0)
        counted["reads"] = store.calls["counters"] - reads
        stream.view.take([_admit(store, session, 1)], time.monotonic(), hub.batch_s)  # no ETA known yet
        counted["new_job_tick"] = hub.tick_s()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(watch())

    assert counted["tick"] == 0.2
    assert counted["reads"] <= 8, "about one read per 0.2 s, not one per 0.02 s"
    assert counted["new_job_tick"] == 0.02


def test_a_job_seen_between_two_counters_reads_gets_its_first_rank_after_the_least_gap_not_a_whole_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream that sees a new job in a long line while the hub waits out its least gap after a read
    (`FRESH_GAP_S`, here 0.3 s) gets its first rank from the read that ends the gap, not from the next
    base tick (here 5 s): Gradio shows a place in line at once."""
    monkeypatch.setattr("surge.session.FRESH_GAP_S", 0.3)
    store = InMemoryStore(shards=2)
    for i in range(40):
        _admit(store, AHEAD, i)
    first, second = "1" * 32, "2" * 32
    _admit(store, first, 0)
    app = _app()
    settings = memory_settings(
        "tests.unit.test_stream_reader:app", counters_tick_s=5.0, rescan_s=60.0, session_grace_s=60.0
    )
    hub = SessionHub(app, settings, store, Estimator(app, store.workers.stats, store.workers.fleet))
    seen: dict[str, list[dict[str, Any]]] = {first: [], second: []}

    async def watch() -> None:
        tasks = [_reading(SessionStream(hub, first, PollPolicy()), seen[first])]
        await _until(lambda: bool(_ranks(seen[first])), "the first session's rank")
        # The read that ranked it has just ended: the next may come 0.3 s after it, at the earliest.
        _admit(store, second, 0)
        tasks.append(_reading(SessionStream(hub, second, PollPolicy()), seen[second]))
        await _until(lambda: bool(_ranks(seen[second])), "the second session's rank within 3 s")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(watch())
    assert _ranks(seen[second])[0][:2] == (41, 42), "both sessions' jobs may be ahead of it"


def test_a_join_after_close_stream_answers_once_the_client_hangs_up_and_a_call_stream_ends_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a process that serves joins (the local front), a session's join that comes after its stream
    sent `close_stream` answers only once the client has hung up (gradio_client would tag the new job to
    the closing reader and cancel it), also while the stream still deletes what it delivered; a curl
    `/call` stream, whose session is its one call, does not wait for anything."""
    monkeypatch.setattr("surge.session.HANG_UP_WAIT_S", 30.0)
    store = InMemoryStore()
    session, call = "a" * 32, "b" * 32
    for owner in (session, call):
        _run(store, _admit(store, owner, 0))
    hub = _hub(store)
    hub.serves_joins = True
    forget = store.forget_all

    def slow_forget(keys: Any) -> None:  # the delete after the frame takes a while: a join may come meanwhile
        time.sleep(0.3)
        forget(keys)

    monkeypatch.setattr(store, "forget_all", slow_forget)

    async def watch() -> None:
        seen: list[dict[str, Any]] = []
        reader = _reading(SessionStream(hub, session, FAST_POLL), seen)
        await _until(lambda: bool(seen) and seen[-1]["msg"] == "close_stream", "close_stream")
        join = asyncio.ensure_future(hub.after_hang_up(session))
        await asyncio.sleep(0.1)
        assert not join.done(), "the client has not hung up yet: the join's answer waits"
        reader.cancel()  # the client hangs up: the SSE layer cancels the response
        await asyncio.wait_for(join, 1.0)
        await asyncio.gather(reader, return_exceptions=True)
        calls: list[dict[str, Any]] = []
        ending = _reading(SessionStream(hub, call, FAST_POLL, joined_again=False), calls)
        await _until(ending.done, "the call stream's end")
        assert [m["msg"] for m in calls][-2:] == ["process_completed", "close_stream"]
        await asyncio.wait_for(hub.after_hang_up(call), 1.0)

    asyncio.run(watch())


def test_close_stream_follows_the_last_pending_completion_and_never_precedes_it() -> None:
    store = InMemoryStore()
    session = "s" * 32
    first, second = _admit(store, session, 0), _admit(store, session, 1)
    stream = SessionStream(_hub(store), session, FAST_POLL)
    seen: list[dict[str, Any]] = []
    reads_at: list[int] = []
    """How many times the log had been read when each message came."""

    def completed(job: Job) -> bool:
        return any(m["msg"] == "process_completed" and m["event_id"] == job.job_id for m in seen)

    async def read() -> None:
        async for message in stream.messages():
            seen.append(message)
            reads_at.append(store.calls["read_session"])

    async def watch() -> None:
        task = asyncio.ensure_future(read())
        _run(store, first)
        await _until(lambda: completed(first), "the first job's completion")
        reads = store.calls["read_session"]
        await _until(lambda: task.done() or store.calls["read_session"] >= reads + 5, "reads while the second waits")
        assert not task.done() and seen[-1]["msg"] != "close_stream", "closed while a job was pending"
        _run(store, second)
        await asyncio.wait_for(task, WAIT_LIMIT_S)  # the stream ends by itself

    asyncio.run(watch())

    kinds = [(m["msg"], m["event_id"]) for m in seen]
    assert kinds[-2:] == [("process_completed", second.job_id), ("close_stream", None)]
    assert reads_at[-1] == reads_at[-2], "close_stream comes with the read that found the last completion"
    assert kinds.count(("close_stream", None)) == 1
    assert kinds.index(("process_completed", first.job_id)) < kinds.index(("process_starts", second.job_id))
    assert store.get_job(session, first.job_id) is None and store.get_job(session, second.job_id) is None, (
        "delivered jobs are forgotten, so a later stream of the session does not deliver them again"
    )


def test_a_running_jobs_result_is_read_when_its_batch_is_due_not_a_whole_poll_interval_later() -> None:
    """The read that sees a job start is followed by one at its expected end (its start plus the
    function's batch time, here the 0.5 s hint), however long the stream's least poll interval (2 s)."""
    store = InMemoryStore()
    session = "r" * 32
    job = _admit(store, session, 0)
    (running,) = store.claim([job], "worker-1").claimed
    stream = SessionStream(_hub(store), session, PollPolicy(min_s=2.0, max_s=2.0))
    seen: list[dict[str, Any]] = []
    at: dict[str, float] = {}

    async def watch() -> None:
        task = _reading(stream, seen)
        await _until(lambda: any(m["msg"] == "process_starts" for m in seen), "the job's start")
        at["starts"] = time.monotonic()
        done = protocol.completed(job.job_id, ["X0"], 0.01, None)
        store.finish([Completion(running, JobState.COMPLETED, done)], held=True)
        await asyncio.wait_for(task, WAIT_LIMIT_S)
        at["completed"] = time.monotonic()

    asyncio.run(watch())

    assert [m["msg"] for m in seen][-2:] == ["process_completed", "close_stream"]
    assert at["completed"] - at["starts"] < 1.5, "read at the batch's expected end, not 2 s after the last read"
    assert store.calls["read_session"] == 2


def _measured(batch_s: float, cycle_s: float) -> tuple[InMemoryStore, SessionHub]:
    """A store whose `shout` has measured batches, and a hub that has read its statistics."""
    store = InMemoryStore()
    store.workers.record_batch(
        "shout",
        BatchRecord(time.time(), 1, 0, batch_s, "worker-1"),
        FunctionStats(avg_batch_s=batch_s, avg_cycle_s=cycle_s),
    )
    hub = _hub(store)
    hub.estimator.stats(hub.app.get("shout"))
    return store, hub


async def _run_after(
    store: InMemoryStore, job: Job, stream: SessionStream, seen: list[dict[str, Any]], delay_s: float
) -> None:
    """Read the stream to its end while a worker runs `job` `delay_s` after the stream opened."""
    task = _reading(stream, seen)
    await asyncio.sleep(delay_s)
    _run(store, job)
    await asyncio.wait_for(task, WAIT_LIMIT_S)


def test_a_stream_opened_behind_its_join_reads_once_when_a_quick_job_is_due_not_also_at_the_open() -> None:
    """A client opens its stream right after its join is answered: a read at the open sees the job still
    waiting. With the function's batch cycle measured (50 ms), the first read comes when a job claimed
    as the stream opened is due, and finds it done: one read of the log for the whole request."""
    store, hub = _measured(batch_s=0.01, cycle_s=0.05)
    session = "q" * 32
    job = _admit(store, session, 0)
    stream = SessionStream(hub, session, PollPolicy())
    seen: list[dict[str, Any]] = []
    asyncio.run(_run_after(store, job, stream, seen, 0.02))  # claimed and recorded within its cycle

    kinds = [m["msg"] for m in seen]
    assert kinds[-3:] == ["process_starts", "process_completed", "close_stream"], kinds
    assert seen[-2]["success"] and seen[-2]["output"]["data"] == ["X0"]
    assert store.calls["read_session"] == 1, "no read at the open, which could only see the job waiting"


def test_a_visitor_waiting_at_the_front_behind_a_running_job_is_shown_its_place_and_the_running_jobs_time() -> None:
    """Two visitors and one slot, their streams in one process: the first waits, is shown its place, then
    runs; the second joins and waits at the front. Gradio shows it "1/1" and an ETA that counts the
    running job's time left. Before, the process's recent counters read showed a short line, so the
    second stream read none for a job at the front (its estimation was to come with its start): it was
    shown nothing while it waited."""
    store = InMemoryStore()
    hub = _hub(store)
    first, second = "a" * 32, "b" * 32
    job = _admit(store, first, 0)
    seen: dict[str, list[dict[str, Any]]] = {first: [], second: []}

    async def watch() -> None:
        tasks = [_reading(SessionStream(hub, first, FAST_POLL), seen[first])]
        await _until(lambda: bool(_ranks(seen[first])), "the first visitor's place")
        store.claim([job], "worker-1")  # it starts
        await _until(lambda: any(m["msg"] == "process_starts" for m in seen[first]), "the first job's start")
        _admit(store, second, 0)
        tasks.append(_reading(SessionStream(hub, second, FAST_POLL), seen[second]))
        await _until(lambda: bool(_ranks(seen[second])), "the second visitor's place")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(watch())

    # Its own run (the 0.5 s hint) and, on average, half of the running one's.
    assert _ranks(seen[second]) == [(0, 1, 0.75)]
    assert [m["msg"] for m in seen[second]] == ["estimation"], "shown its place while it waits, nothing started"


def test_a_new_streams_first_read_aims_at_when_the_jobs_of_recent_streams_ended_not_a_whole_cycle() -> None:
    """A client opens its stream a while after its join (gradio_client: about 30 ms), so a whole batch
    cycle counted from the opening reads a quick job's result late, after the client's next look at its
    messages. Once streams here have delivered jobs, a new stream's first read comes when those ended,
    counted from their streams' opening (a job joined while its stream was open is no such sample)."""
    store, hub = _measured(batch_s=0.4, cycle_s=0.5)
    assert hub.first_read_s() == pytest.approx(0.1), "before any sample: the cycle, at most 0.1 s"
    session = "r" * 32
    job = _admit(store, session, 0)
    stream = SessionStream(hub, session, PollPolicy())
    seen: list[dict[str, Any]] = []
    asyncio.run(_run_after(store, job, stream, seen, 0.01))  # joined before the stream opened, ends soon after

    assert [m["msg"] for m in seen][-2:] == ["process_completed", "close_stream"]
    (ended,) = stream.view.delivered
    assert ended.finished_at is not None
    offset = ended.finished_at - stream.opened_at
    assert offset > 0
    # at most a tenth of a second: on a loaded machine the job may have ended later than its 10 ms
    aimed = min(FIRST_READ_MAX_S, offset + 0.005)
    assert hub.first_read_s() == pytest.approx(aimed), "the first read aims at the recent jobs' end"

    later = "s" * 32
    stream = SessionStream(hub, later, PollPolicy())

    async def join_while_open() -> None:
        task = _reading(stream, seen)
        await asyncio.sleep(0.12)
        _run(store, _admit(store, later, 1))  # joined after the stream opened: its end says nothing
        stream.wake.set()
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    asyncio.run(join_while_open())
    assert hub.first_read_s() == pytest.approx(aimed)


def test_a_new_streams_first_read_aims_at_when_recent_streamed_jobs_first_had_output_not_at_their_end() -> None:
    """A chat's answer streams for seconds, its first token within tens of milliseconds (Gradio shows it
    then): a first read timed by the answers' end waited the whole tenth of a second. It aims at when
    the recent jobs' first live output was recorded instead."""
    store, hub = _measured(batch_s=0.4, cycle_s=0.5)
    session = "t" * 32
    job = _admit(store, session, 0)
    stream = SessionStream(hub, session, PollPolicy())
    seen: list[dict[str, Any]] = []
    firsts: list[float | None] = []

    async def stream_an_answer() -> None:
        task = _reading(stream, seen)
        await asyncio.sleep(0.01)
        (claimed,) = store.claim([job], "worker-1").claimed
        store.record_live(claimed, [protocol.generating(job.job_id, ["first token"])], None)
        firsts.append(store.jobs.items[(session, job.job_id)].first_output_at)
        await _until(lambda: any(m["msg"] == "process_generating" for m in seen), "the first token")
        await asyncio.sleep(0.3)
        done = protocol.completed(job.job_id, ["whole answer"], 0.3, None)
        store.finish([Completion(claimed, JobState.COMPLETED, done)], held=True)
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    asyncio.run(stream_an_answer())
    assert [m["msg"] for m in seen][-2:] == ["process_completed", "close_stream"]
    (first,) = firsts
    assert first is not None
    offset = first - stream.opened_at
    assert 0 < offset < 0.09  # within the tenth of a second a first read waits at most
    assert hub.first_read_s() == pytest.approx(offset + 0.005), "the first token's time, not the answer's end"


class JoinDuringRead(InMemoryStore):
    """A session log read whose answer is taken before a join of the session commits and is answered
    (both in this process) and comes back after it: the read cannot have seen that job."""

    def __init__(self) -> None:
        super().__init__()
        self.hub: SessionHub | None = None
        self.joined: Job | None = None

    def read_session(self, session_hash: str) -> list[Job]:
        jobs = super().read_session(session_hash)
        if self.joined is None and self.hub is not None:
            with self.hub.joining(session_hash):
                self.joined = _admit(self, session_hash, 1)
        return jobs


def test_a_join_answered_during_the_streams_read_keeps_the_stream_open_for_its_job() -> None:
    """gradio_client tags the job with the reader open when its join returns: a stream that closed on the
    read which missed the job would leave that call cancelled."""
    store = JoinDuringRead()
    session = "j" * 32
    first = _admit(store, session, 0)
    _run(store, first)  # done before the stream opens: its first read delivers it
    hub = _hub(store)
    store.hub = hub
    stream = SessionStream(hub, session, FAST_POLL)
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        task = _reading(stream, seen)
        await _until(lambda: store.joined is not None and len(seen) > 0, "the first read, and the join during it")
        await asyncio.sleep(0.05)
        assert not task.done(), "closed on a read that could not see the job joined meanwhile"
        assert store.joined is not None
        _run(store, store.joined)
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    asyncio.run(watch())

    assert store.joined is not None
    kinds = [(m["msg"], m["event_id"]) for m in seen]
    assert kinds[-2:] == [("process_completed", store.joined.job_id), ("close_stream", None)]
    assert kinds.count(("close_stream", None)) == 1


def test_a_far_back_job_that_runs_out_of_line_is_delivered_after_its_finish_notice() -> None:
    """SQS keeps no order: a worker may take a job from the back of the line. Its session is not read on
    a schedule, so the worker's finish notice (read once per tick for all sessions) is what wakes it."""
    store = InMemoryStore(shards=2)
    for i in range(40):
        _admit(store, AHEAD, i)  # these stay in line
    session = "b" * 32
    job = _admit(store, session, 0)
    hub = _hub(store)
    stream = SessionStream(hub, session, PollPolicy())
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        task = _reading(stream, seen)
        await _until(lambda: bool(_ranks(seen)), "a first rank")
        _run(store, job)  # taken ahead of the 40
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    asyncio.run(watch())

    assert [m["msg"] for m in seen][-3:] == ["process_starts", "process_completed", "close_stream"]
    assert store.calls["read_session"] == 2, "the read at open, and the one its notice asked for"
    assert hub.notice_reads >= 1


def test_streams_that_close_together_share_the_deletes_of_their_delivered_jobs() -> None:
    """A batch's sessions close at once: their delivered jobs are forgotten in shared batch writes (25
    deletes to a call) rather than one write per stream, and each stream still ends only once its own
    jobs are gone (a later stream of the session must not deliver them again)."""
    store = InMemoryStore()
    sessions = [f"{i:032d}" for i in range(12)]
    jobs = [_admit(store, session, 0) for session in sessions]
    hub = _hub(store)
    streams = [SessionStream(hub, session, FAST_POLL) for session in sessions]
    seen: dict[str, list[dict[str, Any]]] = {session: [] for session in sessions}

    async def watch() -> None:
        tasks = [_reading(stream, seen[stream.session_hash]) for stream in streams]
        await _until(lambda: store.calls["read_session"] >= len(sessions), "every stream's first read")
        for job in jobs:  # one batch: every job finishes at once
            _run(store, job)
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_LIMIT_S)

    asyncio.run(watch())

    for session, job in zip(sessions, jobs, strict=True):
        assert [m["msg"] for m in seen[session]][-2:] == ["process_completed", "close_stream"]
        assert store.get_job(session, job.job_id) is None, "forgotten before its stream ended"
    assert 1 <= store.calls["forget"] <= 3, f"{store.calls['forget']} writes forgot 12 sessions' jobs"


def test_a_running_job_its_visitor_cancels_is_told_cancelled_at_once_and_its_late_result_never_delivered() -> None:
    """Gradio answers a cancel of a running job with an empty completion at once. Surge left a function
    that returns once to finish, and its stream delivered the result when it came (the page showed it
    after its Stop). Its worker's finish puts the job's item anew, so the stream leaves a marker: a later
    stream of the session skips the job, and deletes it and the marker once it has ended."""
    store = InMemoryStore()
    session, job, claimed = _started(store, "c")
    hub = _hub(store)
    first: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []

    async def watch() -> None:
        task = _reading(SessionStream(hub, session, FAST_POLL), first)
        await _until(lambda: any(m["msg"] == "process_starts" for m in first), "the job's start")
        assert store.request_cancel(store.get_job(session, job.job_id) or job)
        hub.poke(session)  # as the front's cancel does
        await asyncio.wait_for(task, WAIT_LIMIT_S)
        # The call returns afterwards, and its worker records it.
        done = protocol.completed(job.job_id, ["LATE"], 0.01, None)
        assert store.finish([Completion(claimed, JobState.COMPLETED, done)], held=True) == [job.job_id]
        again = SessionStream(hub, session, PollPolicy(min_s=0.005, max_s=0.02, empty_session_s=0.1))
        await asyncio.wait_for(_reading(again, later), WAIT_LIMIT_S)

    asyncio.run(watch())

    assert [m["msg"] for m in first][-2:] == ["process_completed", "close_stream"]
    assert first[-2] == protocol.cancelled(job.job_id), "told at once, as Gradio tells it"
    assert later == [protocol.close_stream()], "the late result is never delivered"
    assert store.get_job(session, job.job_id) is None and not store.jobs.markers, "ended: deleted with its marker"


def test_a_stream_the_client_drops_forgets_the_completions_it_sent_and_the_next_sends_only_the_rest() -> None:
    """`@gradio/client` drops its stream when a cancelled job's completion trips it, and opens another for
    its next call; that stream sent the same completion again (and the client failed on it again, for
    good). Gradio sends each message once: only what the client has not been sent comes again."""
    store = InMemoryStore()
    session = "d" * 32
    sent_job, waiting_job = _admit(store, session, 0), _admit(store, session, 1)
    hub = _hub(store)
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []

    def completed(seen: list[dict[str, Any]], job: Job) -> bool:
        return any(m["msg"] == "process_completed" and m["event_id"] == job.job_id for m in seen)

    async def watch() -> None:
        task = _reading(SessionStream(hub, session, FAST_POLL), first)
        _run(store, sent_job)
        await _until(lambda: completed(first, sent_job), "the first job's completion")
        await asyncio.sleep(0.01)  # the SSE layer resumes the stream once the frame is written
        task.cancel()  # the client drops the stream
        await asyncio.gather(task, return_exceptions=True)
        reopened = _reading(SessionStream(hub, session, FAST_POLL), again)
        _run(store, waiting_job)
        await asyncio.wait_for(reopened, WAIT_LIMIT_S)

    asyncio.run(watch())

    assert not completed(again, sent_job), "the completion the client was sent is not sent again"
    assert completed(again, waiting_job) and again[-1] == protocol.close_stream()


def test_a_client_gone_past_the_grace_period_has_its_waiting_job_cancelled_and_its_running_one_stopped() -> None:
    """A tab closed: Gradio drops the session's waiting jobs and stops its running generator at once, so
    the visitors behind them do not wait for abandoned work. After the grace period (no stream of the
    session reopened) the waiting job leaves the line and the running one is asked to stop; before, the
    running one, or one that started within the grace period, ran to its end."""
    store = InMemoryStore()
    settings = memory_settings("tests.unit.test_stream_reader:app", counters_tick_s=0.02, session_grace_s=0.05)
    app = _app()
    hub = SessionHub(app, settings, store, Estimator(app, store.workers.stats, store.workers.fleet))
    session = "g" * 32
    _, running, _ = _started(store, "g")
    waiting = _admit(store, session, 1)
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        task = _reading(SessionStream(hub, session, FAST_POLL), seen)
        await _until(lambda: any(m["msg"] == "process_starts" for m in seen), "the running job's start")
        task.cancel()  # the client goes away
        await asyncio.gather(task, return_exceptions=True)
        # the session's jobs are ended one after the other, in either order: wait for both
        await _until(lambda: bool(store.jobs.cancel_requested) and ended(), "the session's jobs ended")

    def ended() -> bool:
        left = store.get_job(session, waiting.job_id)
        return left is not None and left.state is JobState.CANCELLED

    asyncio.run(watch())

    assert store.jobs.cancel_requested == {(session, running.job_id)}
    assert ended(), "the waiting job left the line"
    assert store.counters().queue_size("shout") == 0


@pytest.mark.parametrize("notice", [False, True], ids=["steps", "a notice first"])
def test_a_stream_dropped_while_a_generator_streams_is_resumed_where_it_left_off(notice: bool) -> None:
    """A generator's messages after its first are diffs that the client applies to what it built. A
    stream dropped midway, then opened again, sent the generator's messages from its first: the client
    applied them a second time (`@gradio/client` failed applying them). The next stream sends the rest.
    A notice (`gr.Info`) holds a place among them: counted as none, a diff went twice and the toast again."""
    store = InMemoryStore()
    session, job, running = _started(store, "g")
    hub = _hub(store)
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []

    def chunk(k: int) -> dict[str, Any]:
        return protocol.generating(job.job_id, [f"diff {k}"])

    def generated(seen: list[dict[str, Any]]) -> list[Any]:
        return [m["output"]["data"] for m in seen if m["msg"] == "process_generating"]

    async def watch() -> None:
        task = _reading(SessionStream(hub, session, FAST_POLL), first)
        told = [protocol.log(job.job_id, "loading", "info", "Info")] if notice else []
        store.record_live(running, [*told, chunk(0), chunk(1)], None)
        await _until(lambda: len(generated(first)) == 2, "the first two messages")
        await asyncio.sleep(0.01)  # the SSE layer resumes the stream once the frame is written
        task.cancel()  # the client drops the stream
        await asyncio.gather(task, return_exceptions=True)
        store.record_live(running, [chunk(2)], None)
        reopened = _reading(SessionStream(hub, session, FAST_POLL), again)
        await _until(lambda: len(generated(again)) >= 1, "a message of the reopened stream")
        done = protocol.completed(job.job_id, ["whole"], 0.01, None)
        store.finish([Completion(running, JobState.COMPLETED, done)], held=True)
        await asyncio.wait_for(reopened, WAIT_LIMIT_S)

    asyncio.run(watch())

    assert generated(first) == [["diff 0"], ["diff 1"]]
    assert [m["msg"] for m in first].count("log") == int(notice)
    assert [m["msg"] for m in again] == ["process_generating", "process_completed", "close_stream"], (
        "no estimation or start again: the client had them"
    )
    assert generated(again) == [["diff 2"]], "only what the dropped stream had not sent"
    assert store.get_job(session, job.job_id) is None and not store.jobs.sent, "delivered: deleted with its note"


def test_a_generators_job_next_in_line_is_looked_for_as_its_output_comes_not_after_a_whole_batch() -> None:
    """A job at the front of its line starts when the batch ahead ends, so its stream looked again after
    about a batch. A generator's output is shown as it comes: waiting that long, a short generation's
    output came all at once with its end (and a chat's first words late). Its start is looked for as
    often as its output then is (`streaming_max_s`); here a batch is 10 s and `max_s` a minute."""
    app = surge.App(title="streams", default_concurrency_limit=None)

    @app.function(inputs=["textbox"], outputs=["textbox"], eta_hint_s=10.0)
    def spell(text: str) -> Iterator[str]:
        yield from text

    store = InMemoryStore()
    session = "n" * 32
    job = store.admit(
        Job(
            job_id="spelled",
            session_hash=session,
            api_name="spell",
            group="spell",
            state=JobState.WAITING,
            data=["ab"],
            created_at=time.time(),
        )
    )
    hub = _hub(store, app)
    seen: list[dict[str, Any]] = []
    policy = PollPolicy(min_s=0.005, max_s=60.0, streaming_max_s=0.02)

    async def watch() -> None:
        task = _reading(SessionStream(hub, session, policy), seen)
        await _until(lambda: store.jobs.calls["read_session"] >= 1, "the stream's first read")
        await asyncio.sleep(0.05)  # the worker takes the job a moment later
        (running,) = store.claim([job], "worker-1").claimed
        store.record_live(running, [protocol.generating(job.job_id, ["a"])], None)
        await _until(lambda: any(m["msg"] == "process_generating" for m in seen), "the first output")
        done = protocol.completed(job.job_id, ["ab"], 0.1, None)
        store.finish([Completion(running, JobState.COMPLETED, done)], held=True)
        await asyncio.wait_for(task, WAIT_LIMIT_S)

    asyncio.run(watch())

    assert [m["msg"] for m in seen if m["msg"] != "estimation"] == [
        "process_starts",
        "process_generating",
        "process_completed",
        "close_stream",
    ]


def _completions(seen: list[dict[str, Any]], job: Job) -> list[dict[str, Any]]:
    return [m for m in seen if m.get("event_id") == job.job_id and m["msg"] == "process_completed"]


def _one_job_waiting(letter: str) -> tuple[InMemoryStore, str, Job, SessionHub]:
    """A store with one job waiting in the session `letter * 32`, and a stream process's hub over it."""
    store = InMemoryStore()
    session = letter * 32
    return store, session, _admit(store, session, 0), _hub(store)


def test_a_delivered_job_whose_delete_failed_is_not_sent_again_and_goes_with_the_next_delete() -> None:
    """A throttled delete left the delivered job in the log, and the client's next stream sent its
    `estimation`, `process_starts` and `process_completed` again (`@gradio/client` fails on a second)."""
    store, session, first_job, hub = _one_job_waiting("f")
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []

    def throttled(jobs: list[Job]) -> None:
        raise Unavailable("Forgetting delivered jobs failed; please try again shortly.")

    async def watch() -> None:
        store.jobs.forget_all = throttled  # type: ignore[method-assign]
        stream = _reading(SessionStream(hub, session, FAST_POLL), first)
        _run(store, first_job)
        await asyncio.wait_for(stream, WAIT_LIMIT_S)
        del store.jobs.forget_all  # AWS answers again
        second_job = _admit(store, session, 1)
        reopened = _reading(SessionStream(hub, session, FAST_POLL), again)
        _run(store, second_job)
        await asyncio.wait_for(reopened, WAIT_LIMIT_S)

    asyncio.run(watch())
    assert _completions(first, first_job)
    assert [m["msg"] for m in again if m.get("event_id") == first_job.job_id] == [], "sent once"
    assert store.read_session(session) == [], "deleted with the next stream's delivered job"


def test_a_read_begun_before_a_delete_landed_does_not_send_the_deleted_job_again() -> None:
    """The client's next stream, in the same process, read the session while the closing stream's delete
    was under way, and its answer came back after the delete landed: it sent the delivered job again."""
    store, session, first_job, hub = _one_job_waiting("e")
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    read, forget = store.jobs.read_session, store.jobs.forget_all
    slow, reading = threading.Event(), threading.Event()

    def slow_read(session_hash: str) -> list[Job]:
        jobs = read(session_hash)
        if slow.is_set():
            reading.set()
            time.sleep(0.15)  # the query's answer is slow to come back
        return jobs

    def forget_after_the_read(jobs: list[Job]) -> None:
        reading.wait(1.0)  # the next stream's read has begun, and saw the job
        forget(jobs)

    store.jobs.read_session, store.jobs.forget_all = slow_read, forget_after_the_read  # type: ignore[method-assign]

    async def watch() -> None:
        stream = _reading(SessionStream(hub, session, FAST_POLL), first)
        _run(store, first_job)
        await _until(lambda: bool(first) and first[-1]["msg"] == "close_stream", "the first stream's close")
        second_job = _admit(store, session, 1)  # the client's next join and stream, while the delete runs
        slow.set()
        reopened = _reading(SessionStream(hub, session, PollPolicy(min_s=0.005, max_s=0.02)), again)
        await asyncio.sleep(0.05)
        slow.clear()
        _run(store, second_job)
        await asyncio.wait_for(asyncio.gather(stream, reopened), WAIT_LIMIT_S)

    asyncio.run(watch())
    assert _completions(first, first_job)
    assert [m["msg"] for m in again if m.get("event_id") == first_job.job_id] == [], "sent once"


@pytest.mark.parametrize("processes", [1, 2], ids=["one process", "two processes"])
def test_two_streams_of_a_session_awaiting_one_job_both_end_when_one_delivers_it(processes: int) -> None:
    """A client opened a stream again while its first still ran (on Lambda a stream whose client left
    runs on). The first to see the job end delivered and deleted it; the other awaited it until the
    stream's bound (870 s on AWS) and then said it was still running. In one process both now deliver it;
    in two, the other is told at its next read that another connection received it."""
    store = InMemoryStore()
    session, job, claimed = _started(store, "w")
    ended, delivered = threading.Event(), threading.Event()

    class OtherProcess(InMemoryStore):
        """The same items, read by a stream process of its own, which reads the job's end last."""

        def __init__(self) -> None:
            self.__dict__.update(store.__dict__)

        def read_session(self, session_hash: str) -> list[Job]:
            if ended.is_set():
                delivered.wait(WAIT_LIMIT_S)
            return super().read_session(session_hash)

    first_hub = _hub(store)
    hubs = [first_hub, _hub(OtherProcess()) if processes == 2 else first_hub]
    seen: list[list[dict[str, Any]]] = [[], []]

    async def watch() -> None:
        eager = _reading(SessionStream(hubs[0], session, FAST_POLL), seen[0])
        slow = _reading(SessionStream(hubs[1], session, PollPolicy(min_s=0.05, max_s=0.2)), seen[1])
        started = [lambda k=k: any(m["msg"] == "process_starts" for m in seen[k]) for k in (0, 1)]
        await _until(lambda: all(f() for f in started), "both streams saw the job start")
        done = protocol.completed(job.job_id, ["OK"], 0.01, None)
        store.finish([Completion(claimed, JobState.COMPLETED, done)], held=True)
        ended.set()
        await asyncio.wait_for(eager, WAIT_LIMIT_S)
        delivered.set()
        await asyncio.wait_for(slow, WAIT_LIMIT_S)

    asyncio.run(watch())
    ends = [[m for m in messages if m["msg"] == "process_completed"] for messages in seen]
    assert all(
        len(end) == 1 and messages[-1] == protocol.close_stream() for end, messages in zip(ends, seen, strict=True)
    )
    assert ends[0][0]["success"] and ends[0][0]["output"]["data"] == ["OK"]
    if processes == 1:
        assert ends[1][0]["output"]["data"] == ["OK"], "the same end, from the stream that delivered it"
    else:
        assert not ends[1][0]["success"] and "another connection" in ends[1][0]["output"]["error"]
    assert store.read_session(session) == []


def test_a_job_ended_at_the_streams_bound_is_not_sent_again_by_a_stream_opened_as_its_marker_is_written() -> None:
    """At `STREAM_MAX_S` a running job is told it cannot be delivered and gets a cancel's marker. A stream of
    the session opened here while that marker was written read the job without it, and sent the job's
    `estimation`, `process_starts` and a second `process_completed` once it ended."""
    store = InMemoryStore()
    session, job, claimed = _started(store, "m")
    app = _app()
    settings = memory_settings(
        "tests.unit.test_stream_reader:app", counters_tick_s=0.02, rescan_s=60.0, session_grace_s=60.0, stream_max_s=0.3
    )
    hub = SessionHub(app, settings, store, Estimator(app, store.workers.stats, store.workers.fleet))
    forget, landed = store.jobs.forget_all, threading.Event()

    def slow_marker(jobs: list[Job]) -> None:
        landed.wait(2.0)  # the marker's write is slow to land
        forget(jobs)

    store.jobs.forget_all = slow_marker  # type: ignore[method-assign]
    first: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []

    async def watch() -> None:
        bounded = _reading(SessionStream(hub, session, FAST_POLL), first)
        await _until(lambda: bool(first) and first[-1]["msg"] == "close_stream", "the stream's bound")
        reopened = _reading(SessionStream(hub, session, FAST_POLL), again)  # the client's next stream
        await asyncio.sleep(0.1)  # it reads while the marker is written
        landed.set()
        await asyncio.wait_for(bounded, WAIT_LIMIT_S)
        store.finish([Completion(claimed, JobState.CANCELLED, protocol.cancelled(job.job_id))], held=True)
        await asyncio.wait_for(reopened, WAIT_LIMIT_S)

    asyncio.run(watch())
    assert len(_completions(first, job)) == 1
    assert [m["msg"] for m in again if m.get("event_id") == job.job_id] == [], "its end went once"


def test_a_stream_process_remembers_what_it_deleted_for_a_minute_however_often_the_session_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `gradio_client.Client` uses one session for all its calls: a script calling every 30 s kept every
    job it was delivered (results and all) in the stream process, for as long as it ran."""
    store = InMemoryStore()
    hub = _hub(store)
    session, now = "r" * 32, [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    for k in range(100):
        delivered = [_admit(store, session, k)]
        hub.forgetting(session, delivered, True)
        hub.forgetting(session, delivered, False)
        now[0] += 30.0
    assert sorted(hub.forgotten(session)) == [f"job-rrrr-{k}" for k in (97, 98, 99)], "the last minute's alone"
