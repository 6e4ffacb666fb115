"""The `gradio_client` predict loop against both targets: what a script calling the app sees.

One `gradio_client.Client` per thread (built before the window, not timed), each calling
`client.predict(text, api_name=...)` in a loop; calls that end inside the measured window count. A
call that raises anything (an `AppError`, a `CancelledError`, a connection error) is a failed call,
counted by exception type; its thread waits 0.2 s and goes on. After the window each thread
finishes the call it is in, for at most `drain_s`; calls still running then are reported as left in
flight. 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from bench import targets

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CLIENT_USERS = (1, 32)
CLIENT_WORKLOADS = ("echo", "sim_gpu")
FAILURE_PAUSE_S = 0.2


@dataclass
class ClientCell:
    target: str
    workload: str
    users: int
    window_s: float
    completed: int
    throughput: float
    p50_s: float | None
    p95_s: float | None
    failed: int
    failure_kinds: dict[str, int]
    left_in_flight: int
    setup_s: float
    """Seconds to build the clients (each reads /config and the API info)."""
    calls: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """AWS calls in the window (Surge only), as in the main cells."""


@dataclass
class _Record:
    start: float
    end: float
    error: str | None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _client(url: str, user: int) -> Any:
    from gradio_client import Client

    # Each user its own client address, as in the load generator (the per-client join limit).
    headers = {"x-forwarded-for": f"10.9.{user >> 8 & 255}.{user & 255}"}
    return Client(url, verbose=False, headers=headers, download_files=False, analytics_enabled=False)


def _loop(client: Any, api_name: str, user: int, start_at: float, stop_at: float, out: list[_Record]) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        began = time.monotonic()
        try:
            client.predict(f"c{user} r{n}", api_name=f"/{api_name}")
        except (Exception, asyncio.CancelledError) as error:  # every failure counts
            out.append(_Record(began, time.monotonic(), type(error).__name__))
            time.sleep(FAILURE_PAUSE_S)
            continue
        out.append(_Record(began, time.monotonic(), None))


def measure(
    running: targets.Running, workload: str, users: int, warmup_s: float, duration_s: float, drain_s: float
) -> ClientCell:
    if urlparse(running.url).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError("the client benchmark only talks to 127.0.0.1")
    built = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, users)) as pool:
        clients = list(pool.map(lambda i: _client(running.url, i), range(users)))
    setup_s = time.monotonic() - built
    records: list[list[_Record]] = [[] for _ in range(users)]
    begin = time.monotonic()
    t0 = begin + warmup_s
    t1 = t0 + duration_s
    ramp_s = min(1.0, warmup_s / 2)
    threads = [
        threading.Thread(
            target=_loop,
            args=(clients[i], workload, i, begin + i * ramp_s / users, t1, records[i]),
            daemon=True,
            name=f"predict-{i}",
        )
        for i in range(users)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, t0 - time.monotonic()))
    calls_0 = running.calls()
    t0 = time.monotonic()
    time.sleep(max(0.0, t1 - time.monotonic()))
    calls_1 = running.calls()
    t1 = time.monotonic()
    deadline = time.monotonic() + drain_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = sum(thread.is_alive() for thread in threads)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: c.close(), clients))
    done = [r for rs in records for r in list(rs) if t0 <= r.end <= t1]
    ok = [r.end - r.start for r in done if r.error is None]
    failures = [r.error for r in done if r.error is not None]
    window = t1 - t0
    return ClientCell(
        target=running.name,
        workload=workload,
        users=users,
        window_s=window,
        completed=len(ok),
        throughput=len(ok) / window,
        p50_s=_quantile(ok, 0.5),
        p95_s=_quantile(ok, 0.95),
        failed=len(failures),
        failure_kinds={k: failures.count(k) for k in sorted(set(failures))},
        left_in_flight=left,
        setup_s=setup_s,
        calls=targets.delta(calls_1, calls_0),
    )


def line(cell: ClientCell) -> str:
    p50 = f"{cell.p50_s * 1000:.0f}" if cell.p50_s is not None else "-"
    p95 = f"{cell.p95_s * 1000:.0f}" if cell.p95_s is not None else "-"
    return (
        f"client {cell.target:6} {cell.workload:8} N={cell.users:<3} {cell.throughput:7.1f} calls/s "
        f"p50 {p50:>6} ms p95 {p95:>6} ms failed {cell.failed} {cell.failure_kinds if cell.failed else ''}"
        f"{f' in flight {cell.left_in_flight}' if cell.left_in_flight else ''}"
    )
