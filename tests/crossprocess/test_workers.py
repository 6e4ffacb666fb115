"""Fleet-wide concurrency limits, leases, visibility extension, redelivery and graceful stop, across processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from surge.application import load_app
from surge.models import Job, JobMessage, JobState
from surge.store import Store
from surge_local.launcher import LocalStack, free_port
from tests.apps.timing_app import release
from tests.crossprocess.helpers import (
    counters,
    held_leases,
    join,
    messages,
    new_session,
    queue_depth,
    records,
    wait_until,
)

pytestmark = pytest.mark.crossprocess


def max_overlap(intervals: list[dict[str, Any]]) -> int:
    """Most calls running at the same moment."""
    points = sorted(
        [(r["start"], 1) for r in intervals] + [(r["end"], -1) for r in intervals], key=lambda p: (p[0], p[1])
    )
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def two_worker_stack(record_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack(
        "tests.apps.timing_app:app",
        port=free_port(),
        workers={"limited_one": 2, "limited_two": 2, "one_at_a_time": 1, "sleepy": 0, "steps": 1},
        tuning={"visibility_timeout_s": 4, "lease_ttl_s": 3.0},
        extra_env={"RECORD_DIR": str(record_dir)},
    ).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_limit_one_never_overlaps_across_two_worker_processes(two_worker_stack: LocalStack, record_dir: Path) -> None:
    assert two_worker_stack.settings is not None
    store = Store(two_worker_stack.settings, client=two_worker_stack.client("dynamodb"))
    # The stack's start waits for its front alone: both workers must be serving before the 1.6 s of jobs.
    assert wait_until(lambda: len(store.live_workers("limited_one")) == 2, 30), "both workers started"
    client = Client(two_worker_stack.url, verbose=False)
    jobs = [client.submit(0.2, f"a{i}", api_name="/limited_one") for i in range(8)]
    assert sorted(job.result() for job in jobs) == sorted(f"a{i}" for i in range(8))
    calls = records(record_dir, "limited_one")
    assert len({c["pid"] for c in calls}) == 2, "both worker processes should have served calls"
    assert max_overlap(calls) == 1


def test_limit_two_runs_two_at_once_and_never_three(two_worker_stack: LocalStack, record_dir: Path) -> None:
    client = Client(two_worker_stack.url, verbose=False)
    jobs = [client.submit(0.3, f"b{i}", api_name="/limited_two") for i in range(8)]
    assert sorted(job.result() for job in jobs) == sorted(f"b{i}" for i in range(8))
    assert max_overlap(records(record_dir, "limited_two")) == 2


def test_unbatched_function_is_called_one_input_at_a_time(two_worker_stack: LocalStack, record_dir: Path) -> None:
    client = Client(two_worker_stack.url, verbose=False)
    jobs = [client.submit(f"w{i}", api_name="/one_at_a_time") for i in range(10)]
    assert [job.result() for job in jobs] == [f"W{i}" for i in range(10)]
    assert {c["kind"] for c in records(record_dir, "one_at_a_time")} == {"str"}


def test_rank_and_eta_shrink_as_the_queue_drains(two_worker_stack: LocalStack) -> None:
    client = Client(two_worker_stack.url, verbose=False)
    for i in range(3):  # settle the measured batch time, which the ETA is built on
        client.predict(0.8, f"warm{i}", api_name="/limited_one")
    session = new_session()
    ids = [join(two_worker_stack, session, "limited_one", [0.8, f"r{i}"]).json()["event_id"] for i in range(5)]
    updates = [
        (m["rank"], m["rank_eta"])
        for m in messages(two_worker_stack, session)
        if m["msg"] == "estimation" and m["event_id"] == ids[-1]
    ]
    ranks = [rank for rank, _ in updates]
    assert len(updates) >= 3, updates
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] < ranks[0], updates
    assert updates[-1][1] < updates[0][1], updates


def job_owner_pid(stack: LocalStack, api_name: str) -> int | None:
    """The pid of the worker running a job of `api_name` (worker ids embed the pid)."""
    assert stack.settings is not None
    table = stack.client("dynamodb")
    items = table.scan(TableName=stack.settings.events_table_name)["Items"]
    owners = [
        i["worker_id"]["S"]
        for i in items
        if i["api_name"]["S"] == api_name and i["state"]["S"] == "running" and "worker_id" in i
    ]
    return int(owners[0].split("-")[-2]) if owners else None


def test_a_killed_workers_lease_expires_and_its_job_still_completes(
    two_worker_stack: LocalStack, record_dir: Path
) -> None:
    client = Client(two_worker_stack.url, verbose=False)
    victim = client.submit(2.5, "victim", api_name="/limited_one")
    assert wait_until(lambda: job_owner_pid(two_worker_stack, "limited_one") is not None, 10)
    pid = job_owner_pid(two_worker_stack, "limited_one")
    process = next(p for p in two_worker_stack.workers_of("limited_one").values() if p.pid == pid)
    os.kill(pid, signal.SIGKILL)
    process.wait()
    killed_at = time.time()
    two_worker_stack.start_worker("limited_one", "limited_one-replacement")

    follower = client.submit(0.1, "follower", api_name="/limited_one")
    assert follower.result() == "follower"
    follower_start = next(r["start"] for r in records(record_dir, "limited_one") if r["tag"] == "follower")
    # lease_ttl_s is 3 s here: the dead worker's slot is free again within that, plus polling slack.
    assert follower_start - killed_at < 3.0 + 4.0
    assert victim.result() == "victim"
    assert [r["tag"] for r in records(record_dir, "limited_one")].count("victim") == 1
    assert wait_until(lambda: held_leases(two_worker_stack, "limited_one") == 0, 5)
    assert wait_until(lambda: counters(two_worker_stack).waiting == 0, 5)


def test_a_generator_whose_worker_is_killed_mid_stream_completes_for_gradio_client(
    two_worker_stack: LocalStack, record_dir: Path
) -> None:
    """The visitor had two steps of the dead run. The job runs again on another worker and its steps start
    over as diffs the client applies: the call ends with the last step (it failed with "not enough values
    to unpack", and iterating over the job never ended)."""
    if not two_worker_stack.workers_of("steps"):  # its worker serves limited_one too: a test above may kill it
        two_worker_stack.start_worker("steps", "steps-first")
    client = Client(two_worker_stack.url, verbose=False)
    job = client.submit("gen", api_name="/steps")
    held = lambda: any(r.get("step") == 2 for r in records(record_dir, "steps") if r["tag"] == "gen")  # noqa: E731
    assert wait_until(held, 20)
    assert wait_until(lambda: len(job.outputs()) == 2, 10)
    pid = job_owner_pid(two_worker_stack, "steps")
    name, process = next((n, p) for n, p in two_worker_stack.workers_of("steps").items() if p.pid == pid)
    os.kill(pid, signal.SIGKILL)
    process.wait()
    release(record_dir, "gen")
    two_worker_stack.start_worker(two_worker_stack.served[name], "steps-replacement")  # and what else it served

    assert job.result(timeout=30) == "gen-5"
    assert job.outputs()[:2] == ["gen-0", "gen-1"] and job.outputs()[-4:] == ["gen-2", "gen-3", "gen-4", "gen-5"]
    assert [r["step"] for r in records(record_dir, "steps") if r["tag"] == "gen"] == [0, 1, 2, 0, 1, 2, 3, 4, 5]


def test_a_redelivered_message_never_runs_a_completed_job_again(two_worker_stack: LocalStack, record_dir: Path) -> None:
    session = new_session()
    event_id = join(two_worker_stack, session, "limited_two", [0.05, "once"]).json()["event_id"]
    assert [m["msg"] for m in messages(two_worker_stack, session)][-2:] == ["process_completed", "close_stream"]
    assert two_worker_stack.settings is not None
    function = load_app(two_worker_stack.app_spec).get("limited_two")
    again = JobMessage(
        job_id=event_id,
        session_hash=session,
        api_name="limited_two",
        group=function.concurrency_id,
        shard=0,
        data=[0.05, "once"],
        created_at=time.time(),
    )
    sqs = two_worker_stack.client("sqs")
    for _ in range(2):
        sqs.send_message(
            QueueUrl=two_worker_stack.settings.queue_url("limited_two"), MessageBody=again.model_dump_json()
        )
    assert wait_until(lambda: queue_depth(two_worker_stack, "limited_two") == (0, 0), 10)
    time.sleep(0.5)
    assert [r["tag"] for r in records(record_dir, "limited_two")].count("once") == 1


def test_sigterm_while_waiting_for_a_lease_gives_messages_back_at_once(
    two_worker_stack: LocalStack, record_dir: Path
) -> None:
    client = Client(two_worker_stack.url, verbose=False)
    first = client.submit(-1, "holder", api_name="/limited_one")  # held until released below
    assert wait_until(lambda: job_owner_pid(two_worker_stack, "limited_one") is not None, 10)
    holder_pid = job_owner_pid(two_worker_stack, "limited_one")
    second = client.submit(0.1, "handed-back", api_name="/limited_one")
    # The other worker has received the second job and waits for the group's only lease.
    assert wait_until(lambda: queue_depth(two_worker_stack, "limited_one") == (0, 2), 10)
    other = next(p for p in two_worker_stack.workers_of("limited_one").values() if p.pid != holder_pid)
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=5) == 0
    release(record_dir, "holder")
    assert first.result() == "holder" and second.result() == "handed-back"
    calls = {r["tag"]: r for r in records(record_dir, "limited_one")}
    # Visibility is 4 s here: had the message not been given back, it would start only when that lapses,
    # 4 s after the other worker received it (held, the holder ends about when the other worker stops).
    assert calls["handed-back"]["start"] - calls["holder"]["end"] < 2.0
    two_worker_stack.start_worker("limited_one", "limited_one-after-sigterm")


@pytest.fixture(scope="module")
def sleepy_stack(record_dir: Path) -> Iterator[LocalStack]:
    stack = LocalStack(
        "tests.apps.timing_app:app",
        port=free_port(),
        workers={"limited_one": 0, "limited_two": 0, "one_at_a_time": 0, "sleepy": 1},
        tuning={"visibility_timeout_s": 2, "lease_ttl_s": 3.0},
        extra_env={"RECORD_DIR": str(record_dir)},
    ).start()
    try:
        yield stack
    finally:
        stack.stop()


def test_visibility_is_extended_while_a_batch_runs_longer_than_the_timeout(
    sleepy_stack: LocalStack, record_dir: Path
) -> None:
    client = Client(sleepy_stack.url, verbose=False)
    job = client.submit(5.0, "long", api_name="/sleepy")
    assert wait_until(lambda: any("long" in r["tags"] for r in records(record_dir, "sleepy_start")), 10)
    time.sleep(3.0)  # past the 2 s visibility timeout
    assert queue_depth(sleepy_stack, "sleepy") == (0, 1)
    assert job.result() == "long"
    assert sum("long" in r["tags"] for r in records(record_dir, "sleepy_start")) == 1


def test_sigterm_mid_batch_finishes_the_batch_then_exits(sleepy_stack: LocalStack, record_dir: Path) -> None:
    client = Client(sleepy_stack.url, verbose=False)
    jobs = [client.submit(1.5, f"t{i}", api_name="/sleepy") for i in range(2)]
    assert wait_until(
        lambda: any("t0" in r["tags"] or "t1" in r["tags"] for r in records(record_dir, "sleepy_start")), 10
    )
    (worker,) = sleepy_stack.workers_of("sleepy").values()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    finished = [r for r in records(record_dir, "sleepy") if {"t0", "t1"} & set(r["tags"])]
    assert finished, "the batch in hand must finish before the worker exits"
    sleepy_stack.start_worker("sleepy", "sleepy-after-sigterm")
    assert sorted(job.result() for job in jobs) == ["t0", "t1"]
    assert wait_until(lambda: counters(sleepy_stack).waiting == 0, 5)
    assert held_leases(sleepy_stack, "sleepy") == 0


def test_stopping_the_stack_mid_batch_lets_the_worker_record_it_and_exit(record_dir: Path) -> None:
    """`LocalStack.stop` stops the emulators only after the workers: a worker stopped mid-batch records
    its results and exits by itself (signalled together, it retried against emulators that were gone
    until the deadline killed it, and the batch was lost)."""
    stack = LocalStack(
        "tests.apps.timing_app:app",
        port=free_port(),
        workers={"limited_one": 0, "limited_two": 0, "one_at_a_time": 0, "sleepy": 1},
        extra_env={"RECORD_DIR": str(record_dir)},
    ).start()
    try:
        assert join(stack, new_session(), "sleepy", [1.0, "stopped"]).status_code == 200
        assert wait_until(lambda: any("stopped" in r["tags"] for r in records(record_dir, "sleepy_start")), 30)
        (worker,) = stack.workers_of("sleepy").values()
    finally:
        stack.stop()
    assert any("stopped" in r["tags"] for r in records(record_dir, "sleepy")), "the batch ran to its end"
    assert worker.returncode == 0, "the worker exited by itself, not killed at the stop's deadline"


def test_a_front_killed_mid_joins_leaves_no_job_counted_for_good() -> None:
    """`kill -9` of the front while joins come in: a join killed between counting its job and sending its
    message left the job counted for good (the counters never back to zero, a place of `max_size` held).
    The idle workers end such jobs once they are `orphan_after_s` old and their queue holds nothing."""
    import secrets
    import threading

    import httpx

    stack = LocalStack(
        "examples.demo_app:app", port=free_port(), tuning={"orphan_after_s": 3.0, "reconcile_every_s": 1.0}
    ).start()
    try:
        stop_at = time.monotonic() + 4
        answered: list[int] = []

        def joiner() -> None:
            with httpx.Client(timeout=10) as client:
                while time.monotonic() < stop_at:
                    body = {"data": ["x"], "fn_index": 0, "session_hash": secrets.token_hex(8)}
                    try:
                        answered.append(client.post(f"{stack.url}/gradio_api/queue/join", json=body).status_code)
                    except httpx.HTTPError:
                        time.sleep(0.05)

        threads = [threading.Thread(target=joiner) for _ in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        os.kill(stack.processes["front"].pid, signal.SIGKILL)
        for thread in threads:
            thread.join()
        assert answered.count(200) > 20, "joins were under way when the front was killed"
        # The kill may or may not have caught a join between its two calls: one such job for sure.
        assert stack.settings is not None
        store = Store(stack.settings, client=stack.client("dynamodb"))
        job = Job(
            job_id="cut-short",
            session_hash="cut-short-session",
            api_name="echo",
            group="echo",
            state=JobState.WAITING,
            data=["x"],
            created_at=time.time(),
        )
        store.admit(job, None, 1)
        assert wait_until(lambda: counters(stack).waiting == 0, 60), f"still counted: {counters(stack).waiting}"
        ended = store.get_job("cut-short-session", "cut-short")
        assert ended is not None and ended.state is JobState.FAILED
    finally:
        stack.stop()
