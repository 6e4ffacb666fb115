"""The one ETA model: smoothed batch duration (written by workers), live slots, and rank → seconds.

`Estimator` caches the two reads it needs (statistics, live workers) per process, so a burst of
joins or a crowd of streams costs one read every few seconds, not one per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from surge.application import App, Function
from surge.models import FunctionStats
from surge.store.fleet import Fleet

T = TypeVar("T")

UNRUN_TTL_S = 0.5
"""How long a read of a function's statistics that shows no run yet is reused (the others: the cache's)."""

EWMA_ALPHA = 0.3
"""Weight of the newest batch in the workers' smoothed duration and size."""


def smooth(previous: float | None, value: float) -> float:
    return value if previous is None else EWMA_ALPHA * value + (1 - EWMA_ALPHA) * previous


def slots_for(live_workers: dict[str, int], limit: int | None) -> int:
    """Batches of a function that can run at once: live worker slots capped by the group limit.

    With no live worker (scaled to zero, or starting), ETA assumes the limit (or 1).
    """
    live = sum(live_workers.values())
    if not live:
        return limit or 1
    return min(live, limit) if limit else live


def estimate_eta(
    function: Function, rank: int, stats: FunctionStats, slots: int, busy: bool | None = None
) -> float | None:
    """Seconds until a job at `rank` is expected to finish, including its own run (Gradio's meaning).

    Jobs ahead run `receive_batch_size` at a time on `slots` parallel batches, and a slot frees every
    `batch_s / slots` on average, so the batches ahead take `batches_ahead / slots` cycles, fractions
    included (Gradio adds `process_time / concurrency_limit` per event ahead). A job with others waiting
    ahead of it also waits for a busy slot to free: with `slots` batches at random points of their run,
    the first ends after `batch_s / (slots + 1)` on average (Gradio measures the same from the running
    events' start times). `busy`: whether every slot is taken; by default only with jobs waiting ahead,
    since at rank 0 the slots may be free (a job just joined), but a job that has come to the front of
    the line waits for one (the stream says so). None before the first run when no `eta_hint_s` was given
    (as in Gradio).
    """
    batch_s = stats.cycle_s if stats.cycle_s is not None else function.eta_hint_s
    if batch_s is None:
        return None
    slots = max(1, slots)
    batches_ahead = rank // function.receive_batch_size
    busy_s = batch_s / (slots + 1) if (rank > 0 if busy is None else busy) else 0.0
    return batch_s * (1 + batches_ahead / slots) + busy_s


class TimedCache:
    """Values read from DynamoDB that may be a little stale (stats, live workers, counters)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}
        self._loading = threading.Lock()
        self._due: dict[str, tuple[Callable[[], Any], float | None]] = {}

    def forget(self, key: str) -> None:
        self._values.pop(key, None)

    def peek(self, key: str, load: Callable[[], T], ttl_s: float | None = None) -> T | None:
        """The cached value however old (None before the first read), never blocking: for an event
        loop. A stale or missing value (older than `ttl_s`, by default the cache's) is noted, and read
        by the next `load_due` (in a thread)."""
        hit = self._values.get(key)
        if hit is None or time.monotonic() - hit[0] >= (self.ttl_s if ttl_s is None else ttl_s):
            self._due[key] = (load, ttl_s)
        return None if hit is None else hit[1]

    def known(self, key: str) -> Any:
        """The cached value however old (None before the first read), without noting it for a read."""
        hit = self._values.get(key)
        return None if hit is None else hit[1]

    @property
    def due(self) -> bool:
        return bool(self._due)

    def load_due(self) -> None:
        """Read what `peek` found stale or missing (blocking: call it from a thread)."""
        due, self._due = self._due, {}
        for key, (load, ttl_s) in list(due.items()):  # a `peek` may still note one in the dict just swapped
            self.get(key, load, ttl_s)

    def get(self, key: str, load: Callable[[], T], ttl_s: float | None = None) -> T:
        """The cached value, or a fresh one (older than `ttl_s`, by default the cache's, is stale). Only
        one thread loads at a time: the others take the stale value meanwhile (or wait for the first
        load), so a burst of requests makes one read."""
        ttl_s = self.ttl_s if ttl_s is None else ttl_s
        hit = self._values.get(key)
        if hit and time.monotonic() - hit[0] < ttl_s:
            value: T = hit[1]
            return value
        if hit and not self._loading.acquire(blocking=False):
            stale: T = hit[1]
            return stale
        if not hit:
            self._loading.acquire()
        try:
            hit = self._values.get(key)
            if hit and time.monotonic() - hit[0] < ttl_s:
                cached: T = hit[1]
                return cached
            value = load()
            self._values[key] = (time.monotonic(), value)
            return value
        finally:
            self._loading.release()


class Estimator:
    """ETA for any rank of any function of the app, from cached statistics and the function's fleet.

    With no live worker, the ETA adds the time until a woken worker is expected (the front records it
    when it wakes a sleeping service, from the measured start of the last worker).
    """

    def __init__(
        self,
        app: App,
        stats: Callable[[str], FunctionStats],
        fleet: Callable[[str], Fleet],
        ttl_s: float = 2.0,
    ) -> None:
        self.app = app
        self._stats = stats
        self._fleet = fleet
        self._cache = TimedCache(ttl_s)

    def stats(self, function: Function, wait: bool = True) -> FunctionStats:
        """`wait=False` (an event loop): the cached value, however old, or none yet; never a read. Until a
        read shows a run of the function while a worker of it is live, it is read again after `UNRUN_TTL_S`:
        Gradio's ETA appears as soon as the first job ends, and the workers record their first batch at once."""
        key, load = f"stats#{function.api_name}", lambda: self._stats(function.api_name)
        if wait:
            return self._cache.get(key, load)
        known, fleet = self._cache.known(key), self._cache.known(f"fleet#{function.api_name}")
        # Only while a worker is live to record the run: a cold start's wait reads at the usual pace.
        unrun = (
            isinstance(known, FunctionStats) and known.cycle_s is None and isinstance(fleet, Fleet) and fleet.workers
        )
        return self._cache.peek(key, load, UNRUN_TTL_S if unrun else None) or FunctionStats()

    def fleet(self, function: Function, wait: bool = True) -> Fleet | None:
        """The function's live workers; with `wait=False`, None before the first read."""
        key, load = f"fleet#{function.api_name}", lambda: self._fleet(function.api_name)
        return self._cache.get(key, load) if wait else self._cache.peek(key, load)

    def known_cycles(self) -> list[float]:
        """The measured batch cycles (claim to results recorded) of the app's functions whose statistics
        this process has read, however old; reads nothing and asks for no read."""
        cycles = []
        for function in self.app.functions:
            stats = self._cache.known(f"stats#{function.api_name}")
            if isinstance(stats, FunctionStats) and stats.cycle_s is not None:
                cycles.append(stats.cycle_s)
        return cycles

    def note(self, function: Function) -> None:
        """Have the next `load_due` read the function's statistics and fleet unless they are fresh."""
        self.stats(function, wait=False)
        self.fleet(function, wait=False)

    @property
    def due(self) -> bool:
        """Whether a `wait=False` call found a value stale or missing: `load_due` reads it."""
        return self._cache.due

    def load_due(self) -> None:
        self._cache.load_due()

    def fleet_changed(self, function: Function) -> None:
        """This process changed the function's fleet (it woke a worker): read it afresh next time."""
        self._cache.forget(f"fleet#{function.api_name}")

    def slots(self, function: Function, wait: bool = True) -> int:
        fleet = self.fleet(function, wait)
        return slots_for(fleet.workers if fleet else {}, self.app.concurrency_limit(function.concurrency_id))

    def eta(self, function: Function, rank: int, wait: bool = True, busy: bool | None = None) -> float | None:
        eta = estimate_eta(function, rank, self.stats(function, wait), self.slots(function, wait), busy)
        fleet = self.fleet(function, wait)
        if eta is None or fleet is None or fleet.workers or fleet.starting_until is None:
            return eta
        return eta + max(0.0, fleet.starting_until - time.time())

    def batch_s(self, function: Function, wait: bool = True) -> float | None:
        """The function's smoothed batch cycle, claim to results recorded (its hint before the first run)."""
        return self.stats(function, wait).cycle_s or function.eta_hint_s

    def retry_after_s(self, function: Function) -> int:
        return max(1, math.ceil(self.batch_s(function) or 5.0))
