"""Waking sleeping workers from the join path, on an in-memory ECS: once per burst, never below or above
what is there, and never failing the join."""

from __future__ import annotations

from dataclasses import dataclass, field

from surge.errors import Unavailable, start_failure_message
from surge.store.fleet import Fleet, StartFailure
from surge.wake import ServiceState, Waker


@dataclass
class InMemoryWorkerServices:
    desired: dict[str, int] = field(default_factory=lambda: {"echo": 0})
    starting_for_s: float | None = None
    last_start_s: float | None = None
    broken: bool = False
    calls: list[str] = field(default_factory=list)

    def describe(self, api_name: str) -> ServiceState:
        self.calls.append(f"describe {api_name}")
        if self.broken:
            raise Unavailable("ECS is down")
        return ServiceState(self.desired[api_name], 0, 0, self.starting_for_s, self.last_start_s)

    def set_desired(self, api_name: str, count: int) -> None:
        self.calls.append(f"set {api_name} {count}")
        self.desired[api_name] = count


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wake_raises_a_sleeping_service_to_one_once_per_burst() -> None:
    services, clock = InMemoryWorkerServices(), Clock()
    waker = Waker(services, min_interval_s=30, default_start_s=300, clock=clock)
    first = waker.wake("echo")
    assert (first.woke, first.starting, first.eta_s) == (True, True, 300)
    assert services.desired["echo"] == 1
    clock.now += 10
    again = waker.wake("echo")
    assert (again.woke, again.starting, again.eta_s) == (False, True, 290)
    assert services.calls == ["describe echo", "set echo 1"]


def test_wake_leaves_a_service_that_is_already_up_or_starting_alone() -> None:
    services, clock = InMemoryWorkerServices(desired={"echo": 3}), Clock()
    state = Waker(services, clock=clock).wake("echo")
    assert not state.woke and state.starting
    assert services.desired["echo"] == 3
    assert services.calls == ["describe echo"]


def test_wake_estimates_from_the_measured_start_and_the_starting_tasks_age() -> None:
    services = InMemoryWorkerServices(desired={"echo": 1}, starting_for_s=100.0, last_start_s=240.0)
    state = Waker(services, default_start_s=600, clock=Clock()).wake("echo")
    assert (state.expected_start_s, state.eta_s) == (240.0, 140.0)
    late = InMemoryWorkerServices(desired={"echo": 1}, starting_for_s=400.0, last_start_s=240.0)
    assert Waker(late, clock=Clock()).wake("echo").eta_s == 0.0


def test_a_failed_wake_is_reported_not_raised_and_retried_after_the_interval() -> None:
    services, clock = InMemoryWorkerServices(broken=True), Clock()
    waker = Waker(services, min_interval_s=30, clock=clock)
    assert not waker.wake("echo").starting
    services.broken = False
    clock.now += 31
    assert waker.wake("echo").woke


def test_a_failed_worker_start_stands_only_while_no_worker_is_live_and_says_what_the_app_shows() -> None:
    failure = StartFailure("RuntimeError", "the weights at /models/x.bin are missing", 0.0)
    assert Fleet({}, None, failure).cannot_start == failure
    assert Fleet({"w1": 1}, None, failure).cannot_start is None, "a live worker serves the jobs"
    hidden = start_failure_message("predict", failure.kind, failure.detail, show_error=False)
    assert (
        hidden
        == "The workers of predict could not start (loading the app raised RuntimeError); please try again later."
    )
    shown = start_failure_message("predict", failure.kind, failure.detail, show_error=True)
    assert "raised RuntimeError: the weights at /models/x.bin are missing)" in shown


def test_a_failed_start_is_told_to_jobs_it_kept_waiting_and_to_later_ones_only_when_no_try_may_start() -> None:
    once = StartFailure("RuntimeError", "x", at=100.0, count=1)
    assert once.stands_for(joined_at=99.0), "it failed while the job waited"
    assert not once.stands_for(joined_at=101.0), "a single failure: the next try may start"
    twice = StartFailure("RuntimeError", "x", at=100.0, count=2)
    assert twice.stands_for(joined_at=101.0), "failed twice in a row, and nobody is trying"
    trying = StartFailure("RuntimeError", "x", at=100.0, count=2, tried_at=105.0)
    assert trying.retrying and not trying.stands_for(joined_at=106.0), "a worker is starting: wait for it"
    assert trying.stands_for(joined_at=99.0), "it failed while the job waited"
