"""A full queue refuses a retrying crowd without a write per try, and admits again once the hold ends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from surge import service as service_module
from surge.application import load_app
from surge.broker import Broker
from surge.errors import QueueFull
from surge.models import Job, JobState, JoinBody
from surge.service import FrontService
from surge.store import Store
from tests.integration.conftest import settings_for


def test_refusals_within_the_hold_make_no_write_and_a_freed_place_is_taken_after_it(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "FULL_HOLD_S", 0.3)
    settings = settings_for("tests.apps.queue_app:app")
    store = Store(settings)
    front = FrontService(load_app(settings.app_module), settings, store, Broker(settings))
    admits: list[str] = []
    admit = Store.admit

    def counting(self: Store, *args: Any) -> Job:
        admits.append("admit")
        return admit(self, *args)

    monkeypatch.setattr(Store, "admit", counting)

    def join(tag: str) -> Job:
        return front.join(JoinBody(data=[0.1, tag], api_name="slow", session_hash=f"session-hash-{tag}-0001"))

    first = join("a")
    join("b")
    for tag in "cdef":
        with pytest.raises(QueueFull) as refused:
            join(tag)
    assert refused.value.detail == "Queue is full. Max size is 2 and size is 2."
    assert len(admits) == 3, "only the first refusal asked DynamoDB"
    assert store.counters().waiting == 2
    job = store.get_job(first.session_hash, first.job_id)
    assert job is not None and job.shard == first.shard
    assert store.end_waiting(job, JobState.CANCELLED, {"msg": "process_completed", "event_id": first.job_id})
    time.sleep(0.35)
    join("g")  # the freed place (whichever shard it was in) is taken
    assert len(admits) == 4
    assert store.counters().waiting == 2
