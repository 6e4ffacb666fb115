"""`make bench`: drive Gradio and Surge with the same load, cell by cell, and write the results.

A cell is (target, workload, devices K, users N): warm up, measure for a fixed window, let requests
in flight finish (bounded), then the next cell on the same running target. Writes
`bench/results/results.json`, `results.md` (tables, costs, reading) and `results.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench import client_bench, loadgen, targets
from bench.targets import delta as _delta
from bench.workloads import WORKLOADS, read_device_logs

RESULTS = Path(__file__).resolve().parent / "results"
USERS = [1, 16, 64, 256, 1000]


@dataclass(frozen=True)
class Group:
    """Cells that share one running target."""

    target: str
    workload: str
    devices: int
    users: tuple[int, ...]


BATCHES_PER_WINDOW = 20
"""A window lasts at least this many model calls of its workload: a call finishes its whole batch at once,
so a window of 8 one-second batches counts 7 or 8 of them (88 or 100 % of what the device did), and a
longer one bounds that edge to a twentieth."""


def window_s(workload: str, duration_s: float) -> float:
    return max(duration_s, BATCHES_PER_WINDOW * WORKLOADS[workload].fixed_s)


def plan(full: bool) -> list[Group]:
    """Every workload at K = 1 over all user counts; K = 2, 4 at 256 users where the device bounds throughput."""
    users = tuple(USERS) if full else (1, 64, 256)
    groups = []
    for workload in WORKLOADS:
        for target in ("gradio", "surge"):
            groups.append(Group(target, workload, 1, users))
    scaled = ("sim_gpu", "slow_model") if full else ("slow_model",)
    for workload in scaled:
        for devices in (2, 4):
            for target in ("gradio", "surge"):
                groups.append(Group(target, workload, devices, (256,)))
    return groups


@dataclass
class Cell:
    target: str
    workload: str
    devices: int
    users: int
    window_s: float
    completed: int
    throughput: float
    p50_s: float | None
    p99_s: float | None
    run_p50_s: float | None
    batch_mean: float | None
    rejections: int
    errors: int
    error_kinds: dict[str, int]
    device_busy: float
    join_s: float | None
    stream_s: float | None
    cpu_s: dict[str, float]
    calls: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    running: targets.Running,
    group: Group,
    users: int,
    warmup_s: float,
    duration_s: float,
    drain_s: float,
    device_log: Path,
    reject_backoff_s: float,
) -> Cell:
    workload = WORKLOADS[group.workload]
    recorder = loadgen.Recorder()
    load = loadgen.Load(users=users, reject_backoff_s=reject_backoff_s, ramp_s=min(1.0, warmup_s / 2))
    async with loadgen.client_for(users) as client:
        target = await loadgen.discover(client, running.url, workload.name)
        begin = time.monotonic()
        stop_at = begin + warmup_s + duration_s
        generator = asyncio.create_task(loadgen.run(client, target, load, recorder, stop_at))
        await asyncio.sleep(warmup_s)
        calls_0 = await asyncio.to_thread(running.calls)
        t0, e0, cpu_0, own_0 = time.monotonic(), time.time(), running.cpu(), time.process_time()
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        calls_1 = await asyncio.to_thread(running.calls)
        t1, e1, cpu_1, own_1 = time.monotonic(), time.time(), running.cpu(), time.process_time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(generator, drain_s)
        for reader in list(recorder.readers):
            reader.cancel()
        await asyncio.sleep(0.05)
    window = t1 - t0
    done = [s for s in recorder.samples if t0 <= s.done <= t1]
    ok = [s for s in done if s.ok]
    latencies = [s.done - s.joined for s in ok]
    runs = [s.done - s.started for s in ok if s.started is not None]
    sizes = [s.batch_size for s in ok if s.batch_size is not None]
    errors = [kind for when, kind in recorder.errors if t0 <= when <= t1]
    busy, _, _ = read_device_logs(device_log, e0, e1)
    cpu = {role: cpu_1.get(role, 0.0) - cpu_0.get(role, 0.0) for role in cpu_1}
    cpu["loadgen"] = own_1 - own_0
    joins = [s for when, s in recorder.join_s if t0 <= when <= t1]
    streams = [s for when, s in recorder.streams if t0 <= when <= t1]
    return Cell(
        target=running.name,
        workload=workload.name,
        devices=group.devices,
        users=users,
        window_s=window,
        completed=len(ok),
        throughput=len(ok) / window,
        p50_s=_quantile(latencies, 0.5),
        p99_s=_quantile(latencies, 0.99),
        run_p50_s=_quantile(runs, 0.5),
        batch_mean=statistics.fmean(sizes) if sizes else None,
        rejections=sum(1 for when in recorder.rejections if t0 <= when <= t1),
        errors=len(errors),
        error_kinds={k: errors.count(k) for k in set(errors)},
        device_busy=busy / (group.devices * window) if workload.fixed_s else 0.0,
        join_s=statistics.fmean(joins) if joins else None,
        stream_s=statistics.fmean(streams) if streams else None,
        cpu_s=cpu,
        calls=_delta(calls_1, calls_0),
    )


def start(group: Group, work: Path) -> tuple[targets.Running, Path]:
    device_log = Path(tempfile.mkdtemp(prefix="devices-", dir=work))
    if group.target == "gradio":
        return targets.start_gradio(group.workload, group.devices, device_log), device_log
    callcounts = Path(tempfile.mkdtemp(prefix="calls-", dir=work))
    return targets.start_surge(group.workload, group.devices, device_log, callcounts), device_log


def client_plan() -> list[Group]:
    """The gradio_client predict loop: each workload on Gradio then Surge (K = 1), one after the other."""
    return [
        Group(target, workload, 1, client_bench.CLIENT_USERS)
        for workload in client_bench.CLIENT_WORKLOADS
        for target in ("gradio", "surge")
    ]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer cells, short windows")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each window")
    parser.add_argument("--duration", type=float, default=None, help="seconds each window measures")
    parser.add_argument("--drain", type=float, default=4.0, help="most seconds to let requests in flight finish")
    parser.add_argument("--reject-backoff", type=float, default=2.0, help="seconds a refused user waits (±50 %%)")
    parser.add_argument("--client-warmup", type=float, default=None, help="seconds before each gradio_client window")
    parser.add_argument("--client-duration", type=float, default=None, help="seconds each gradio_client window")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="keep groups whose 'target/workload/K' (or 'client/target/workload') contains these",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the results folder (bench/results/; bench/results/partial/ for --quick, --only or other windows, so "
        "that a smoke or partial run never replaces the published figures)",
    )
    args = parser.parse_args()
    if args.out is None:
        windows = (args.warmup, args.duration, args.client_warmup, args.client_duration)
        partial = args.quick or args.only or any(w is not None for w in windows)
        args.out = RESULTS / "partial" if partial else RESULTS
    warmup = args.warmup if args.warmup is not None else (1.5 if args.quick else 4.0)
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 8.0)
    client_warmup = args.client_warmup if args.client_warmup is not None else (1.0 if args.quick else 2.0)
    client_duration = args.client_duration if args.client_duration is not None else (3.0 if args.quick else 6.0)
    groups = [
        g
        for g in plan(not args.quick)
        if not args.only or any(o in f"{g.target}/{g.workload}/{g.devices}" for o in args.only)
    ]
    client_groups = [
        g for g in client_plan() if not args.only or any(o in f"client/{g.target}/{g.workload}" for o in args.only)
    ]
    console = Console()
    load_before = os.getloadavg()
    cells: list[Cell] = []
    client_cells: list[client_bench.ClientCell] = []
    loads: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            total = sum(len(g.users) for g in groups) + sum(len(g.users) for g in client_groups)
            task = progress.add_task("starting", total=total)
            for kind, group in [("loadgen", g) for g in groups] + [("gradio_client", g) for g in client_groups]:
                progress.update(task, description=f"start {group.target} {group.workload} K={group.devices}")
                entry: dict[str, Any] = {
                    "kind": kind,
                    "target": group.target,
                    "workload": group.workload,
                    "devices": group.devices,
                    "load_before": _load(),
                }
                group_started = time.monotonic()
                running, device_log = start(group, work)
                try:
                    for users in group.users:
                        progress.update(
                            task, description=f"{group.target:6} {group.workload:17} K={group.devices} N={users:<4}"
                        )
                        if kind == "gradio_client":
                            client_cell = client_bench.measure(
                                running, group.workload, users, client_warmup, client_duration, args.drain
                            )
                            client_cells.append(client_cell)
                            console.print(client_bench.line(client_cell))
                        else:
                            cell = asyncio.run(
                                measure(
                                    running,
                                    group,
                                    users,
                                    warmup,
                                    window_s(group.workload, duration),
                                    args.drain,
                                    device_log,
                                    args.reject_backoff,
                                )
                            )
                            cells.append(cell)
                            console.print(_line(cell))
                        progress.advance(task)
                finally:
                    targets.stop(running)
                    entry["load_after"] = _load()
                    entry["seconds"] = round(time.monotonic() - group_started, 1)
                    loads.append(entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from bench import report

    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "groups": loads,
        "run_s": time.monotonic() - started,
        "warmup_s": warmup,
        "duration_s": duration,
        "batches_per_window": BATCHES_PER_WINDOW,
        "drain_s": args.drain,
        "reject_backoff_s": args.reject_backoff,
        "client_warmup_s": client_warmup,
        "client_duration_s": client_duration,
        "quick": args.quick,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    saved = {
        "meta": meta,
        "cells": [asdict(c) for c in cells],
        "client_cells": [asdict(c) for c in client_cells],
    }
    (args.out / "results.json").write_text(json.dumps(saved, indent=1))
    report.write(args.out, meta, cells, client_cells)
    console.print(f"results in {args.out} ({meta['run_s']:.0f} s)")


def _line(cell: Cell) -> str:
    p50 = f"{cell.p50_s * 1000:.0f}" if cell.p50_s is not None else "-"
    p99 = f"{cell.p99_s * 1000:.0f}" if cell.p99_s is not None else "-"
    return (
        f"{cell.target:6} {cell.workload:17} K={cell.devices} N={cell.users:<4} {cell.throughput:7.1f} req/s "
        f"p50 {p50:>6} ms p99 {p99:>6} ms busy {cell.device_busy:4.0%} batch {cell.batch_mean or 0:4.1f} "
        f"rej {cell.rejections} err {cell.errors} {cell.error_kinds if cell.errors else ''}"
    )


if __name__ == "__main__":
    main()
