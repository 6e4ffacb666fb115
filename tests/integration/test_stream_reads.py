"""The shared reader's promise, counted with botocore's hook: a session whose jobs wait behind others
costs no read of its log, and every session of a stream process shares one counters read per tick."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import boto3

from surge.application import App
from surge.broker import Broker
from surge.front import session_hub
from surge.models import JoinBody
from surge.service import FrontService
from surge.session import PollPolicy, SessionStream
from surge.settings import Settings
from surge.store import Store

WAIT_S = 2.0


def _count(calls: Counter[str]) -> Any:
    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        key = model.name
        if model.name == "Query":
            key += " " + str(params["ExpressionAttributeValues"].get(":s", {}).get("S", ""))
        calls[key] += 1

    return hook


async def _watch(streams: list[SessionStream], seconds: float) -> dict[str, list[dict[str, Any]]]:
    seen: dict[str, list[dict[str, Any]]] = {s.session_hash: [] for s in streams}

    async def read(stream: SessionStream) -> None:
        async for message in stream.messages():
            seen[stream.session_hash].append(message)

    tasks = [asyncio.ensure_future(read(s)) for s in streams]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return seen


def test_far_back_sessions_cost_no_log_reads_and_share_one_counters_read_per_tick(demo: tuple[App, Settings]) -> None:
    app, settings = demo
    settings = settings.model_copy(update={"counters_tick_s": 0.2, "rescan_s": 60.0, "session_grace_s": 60.0})
    service = FrontService(app, settings, Store(settings), Broker(settings))
    ahead = "a" * 32
    for i in range(40):  # no worker runs: these 40 stay in line
        service.join(JoinBody(data=[f"x{i}"], api_name="/sim_gpu", session_hash=ahead))
    behind = [f"{i:032d}" for i in range(5)]
    for session in behind:
        service.join(JoinBody(data=["late"], api_name="/sim_gpu", session_hash=session))

    calls: Counter[str] = Counter()
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.dynamodb.*", _count(calls))  # type: ignore[union-attr]
    hub = session_hub(FrontService(app, settings, Store(settings), Broker(settings)))
    streams = [SessionStream(hub, session, PollPolicy()) for session in behind]
    seen = asyncio.run(_watch(streams, WAIT_S))

    for session in behind:
        estimations = [m for m in seen[session] if m["msg"] == "estimation"]
        assert estimations and estimations[0]["rank"] >= 40, seen[session]
        # The read when the stream opened, none while it waits.
        assert calls[f"Query {session}"] == 1, (session, dict(calls), seen[session])
    ticks = calls["BatchGetItem"]
    assert hub.reads == ticks, dict(calls)
    assert 2 <= ticks <= WAIT_S / settings.counters_tick_s + 3, dict(calls)  # one per tick for all five
