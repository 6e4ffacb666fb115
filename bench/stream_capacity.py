"""What one stream process pays per waiting visitor: CPU, memory and AWS calls while N streams wait.

Starts the local stack on `bench.apps.surge_apps:crowd` (no max_size; one worker runs a batch of 4 a
second, so the line moves and every rank changes), joins N sessions (one job each) at a bounded rate
and reads each session's stream as Gradio's client does. The visitors come from several loopback
addresses (127.0.0.2, 127.0.0.3, ...), each joining at half the front's per-client join rate, so the
rate limiter (per caller address) lets the crowd in as it would a crowd of many callers. Once all are
open and settled, it measures the front process for a window: CPU seconds (user + system, /proc),
resident memory against before the crowd joined, SSE messages delivered, and the front's AWS calls
(botocore hook). The front also takes the joins, which end before the window starts. The front and
the worker must still be running at the end of the window, or no figures are written. Writes
`bench/results/stream_capacity.md`.

`python -m bench.stream_capacity --streams 1000 --window 20`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import targets
from bench.loadgen import discover
from bench.workloads import read_device_logs
from surge.settings import Settings
from surge_local.launcher import LocalStack

RESULTS = Path(__file__).resolve().parent / "results" / "stream_capacity.md"
PER_ADDRESS_JOIN_RATE = Settings.model_fields["join_rate_per_s"].default / 2
"""Joins a second from one source address: half the front's default per-client limit."""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Crowd:
    def __init__(self, url: str, fn_index: int) -> None:
        self.url = url
        self.fn_index = fn_index
        self.messages = 0
        self.estimations = 0
        self.open = 0
        self.completed = 0
        self.errors: list[tuple[float, str]] = []
        """(time.monotonic(), what) of each join refused, stream broken or ended early, job failed."""

    def error(self, what: str) -> None:
        self.errors.append((time.monotonic(), what))

    def read(self, message: dict[str, Any]) -> bool:
        """Count one SSE message; True at the stream's end (`close_stream`)."""
        self.messages += 1
        self.estimations += message.get("msg") == "estimation"
        if message.get("msg") == "process_completed":
            self.completed += 1
            if not message.get("success"):
                self.error(f"job failed: {str(message.get('output'))[:120]}")
        return message.get("msg") == "close_stream"

    async def visitor(self, client: httpx.AsyncClient, number: int, ready: asyncio.Event) -> None:
        session = uuid.uuid4().hex
        body = {"data": [f"v{number}"], "fn_index": self.fn_index, "session_hash": session}
        try:
            joined = await client.post(f"{self.url}/gradio_api/queue/join", json=body)
        except httpx.HTTPError as error:
            self.error(f"join {type(error).__name__} {error}")
            ready.set()
            return
        if joined.status_code != 200:
            self.error(f"join HTTP {joined.status_code}")
            ready.set()
            return
        params = {"session_hash": session}
        opened = False
        try:
            async with client.stream("GET", f"{self.url}/gradio_api/queue/data", params=params) as response:
                self.open += 1
                opened = True
                ready.set()
                if response.status_code != 200:
                    self.error(f"stream HTTP {response.status_code}")
                    return
                async for line in response.aiter_lines():
                    if line.startswith("data: ") and self.read(json.loads(line[6:])):
                        break
                else:
                    self.error("stream ended before close_stream")
        except httpx.HTTPError as error:
            self.error(f"stream {type(error).__name__} {error}")
        finally:
            self.open -= opened
            ready.set()


def alive(running: targets.Running) -> None:
    """Raise if the front or a worker has exited (a dead front's figures would read as an idle one's)."""
    stack = running.stopper
    assert isinstance(stack, LocalStack)
    gone = {name: process.returncode for name, process in stack.processes.items() if process.poll() is not None}
    if gone:
        raise RuntimeError(f"processes of the stack exited (name: status): {gone}")


async def measure(
    running: targets.Running, device_log: Path, streams: int, window_s: float, join_rate: float
) -> dict[str, Any]:
    (front,) = running.processes["front"]
    addresses = max(1, math.ceil(join_rate / PER_ADDRESS_JOIN_RATE))
    per_client = math.ceil(streams / addresses) + 50
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    timeout = httpx.Timeout(60.0, read=None)
    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{2 + i}", limits=limits), timeout=timeout
        )
        for i in range(addresses)
    ]
    try:
        return await _measure(running, device_log, front, clients, streams, window_s, join_rate)
    finally:
        for client in clients:
            await client.aclose()


async def _measure(
    running: targets.Running,
    device_log: Path,
    front: int,
    clients: list[httpx.AsyncClient],
    streams: int,
    window_s: float,
    join_rate: float,
) -> dict[str, Any]:
    target = await discover(clients[0], running.url, "crowd")
    crowd = Crowd(running.url, target.fn_index)
    rss_before = rss_mb(front)
    joins_started = time.monotonic()
    tasks = []
    readies = []
    for number in range(streams):  # paced, not one after the other: the queue drains 4 a second meanwhile
        ready = asyncio.Event()
        readies.append(ready)
        tasks.append(asyncio.create_task(crowd.visitor(clients[number % len(clients)], number, ready)))
        await asyncio.sleep(max(0.0, joins_started + (number + 1) / join_rate - time.monotonic()))
    await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 120)
    joins_s = time.monotonic() - joins_started
    await asyncio.sleep(5.0)  # the last joins' first reads and ranks
    alive(running)
    cpu_before = targets.cpu_seconds(front)
    calls_before = (await asyncio.to_thread(running.calls)).get("front", {})
    messages_before, completed_before = crowd.messages, crowd.completed
    open_at_start = crowd.open
    started, started_epoch = time.monotonic(), time.time()
    await asyncio.sleep(window_s)
    elapsed = time.monotonic() - started
    _busy, batches, items = read_device_logs(device_log, started_epoch, time.time())
    cpu = targets.cpu_seconds(front) - cpu_before
    rss_during = rss_mb(front)
    calls = targets.delta((await asyncio.to_thread(running.calls)).get("front", {}), calls_before)
    alive(running)
    result = {
        "streams": streams,
        "join_rate": join_rate,
        "addresses": len(clients),
        "joins_s": joins_s,
        "open_at_start": open_at_start,
        "open_at_end": crowd.open,
        "window_s": round(elapsed, 1),
        "front_cpu_share": cpu / elapsed,
        "rss_before_mb": rss_before,
        "rss_mb": rss_during,
        "messages_per_s": (crowd.messages - messages_before) / elapsed,
        "completed_per_s": (crowd.completed - completed_before) / elapsed,
        "batches": batches,
        "items": items,
        "calls_per_s": {op: count / elapsed for op, (count, _units) in sorted(calls.items()) if count},
        "errors_before": sum(1 for at, _ in crowd.errors if at < started),
        "errors_in_window": sum(1 for at, _ in crowd.errors if started <= at <= started + elapsed),
        "error_kinds": sorted({what.rstrip(".") for _, what in crowd.errors})[:5],
    }
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def report(result: dict[str, Any]) -> str:
    mean_open = (result["open_at_start"] + result["open_at_end"]) / 2
    cpu_per_thousand = result["front_cpu_share"] / mean_open * 1000
    rss_per_stream_kb = (result["rss_mb"] - result["rss_before_mb"]) * 1024 / max(1, result["open_at_start"])
    calls = "; ".join(f"`{op}` {rate:.2f}/s" for op, rate in result["calls_per_s"].items()) or "none"
    load = " / ".join(f"{x:.2f}" for x in targets_load())
    load_before = " / ".join(f"{x:.2f}" for x in result["load_before"])
    return "\n".join(
        [
            "# One stream process and a waiting crowd",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"load average (1 / 5 / 15 min) {load_before} before and {load} after; `python -m "
            f"bench.stream_capacity --streams {result['streams']} --window {result['window_s']:.0f} --join-rate "
            f"{result['join_rate']:g}`. Local stack (emulator, fidelity on), one front process (uvicorn, one "
            "worker: the API and the stream routes), one worker draining 4 jobs a second, so every waiting "
            f"visitor's rank changes every second. The {result['streams']} joins took {result['joins_s']:.0f} s "
            f"from {result['addresses']} loopback addresses; the window started 5 s after the last.",
            "",
            "| streams open (start → end) | front CPU (share of one core) | per 1,000 waiting | resident memory "
            "(before → during) | per stream | SSE messages/s | AWS calls by the front |",
            "|---|---|---|---|---|---|---|",
            f"| {result['open_at_start']} → {result['open_at_end']} | {result['front_cpu_share']:.1%} | "
            f"{cpu_per_thousand:.1%} | {result['rss_before_mb']:.0f} → {result['rss_mb']:.0f} MB | "
            f"{rss_per_stream_kb:.0f} kB | {result['messages_per_s']:.0f} | {calls} |",
            "",
            f"Errors: {result['errors_before']} before the window, {result['errors_in_window']} in it"
            f"{': ' + '; '.join(result['error_kinds']) if result['error_kinds'] else ''}. Completed in the window: "
            f"{result['completed_per_s']:.1f}/s; the worker ran {result['batches']} batches of "
            f"{result['items']} jobs in all.",
            "",
        ]
    )


def targets_load() -> tuple[float, float, float]:
    one, five, fifteen = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    return one, five, fifteen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--join-rate", type=float, default=100.0, help="joins per second while the crowd gathers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = targets_load()
    with tempfile.TemporaryDirectory() as work:
        callcounts = Path(work) / "calls"
        callcounts.mkdir()  # the processes write their counts here on SIGUSR1: without it, they exit
        device_log = Path(work) / "devices"
        device_log.mkdir()  # the worker appends each batch here: without it, every job fails
        running = targets.start_surge("crowd", 1, device_log, callcounts)
        try:
            result = asyncio.run(measure(running, device_log, args.streams, args.window, args.join_rate))
        finally:
            targets.stop(running)
    result["load_before"] = load_before
    text = report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
