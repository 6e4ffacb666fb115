"""The fault-injection harness shared by `make test` (short runs) and `make chaos` (long runs, figures).

Clients speak the raw sse_v3 protocol (join, then the session's stream) and keep a ledger of what each
admitted job's session received, so a lost or duplicated `process_completed` cannot go unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from surge_local.launcher import LocalStack
from tests.crossprocess.helpers import counters, held_leases, queue_depth, wait_until


@dataclass
class Ledger:
    admitted: dict[str, str] = field(default_factory=dict)
    completions: Counter[str] = field(default_factory=Counter)
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str | None] = field(default_factory=dict)
    rejected: int = 0
    unexpected: list[str] = field(default_factory=list)

    def record(self, message: dict[str, Any]) -> None:
        if message.get("msg") != "process_completed":
            return
        event_id = message["event_id"]
        self.completions[event_id] += 1
        output = message.get("output", {})
        if message.get("success"):
            self.results[event_id] = output.get("data")
        else:
            self.failures[event_id] = output.get("error")


@dataclass
class Figures:
    """What `make chaos` prints; a test asserts the zeros."""

    scenario: str
    submitted: int = 0
    completed: int = 0
    failed_clearly: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_results: int = 0
    rejected: int = 0
    unexpected_responses: int = 0
    workers_killed: int = 0
    outage_s: float = 0.0
    bad_inputs: int = 0
    counters_waiting: int = 0
    counters_queued: int = 0
    leases_held: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = [
            f"{name} = {value}"
            for name, value in (
                ("lost", self.lost),
                ("duplicated", self.duplicated),
                ("wrong results", self.wrong_results),
                ("unexpected responses", self.unexpected_responses),
                ("waiting counter at the end", self.counters_waiting),
                ("queued counter at the end", self.counters_queued),
                ("leases held at the end", self.leases_held),
            )
            if value
        ]
        return found + self.notes


async def run_session(
    http: httpx.AsyncClient, fn_index: int, inputs: list[list[Any]], ledger: Ledger, expect: Callable[[list[Any]], Any]
) -> None:
    """One client: join its jobs, then read its stream to `close_stream`."""
    session = secrets.token_hex(16)
    mine = await _join_all(http, session, fn_index, inputs, ledger)
    if mine:
        await read_until_done(http, session, mine, ledger, expect)


async def _join_all(
    http: httpx.AsyncClient, session: str, fn_index: int, inputs: list[list[Any]], ledger: Ledger
) -> dict[str, list[Any]]:
    mine: dict[str, list[Any]] = {}
    for data in inputs:
        try:
            response = await http.post(
                "/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session}
            )
        except httpx.HTTPError as error:
            ledger.unexpected.append(f"join: {type(error).__name__}")
            continue
        if response.status_code == 200:
            mine[response.json()["event_id"]] = data
            ledger.admitted[response.json()["event_id"]] = json.dumps(data)
        elif response.status_code == 503 and "detail" in response.json():
            ledger.rejected += 1
        else:
            ledger.unexpected.append(f"join: {response.status_code} {response.text[:200]}")
    return mine


async def join_at_once(
    http: httpx.AsyncClient, session: str, fn_index: int, inputs: list[list[Any]], ledger: Ledger
) -> dict[str, list[Any]]:
    """Join every input of one session concurrently; a refusal must be a clean 503 or 429 with a detail."""

    async def one(data: list[Any]) -> tuple[list[Any], httpx.Response | None]:
        try:
            body = {"data": data, "fn_index": fn_index, "session_hash": session}
            return data, await http.post("/gradio_api/queue/join", json=body)
        except httpx.HTTPError as error:
            ledger.unexpected.append(f"join: {type(error).__name__}")
            return data, None

    mine: dict[str, list[Any]] = {}
    for data, response in await asyncio.gather(*(one(d) for d in inputs)):
        if response is None:
            continue
        if response.status_code == 200:
            mine[response.json()["event_id"]] = data
            ledger.admitted[response.json()["event_id"]] = json.dumps(data)
        elif response.status_code in (429, 503) and "detail" in response.json():
            ledger.rejected += 1
        else:
            ledger.unexpected.append(f"join: {response.status_code} {response.text[:200]}")
    return mine


async def read_until_done(
    http: httpx.AsyncClient,
    session: str,
    mine: dict[str, list[Any]],
    ledger: Ledger,
    expect: Callable[[list[Any]], Any],
) -> None:
    """Read the session's stream, until `close_stream`. A pooled connection the server closed as it was
    reused fails before any response; the stream is opened again then, as a browser's EventSource does
    (gradio_client opens each stream on a new connection and never meets that race)."""
    for attempt in range(3):
        try:
            await _read_stream(http, session, mine, ledger, expect)
            return
        except httpx.RemoteProtocolError as error:
            if attempt == 2 or "without sending a response" not in str(error):
                raise


async def _read_stream(
    http: httpx.AsyncClient,
    session: str,
    mine: dict[str, list[Any]],
    ledger: Ledger,
    expect: Callable[[list[Any]], Any],
) -> None:
    async with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        buffer = ""
        async for chunk in stream.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                message = json.loads(frame.removeprefix("data: "))
                ledger.record(message)
                event_id = message.get("event_id")
                result = ledger.results.get(event_id or "")
                done = message.get("msg") == "process_completed" and event_id in mine and result is not None
                if done and result != [expect(mine[event_id])]:
                    ledger.unexpected.append(f"wrong result {result} for {mine[event_id]}")


def drive(
    stack: LocalStack,
    api_name: str,
    jobs: int,
    parallel_sessions: int,
    per_session: int,
    make_input: Callable[[int], list[Any]],
    expect: Callable[[list[Any]], Any],
    ledger: Ledger,
    deadline_s: float,
) -> None:
    """Submit `jobs` jobs from sessions of `per_session` jobs, `parallel_sessions` at a time."""
    fn_index = [d["api_name"] for d in httpx.get(f"{stack.url}/config").json()["dependencies"]].index(api_name)

    async def main() -> None:
        limits = httpx.Limits(max_connections=parallel_sessions * 2 + 10)
        async with httpx.AsyncClient(base_url=stack.url, timeout=120, limits=limits) as http:
            semaphore = asyncio.Semaphore(parallel_sessions)

            async def one(start: int) -> None:
                async with semaphore:
                    inputs = [make_input(i) for i in range(start, min(start + per_session, jobs))]
                    await run_session(http, fn_index, inputs, ledger, expect)

            tasks = [asyncio.create_task(one(start)) for start in range(0, jobs, per_session)]
            _, stuck = await asyncio.wait(tasks, timeout=deadline_s)
            for task in stuck:  # their jobs show up as lost in the figures, with their states
                task.cancel()
            if stuck:
                ledger.unexpected.append(f"{len(stuck)} sessions still waiting after {deadline_s} s")

    asyncio.run(main())


class Killer(threading.Thread):
    """SIGKILLs a random worker of a function every `every_s` seconds and starts a replacement."""

    def __init__(self, stack: LocalStack, api_name: str, every_s: float, most: int) -> None:
        super().__init__(daemon=True)
        self.stack, self.api_name, self.every_s, self.most = stack, api_name, every_s, most
        self.killed = 0
        self.done = threading.Event()

    def run(self) -> None:
        while self.killed < self.most and not self.done.wait(self.every_s):
            workers = self.stack.workers_of(self.api_name)
            if not workers:
                continue
            name, process = random.choice(sorted(workers.items()))
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            self.stack.processes.pop(name, None)
            self.killed += 1
            served = self.stack.served.pop(name, (self.api_name,))  # the replacement serves what it served
            self.stack.start_worker(served, f"{self.api_name}-respawn-{self.killed}")


def settle(stack: LocalStack, groups: list[str], api_names: list[str], figures: Figures, timeout_s: float) -> None:
    """Wait for the system to drain, then read the counters and leases into the figures."""
    wait_until(
        lambda: (
            counters(stack).waiting == 0
            and all(queue_depth(stack, a) == (0, 0) for a in api_names)
            and all(held_leases(stack, g) == 0 for g in groups)
        ),
        timeout_s,
        0.25,
    )
    final = counters(stack)
    figures.counters_waiting = final.waiting
    figures.counters_queued = sum(final.queue_size(g) for g in final.tail)
    figures.leases_held = sum(held_leases(stack, g) for g in groups)


def explain_lost(stack: LocalStack, ledger: Ledger, figures: Figures) -> None:
    """For jobs whose session never got a completion, note the states the jobs table holds."""
    lost = [e for e in ledger.admitted if ledger.completions[e] == 0]
    if not lost or stack.settings is None:
        return
    from surge.store import Store

    with _emulator_env(stack):
        store = Store(stack.settings)
        pages = store.client.get_paginator("scan").paginate(TableName=stack.settings.events_table_name)
        states_by_id = {i["sk"]["S"]: i["state"]["S"] for page in pages for i in page["Items"] if "state" in i}
    states = Counter(states_by_id.get(e, "missing") for e in lost)
    figures.notes.append(f"lost jobs by state: {dict(states)}")


def _emulator_env(stack: LocalStack) -> Any:
    import contextlib
    from unittest import mock

    from surge_local.launcher import aws_env

    return mock.patch.dict(os.environ, aws_env(stack.endpoints)) if stack.endpoints else contextlib.nullcontext()


def tally(ledger: Ledger, figures: Figures, started: float) -> Figures:
    figures.submitted = len(ledger.admitted) + ledger.rejected
    figures.rejected = ledger.rejected
    figures.completed = sum(1 for e in ledger.admitted if ledger.completions[e] >= 1 and e in ledger.results)
    figures.failed_clearly = sum(1 for e in ledger.admitted if ledger.failures.get(e))
    figures.lost = sum(1 for e in ledger.admitted if ledger.completions[e] == 0)
    figures.duplicated = sum(1 for e in ledger.admitted if ledger.completions[e] > 1)
    unclear = [e for e in ledger.admitted if e in ledger.failures and not ledger.failures[e]]
    if unclear:
        figures.notes.append(f"{len(unclear)} failures without a message")
    figures.wrong_results = sum(1 for u in ledger.unexpected if u.startswith("wrong result"))
    figures.unexpected_responses = len(ledger.unexpected) - figures.wrong_results
    figures.notes.extend(sorted(set(u for u in ledger.unexpected if not u.startswith("wrong result")))[:5])
    figures.seconds = round(time.monotonic() - started, 1)
    return figures
