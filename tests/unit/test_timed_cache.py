"""The front's cache of slowly changing reads: a burst of requests makes one read, not one each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from surge.eta import TimedCache


def test_a_burst_of_misses_loads_once() -> None:
    cache = TimedCache(ttl_s=0.05)
    loads: list[int] = []
    gate = threading.Event()

    def load() -> int:
        loads.append(1)
        gate.wait(1)
        return len(loads)

    with ThreadPoolExecutor(8) as pool:
        first = [pool.submit(cache.get, "k", load) for _ in range(8)]
        time.sleep(0.05)
        gate.set()
        assert {f.result() for f in first} == {1}
    assert len(loads) == 1
    time.sleep(0.06)
    gate.clear()
    with ThreadPoolExecutor(8) as pool:
        again = [pool.submit(cache.get, "k", load) for _ in range(8)]
        time.sleep(0.05)
        gate.set()
        values = {f.result() for f in again}
    assert len(loads) == 2, "an expired value is reloaded once"
    assert values <= {1, 2}, "the others get the stale value meanwhile"
