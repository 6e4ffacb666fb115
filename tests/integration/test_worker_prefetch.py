"""A worker of an unlimited function takes its next batch from the queue while the current one runs."""

from __future__ import annotations

from typing import Any

import pytest

from surge.broker import Broker
from surge.store import Store
from tests.integration.conftest import settings_for
from tests.integration.test_worker import outcomes, serving, submit


def test_the_next_batch_is_received_before_the_current_one_is_recorded(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for("examples.demo_app:app")
    log: list[int] = []  # messages received, or -1 when a batch's results are recorded
    receive, finish = Broker.receive, Store.finish

    def receiving(self: Broker, *args: Any) -> Any:
        got = receive(self, *args)
        log.append(len(got))
        return got

    def finishing(self: Store, *args: Any, **kwargs: Any) -> Any:
        log.append(-1)
        return finish(self, *args, **kwargs)

    monkeypatch.setattr(Broker, "receive", receiving)
    monkeypatch.setattr(Store, "finish", finishing)
    ids = [submit(settings, "sim_gpu", f"t{i}") for i in range(48)]
    with serving(settings, "sim_gpu"):
        results = outcomes(settings, ids)
    assert all(r["success"] for r in results)
    before_first_result = sum(log[: log.index(-1)])
    assert before_first_result > 16, f"only one batch (16) was in hand while the first ran: {log}"
