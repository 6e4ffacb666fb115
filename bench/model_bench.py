"""Benchmark of a real model behind the queue: all-MiniLM-L6-v2 alone, then through the local Surge stack.

1. The model alone (in this process, loaded as a worker loads it): texts/s at batch sizes 1, 4, 16, 64.
2. End to end: `examples.embedding_app` on `surge_local.launcher.LocalStack` (moto, uvicorn, one worker
   process per function), N closed-loop users (64 by default) speaking Gradio's protocol over
   127.0.0.1, against `embed` (batch=True, up to 64 a batch) and `embed_one` (batch=False).
   Each worker traces its model calls, so the table shows how busy the worker keeps the model:
   model time / wall time, and the mean batch it ran.

Every figure is the median of `--runs` runs (the two modes alternate). It prints tables and asserts
nothing. Device: `EMBEDDING_DEVICE` (default `auto`: CUDA when visible). Run it with the venv of
`make test`, as a module (bench/profile.py would shadow the standard library's `profile` if bench/ led
sys.path):  .venv/bin/python -m bench.model_bench  (about 5 minutes on two CPU cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from examples import embedding_app
from surge_local.launcher import LocalStack, free_port

BATCH_SIZES = (1, 4, 16, 64)
MODES = (("embed_one", False), ("embed", True))
CORPUS = (
    "the queue admits every request while fewer than max size wait and a worker pulls a batch of jobs "
    "from its function queue runs the model once for the whole batch records each result and streams "
    "it back to the client who asked for it over server sent events across the fleet of gpu machines"
)


def sentences(count: int) -> list[str]:
    """Deterministic sentences of 8 to 23 words (about 10 to 30 tokens), like short search queries."""
    words = CORPUS.split()
    return [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(8 + (i * 5) % 16)) for i in range(count)]


# ---- 1. the model alone -----------------------------------------------------------------------


def time_model(encode: Callable[[list[str]], Any], batch_size: int, min_s: float, min_calls: int) -> float:
    """Texts per second of back-to-back calls on batches of `batch_size` (after one warm-up call)."""
    texts = sentences(batch_size)
    encode(texts)
    calls = 0
    started = time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_s:
        encode(texts)
        calls += 1
    return calls * batch_size / (time.perf_counter() - started)


def bench_model(runs: int, min_s: float) -> dict[int, float]:
    embedder = embedding_app.load_embedder()
    embedder.trace_path = None

    def encode(texts: list[str]) -> Any:
        return embedder.encode(texts, "bench")

    results: dict[int, list[float]] = {size: [] for size in BATCH_SIZES}
    for _ in range(runs):
        for size in BATCH_SIZES:
            results[size].append(time_model(encode, size, min_s, min_calls=3))
    return {size: statistics.median(values) for size, values in results.items()}


# ---- 2. through the stack ---------------------------------------------------------------------


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """CPU time (user + system) used so far by each process of the stack and by this load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"load generator": sum(os.times()[:2])}
    for name, process in stack.processes.items():
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[name.removeprefix("worker:")] = (int(fields[11]) + int(fields[12])) / tick
    return used


@dataclass
class RunResult:
    completed: int
    failed: int
    wall_s: float
    latencies_s: list[float]
    model_busy_s: float
    model_calls: int
    cpu_s: dict[str, float]

    @property
    def throughput(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def busy_fraction(self) -> float:
        return self.model_busy_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def mean_batch(self) -> float:
        return self.completed / self.model_calls if self.model_calls else 0.0


@dataclass
class Outcome:
    """What the users of one run saw."""

    latencies_s: list[float] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    last_done: float = 0.0
    abandoned: int = 0
    in_flight: dict[str, str] = field(default_factory=dict)
    """session → event id of the request it waits for."""


async def request(http: httpx.AsyncClient, url: str, fn_index: int, session: str, text: str, seen: Outcome) -> float:
    """One call as gradio_client makes it (join, then the session's SSE stream); returns its latency."""
    started = time.perf_counter()
    joined = await http.post(
        f"{url}/gradio_api/queue/join", json={"data": [text], "fn_index": fn_index, "session_hash": session}
    )
    joined.raise_for_status()
    event_id = seen.in_flight[session] = joined.json()["event_id"]
    async with http.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data: "):
                continue
            message = json.loads(line[len("data: ") :])
            if message.get("msg") == "close_stream":
                break
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                del seen.in_flight[session]
                vector = message["output"].get("data", [None])[0] if message["success"] else None
                if not isinstance(vector, list) or len(vector) != embedding_app.EMBEDDING_DIM:
                    raise RuntimeError(f"bad answer: {str(message)[:200]}")
                return time.perf_counter() - started
    raise RuntimeError("the stream closed before the job completed")


async def user(
    http: httpx.AsyncClient, url: str, fn_index: int, texts: list[str], deadline: float, seen: Outcome
) -> None:
    """A closed-loop user: one request at a time, the next as soon as the last answers, until the deadline."""
    session = uuid.uuid4().hex
    i = 0
    while time.monotonic() < deadline:
        try:
            seen.latencies_s.append(await request(http, url, fn_index, session, texts[i % len(texts)], seen))
            seen.last_done = time.time()
        except (httpx.HTTPError, RuntimeError, KeyError) as error:
            seen.in_flight.pop(session, None)
            seen.failed += 1
            seen.errors.append(repr(error)[:200])
            await asyncio.sleep(0.1)
        i += 1


async def load(url: str, fn_index: int, users: int, duration_s: float, drain_s: float) -> tuple[float, Outcome]:
    """Users send until `duration_s`, then get at most `drain_s` more for the answers in flight. A
    request still unanswered then is abandoned: its user leaves the queue (Gradio's /cancel), so that
    it does not hold up the next run."""
    texts = sentences(256)
    seen = Outcome()
    limits = httpx.Limits(max_connections=4 * users, max_keepalive_connections=2 * users)
    async with httpx.AsyncClient(timeout=duration_s + drain_s, limits=limits) as http:
        started = time.time()
        deadline = time.monotonic() + duration_s
        shards = [texts[u::users] or texts for u in range(users)]
        tasks = [asyncio.create_task(user(http, url, fn_index, shards[u], deadline, seen)) for u in range(users)]
        _, pending = await asyncio.wait(tasks, timeout=duration_s + drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        seen.abandoned = len(pending)
        await asyncio.gather(
            *(
                http.post(f"{url}/gradio_api/cancel", json={"event_id": event_id, "session_hash": session})
                for session, event_id in seen.in_flight.items()
            ),
            return_exceptions=True,
        )
    return started, seen


def model_time(trace_dir: Path, fn: str, start: float, end: float) -> tuple[float, int]:
    """Seconds the workers' model spent on `fn` calls inside [start, end], and how many calls."""
    busy, calls = 0.0, 0
    for path in trace_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            call = json.loads(line)
            if call["fn"] == fn and call["start"] >= start and call["end"] <= end + 0.05:
                busy += call["end"] - call["start"]
                calls += 1
    return busy, calls


def run_mode(stack: LocalStack, trace_dir: Path, api_name: str, users: int, times: tuple[float, float]) -> RunResult:
    names = [d["api_name"] for d in httpx.get(f"{stack.url}/config", timeout=30).json()["dependencies"]]
    cpu_before = cpu_seconds(stack)
    started, seen = asyncio.run(load(stack.url, names.index(api_name), users, *times))
    ended = seen.last_done or time.time()
    cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cpu_seconds(stack).items()}
    busy, calls = model_time(trace_dir, api_name, started, ended)
    if seen.errors:
        print(f"  {api_name}: {seen.failed} failed, e.g. {seen.errors[0]}", file=sys.stderr)
    if seen.abandoned:
        print(f"  {api_name}: {seen.abandoned} requests unanswered at the end of the drain", file=sys.stderr)
    latencies = seen.latencies_s
    return RunResult(len(latencies), seen.failed + seen.abandoned, ended - started, latencies, busy, calls, cpu)


def warm_up(stack: LocalStack, timeout_s: float) -> None:
    """Wait until every measured function has answered once (its worker has loaded the model)."""
    names = [d["api_name"] for d in httpx.get(f"{stack.url}/config", timeout=30).json()["dependencies"]]

    async def both() -> None:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            await asyncio.gather(
                *(
                    request(http, stack.url, names.index(name), uuid.uuid4().hex, "warm up", Outcome())
                    for name, _ in MODES
                )
            )

    asyncio.run(asyncio.wait_for(both(), timeout_s))


def bench_stack(users: int, runs: int, times: tuple[float, float]) -> dict[str, list[RunResult]]:
    """The workers inherit this process's environment (EMBEDDING_DEVICE, EMBEDDING_THREADS...)."""
    results: dict[str, list[RunResult]] = {name: [] for name, _ in MODES}
    with tempfile.TemporaryDirectory(prefix="surge-model-bench-") as trace:
        workers = {"embed": 1, "embed_one": 1, "similarity": 0}
        stack = LocalStack(
            "examples.embedding_app:app",
            port=free_port(),
            workers=workers,
            extra_env={"EMBEDDING_TRACE_DIR": trace},
        )
        try:
            started = time.monotonic()
            stack.start()
            warm_up(stack, timeout_s=180)
            print(f"stack up and warm in {time.monotonic() - started:.1f} s", file=sys.stderr)
            for run in range(runs):
                order = MODES if run % 2 == 0 else tuple(reversed(MODES))
                for name, _ in order:
                    results[name].append(run_mode(stack, Path(trace), name, users, times))
                    print(f"  run {run + 1} {name}: {results[name][-1].throughput:.1f} texts/s", file=sys.stderr)
        finally:
            stack.stop()
    return results


# ---- report -----------------------------------------------------------------------------------


def describe_machine() -> str:
    import torch

    embedder = embedding_app.load_embedder()
    if embedder.device.startswith("cuda"):
        hardware = f"GPU {torch.cuda.get_device_name(embedder.device)}"
    else:
        hardware = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dtype = str(next(embedder.model.parameters()).dtype).removeprefix("torch.")
    return (
        f"{hardware}; device {embedder.device}, {dtype}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads; "
        f"Python {platform.python_version()}; load average {load:.1f} at start"
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(machine: str, model: dict[int, float], stack: dict[str, list[RunResult]], args: argparse.Namespace) -> str:
    lines = [
        f"all-MiniLM-L6-v2 — {machine}",
        "",
        f"Model alone (median of {args.runs} runs, each size at least {args.model_s:g} s):",
        "",
        "| batch size | texts/s | ms per batch |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {size} | {rate:.1f} | {1000 * size / rate:.1f} |" for size, rate in model.items()]
    if stack:
        lines += [
            "",
            f"Through Surge (local stack: moto + uvicorn + one worker per function), {args.users} closed-loop "
            f"users, {args.duration_s:g} s of requests per run (+ up to {args.drain_s:g} s for the last answers), "
            f"median of {args.runs} runs:",
            "",
            "| function | batch | texts/s | p50 latency ms | p95 latency ms | mean batch | model busy | not answered |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, batch in MODES:
            runs = stack[name]
            latencies = [latency for r in runs for latency in r.latencies_s]
            lines.append(
                f"| {name} | {batch} | {statistics.median(r.throughput for r in runs):.1f} "
                f"| {1000 * percentile(latencies, 0.5):.0f} | {1000 * percentile(latencies, 0.95):.0f} "
                f"| {statistics.median(r.mean_batch for r in runs):.1f} "
                f"| {100 * statistics.median(r.busy_fraction for r in runs):.0f}% | {sum(r.failed for r in runs)} |"
            )
        lines += ["", "CPU used by each process during the runs, in cores (CPU seconds / wall seconds):", ""]
        lines += cpu_table(stack)
        batched = statistics.median(r.throughput for r in stack["embed"])
        single = statistics.median(r.throughput for r in stack["embed_one"])
        lines += ["", f"batch=True / batch=False throughput: {batched / single:.2f}x" if single else ""]
    return "\n".join(lines) + "\n"


def cpu_table(stack: dict[str, list[RunResult]]) -> list[str]:
    processes = sorted({name for runs in stack.values() for r in runs for name in r.cpu_s})
    lines = ["| function | " + " | ".join(processes) + " |", "|---|" + "---:|" * len(processes)]
    for name, _ in MODES:
        runs = stack[name]
        cores = [statistics.median(r.cpu_s.get(p, 0.0) / r.wall_s for r in runs) for p in processes]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cores) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=15.0, help="length of each end-to-end run")
    parser.add_argument("--drain-s", type=float, default=20.0, help="most time for answers after a run's end")
    parser.add_argument("--model-s", type=float, default=2.0, help="time spent on each batch size, per run")
    parser.add_argument("--skip-stack", action="store_true", help="measure the model alone")
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)

    for name, value in embedding_app.HF_OFFLINE.items():
        os.environ.setdefault(name, value)
    machine = describe_machine()
    print(machine, file=sys.stderr)
    model = bench_model(args.runs, args.model_s)
    stack = {} if args.skip_stack else bench_stack(args.users, args.runs, (args.duration_s, args.drain_s))
    table = report(machine, model, stack, args)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
