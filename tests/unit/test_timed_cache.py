"""The front's cache of slowly changing reads: a burst of requests makes one read, not one each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from surge.eta import TimedCache


def test_a_burst_of_misses_loads_once() -> None:
    cache = TimedCache(ttl_s=0.5)
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
    time.sleep(0.6)
    gate.clear()
    with ThreadPoolExecutor(8) as pool:
        again = [pool.submit(cache.get, "k", load) for _ in range(8)]
        time.sleep(0.05)
        gate.set()
        values = {f.result() for f in again}
    assert len(loads) == 2, "an expired value is reloaded once"
    assert values <= {1, 2}, "the others get the stale value meanwhile"


def test_an_event_loop_never_reads_it_takes_cached_values_and_a_thread_reads_what_was_stale() -> None:
    from surge.application import App
    from surge.eta import Estimator
    from surge.models import FunctionStats
    from surge.store.fleet import Fleet

    app = App()

    @app.function(inputs=["textbox"], outputs=["textbox"], api_name="f", eta_hint_s=3.0)
    def f(text: str) -> str:
        return text

    reads: list[str] = []

    def stats(api_name: str) -> FunctionStats:
        reads.append("stats")
        return FunctionStats(avg_batch_s=0.5, batches=4)

    def fleet(api_name: str) -> Fleet:
        reads.append("fleet")
        return Fleet(workers={"w1": 1})

    estimator = Estimator(app, stats, fleet, ttl_s=0.5)
    function = app.get("f")
    # Nothing read yet: the loop gets the hint and no read, and the miss is noted for a thread.
    assert estimator.eta(function, 0, wait=False) == 3.0
    assert estimator.fleet(function, wait=False) is None
    assert reads == [] and estimator.due
    estimator.load_due()
    assert sorted(reads) == ["fleet", "stats"] and not estimator.due
    assert estimator.batch_s(function, wait=False) == 0.5
    assert estimator.fleet(function, wait=False) == Fleet(workers={"w1": 1})
    time.sleep(0.6)
    # Expired: still no read on the loop, the stale value serves until the thread reloads it.
    assert estimator.batch_s(function, wait=False) == 0.5
    assert len(reads) == 2 and estimator.due
    estimator.load_due()
    assert len(reads) == 3, "only the stale statistics were read again"


def test_statistics_showing_no_run_yet_are_read_again_sooner_than_the_others(monkeypatch) -> None:
    """Gradio shows an ETA from the moment the first job ends: a read of a function's statistics that
    shows no run is reused `UNRUN_TTL_S`, not the whole cache lifetime; once a run shows, the lifetime."""
    from surge import eta as eta_module
    from surge.application import App
    from surge.eta import UNRUN_TTL_S, Estimator
    from surge.models import FunctionStats
    from surge.store.fleet import Fleet

    now = [100.0]
    monkeypatch.setattr(eta_module.time, "monotonic", lambda: now[0])
    app = App()

    @app.function(inputs=["textbox"], outputs=["textbox"], api_name="f")
    def f(text: str) -> str:
        return text

    runs: list[FunctionStats] = [FunctionStats()]
    reads: list[str] = []

    def stats(api_name: str) -> FunctionStats:
        reads.append("stats")
        return runs[-1]

    estimator = Estimator(app, stats, lambda api_name: Fleet(workers={"w1": 1}), ttl_s=2.0)
    function = app.get("f")
    estimator.note(function)
    estimator.load_due()
    assert estimator.eta(function, 3, wait=False) is None and reads == ["stats"]
    now[0] += UNRUN_TTL_S + 0.01
    runs.append(FunctionStats(avg_batch_s=1.0, batches=1))
    estimator.eta(function, 3, wait=False)
    estimator.load_due()
    assert reads == ["stats", "stats"], "no run shown: read again after UNRUN_TTL_S"
    assert estimator.eta(function, 3, wait=False) is not None
    now[0] += UNRUN_TTL_S + 0.01
    estimator.eta(function, 3, wait=False)
    assert not estimator.due, "a run shown: kept the cache's whole lifetime"

    cold = Estimator(app, lambda api_name: FunctionStats(), lambda api_name: Fleet(workers={}), ttl_s=2.0)
    cold.note(function)
    cold.load_due()
    now[0] += UNRUN_TTL_S + 0.01
    cold.eta(function, 3, wait=False)
    assert not cold.due, "no worker live to record a run (a cold start): the usual lifetime"
