"""The short form of the chaos suite (`make chaos` runs the long one and prints the figures).

The emulator runs in fidelity mode, so concurrent joins meet DynamoDB's transaction conflicts and
throughput caps on the one counters item: a refused join is a clean 503, counted as `rejected`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos import scenarios
from tests.chaos.scenarios import ChaosStack

pytestmark = pytest.mark.crossprocess


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    with ChaosStack(tmp_path_factory.mktemp("chaos")).running() as running:
        yield running


def test_killing_workers_mid_batch_loses_and_duplicates_nothing(chaos: ChaosStack) -> None:
    figures = scenarios.kill_workers(chaos, jobs=120, kills=3, every_s=1.5)
    assert figures.workers_killed == 3
    assert figures.submitted == 120 and figures.completed + figures.failed_clearly + figures.rejected == 120
    assert figures.completed > 0
    assert figures.problems() == []


def test_an_aws_outage_answers_503_and_loses_nothing_admitted(chaos: ChaosStack) -> None:
    figures = scenarios.aws_outage(chaos, jobs=60, outage_s=3.0)
    assert figures.completed + figures.failed_clearly + figures.rejected == figures.submitted == 60
    assert figures.problems() == []


def test_duplicate_delivery_runs_each_job_once(chaos: ChaosStack) -> None:
    figures = scenarios.duplicate_delivery(chaos, jobs=12)
    assert figures.completed == 12
    assert figures.problems() == []


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrency_limit_holds_fleet_wide_under_a_burst(chaos: ChaosStack, workers: int) -> None:
    figures = scenarios.concurrency_burst(chaos, jobs=80, workers=workers)
    assert figures.completed + figures.rejected == 80 and figures.completed > 0
    assert figures.problems() == []
    assert figures.notes == [], "never more than two batches at once"


def test_dropped_clients_free_their_places_and_returning_clients_miss_nothing(chaos: ChaosStack) -> None:
    figures = scenarios.dropped_clients(chaos)
    assert figures.problems() == []
    assert figures.lost == 0 and figures.completed == 5


def test_bad_input_is_refused_and_leaves_no_trace(chaos: ChaosStack) -> None:
    figures = scenarios.bad_inputs(chaos)
    assert figures.bad_inputs == len(scenarios.BAD_BODIES)
    assert figures.completed == 5, "odd but valid inputs must round-trip unchanged"
    assert figures.problems() == []


def test_a_burst_of_joins_admits_exactly_max_size_and_refuses_the_rest_cleanly() -> None:
    figures = scenarios.burst_admission(joins=400, max_size=50)
    assert (figures.submitted, figures.rejected, figures.completed) == (400, 350, 50)
    assert figures.problems() == []


def test_a_flood_of_joins_loses_nothing_and_the_counters_return_to_zero() -> None:
    figures = scenarios.join_flood(rate_per_s=100, duration_s=2)
    assert figures.submitted == 200
    assert figures.completed + figures.rejected == 200 and figures.completed > 0
    assert figures.problems() == []
