"""What one stream process pays per waiting visitor: CPU, memory and AWS calls while N streams wait.

Starts the local stack on `bench.apps.surge_apps:crowd` (no max_size; one worker runs a batch of 4 a
second, so the line moves and every rank changes), joins N sessions (one job each) at a bounded rate
and reads each session's stream as Gradio's client does. Once all are open and settled, it measures
the front process for a window: CPU seconds (user + system, /proc), resident memory against before the
crowd joined, SSE messages delivered, and the front's AWS calls (botocore hook). The front also takes
the joins, which end before the window starts. Writes `bench/results/stream_capacity.md`.

`python -m bench.stream_capacity --streams 1000 --window 20`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import targets
from bench.loadgen import discover

RESULTS = Path(__file__).resolve().parent / "results" / "stream_capacity.md"


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
        self.errors: list[str] = []

    async def visitor(self, client: httpx.AsyncClient, number: int, ready: asyncio.Event) -> None:
        session = uuid.uuid4().hex
        headers = {"x-forwarded-for": f"10.9.{number >> 8 & 255}.{number & 255}"}
        body = {"data": [f"v{number}"], "fn_index": self.fn_index, "session_hash": session}
        joined = await client.post(f"{self.url}/gradio_api/queue/join", json=body, headers=headers)
        if joined.status_code != 200:
            self.errors.append(f"join HTTP {joined.status_code}")
            ready.set()
            return
        params = {"session_hash": session}
        try:
            async with client.stream("GET", f"{self.url}/gradio_api/queue/data", params=params) as response:
                self.open += 1
                ready.set()
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    message: dict[str, Any] = json.loads(line[6:])
                    self.messages += 1
                    self.estimations += message.get("msg") == "estimation"
                    if message.get("msg") == "process_completed":
                        self.completed += 1
                    if message.get("msg") == "close_stream":
                        break
        except httpx.HTTPError as error:
            self.errors.append(type(error).__name__)
        finally:
            self.open -= 1
            ready.set()


async def measure(running: targets.Running, streams: int, window_s: float, join_rate: float) -> dict[str, Any]:
    (front,) = running.processes["front"]
    limits = httpx.Limits(max_connections=streams + 50, max_keepalive_connections=streams + 50)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, read=None)) as client:
        target = await discover(client, running.url, "crowd")
        crowd = Crowd(running.url, target.fn_index)
        rss_before = rss_mb(front)
        tasks = []
        for number in range(streams):
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(crowd.visitor(client, number, ready)))
            await asyncio.wait_for(ready.wait(), 60)
            await asyncio.sleep(1 / join_rate)
        await asyncio.sleep(5.0)  # the last joins' first reads and ranks
        cpu_before, calls_before = targets.cpu_seconds(front), running.calls().get("front", {})
        messages_before, completed_before = crowd.messages, crowd.completed
        open_at_start = crowd.open
        started = time.monotonic()
        await asyncio.sleep(window_s)
        elapsed = time.monotonic() - started
        cpu = targets.cpu_seconds(front) - cpu_before
        calls = targets.delta(running.calls().get("front", {}), calls_before)
        result = {
            "streams": streams,
            "open_at_start": open_at_start,
            "open_at_end": crowd.open,
            "window_s": round(elapsed, 1),
            "front_cpu_share": cpu / elapsed,
            "rss_before_mb": rss_before,
            "rss_mb": rss_mb(front),
            "messages_per_s": (crowd.messages - messages_before) / elapsed,
            "completed_per_s": (crowd.completed - completed_before) / elapsed,
            "calls_per_s": {op: count / elapsed for op, (count, _units) in sorted(calls.items())},
            "errors": crowd.errors[:5],
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
    return "\n".join(
        [
            "# One stream process and a waiting crowd",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"load average after (1 / 5 / 15 min) {load}; `python -m bench.stream_capacity --streams "
            f"{result['streams']} --window {result['window_s']:.0f}`. Local stack (emulator, fidelity on), one "
            "front process (uvicorn, one worker: the API and the stream routes), one worker draining 4 jobs a "
            "second, so every waiting visitor's rank changes every second.",
            "",
            "| streams open (start → end) | front CPU (share of one core) | per 1,000 waiting | resident memory "
            "(before → during) | per stream | SSE messages/s | AWS calls by the front |",
            "|---|---|---|---|---|---|---|",
            f"| {result['open_at_start']} → {result['open_at_end']} | {result['front_cpu_share']:.1%} | "
            f"{cpu_per_thousand:.1%} | {result['rss_before_mb']:.0f} → {result['rss_mb']:.0f} MB | "
            f"{rss_per_stream_kb:.0f} kB | {result['messages_per_s']:.0f} | {calls} |",
            "",
            f"Errors: {', '.join(result['errors']) or 'none'}. Completed in the window: "
            f"{result['completed_per_s']:.1f}/s (the worker's pace).",
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
    with tempfile.TemporaryDirectory() as work:
        running = targets.start_surge("crowd", 1, Path(work) / "device.log", Path(work) / "calls")
        try:
            result = asyncio.run(measure(running, args.streams, args.window, args.join_rate))
        finally:
            targets.stop(running)
    text = report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
