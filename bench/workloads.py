"""The four workloads, defined once and served identically by Surge and by Gradio.

Each model call sleeps like a device would; its output says the batch size it saw, so the load
generator reads batch sizes from the answers. With `BENCH_DEVICE_LOG` set to a folder, each process
appends `start end size` per call to its own file there, from which the run computes device busy time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    """One function and the queue settings both targets get for it."""

    name: str
    batch: bool
    max_batch_size: int
    fixed_s: float
    per_item_s: float
    max_size: int
    """App-wide queue bound, sized so a full queue drains in seconds at K = 1 (cells stay short)."""

    def cost_s(self, size: int) -> float:
        return self.fixed_s + self.per_item_s * size

    def capacity_per_s(self, devices: int) -> float:
        """Requests per second the devices allow when every batch is full."""
        size = self.max_batch_size if self.batch else 1
        return devices * size / self.cost_s(size)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("echo", batch=False, max_batch_size=1, fixed_s=0.0, per_item_s=0.0, max_size=200),
        Workload("sim_gpu", batch=True, max_batch_size=16, fixed_s=0.050, per_item_s=0.002, max_size=200),
        Workload("sim_gpu_unbatched", batch=False, max_batch_size=1, fixed_s=0.050, per_item_s=0.002, max_size=100),
        Workload("slow_model", batch=True, max_batch_size=4, fixed_s=1.0, per_item_s=0.0, max_size=32),
    )
}


class DeviceLog:
    """Appends `start end size` (epoch seconds) per model call to `<folder>/<pid>.log`, if enabled."""

    def __init__(self) -> None:
        folder = os.environ.get("BENCH_DEVICE_LOG")
        self.path = Path(folder, f"{os.getpid()}.log") if folder else None
        self.lock = threading.Lock()

    def record(self, start: float, end: float, size: int) -> None:
        if self.path is None:
            return
        with self.lock, self.path.open("a") as out:
            out.write(f"{start:.6f} {end:.6f} {size}\n")


_LOG: DeviceLog | None = None


def device_log() -> DeviceLog:
    global _LOG
    if _LOG is None or (_LOG.path is not None and _LOG.path.name != f"{os.getpid()}.log"):
        _LOG = DeviceLog()
    return _LOG


def run_batch(workload: Workload, texts: list[str]) -> list[str]:
    """The simulated device: sleeps for the batch's cost and labels each answer with the batch size."""
    start = time.time()
    if workload.fixed_s or workload.per_item_s:
        time.sleep(workload.cost_s(len(texts)))
    device_log().record(start, time.time(), len(texts))
    return [f"{text} (batch of {len(texts)})" for text in texts]


def read_device_logs(folder: Path, since: float, until: float) -> tuple[float, int, int]:
    """Busy device-seconds within [since, until], calls and items that ended in it, over all processes."""
    busy, calls, items = 0.0, 0, 0
    for path in folder.glob("*.log"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            start, end, size = float(parts[0]), float(parts[1]), int(parts[2])
            busy += max(0.0, min(end, until) - max(start, since))
            if since <= end <= until:
                calls += 1
                items += size
    return busy, calls, items
