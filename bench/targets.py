"""The two targets the load generator drives: Gradio in one process, and Surge's local stack with K workers.

Each target knows its processes (for CPU time and profiling) and, for Surge, snapshots the AWS call
counts its processes keep (see `inject/sitecustomize.py`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from surge_local.launcher import LocalStack, free_port

INJECT = Path(__file__).resolve().parent / "inject"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def wait_ready(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer /config within {timeout_s} s")


@dataclass
class Running:
    """A started target: where it listens and which processes make it up (role → pids)."""

    name: str
    url: str
    processes: dict[str, list[int]]
    callcount_dir: Path | None = None
    stopper: object = None
    extra: dict[str, object] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in self.processes.items()}

    def calls(self) -> dict[str, dict[str, list[float]]]:
        """Cumulative AWS calls per role → {"service.Operation": [calls, capacity units]} (Surge only)."""
        if self.callcount_dir is None:
            return {}
        pids = [pid for role, pids in self.processes.items() if role != "emulator" for pid in pids]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                continue
        time.sleep(0.3)
        totals: dict[str, dict[str, list[float]]] = {}
        for path in self.callcount_dir.glob("*.json"):
            role, pid_text = path.stem.rsplit("-", 1)
            if int(pid_text) not in pids:
                continue
            role = "worker" if role.startswith("worker.") else role
            for op, (count, units) in json.loads(path.read_text()).items():
                entry = totals.setdefault(role, {}).setdefault(op, [0, 0.0])
                entry[0] += count
                entry[1] += units
        return totals


def delta(after: Any, before: Any) -> Any:
    """`after - before`, leaf by leaf, for nested call counts (missing in `before` counts as zero)."""
    if isinstance(after, dict):
        return {
            k: delta(v, before.get(k, {} if isinstance(v, dict) else [0] * len(v) if isinstance(v, list) else 0))
            for k, v in after.items()
        }
    if isinstance(after, list):
        return [a - (before[i] if i < len(before) else 0) for i, a in enumerate(after)]
    return after - before


def start_gradio(workload: str, devices: int, device_log: Path) -> Running:
    port = free_port()
    env = {**os.environ, "BENCH_DEVICE_LOG": str(device_log), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.apps.gradio_app",
            "--workload",
            workload,
            "--devices",
            str(devices),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a scheduling group of its own, as each process of Surge's stack has
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
    except TimeoutError:
        process.kill()
        raise
    return Running("gradio", url, {"gradio": [process.pid]}, stopper=process)


def start_surge(workload: str, workers: int, device_log: Path, callcount_dir: Path) -> Running:
    callcount_dir.mkdir(parents=True, exist_ok=True)  # `Running.calls` reads it; the processes write it
    pythonpath = os.pathsep.join(p for p in (str(INJECT), os.environ.get("PYTHONPATH", "")) if p)
    stack = LocalStack(
        f"bench.apps.surge_apps:{workload}",
        port=free_port(),
        workers={workload: workers},
        fidelity=True,
        extra_env={
            "PYTHONPATH": pythonpath,
            "BENCH_CALLCOUNT_DIR": str(callcount_dir),
            "BENCH_DEVICE_LOG": str(device_log),
            "LOG_LEVEL": "WARNING",
        },
    ).start()
    try:
        wait_ready(stack.url)
    except TimeoutError:
        stack.stop()
        raise
    processes: dict[str, list[int]] = {"emulator": [], "front": [], "worker": []}
    for name, process in stack.processes.items():
        role = "emulator" if name.startswith("emulator:") else "front" if name == "front" else "worker"
        processes[role].append(process.pid)
    return Running("surge", stack.url, processes, callcount_dir=callcount_dir, stopper=stack)


def stop(running: Running) -> None:
    if isinstance(running.stopper, LocalStack):
        running.stopper.stop()
    elif isinstance(running.stopper, subprocess.Popen):
        running.stopper.terminate()
        try:
            running.stopper.wait(10)
        except subprocess.TimeoutExpired:
            running.stopper.kill()
            running.stopper.wait()
