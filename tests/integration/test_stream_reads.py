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


def test_visitors_who_open_their_streams_one_after_another_end_up_shown_the_order_they_joined(
    demo: tuple[App, Settings],
) -> None:
    """Four visitors join one after another, then open their streams a little apart (as pages and
    scripts do): each stream's first bound counts all four. Once the process has seen them all, its next
    strongly consistent read shows each its own place, as Gradio does (0, 1, 2, 3), not 3 to the first."""
    app, settings = demo
    settings = settings.model_copy(update={"counters_tick_s": 0.1, "rescan_s": 60.0, "session_grace_s": 60.0})
    service = FrontService(app, settings, Store(settings), Broker(settings))
    sessions = [f"{i:032d}" for i in range(4)]
    for session in sessions:  # no worker runs: all four stay in line
        service.join(JoinBody(data=["x"], api_name="/sim_gpu", session_hash=session))
    hub = session_hub(FrontService(app, settings, Store(settings), Broker(settings)))
    seen: dict[str, list[dict[str, Any]]] = {session: [] for session in sessions}

    async def visit() -> None:
        async def read(session: str) -> None:
            async for message in SessionStream(hub, session, PollPolicy()).messages():
                seen[session].append(message)

        tasks = []
        for session in sessions:
            tasks.append(asyncio.ensure_future(read(session)))
            await asyncio.sleep(0.4)  # its first rank is read before the next visitor's stream opens
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(visit())
    ranks = {s: [m["rank"] for m in seen[s] if m["msg"] == "estimation"] for s in sessions}
    assert [r[-1] for r in ranks.values()] == [0, 1, 2, 3], ranks
    assert all(r == sorted(r, reverse=True) for r in ranks.values()), ranks  # never rises
