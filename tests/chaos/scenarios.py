"""Fault, burst and bad-input scenarios, each returning the figures `make chaos` prints.

Every scenario takes its scale as arguments: `make test` runs them small, `make chaos` large.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx

from surge.launcher import LocalStack, emulator_client_kwargs, free_port
from tests.chaos.harness import Figures, Killer, Ledger, drive, settle, tally
from tests.chaos.proxy import OutageProxy
from tests.crossprocess.helpers import records

CHAOS_TUNING = {"visibility_timeout_s": 3, "lease_ttl_s": 2.0, "max_attempts": 6, "session_grace_s": 3.0}


class ChaosStack:
    """The chaos app behind an outage proxy: model (batched, limit 2), pair (limit 2), slow (limit 1)."""

    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir
        self.proxy: OutageProxy | None = None
        self.stack = LocalStack(
            "tests.apps.chaos_app:app",
            port=free_port(),
            workers={"model": 3, "pair": 2, "slow": 1},
            tuning=CHAOS_TUNING,
            extra_env={"RECORD_DIR": str(record_dir)},
            route_aws=self._route,
        )

    def _route(self, endpoint_url: str) -> str:
        self.proxy = OutageProxy(int(endpoint_url.rsplit(":", 1)[1]))
        return f"http://127.0.0.1:{self.proxy.port}"

    @contextmanager
    def running(self) -> Iterator[ChaosStack]:
        self.stack.start()
        try:
            yield self
        finally:
            self.stack.stop()
            if self.proxy:
                self.proxy.close()


def _model_input(i: int) -> list[Any]:
    return [f"job{i}"]


def _model_output(data: list[Any]) -> Any:
    return f"ok:{data[0]}"


def kill_workers(chaos: ChaosStack, jobs: int, kills: int, every_s: float) -> Figures:
    """SIGKILL model workers mid-batch, repeatedly, while jobs flow."""
    figures, ledger, started = Figures("kill -9 workers mid-batch"), Ledger(), time.monotonic()
    killer = Killer(chaos.stack, "model", every_s, kills)
    killer.start()
    try:
        drive(chaos.stack, "model", jobs, 16, 5, _model_input, _model_output, ledger, deadline_s=240)
    finally:
        killer.done.set()
        killer.join()
    figures.workers_killed = killer.killed
    settle(chaos.stack, ["model"], ["model"], figures, 30)
    return tally(ledger, figures, started)


def aws_outage(chaos: ChaosStack, jobs: int, outage_s: float) -> Figures:
    """Every AWS call refused for `outage_s` while jobs flow: 503s at the front, nothing admitted lost."""
    assert chaos.proxy is not None
    figures, ledger, started = Figures("AWS refuses calls"), Ledger(), time.monotonic()
    proxy = chaos.proxy

    def outage() -> None:
        time.sleep(1.0)
        proxy.refuse()
        time.sleep(outage_s)
        proxy.restore()

    breaker = threading.Thread(target=outage)
    breaker.start()
    drive(chaos.stack, "model", jobs, 8, 4, _model_input, _model_output, ledger, deadline_s=240)
    breaker.join()
    figures.outage_s = outage_s
    settle(chaos.stack, ["model"], ["model"], figures, 30)
    return tally(ledger, figures, started)


def duplicate_delivery(chaos: ChaosStack, jobs: int) -> Figures:
    """Each job's message sent twice more while it waits: it still runs once and completes once."""
    figures, ledger, started = Figures("duplicate delivery"), Ledger(), time.monotonic()
    settings = chaos.stack.settings
    assert settings is not None
    sqs = boto3.client("sqs", **emulator_client_kwargs(chaos.stack.endpoint_url))
    tags = [f"dup{secrets.token_hex(3)}-{i}" for i in range(jobs)]

    async def main() -> None:
        async with httpx.AsyncClient(base_url=chaos.stack.url, timeout=60) as http:
            session = secrets.token_hex(16)
            for tag in tags:
                response = await http.post(
                    "/gradio_api/queue/join", json={"data": [tag], "fn_index": 1, "session_hash": session}
                )
                event_id = response.json()["event_id"]
                ledger.admitted[event_id] = tag
                for _ in range(2):
                    sqs.send_message(QueueUrl=settings.queue_url("pair"), MessageBody=json.dumps({"job_id": event_id}))
            async with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
                buffer = ""
                async for chunk in stream.aiter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        frame, buffer = buffer.split("\n\n", 1)
                        ledger.record(json.loads(frame.removeprefix("data: ")))

    asyncio.run(main())
    settle(chaos.stack, ["pair"], ["pair"], figures, 30)
    runs = [tag for r in records(chaos.record_dir, "pair") for tag in r["tags"] if tag in set(tags)]
    if len(runs) != len(set(runs)):
        figures.notes.append(f"{len(runs) - len(set(runs))} duplicated runs")
    return tally(ledger, figures, started)


def concurrency_burst(chaos: ChaosStack, jobs: int, workers: int) -> Figures:
    """A burst on `pair` (concurrency_limit=2) with `workers` worker processes: never 3 batches at once."""
    figures, ledger, started = Figures(f"limit 2 with {workers} workers"), Ledger(), time.monotonic()
    for i in range(workers - len(chaos.stack.workers_of("pair"))):
        chaos.stack.start_worker("pair", f"pair-extra-{workers}-{i}")
    since = time.time()
    drive(chaos.stack, "pair", jobs, 32, 4, lambda i: [f"p{workers}-{i}"], lambda d: d[0], ledger, deadline_s=120)
    settle(chaos.stack, ["pair"], ["pair"], figures, 30)
    batches = [r for r in records(chaos.record_dir, "pair") if r["start"] >= since]
    peak = _max_overlap(batches)
    pids = len({r["pid"] for r in batches})
    figures.notes.append(f"peak concurrent batches {peak} (limit 2) across {pids} processes") if peak > 2 else None
    figures.scenario += f": peak {peak} across {pids} processes"
    return tally(ledger, figures, started)


def _max_overlap(intervals: list[dict[str, Any]]) -> int:
    points = sorted([(r["start"], 1) for r in intervals] + [(r["end"], -1) for r in intervals], key=lambda p: p)
    running = peak = 0
    for _, step in points:
        running += step
        peak = max(peak, running)
    return peak


def dropped_clients(chaos: ChaosStack) -> Figures:
    """A client that drops its stream loses its waiting jobs after the grace period (its places go to
    the next); one that reconnects within the grace period gets every event it missed."""
    figures, ledger, started = Figures("clients drop / reconnect"), Ledger(), time.monotonic()
    url = chaos.stack.url
    grace = float(CHAOS_TUNING["session_grace_s"])
    holder, dropper, returner = (secrets.token_hex(16) for _ in range(3))
    blocker = _join(url, holder, 2, [grace + 3.0, "blocker"])
    dropped = [_join(url, dropper, 2, [0.1, f"dropped{i}"]) for i in range(3)]
    returning = _join(url, returner, 2, [0.1, "returning"])
    ledger.admitted.update({event_id: "" for event_id in [blocker, *dropped, returning]})
    for session in (dropper, returner):
        with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            next(stream.iter_text())  # it saw its estimations; then the client goes away
    time.sleep(1.0)
    back = _read_stream(url, returner)  # reconnects well within the grace period
    kinds = [m["msg"] for m in back if m.get("event_id") == returning]
    if kinds[:1] != ["estimation"] or kinds[-1:] != ["process_completed"]:
        figures.notes.append(f"the reconnected client missed events: {kinds}")
    for session in (holder, dropper):
        back += _read_stream(url, session)
    for message in back:
        ledger.record(message)
    ran = {r["tag"] for r in records(chaos.record_dir, "slow")}
    if ran & {f"dropped{i}" for i in range(3)} or "returning" not in ran:
        figures.notes.append(f"wrong jobs ran after the drop: {sorted(ran)}")
    settle(chaos.stack, ["slow"], ["slow"], figures, 20)
    return tally(ledger, figures, started)


def _join(url: str, session: str, fn_index: int, data: list[Any]) -> str:
    response = httpx.post(
        f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session}
    )
    response.raise_for_status()
    event_id: str = response.json()["event_id"]
    return event_id


def _read_stream(url: str, session: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    messages = []
    with httpx.stream(
        "GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout_s
    ) as stream:
        buffer = ""
        for chunk in stream.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                messages.append(json.loads(frame.removeprefix("data: ")))
        return messages
